// Command loadtest is the load, chaos and performance harness of telephone.
//
// It starts an in-memory Plugboard (telephonetest, served on a loopback port), a backend with
// small, large (streamed), slow and binary endpoints, and the telephone under test: the
// in-process telephone.Client configured with WithBackendURL, and/or telephone binaries given
// with --binary, started as child processes with only the original sidecar's environment
// variables (so the original sidecar can be compared with ours side by side). It drives the
// HTTP front /call/<path_id>/... with bounded load (count and time, loopback only) and prints,
// per scenario and target: requests/s, p50/p90/p99 latency, statuses (a request without an
// HTTP status counts as lost), CPU time per request, peak RSS, and the ratio to the same load
// sent straight to the backend. Every scenario states what must hold; the command exits with
// status 1 when something does not, 2 on a bad command line.
//
//	go run ./internal/cmd/loadtest                             # every scenario but soak and scale-out
//	go run ./internal/cmd/loadtest --binary ./telephone --binary orig=./sidecar
//	go run ./internal/cmd/loadtest --scenario soak --duration 1h
//	go run ./internal/cmd/loadtest --scenario steady,herd --json
//	go run ./internal/cmd/loadtest --scenario scale-out --binary ./telephone
//
// The scale-out scenario (run only when named) starts --scale-replicas telephones (3) from one
// service-account key (PLUGBOARD_SERVICE_ACCOUNT_KEY for binaries, beyond the original
// variables) against a devserver whose tokens live --scale-token-lifetime (60 s), sends steady
// load for --scale-duration (3 min) and restarts each replica once; it checks that all are
// joined at the end with distinct tokens, that no socket upgrade is refused in a loop, that
// restarts reuse their stored token, and that no telephone exits.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the whole command: it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stderr, "loadtest:", err)
		}
		return 2
	}
	return execute(ctx, cfg, "loadtest "+strings.Join(args, " "), stdout, stderr)
}

// execute runs a parsed config and writes the report.
func execute(ctx context.Context, cfg config, command string, stdout, stderr io.Writer) int {
	r := &runner{cfg: cfg, log: io.Discard}
	if cfg.progress {
		r.log = stderr
	}
	rep := &report{Machine: describeMachine(time.Now()), Command: strings.TrimSpace(command), Pass: true}
	if cfg.cpuProfile != "" {
		f, err := os.Create(cfg.cpuProfile)
		if err == nil {
			if err = pprof.StartCPUProfile(f); err != nil {
				f.Close()
			}
		}
		if err != nil {
			fmt.Fprintln(stderr, "loadtest: --cpuprofile:", err)
			return 2
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	rep.Results = r.run(ctx)
	for _, res := range rep.Results {
		rep.Pass = rep.Pass && res.Pass
	}
	if ctx.Err() != nil {
		rep.Pass = false
		fmt.Fprintln(stderr, "loadtest: interrupted")
	}
	write := rep.writeTable
	if cfg.jsonOut {
		write = rep.writeJSON
	}
	if err := write(stdout); err != nil {
		fmt.Fprintln(stderr, "loadtest:", err)
		return 1
	}
	if !rep.Pass {
		return 1
	}
	return 0
}
