package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// misspelt returns a warning for every variable in env or dotenv that is not one of ours but
// looks like one (BACKEND_PROT, HEALTHCHECK_PORT, backend_port), naming the one it resembles.
func misspelt(env, dotenv map[string]string, envFile string) []string {
	known := map[string]bool{"token": true}
	for _, s := range settings {
		known[s.name] = true
	}
	var out []string
	check := func(vars map[string]string, source string) {
		for _, k := range slices.Sorted(maps.Keys(vars)) {
			if known[k] {
				continue
			}
			if name := closest(k, settings); name != "" {
				out = append(out, fmt.Sprintf("%s (from %s) is not a telephone variable and is ignored: did you mean %s?", k, source, name))
			}
		}
	}
	check(env, srcEnv)
	check(dotenv, envFile)
	return out
}

// closest returns the setting name within a small edit distance of k, or "".
func closest(k string, table []setting) string {
	upper := strings.ToUpper(k)
	best, bestDist := "", 3
	for _, s := range table {
		limit := 1 // short names: one edit
		if len(s.name) >= 8 {
			limit = 2
		}
		if d := editDistance(upper, s.name); d <= limit && d < bestDist {
			best, bestDist = s.name, d
		}
	}
	return best
}

// editDistance is the optimal string alignment distance: insertions, deletions, substitutions
// and transpositions of adjacent bytes each cost one.
func editDistance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
