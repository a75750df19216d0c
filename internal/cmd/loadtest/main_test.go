package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/verastack/telephone"
	"github.com/verastack/telephone/tokenstore"
)

// fakeTelephoneArg makes the test binary act as a telephone binary: it reads the original
// sidecar's environment variables and runs a telephone.Client until SIGTERM. The chaos test
// starts it through --binary's code path (child processes with only those variables).
const fakeTelephoneArg = "fake-telephone"

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == fakeTelephoneArg {
		os.Exit(fakeTelephone())
	}
	goleak.VerifyTestMain(m,
		// Keep-alive connections of net/http clients that are not ours (the telephone's
		// backend transport) may still be winding down.
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
	)
}

// originalVars are the original sidecar's environment variables (docs/PROTOCOL.md §7.1).
var originalVars = []string{
	"PLUGBOARD_URL", "TELEPHONE_TOKEN", "BACKEND_HOST", "BACKEND_PORT", "BACKEND_SCHEME",
	"CONNECT_TIMEOUT", "REQUEST_TIMEOUT", "HEARTBEAT_INTERVAL", "CONNECTION_MONITOR_INTERVAL",
	"INITIAL_BACKOFF", "MAX_BACKOFF", "MAX_RETRIES", "SECRET_KEY_BASE", "TOKEN_DB_PATH",
	"MAX_RESPONSE_SIZE", "CHUNK_SIZE", "DB_TIMEOUT", "HEALTH_CHECK_PORT",
}

// vendingVars are the scale-out scenario's variables outside the original set.
var vendingVars = []string{"PLUGBOARD_SERVICE_ACCOUNT_KEY", "TELEPHONE_INSTANCE_ID"}

// envFromVars reads a targetEnv and the token back from a child's environment. It refuses an
// environment that has any variable outside the original set (and the vending ones), or lacks
// one of the original ones.
func envFromVars(environ []string) (targetEnv, string, error) {
	vars := map[string]string{}
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		if !slices.Contains(originalVars, k) && !slices.Contains(vendingVars, k) {
			return targetEnv{}, "", fmt.Errorf("variable %s is not one of the original sidecar's", k)
		}
		vars[k] = v
	}
	if n := len(vars) - len(vendingVars); n != len(originalVars) && n+len(vendingVars) != len(originalVars) {
		return targetEnv{}, "", fmt.Errorf("got %d variables, want the %d original ones", len(vars), len(originalVars))
	}
	env := targetEnv{SocketURL: vars["PLUGBOARD_URL"], Backend: vars["BACKEND_HOST"] + ":" + vars["BACKEND_PORT"],
		ServiceAccountKey: vars["PLUGBOARD_SERVICE_ACCOUNT_KEY"], InstanceID: vars["TELEPHONE_INSTANCE_ID"]}
	var errs []error
	dur := func(k string, dst *time.Duration) {
		d, err := time.ParseDuration(vars[k])
		*dst = d
		errs = append(errs, err)
	}
	dur("CONNECT_TIMEOUT", &env.ConnectTimeout)
	dur("REQUEST_TIMEOUT", &env.RequestTimeout)
	dur("HEARTBEAT_INTERVAL", &env.Heartbeat)
	dur("CONNECTION_MONITOR_INTERVAL", &env.Monitor)
	dur("INITIAL_BACKOFF", &env.InitialBackoff)
	dur("MAX_BACKOFF", &env.MaxBackoff)
	var err error
	env.MaxResponseSize, err = strconv.ParseInt(vars["MAX_RESPONSE_SIZE"], 10, 64)
	errs = append(errs, err)
	env.ChunkSize, err = strconv.Atoi(vars["CHUNK_SIZE"])
	errs = append(errs, err)
	for _, e := range errs {
		if e != nil {
			return targetEnv{}, "", e
		}
	}
	return env, vars["TELEPHONE_TOKEN"], nil
}

// fakeTelephone is the body of the fake telephone binary; it returns the exit status.
func fakeTelephone() int {
	env, token, err := envFromVars(os.Environ())
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake telephone:", err)
		return 3
	}
	opts := clientOptions(env, token)
	if env.ServiceAccountKey != "" { // a replica keeps its vended token across restarts
		store, err := tokenstore.OpenSQLite(os.Getenv("TOKEN_DB_PATH"), os.Getenv("SECRET_KEY_BASE"), tokenstore.SQLiteOptions{})
		if err != nil {
			fmt.Fprintln(os.Stderr, "fake telephone:", err)
			return 3
		}
		defer store.Close()
		opts = append(opts, telephone.WithTokenStore(store))
	}
	c, err := telephone.New(env.SocketURL, opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake telephone:", err)
		return 3
	}
	sig, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- c.Run(context.Background()) }()
	select {
	case <-sig.Done():
	case err := <-errc:
		fmt.Fprintln(os.Stderr, "fake telephone: Run returned:", err)
		return 4
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Shutdown(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "fake telephone: shutdown:", err)
		return 5
	}
	return 0
}

// shortConfig is a configuration small enough for CI: seconds per scenario, small bodies.
func shortConfig() config {
	c := defaultConfig()
	c.scenarios = append(slices.Clone(allScenarios), scnSoak)
	c.duration = time.Second
	c.concurrency = 4
	c.slowCount = 200 // 1000 requests need ~9000 goroutines: over the race detector's limit
	c.slowDelay = 300 * time.Millisecond
	c.largeSizes = []int64{1 << 20}
	c.largeRequests = 4
	c.memFactor = 1000 // the race detector multiplies memory; the bound is checked in real runs
	c.binaryRequests = 40
	c.budgetCount = 8
	c.budgetSize = 256 << 10
	c.idleWait = 100 * time.Millisecond
	c.stalledCount, c.stalledSize = 4, 100_000
	c.slowRSS, c.budgetRSS, c.idleRSS, c.largeRSSBase = 1<<30, 1<<30, 1<<30, 1<<30 // as memFactor: real runs check the bounds
	c.chaosConcurrency = 4
	c.chaosRate = 200
	c.warmup = 300 * time.Millisecond
	c.outage = 500 * time.Millisecond
	c.stableWindow = 500 * time.Millisecond
	c.soakSample = 100 * time.Millisecond
	c.availRate = 200
	c.availDelay = 50 * time.Millisecond
	c.availConcurrency = 16
	c.drainGrace = 3 * time.Second
	c.swaps = 2
	c.timingChecks = false
	c.progress = false
	c.jsonOut = true
	return c
}

// runJSON executes cfg and decodes its JSON report.
func runJSON(t *testing.T, cfg config) (int, report) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := execute(context.Background(), cfg, "loadtest (test)", &out, &errOut)
	var rep report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("report is not JSON: %v\n%s\n%s", err, out.String(), errOut.String())
	}
	return code, rep
}

// logReport prints the report as the table, for diagnosis.
func logReport(t *testing.T, rep report) {
	t.Helper()
	var table bytes.Buffer
	_ = rep.writeTable(&table)
	t.Log("\n" + table.String())
}

// TestChaosShort runs every scenario (soak included) in its short form against the
// in-process telephone, then a few against the fake telephone binary, and checks that every
// stated condition held. It asserts statuses and recovery within generous bounds, not speed.
func TestChaosShort(t *testing.T) {
	if testing.Short() {
		t.Skip("the chaos run takes about 30 s")
	}
	cfg := shortConfig()
	cfg.targets = []targetSpec{{label: inProcLabel}}
	code, rep := runJSON(t, cfg)
	want := []string{scnSteady, scnSlow, "large-1MiB", scnBudget, scnStalled, scnBinary, scnBackend, scnSockCut, scnHerd,
		scnRolling, scnSigterm, scnOneCut, scnPBRestart, scnSoak}
	checkReport(t, code, rep, want, len(want)+6) // direct rows for steady, slow, large, budget, stalled-bodies, binary

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg = shortConfig()
	cfg.scenarios = []string{scnSteady, scnLarge, scnBudget, scnSockCut} // herd: 50 in-process telephones above
	cfg.direct = false
	cfg.targets = []targetSpec{{label: "fake", path: exe, args: []string{fakeTelephoneArg}}}
	code, rep = runJSON(t, cfg)
	checkReport(t, code, rep, []string{scnSteady, "large-1MiB", scnBudget, scnSockCut}, 4)
	for _, r := range rep.Results {
		if r.Scenario == scnBudget && (r.IdleRSS == 0 || !slices.ContainsFunc(r.Checks, func(c check) bool { return strings.HasPrefix(c.Name, "memory returned") })) {
			t.Errorf("budget: idle RSS not judged: %+v", r)
		}
		if r.Scenario == "large-1MiB" && !slices.ContainsFunc(r.Checks, func(c check) bool {
			return c.Name == "memory bound" && strings.Contains(c.Detail, "peak RSS") && !strings.Contains(c.Detail, "growth")
		}) {
			t.Errorf("large: a binary's peak RSS not judged: %+v", r.Checks)
		}
		if r.Scenario == scnSteady && (r.PeakRSS == 0 || r.CPUSeconds == 0 || !strings.Contains(r.MeasureScope, "child")) {
			t.Errorf("child CPU/RSS not measured: %+v", r)
		}
	}
}

// TestScaleOutShort is the scale-out scenario's CI form: three replicas from one
// service-account key (in-process, then as three child processes), a 4 s token lifetime
// (refreshed every 2 s) and 8 s of steady load during which each replica is restarted once.
func TestScaleOutShort(t *testing.T) {
	if testing.Short() {
		t.Skip("the scale-out run takes about 20 s")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg := shortConfig()
	cfg.scenarios = []string{scnScale}
	cfg.scaleLifetime = 4 * time.Second
	cfg.scaleDuration = 8 * time.Second
	cfg.direct = false
	cfg.targets = []targetSpec{{label: inProcLabel}, {label: "fake", path: exe, args: []string{fakeTelephoneArg}}}
	code, rep := runJSON(t, cfg)
	checkReport(t, code, rep, cfg.scenarios, 2)
	for _, r := range rep.Results {
		if len(r.Checks) < 8 {
			t.Errorf("%s: %d checks, want the scale-out ones: %+v", r.Target, len(r.Checks), r.Checks)
		}
		// Exactly three tokens vended: one per replica at start-up, none at the restarts.
		if !slices.ContainsFunc(r.Checks, func(c check) bool {
			return c.Name == "restarts reuse their stored token" && c.OK && strings.HasPrefix(c.Detail, "3 tokens vended at start-up (want 3, one per replica), 3 in all")
		}) {
			t.Errorf("%s: restarts vended tokens: %+v", r.Target, r.Checks)
		}
	}
}

func checkReport(t *testing.T, code int, rep report, scenarios []string, rows int) {
	t.Helper()
	if testing.Verbose() {
		logReport(t, rep)
	}
	if code != 0 || !rep.Pass || len(rep.Results) != rows {
		logReport(t, rep)
		t.Fatalf("exit %d, pass %v, %d rows (want %d)", code, rep.Pass, len(rep.Results), rows)
	}
	for _, name := range scenarios {
		if !slices.ContainsFunc(rep.Results, func(r *result) bool { return r.Scenario == name && r.Target != "direct" }) {
			t.Errorf("no result for %s", name)
		}
	}
}

func TestRunCommandLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		args   []string
		code   int
		out    string
		errOut string
	}{
		{"help", []string{"-h"}, 2, "", ""},
		{"bad scenario", []string{"--scenario", "bogus"}, 2, "", `unknown scenario "bogus"`},
		{"binary scenario", []string{"--scenario", "binary", "--binary-requests", "5", "--progress=false"}, 0, "overall: PASS", ""},
		{"json", []string{"--scenario", "binary", "--binary-requests", "3", "--direct=false", "--json"}, 0, `"pass": true`, ""},
		{"availability without in-process", []string{"--scenario", "steady, sigterm", "--inprocess=false", "--binary", "x=/bin/false"}, 2, "",
			"scenario sigterm drives in-process telephones and cannot run with --inprocess=false"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(context.Background(), tc.args, &out, &errOut)
			if code != tc.code || !strings.Contains(out.String(), tc.out) || !strings.Contains(errOut.String(), tc.errOut) {
				t.Fatalf("run(%q) = %d, want %d\nstdout: %s\nstderr: %s", tc.args, code, tc.code, out.String(), errOut.String())
			}
		})
	}
}

// TestBrokenTargets checks that a telephone that cannot start fails every scenario quickly
// with a setup error, and the command exits 1.
func TestBrokenTargets(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
	}{
		{"missing binary", []string{"--binary", "/nonexistent/telephone"}},
		{"binary that exits", []string{"--binary", "/bin/false"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"--scenario", "all,soak", "--large-sizes", "1KiB", "--inprocess=false", "--direct=false", "--progress=false", "--json"}, tc.args...)
			var out bytes.Buffer
			if code := run(context.Background(), args, &out, io.Discard); code != 1 {
				t.Fatalf("exit %d, want 1\n%s", code, out.String())
			}
			var rep report
			if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
				t.Fatal(err)
			}
			var skipped []string
			for _, r := range rep.Results {
				if slices.Contains(availScenarios, r.Scenario) { // they need the in-process target
					if r.Skipped == "" || len(r.Checks) != 0 || r.Requests != 0 {
						t.Errorf("%s: want a skipped row without checks, got %+v", r.Scenario, r)
					}
					skipped = append(skipped, r.Scenario)
					continue
				}
				if r.Skipped != "" || r.Pass || len(r.Checks) != 1 || r.Checks[0].Name != "setup" {
					t.Errorf("%s: want one failed setup check, got %+v", r.Scenario, r)
				}
			}
			if !slices.Equal(skipped, availScenarios) {
				t.Errorf("skipped rows %v, want one per availability scenario %v", skipped, availScenarios)
			}
		})
	}
}

func TestInterrupted(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	cfg := shortConfig()
	cfg.targets = []targetSpec{{label: inProcLabel}}
	var out bytes.Buffer
	if code := execute(ctx, cfg, "x", &out, io.Discard); code != 1 {
		t.Fatalf("an interrupted run must exit 1, got %d", code)
	}
}

func TestEnvFromVarsRefusesExtras(t *testing.T) {
	t.Parallel()
	env := defaultTargetEnv()
	env.SocketURL, env.Backend = "ws://127.0.0.1:1/telephone/websocket", "127.0.0.1:2"
	vars, err := childEnv(env, "tok", "/tmp/x.db", "secret")
	if err != nil {
		t.Fatal(err)
	}
	back, tok, err := envFromVars(vars)
	if err != nil || tok != "tok" || back.RequestTimeout != env.RequestTimeout || back.MaxResponseSize != env.MaxResponseSize {
		t.Fatalf("round trip: %+v %q %v", back, tok, err)
	}
	if _, _, err := envFromVars(append(vars, "HOME=/root")); err == nil {
		t.Fatal("an extra variable must be refused")
	}
	env.RateLimit = "2500"
	vars, _ = childEnv(env, "tok", "/tmp/x.db", "secret")
	if !slices.Contains(vars, "RATE_LIMIT=2500") || !slices.Contains(vars, "RATE_BURST=5000") {
		t.Fatalf("--rate-limit must reach the child: %q", vars)
	}
	env.RateLimit = rateOff
	if vars, _ = childEnv(env, "tok", "/tmp/x.db", "secret"); !slices.Contains(vars, "RATE_LIMIT=off") {
		t.Fatalf("--rate-limit off must reach the child: %q", vars)
	}
	env.Backend = "no-port"
	if _, err := childEnv(env, "tok", "/tmp/x.db", "secret"); err == nil {
		t.Fatal("a backend without a port must fail")
	}
}
