package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/verastack/telephone/telephonetest"
)

// samplesOf builds samples started 1 ms apart with the given statuses (0 = lost).
func samplesOf(statuses ...int) []sample {
	out := make([]sample, len(statuses))
	for i, st := range statuses {
		out[i] = sample{Start: time.Duration(i) * time.Millisecond, End: time.Duration(i)*time.Millisecond + 1, Status: st}
		if st == 0 {
			out[i].Lost = lostTimeout
		}
	}
	return out
}

func TestStableRecovery(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		samples []sample
		from    time.Duration
		want    time.Duration
		ok      bool
	}{
		{"none", nil, 0, 0, false},
		{"never failed", samplesOf(200, 200), 0, 0, true},
		{"recovered", samplesOf(200, 502, 503, 200, 200), 1 * time.Millisecond, 2 * time.Millisecond, true},
		{"flapping", samplesOf(502, 200, 503, 200), 0, 3 * time.Millisecond, true},
		{"last failed", samplesOf(200, 502), 0, 0, false},
		{"lost counts as failure", samplesOf(200, 0, 200), 0, 2 * time.Millisecond, true},
		{"failure before from", samplesOf(502, 200, 200), 2 * time.Millisecond, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, ok := stableRecovery(tc.samples, tc.from)
			if got != tc.want || ok != tc.ok {
				t.Fatalf("stableRecovery = %v, %v; want %v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestFaultStats(t *testing.T) {
	t.Parallel()
	s := samplesOf(200, 502, 503, 200, 502)
	s[3].BadBody = true
	failed, total := faultStats(s, time.Millisecond, 4*time.Millisecond)
	if failed != 3 || total != 3 {
		t.Fatalf("faultStats = %d/%d, want 3/3", failed, total)
	}
}

func TestRecoveryMonitor(t *testing.T) {
	t.Parallel()
	m := newRecoveryMonitor()
	ms := time.Millisecond
	if m.stable(100*ms, 0, 10*ms) {
		t.Fatal("stable without any success")
	}
	m.observe(sample{Start: 5 * ms, Status: 200})
	m.observe(sample{Start: 20 * ms, Status: 502})
	m.observe(sample{Start: 10 * ms, Status: 503}) // out of order: the latest start wins
	if m.stable(100*ms, 0, 10*ms) {
		t.Fatal("stable although no success followed the last failure")
	}
	m.observe(sample{Start: 25 * ms, Status: 200})
	if !m.stable(31*ms, 0, 10*ms) {
		t.Fatal("not stable 11 ms after the last failure with a later success")
	}
	if m.stable(29*ms, 0, 10*ms) {
		t.Fatal("stable before the window passed")
	}
	if m.stable(100*ms, 50*ms, 10*ms) {
		t.Fatal("a success before from must not count")
	}
}

func TestJudgeChaos(t *testing.T) {
	t.Parallel()
	lr := &loadResult{statuses: map[int]int64{200: 5, 502: 1, 503: 2, 504: 1}, lost: map[string]int64{}, requests: 9}
	res := newResult("x", "t", nil)
	judgeChaos(res, lr)
	if !res.Pass {
		t.Fatalf("502/503/504 are clear statuses: %+v", res.Checks)
	}
	lr.statuses[500] = 1
	lr.lost[lostReset] = 1
	res = newResult("x", "t", nil)
	judgeChaos(res, lr)
	if res.Pass || len(res.Checks) != 3 || res.Checks[0].OK || res.Checks[1].OK {
		t.Fatalf("a 500 and a lost request must fail: %+v", res.Checks)
	}
}

func TestJudgeHerd(t *testing.T) {
	t.Parallel()
	r := &runner{cfg: defaultConfig()}
	spread := []herdOutcome{{reconnect: 10 * time.Millisecond, recovered: 20 * time.Millisecond}, {reconnect: 900 * time.Millisecond, recovered: time.Second}}
	res := newResult(scnHerd, "t", nil)
	r.judgeHerd(res, spread)
	if !res.Pass {
		t.Fatalf("a 890 ms spread with INITIAL_BACKOFF 1s must pass: %+v", res.Checks)
	}
	herd := []herdOutcome{{reconnect: 10 * time.Millisecond}, {reconnect: 11 * time.Millisecond}, {err: errors.New("no reconnect")}}
	res = newResult(scnHerd, "t", nil)
	r.judgeHerd(res, herd)
	if res.Pass || res.Checks[0].OK || res.Checks[1].OK {
		t.Fatalf("a 1 ms spread and a missing telephone must fail: %+v", res.Checks)
	}
}

func TestJudgeTrend(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		points []int64
		ok     bool
	}{
		{"too few", []int64{1}, false},
		{"flat", []int64{10 << 20, 20 << 20, 20 << 20, 21 << 20}, true},
		{"leak", []int64{10 << 20, 20 << 20, 40 << 20, 80 << 20}, false},
	}
	for _, tc := range tests {
		res := newResult(scnSoak, "t", nil)
		judgeTrend(res, tc.points)
		if res.Pass != tc.ok {
			t.Errorf("%s: pass = %v, want %v (%+v)", tc.name, res.Pass, tc.ok, res.Checks)
		}
	}
}

func TestConnLog(t *testing.T) {
	t.Parallel()
	c := newConnLog()
	t0 := time.Now()
	if _, ok := c.firstAfter("p", t0); ok {
		t.Fatal("empty log has a connect")
	}
	done := make(chan time.Time)
	go func() {
		at, err := c.waitAfter(context.Background(), "p", t0)
		if err != nil {
			t.Error(err)
		}
		done <- at
	}()
	c.add("p", t0.Add(-time.Second)) // before t0: ignored
	c.add("q", t0.Add(time.Second))  // other path
	c.add("p", t0.Add(2*time.Second))
	if at := <-done; !at.Equal(t0.Add(2 * time.Second)) {
		t.Fatalf("waitAfter = %v", at)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.waitAfter(ctx, "none", t0); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
}

func TestReportOutput(t *testing.T) {
	t.Parallel()
	lr := &loadResult{latency: newHistogram(), statuses: map[int]int64{200: 3, 502: 1}, lost: map[string]int64{lostTimeout: 1}, requests: 5, elapsed: time.Second, badBody: 1}
	for _, d := range []time.Duration{time.Millisecond, 20 * time.Millisecond, 2 * time.Second, 3 * time.Second} {
		lr.latency.Record(d)
	}
	direct := newResult(scnSteady, "direct", lr)
	res := newResult(scnSteady, "bin:x", lr)
	res.addUsage(usage{CPU: 0, RSS: 1 << 20}, usage{CPU: 5 * time.Millisecond, Peak: 3 << 30}, "scope text")
	res.addRatio(direct)
	res.note("a note")
	res.check("a check", false, "went %s", "wrong")
	rep := &report{Machine: describeMachine(time.Unix(0, 0)), Command: "loadtest x", Results: []*result{direct, res}}
	var table bytes.Buffer
	if err := rep.writeTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"steady", "bin:x", "200:3 502:1 lost-timeout:1 bad-body:1", "1.0ms", "3.0GiB (+3.0GiB)", "1.00", "FAIL", "a note", "[FAILED] a check: went wrong", "CPU/RSS of bin:x: scope text", "1970-01-01"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	var js bytes.Buffer
	if err := rep.writeJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back.Results) != 2 || back.Results[1].CPUPerRequestUs != 1000 {
		t.Fatalf("JSON round trip: %v %+v", err, back)
	}
}

// TestReportSkipped checks that a skipped scenario shows as SKIP with its reason, and that
// the overall line counts it, so that nothing looks tested that was not.
func TestReportSkipped(t *testing.T) {
	t.Parallel()
	res := newResult(scnSigterm, inProcLabel, nil)
	res.skip("the reason")
	rep := &report{Machine: describeMachine(time.Unix(0, 0)), Command: "loadtest x", Results: []*result{res}, Pass: true}
	var table bytes.Buffer
	if err := rep.writeTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"SKIP\n", "sigterm / in-process: SKIPPED, not tested: the reason", "overall: PASS (1 scenarios skipped, not tested)"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
}

func TestFormatters(t *testing.T) {
	t.Parallel()
	tests := []struct{ got, want string }{
		{fmtMs(0), "-"}, {fmtMs(1.5), "1.50ms"}, {fmtMs(150), "150ms"}, {fmtMs(1500), "1.50s"},
		{fmtCPU(0), "-"}, {fmtCPU(12), "12µs"}, {fmtCPU(2500), "2.5ms"},
		{fmtBytes(2048), "2KiB"}, {fmtBytes(5 << 20), "5MiB"}, {fmtRatio(0), "-"}, {fmtRatio(0.5), "0.50"},
		{fmtRSS(&result{}), "-"}, {fmtStatuses(&result{}), "-"}, {okWord(true), "ok"}, {passWord(true), "PASS"},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
	if procField("/nonexistent", "x") != "?" || procField("/proc/meminfo", "NoSuchField") != "?" {
		t.Error("procField must answer ? when it cannot tell")
	}
}

// TestPlugboardCounts checks that the devserver wrapper counts refused socket upgrades (403)
// and vended tokens (201), and nothing else: a vend with a bad key, a refused vend, an
// upgrade without a token.
func TestPlugboardCounts(t *testing.T) {
	t.Parallel()
	pb, err := startPlugboard(0)
	if err != nil {
		t.Fatal(err)
	}
	defer pb.Close()
	tok, err := pb.srv.Mint("", 0)
	if err != nil {
		t.Fatal(err)
	}
	pb.srv.Revoke(tok.ID)
	sa, err := pb.srv.NewServiceAccount("", "counts")
	if err != nil {
		t.Fatal(err)
	}
	base := strings.Replace(pb.srv.SocketURL(), "ws://", "http://", 1)
	do := func(method, url, key string, upgrade bool) int {
		t.Helper()
		req, err := http.NewRequest(method, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		if upgrade {
			req.Header.Set("Connection", "Upgrade")
			req.Header.Set("Upgrade", "websocket")
			req.Header.Set("Sec-WebSocket-Version", "13")
			req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		_ = res.Body.Close()
		return res.StatusCode
	}
	vend := strings.TrimSuffix(base, "/telephone/websocket") + telephonetest.VendPath
	steps := []struct {
		status           int
		method, url, key string
		upgrade          bool
	}{
		{http.StatusForbidden, http.MethodGet, base + "?vsn=2.0.0&token=" + tok.Token, "", true}, // revoked: refused
		{http.StatusCreated, http.MethodPost, vend, sa.APIKey, false},
		{http.StatusUnauthorized, http.MethodPost, vend, "sa_live_wrong", false},
		{http.StatusCreated, http.MethodPost, vend, sa.APIKey, false},
	}
	for _, st := range steps {
		if got := do(st.method, st.url, st.key, st.upgrade); got != st.status {
			t.Fatalf("%s %s: status %d, want %d", st.method, st.url, got, st.status)
		}
	}
	if r, v := pb.refused.Load(), pb.vended.Load(); r != 1 || v != 2 {
		t.Fatalf("refused %d, vended %d; want 1 and 2", r, v)
	}
}
