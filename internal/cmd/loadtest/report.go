package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// result is one row of the report: one scenario against one target (or direct to the
// backend).
type result struct {
	Scenario        string           `json:"scenario"`
	Target          string           `json:"target"`
	Requests        int64            `json:"requests"`
	Seconds         float64          `json:"seconds"`
	RPS             float64          `json:"rps"`
	P50Ms           float64          `json:"p50_ms"`
	P90Ms           float64          `json:"p90_ms"`
	P99Ms           float64          `json:"p99_ms"`
	MaxMs           float64          `json:"max_ms"`
	Statuses        map[string]int64 `json:"statuses"`
	Lost            map[string]int64 `json:"lost,omitempty"`
	BadBodies       int64            `json:"bad_bodies,omitempty"`
	CPUSeconds      float64          `json:"cpu_seconds,omitempty"`
	CPUPerRequestUs float64          `json:"cpu_per_request_us,omitempty"`
	BaseRSS         int64            `json:"base_rss_bytes,omitempty"`
	PeakRSS         int64            `json:"peak_rss_bytes,omitempty"`
	RSSGrowth       int64            `json:"rss_growth_bytes,omitempty"`
	PeakHeap        int64            `json:"peak_heap_bytes,omitempty"`
	IdleRSS         int64            `json:"idle_rss_bytes,omitempty"` // RSS after the scenario's idle wait
	MeasureScope    string           `json:"measure_scope,omitempty"`
	RPSRatio        float64          `json:"rps_ratio_vs_direct,omitempty"`
	P50Ratio        float64          `json:"p50_ratio_vs_direct,omitempty"`
	P99Ratio        float64          `json:"p99_ratio_vs_direct,omitempty"`
	Notes           []string         `json:"notes,omitempty"`
	Checks          []check          `json:"checks"`
	Pass            bool             `json:"pass"`
	Skipped         string           `json:"skipped,omitempty"` // why the scenario did not run ("": it ran)
}

// check is one stated condition of a scenario and whether it held.
type check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}

// newResult fills the load figures of a row from a load run (lr may be nil).
func newResult(scenario, target string, lr *loadResult) *result {
	r := &result{Scenario: scenario, Target: target, Statuses: map[string]int64{}, Pass: true}
	if lr == nil {
		return r
	}
	r.Requests = lr.requests
	r.Seconds = lr.elapsed.Seconds()
	r.RPS = perSecond(lr.requests, lr.elapsed)
	r.P50Ms = ms(lr.latency.Quantile(0.50))
	r.P90Ms = ms(lr.latency.Quantile(0.90))
	r.P99Ms = ms(lr.latency.Quantile(0.99))
	r.MaxMs = ms(lr.latency.Max())
	for code, n := range lr.statuses {
		r.Statuses[statusKey(code)] = n
	}
	if len(lr.lost) > 0 {
		r.Lost = maps.Clone(lr.lost)
	}
	r.BadBodies = lr.badBody
	return r
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// check records a condition; a false one fails the row.
func (r *result) check(name string, ok bool, format string, args ...any) {
	r.Checks = append(r.Checks, check{Name: name, OK: ok, Detail: fmt.Sprintf(format, args...)})
	if !ok {
		r.Pass = false
	}
}

// fail records a failure that prevented the scenario from running.
func (r *result) fail(name string, err error) { r.check(name, false, "%v", err) }

// skip records that the scenario did not run, and why: the row tests nothing.
func (r *result) skip(why string) { r.Skipped = why }

// word is the row's RESULT: PASS, FAIL or SKIP.
func (r *result) word() string {
	if r.Skipped != "" {
		return "SKIP"
	}
	return passWord(r.Pass)
}

func (r *result) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// addUsage fills CPU and memory from two snapshots taken around the load.
func (r *result) addUsage(before, after usage, scope string) {
	r.CPUSeconds = (after.CPU - before.CPU).Seconds()
	if r.Requests > 0 {
		r.CPUPerRequestUs = r.CPUSeconds * 1e6 / float64(r.Requests)
	}
	r.BaseRSS = before.RSS
	r.PeakRSS = after.Peak
	r.RSSGrowth = max(after.Peak-before.RSS, 0)
	r.PeakHeap = after.PeakHeap
	r.MeasureScope = scope
	if r.PeakHeap > 0 {
		r.note("peak Go heap (runtime/metrics %s, sampled every 20 ms, whole process): %s", heapMetric, fmtBytes(r.PeakHeap))
	}
}

// addRatio compares the row with the direct-to-backend row of the same load.
func (r *result) addRatio(direct *result) {
	if direct == nil {
		return
	}
	r.RPSRatio = ratio(r.RPS, direct.RPS)
	r.P50Ratio = ratio(r.P50Ms, direct.P50Ms)
	r.P99Ratio = ratio(r.P99Ms, direct.P99Ms)
}

// machine describes where the run happened.
type machine struct {
	Date     string `json:"date"`
	NumCPU   int    `json:"nproc"`
	CPUModel string `json:"cpu_model"`
	MemTotal string `json:"mem_total"`
	Go       string `json:"go"`
	OSArch   string `json:"os_arch"`
}

func describeMachine(now time.Time) machine {
	return machine{
		Date:     now.UTC().Format(time.RFC3339),
		NumCPU:   runtime.NumCPU(),
		CPUModel: procField("/proc/cpuinfo", "model name"),
		MemTotal: procField("/proc/meminfo", "MemTotal"),
		Go:       runtime.Version(),
		OSArch:   runtime.GOOS + "/" + runtime.GOARCH,
	}
}

// procField returns the value of the first "name: value" line of a /proc file, "?" if absent.
func procField(file, name string) string {
	f, err := os.Open(file)
	if err != nil {
		return "?"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == name {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

// report is the whole output.
type report struct {
	Machine machine   `json:"machine"`
	Command string    `json:"command"`
	Results []*result `json:"results"`
	Pass    bool      `json:"pass"`
}

func (rep *report) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// writeTable prints the human-readable report.
func (rep *report) writeTable(w io.Writer) error {
	m := rep.Machine
	fmt.Fprintf(w, "telephone loadtest  %s  nproc=%d  cpu=%q  mem=%s  %s %s\n", m.Date, m.NumCPU, m.CPUModel, m.MemTotal, m.Go, m.OSArch)
	fmt.Fprintf(w, "command: %s\n\n", rep.Command)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tTARGET\tREQS\tRPS\tP50\tP90\tP99\tMAX\tSTATUSES\tCPU/REQ\tPEAK RSS (+growth)\tRPS×\tP50×\tRESULT")
	for _, r := range rep.Results {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			r.Scenario, r.Target, r.Requests, r.RPS, fmtMs(r.P50Ms), fmtMs(r.P90Ms), fmtMs(r.P99Ms), fmtMs(r.MaxMs),
			fmtStatuses(r), fmtCPU(r.CPUPerRequestUs), fmtRSS(r), fmtRatio(r.RPSRatio), fmtRatio(r.P50Ratio), r.word())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	rep.writeDetails(w)
	return nil
}

func (rep *report) writeDetails(w io.Writer) {
	fmt.Fprintln(w)
	scopes := map[string]string{}
	skipped := 0
	for _, r := range rep.Results {
		if r.MeasureScope != "" {
			scopes[r.Target] = r.MeasureScope
		}
		if r.Skipped != "" {
			skipped++
			fmt.Fprintf(w, "%s / %s: SKIPPED, not tested: %s\n", r.Scenario, r.Target, r.Skipped)
			continue
		}
		if len(r.Notes) == 0 && len(r.Checks) == 0 {
			continue
		}
		fmt.Fprintf(w, "%s / %s:\n", r.Scenario, r.Target)
		for _, n := range r.Notes {
			fmt.Fprintf(w, "    %s\n", n)
		}
		for _, c := range r.Checks {
			fmt.Fprintf(w, "    [%s] %s: %s\n", okWord(c.OK), c.Name, c.Detail)
		}
	}
	for _, t := range slices.Sorted(maps.Keys(scopes)) {
		fmt.Fprintf(w, "CPU/RSS of %s: %s\n", t, scopes[t])
	}
	if skipped > 0 {
		fmt.Fprintf(w, "overall: %s (%d scenarios skipped, not tested)\n", passWord(rep.Pass), skipped)
		return
	}
	fmt.Fprintf(w, "overall: %s\n", passWord(rep.Pass))
}

func fmtMs(v float64) string {
	switch {
	case v == 0:
		return "-"
	case v < 10:
		return fmt.Sprintf("%.2fms", v)
	case v < 1000:
		return fmt.Sprintf("%.0fms", v)
	default:
		return fmt.Sprintf("%.2fs", v/1000)
	}
}

// fmtStatuses lists status counts, then lost requests and bad bodies: "200:100 502:3 lost:2".
func fmtStatuses(r *result) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(r.Statuses)) {
		parts = append(parts, fmt.Sprintf("%s:%d", k, r.Statuses[k]))
	}
	for _, k := range slices.Sorted(maps.Keys(r.Lost)) {
		parts = append(parts, fmt.Sprintf("lost-%s:%d", k, r.Lost[k]))
	}
	if r.BadBodies > 0 {
		parts = append(parts, fmt.Sprintf("bad-body:%d", r.BadBodies))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}

func fmtCPU(us float64) string {
	switch {
	case us == 0:
		return "-"
	case us < 1000:
		return fmt.Sprintf("%.0fµs", us)
	default:
		return fmt.Sprintf("%.1fms", us/1000)
	}
}

func fmtRSS(r *result) string {
	if r.PeakRSS == 0 {
		return "-"
	}
	return fmt.Sprintf("%s (+%s)", fmtBytes(r.PeakRSS), fmtBytes(r.RSSGrowth))
}

func fmtBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1fGiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.0fMiB", float64(n)/(1<<20))
	default:
		return fmt.Sprintf("%.0fKiB", float64(n)/(1<<10))
	}
}

func fmtRatio(v float64) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", v)
}

func passWord(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

func okWord(ok bool) string {
	if ok {
		return "ok"
	}
	return "FAILED"
}
