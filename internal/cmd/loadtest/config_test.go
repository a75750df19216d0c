package main

import (
	"errors"
	"io"
	"slices"
	"testing"
	"time"
)

func TestParseFlagsDefaults(t *testing.T) {
	t.Parallel()
	c, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.scenarios, allScenarios) {
		t.Errorf("scenarios = %v, want %v", c.scenarios, allScenarios)
	}
	if len(c.targets) != 1 || c.targets[0].label != inProcLabel || c.targets[0].path != "" {
		t.Errorf("targets = %+v, want only in-process", c.targets)
	}
	if !slices.Equal(c.largeSizes, []int64{10 << 20, 50 << 20}) || c.slowCount != 1000 || c.herd != 50 {
		t.Errorf("defaults changed: %+v", c)
	}
}

func TestParseFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		args  []string
		check func(config) bool
	}{
		{"binaries with labels", []string{"--binary", "ours=/x/telephone,/y/sidecar", "--binary", "/z/t2", "--inprocess=false"},
			func(c config) bool {
				return len(c.targets) == 3 && c.targets[0].label == "ours" && c.targets[0].path == "/x/telephone" &&
					c.targets[1].label == "bin:sidecar" && c.targets[2].path == "/z/t2"
			}},
		{"in-process first", []string{"--binary", "/t"}, func(c config) bool {
			return len(c.targets) == 2 && c.targets[0].label == inProcLabel
		}},
		{"scenarios", []string{"--scenario", "soak, herd"}, func(c config) bool { return slices.Equal(c.scenarios, []string{scnSoak, scnHerd}) }},
		{"sizes", []string{"--large-sizes", "1MiB,3KiB,17B,9"}, func(c config) bool {
			return slices.Equal(c.largeSizes, []int64{1 << 20, 3 << 10, 17, 9})
		}},
		{"durations", []string{"--duration", "1h", "--outage", "5s"}, func(c config) bool { return c.duration == time.Hour && c.outage == 5*time.Second }},
		{"scale-out", []string{"--scenario", "scale-out", "--scale-replicas", "5", "--scale-token-lifetime", "30s", "--scale-duration", "1m"}, func(c config) bool {
			return slices.Equal(c.scenarios, []string{scnScale}) && c.scaleReplicas == 5 && c.scaleLifetime == 30*time.Second && c.scaleDuration == time.Minute
		}},
		{"rate limit off", []string{"--rate-limit", "off"}, func(c config) bool { return c.rateLimit == rateOff }},
		{"rate limit number", []string{"--rate-limit", "2500"}, func(c config) bool { return c.rateLimit == "2500" }},
		{"join-ref default", nil, func(c config) bool { return c.joinRef == joinRefStrict }},
		{"join-ref lenient", []string{"--join-ref", "lenient"}, func(c config) bool { return c.joinRef == joinRefLenient }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := parseFlags(tc.args, io.Discard)
			if err != nil || !tc.check(c) {
				t.Fatalf("parseFlags(%q) = %+v, %v", tc.args, c, err)
			}
		})
	}
}

func TestParseFlagsErrors(t *testing.T) {
	t.Parallel()
	tests := [][]string{
		{"--scenario", "nope"},
		{"--large-sizes", "0"},
		{"--large-sizes", "2048MiB"},
		{"--large-sizes", "tenMiB"},
		{"--duration", "0s"},
		{"--concurrency", "0"},
		{"--herd", "9"},
		{"--scale-replicas", "1"},
		{"--scale-token-lifetime", "1s"},
		{"--scale-duration", "0s"},
		{"--initial-backoff", "5s", "--max-backoff", "1s"},
		{"--rate-limit", "-3"},
		{"--rate-limit", "fast"},
		{"--rate", "-1"},
		{"--join-ref", "loose"},
		{"--inprocess=false"},
		{"--scenario", "rolling-restart", "--inprocess=false", "--binary", "/x"},
		{"--binary", "a=/x", "--binary", "a=/y"},
		{"--binary", "=/x"},
		{"--no-such-flag"},
		{"extra"},
	}
	for _, args := range tests {
		t.Run(args[0], func(t *testing.T) {
			t.Parallel()
			if _, err := parseFlags(args, io.Discard); !errors.Is(err, errUsage) {
				t.Fatalf("parseFlags(%q) err = %v, want errUsage", args, err)
			}
		})
	}
}

func TestSizeName(t *testing.T) {
	t.Parallel()
	tests := map[int64]string{10 << 20: "10MiB", 512 << 10: "512KiB", 1536 << 10: "1536KiB", 100: "100B"}
	for n, want := range tests {
		if got := sizeName(n); got != want {
			t.Errorf("sizeName(%d) = %q, want %q", n, got, want)
		}
	}
}
