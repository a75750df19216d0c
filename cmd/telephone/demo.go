package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"syscall"
	"time"

	"github.com/verastack/telephone"
	"github.com/verastack/telephone/telephonetest"
)

// defaultDemoAddr is where the demo's Plugboard listens unless --addr says otherwise.
const defaultDemoAddr = "127.0.0.1:4000"

// demo is `telephone demo`: a local Plugboard, a demo backend and the tunnel between them, in
// one process. It prints a URL to curl and stops on SIGINT or SIGTERM.
func (c *cli) demo(args []string) int {
	fset := flag.NewFlagSet("telephone demo", flag.ContinueOnError)
	addr := fset.String("addr", defaultDemoAddr, "Plugboard listen `address`; if the default is busy a free port is used")
	opsAddr := fset.String("ops", "", "serve /health, /ready, /live, /version and /metrics on this `address`")
	logLevel := fset.String("log-level", "info", "debug, info, warn or error")
	accessLog := fset.Bool("access-log", true, "log one line per request (method, path, status, duration, bytes)")
	inspect := fset.String("inspect", defaultDemoInspect, "serve the request inspector on this `address` (\"off\" or \"\": none); if the default is busy a free port is used")
	if code, done := c.parseFlags(fset, args); done {
		return code
	}
	var lc Config
	if err := setLogLevel(&lc, *logLevel); err != nil {
		fmt.Fprintf(c.stderr, "telephone demo: --log-level: %v\n", err)
		return exitConfig
	}
	level := new(slog.LevelVar)
	level.Set(lc.LogLevel)
	log := newLogger(c.stderr, logConfig{Level: level, Terminal: isTerminal(c.stderr), NoColor: c.noColor(), AccessLog: *accessLog})
	explicit := map[string]bool{}
	fset.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
	inspectAddr, err := demoInspectAddr(*inspect)
	if err != nil {
		fmt.Fprintf(c.stderr, "telephone demo: --inspect: %v\n", err)
		return exitConfig
	}
	d, err := startDemo(demoAddrs{plugboard: *addr, fallback: !explicit["addr"], ops: *opsAddr,
		inspect: inspectAddr, inspectFallback: !explicit["inspect"]}, log)
	if err != nil {
		log.Error("demo failed to start", slog.Any("error", err))
		return exitFail
	}
	d.print(c.stdout)
	code := d.wait(c.signals)
	d.stop()
	return code
}

// wait blocks until SIGINT or SIGTERM (exit 0) or until the tunnel stops by itself (exit 1).
func (d *demoRun) wait(signals <-chan os.Signal) int {
	for {
		select {
		case sig := <-signals:
			if sig == syscall.SIGHUP {
				d.log.Info("ignoring SIGHUP")
				continue
			}
			d.log.Info("demo stopping", slog.String("signal", sig.String()))
			return exitOK
		case err := <-d.runErr:
			d.log.Error("the tunnel stopped", slog.Any("error", err))
			return exitFail
		}
	}
}

// demoRun is a running demo: every part it started, to stop in reverse order.
type demoRun struct {
	log      *slog.Logger
	plug     *telephonetest.Server
	backend  *http.Server
	backendL net.Listener
	backWG   chan struct{} // closed when the backend's Serve returns
	client   *telephone.Client
	runErr   chan error // receives Run's result
	ops      *opsServer
	insp     *inspectServer
	pathID   string
	movedTo  string // set when the default address was busy
}

// demoAddrs are the demo's listen addresses; a fallback allows a free port when the address
// is busy. ops and inspect are "" when off.
type demoAddrs struct {
	plugboard       string
	fallback        bool
	ops             string
	inspect         string
	inspectFallback bool
}

// startDemo starts the Plugboard, the backend and the tunnel and waits until the tunnel has
// joined.
func startDemo(a demoAddrs, log *slog.Logger) (*demoRun, error) {
	d := &demoRun{log: log, runErr: make(chan error, 1), backWG: make(chan struct{})}
	addr := a.plugboard
	l, err := net.Listen("tcp", addr)
	if err != nil && a.fallback {
		d.movedTo = addr
		l, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		return nil, fmt.Errorf("plugboard listener: %w", err)
	}
	d.plug = telephonetest.Serve(l, telephonetest.WithLogger(log))
	if err := d.startBackend(); err != nil {
		d.plug.Close()
		return nil, err
	}
	if err := d.startTunnel(a); err != nil {
		d.stop()
		return nil, err
	}
	return d, nil
}

func (d *demoRun) startBackend() error {
	bl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("backend listener: %w", err)
	}
	d.backendL = bl
	d.backend = &http.Server{Handler: demoBackend(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		defer close(d.backWG)
		_ = d.backend.Serve(bl)
	}()
	return nil
}

// startTunnel mints a token, starts the Client and waits for its join.
func (d *demoRun) startTunnel(a demoAddrs) error {
	tok, err := d.plug.Mint("", 0)
	if err != nil {
		return fmt.Errorf("mint a token: %w", err)
	}
	d.pathID = tok.PathID
	reg := newRegistry()
	backend := "http://" + d.backendL.Addr().String()
	opts := []telephone.Option{
		telephone.WithToken(tok.Token),
		telephone.WithPlugboardSecret(d.plug.SecretKeyBase()),
		telephone.WithBackendURL(backend),
		telephone.WithLogger(d.log),
		telephone.WithMetrics(reg),
	}
	if a.inspect != "" {
		if d.insp, err = d.startInspect(a.inspect, a.inspectFallback, backend); err != nil {
			return fmt.Errorf("request inspector: %w", err)
		}
		opts = append(opts, telephone.WithObserver(d.insp.ins))
	}
	d.client, err = telephone.New(d.plug.SocketURL(), opts...)
	if err != nil {
		return err
	}
	opsAddr := a.ops
	go func() { d.runErr <- d.client.Run(context.Background()) }()
	if opsAddr != "" {
		if d.ops, err = startOps(opsAddr, newOps(d.client.Status, reg, readBuildInfo(), time.Now()).handler(), d.log); err != nil {
			return fmt.Errorf("operations server: %w", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := d.plug.WaitJoined(ctx, tok.PathID, 1); err != nil {
		return fmt.Errorf("the tunnel did not join: %w", err)
	}
	return nil
}

// stop shuts the tunnel down gracefully, then the backend and the Plugboard.
func (d *demoRun) stop() {
	if d.client != nil {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		if err := d.client.Shutdown(ctx); err != nil {
			d.log.Warn("tunnel shutdown", slog.Any("error", err))
		}
		cancel()
		select {
		case <-d.runErr:
		default:
		}
	}
	if d.ops != nil {
		d.ops.stop()
	}
	if d.insp != nil {
		d.insp.stop()
	}
	if d.backend != nil {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		if err := d.backend.Shutdown(ctx); err != nil {
			_ = d.backend.Close()
		}
		cancel()
		<-d.backWG
	}
	d.plug.Close()
}

// print tells a person what to try, and ends with one machine-readable line. The banner is one
// write, so that log lines from the running tunnel cannot land inside it.
func (d *demoRun) print(out io.Writer) {
	w := new(bytes.Buffer)
	defer func() { _, _ = out.Write(w.Bytes()) }()
	call := d.plug.CallURL(d.pathID)
	if d.movedTo != "" {
		fmt.Fprintf(w, "note: %s is busy; the demo Plugboard uses %s instead\n", d.movedTo, d.plug.URL())
	}
	fmt.Fprintf(w, `telephone demo: a local Plugboard, a demo backend and the tunnel between them are running.

Try, in another terminal:
  curl %[1]s/hello
  curl %[1]s/time
  curl -d 'any text' '%[1]s/echo?x=1'
  curl %[1]s/          (lists the endpoints and the limits)

Each request goes to the local Plugboard, is pushed over the WebSocket to the telephone,
forwarded to the demo backend at %[2]s, and the answer comes back the same way.
`, call, "http://"+d.backendL.Addr().String())
	if d.ops != nil {
		fmt.Fprintf(w, "Health and metrics: %[1]s/health  %[1]s/ready  %[1]s/metrics\n", d.ops.url())
	}
	if d.insp != nil {
		fmt.Fprintf(w, "Request inspector (every request live, its headers and bodies, replay): %s\n", d.insp.url())
	}
	fmt.Fprintln(w, "Press Ctrl-C to stop.")
	ops := ""
	if d.ops != nil {
		ops = " ops_url=" + d.ops.url()
	}
	if d.insp != nil {
		ops += " inspect_url=" + d.insp.url()
	}
	fmt.Fprintf(w, "READY call_url=%s socket_url=%s backend_url=http://%s%s\n", call, d.plug.SocketURL(), d.backendL.Addr(), ops)
}

// defaultDemoInspect is where the demo's request inspector listens unless --inspect says otherwise.
const defaultDemoInspect = "127.0.0.1:4040"

// demoInspectAddr parses --inspect: "" or "off" turns the inspector off.
func demoInspectAddr(v string) (string, error) {
	if v == "" || v == "off" {
		return "", nil
	}
	return inspectListenAddr(v)
}

// startInspect starts the demo's inspector on addr, or on a free loopback port when addr is
// busy and fallback allows it.
func (d *demoRun) startInspect(addr string, fallback bool, backend string) (*inspectServer, error) {
	is, err := startInspect(addr, backend, false, d.log)
	if err != nil && fallback {
		d.log.Info("the inspector's default address is busy; using a free port", slog.String("addr", addr))
		is, err = startInspect("127.0.0.1:0", backend, false, d.log)
	}
	return is, err
}

// demoBackend is the demo's HTTP backend.
func demoBackend() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/{$}", demoIndex)
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "Hello from the demo backend! This answer came back through the telephone tunnel.\n"+
			"You called %s %s (X-Forwarded-Host: %s).\n", r.Method, r.URL.RequestURI(), r.Header.Get("X-Forwarded-Host"))
	})
	mux.HandleFunc("/time", func(w http.ResponseWriter, _ *http.Request) {
		now := time.Now().UTC()
		writeJSON(w, http.StatusOK, map[string]any{"time": now.Format(time.RFC3339Nano), "unix": now.Unix()})
	})
	mux.HandleFunc("/echo", demoEcho)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no such demo endpoint: "+r.URL.Path+" (try /, /hello, /echo or /time)", http.StatusNotFound)
	})
	return mux
}

func demoIndex(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, `telephone demo backend
Endpoints:
  GET  /hello   a greeting
  GET  /time    the backend's clock as JSON
  ANY  /echo    your request (method, path, query, headers, body) as JSON
Limits of the tunnel (defaults; see cmd/telephone/README.md to change them):
  request timeout        %v (then 504)
  request body           %d bytes (then 413)
  response body          %d bytes (then 502)
  concurrent requests    %d (then 503 after waiting %v)
  rate limit             none (RATE_LIMIT sets one; then 429)
  response bodies must be valid UTF-8 (Plugboard carries them as JSON strings)
`, telephone.DefaultRequestTimeout, telephone.DefaultMaxRequestBody, telephone.DefaultMaxResponseSize,
		telephone.DefaultMaxConcurrent, telephone.DefaultQueueWait)
}

// demoEcho answers with the request it received.
func demoEcho(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		http.Error(w, "the echo endpoint takes bodies up to 1 MiB", http.StatusRequestEntityTooLarge)
		return
	}
	headers := make(map[string]string, len(r.Header))
	for k := range r.Header {
		headers[k] = r.Header.Get(k)
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"method": r.Method, "path": r.URL.Path, "query": r.URL.RawQuery, "headers": headers, "body": string(body),
	})
}
