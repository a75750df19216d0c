package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"slices"
	"syscall"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/verastack/telephone"
	"github.com/verastack/telephone/tokenstore"
	"github.com/verastack/telephone/transport"
)

// forceWait bounds how long a forced exit (second signal) waits for Run to return.
const forceWait = 5 * time.Second

// run is `telephone run`: load the configuration, start the Client and the operations server,
// and serve until a signal or a permanent failure.
func (c *cli) run(args []string) int {
	if wantsHelp(args) {
		c.runUsage()
		return exitOK
	}
	load := func() (Config, []error) {
		host, _ := os.Hostname() // "" when unknown: the token is then named without it
		return loadConfig(configInput{Env: c.environ(), Args: args, ReadFile: c.readFile, Hostname: host})
	}
	cfg, errs := load()
	if len(errs) > 0 {
		fmt.Fprintln(c.stderr, "telephone: invalid configuration:")
		for _, err := range errs {
			fmt.Fprintln(c.stderr, "  "+err.Error())
		}
		return exitConfig
	}
	level := new(slog.LevelVar)
	level.Set(cfg.LogLevel)
	log := newLogger(c.stderr, logConfig{Format: cfg.LogFormat, Level: level, Terminal: isTerminal(c.stderr), NoColor: c.noColor(), AccessLog: cfg.AccessLog})
	r, code := startRunner(cfg, log, level)
	if r == nil {
		return code
	}
	return r.serve(c.signals, load)
}

// wantsHelp reports whether args ask for help.
func wantsHelp(args []string) bool {
	return slices.ContainsFunc(args, func(a string) bool {
		return a == "-h" || a == "-help" || a == "--help"
	})
}

func (c *cli) runUsage() {
	w := c.stdout
	fmt.Fprint(w, "Usage: telephone [run] [--env FILE] [flags]\n\n")
	fmt.Fprint(w, "Each setting is an environment variable; a flag overrides it, and both override the .env file.\n")
	fmt.Fprint(w, "Secrets (TELEPHONE_TOKEN, SECRET_KEY_BASE, PLUGBOARD_SECRET_KEY_BASE, PLUGBOARD_SERVICE_ACCOUNT_KEY) have no flag.\n\n")
	fmt.Fprintf(w, "  %-30s %-28s %-12s %s\n", "VARIABLE", "FLAG", "DEFAULT", "MEANING")
	fmt.Fprintf(w, "  %-30s %-28s %-12s %s\n", "", "--env", ".env", "file of KEY=value lines, loaded if it exists")
	for _, s := range settings {
		flag := ""
		if s.flag != "" {
			flag = "--" + s.flag
		}
		fmt.Fprintf(w, "  %-30s %-28s %-12s %s\n", s.name, flag, s.def, s.help)
	}
}

// runner owns one running Client with its token store and operations server.
type runner struct {
	cfg    Config // the configuration in effect (live settings updated by SIGHUP)
	log    *slog.Logger
	level  *slog.LevelVar
	client *telephone.Client
	store  *tokenstore.SQLite       // nil when tokens are kept in memory
	ops    *opsServer               // nil when off
	trim   *trimmer                 // returns free memory to the OS after bursts
	insp   *inspectServer           // nil when off
	tp     *sdktrace.TracerProvider // nil when tracing is off
}

// startRunner opens the token store, builds the Client and starts the operations server. On
// failure it returns nil and the exit code, having released what it opened.
func startRunner(cfg Config, log *slog.Logger, level *slog.LevelVar) (*runner, int) {
	for _, w := range cfg.Warnings {
		log.Warn(w)
	}
	r := &runner{cfg: cfg, log: log, level: level}
	var store telephone.TokenStore
	if cfg.TokenDBPath != "" {
		s, err := tokenstore.OpenSQLite(cfg.TokenDBPath, cfg.SecretKeyBase, tokenstore.SQLiteOptions{BusyTimeout: cfg.DBTimeout, Logger: log})
		if err != nil {
			log.Error("cannot open the token store", slog.String("path", cfg.TokenDBPath), slog.Any("error", err))
			return nil, exitFail
		}
		r.store, store = s, s
	}
	reg := newRegistry()
	rootsFor(cfg)
	opts := cfg.options(log, store, reg)
	if cfg.InspectAddr != "" {
		insp, err := startInspect(cfg.InspectAddr, cfg.backendURL(), cfg.InspectUnmask, log)
		if err != nil {
			log.Error("cannot start the request inspector", slog.String("addr", cfg.InspectAddr), slog.Any("error", err))
			r.release()
			return nil, exitFail
		}
		r.insp = insp
		opts = append(opts, telephone.WithObserver(insp.ins))
	}
	if cfg.otlp != nil { // loadConfig sets it when OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT is
		tp := startTracing(cfg, log)
		r.tp = tp
		opts = append(opts, telephone.WithTracerProvider(tp))
	}
	client, err := telephone.New(cfg.PlugboardURL, opts...)
	if err != nil {
		log.Error("invalid configuration", slog.Any("error", err))
		r.release()
		return nil, exitConfig
	}
	r.client = client
	limit := setSoftMemoryLimit(cfg.MemoryBudget, os.Getenv("GOMEMLIMIT"))
	r.trim = startTrimmer(log)
	log.Debug("memory", slog.Int64("budget", cfg.MemoryBudget), slog.Int64("soft_limit", limit))
	info := readBuildInfo()
	if addr := cfg.opsAddr(); addr != "" {
		srv, err := startOps(addr, newOps(client.Status, reg, info, time.Now()).handler(), log)
		if err != nil {
			log.Error("cannot start the operations server", slog.String("addr", addr), slog.Any("error", err))
			r.release()
			return nil, exitFail
		}
		r.ops = srv
		log.Info("operations server listening", slog.String("addr", srv.addr.String()), slog.String("url", srv.url()))
	}
	log.Info("telephone starting", slog.String("version", info.Version),
		slog.String("plugboard", transport.Redact(cfg.PlugboardURL)), slog.String("backend", transport.Redact(cfg.backendURL())),
		slog.String("token_store", storeName(cfg)))
	return r, exitOK
}

func storeName(cfg Config) string {
	if cfg.TokenDBPath == "" {
		return "memory"
	}
	return cfg.TokenDBPath
}

// serve runs the Client until it fails permanently or a signal stops it. SIGHUP reloads the
// configuration with load; SIGINT or SIGTERM shuts down gracefully, and a second one forces
// the exit.
func (r *runner) serve(signals <-chan os.Signal, load func() (Config, []error)) int {
	runCtx, hardStop := context.WithCancel(context.Background())
	defer hardStop()
	runErr := make(chan error, 1)
	go func() { runErr <- r.client.Run(runCtx) }()
	for {
		select {
		case err := <-runErr:
			return r.finish(r.exitFor(err))
		case sig := <-signals:
			if sig == syscall.SIGHUP {
				r.reload(load())
				continue
			}
			return r.shutdown(sig, signals, runErr, hardStop)
		}
	}
}

// shutdown drains the Client for up to SHUTDOWN_TIMEOUT. A second SIGINT or SIGTERM cancels
// in-flight requests and exits with code 1 at once.
func (r *runner) shutdown(sig os.Signal, signals <-chan os.Signal, runErr <-chan error, hardStop context.CancelFunc) int {
	r.log.Info("shutting down: draining in-flight requests (send the signal again to force)",
		slog.String("signal", sig.String()), slog.Duration("grace", r.cfg.ShutdownTimeout))
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.ShutdownTimeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.client.Shutdown(ctx) }()
	for {
		select {
		case err := <-done:
			if err != nil {
				r.log.Warn("shutdown grace period over: in-flight requests were cancelled", slog.Any("error", err))
			}
			return r.finish(r.exitFor(<-runErr))
		case s := <-signals:
			if s == syscall.SIGHUP {
				r.log.Info("ignoring SIGHUP during shutdown")
				continue
			}
			r.log.Warn("second signal: forcing exit", slog.String("signal", s.String()))
			hardStop()
			cancel()
			r.waitForced(done)
			return r.finish(exitFail)
		}
	}
}

// waitForced waits up to forceWait for a cancelled Shutdown to return.
func (r *runner) waitForced(done <-chan error) {
	t := time.NewTimer(forceWait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		r.log.Error("the client did not stop in time")
	}
}

// exitFor maps Run's result to an exit code, logging why Run stopped.
func (r *runner) exitFor(err error) int {
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, telephone.ErrNoToken):
		r.log.Error("no usable token: set TELEPHONE_TOKEN to a valid token (telephone token-check shows what is configured and stored)", slog.Any("error", err))
	case errors.Is(err, telephone.ErrTokenRefused):
		r.log.Error("Plugboard refused every token: get a new token for this path and set TELEPHONE_TOKEN", slog.Any("error", err))
	default:
		r.log.Error("telephone stopped", slog.Any("error", err))
	}
	return exitFail
}

// finish releases what the runner holds, then returns code.
func (r *runner) finish(code int) int {
	r.release()
	r.log.Info("telephone stopped", slog.Int("exit_code", code))
	return code
}

// release stops whatever startRunner has started so far (the trimmer, the operations server,
// the inspector, tracing) and closes the token store: at the end, or when start-up fails
// half-way.
func (r *runner) release() {
	if r.trim != nil {
		r.trim.stop()
	}
	if r.ops != nil {
		r.ops.stop()
	}
	if r.insp != nil {
		r.insp.stop()
	}
	r.stopTracing()
	r.closeStore()
}

// stopTracing exports the spans still buffered, waiting up to opsShutdownGrace.
func (r *runner) stopTracing() {
	if r.tp == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), opsShutdownGrace)
	defer cancel()
	if err := r.tp.Shutdown(ctx); err != nil {
		r.log.Warn("tracing: spans not exported at shutdown", slog.Any("error", err))
	}
}

func (r *runner) closeStore() {
	if r.store == nil {
		return
	}
	if err := r.store.Close(); err != nil {
		r.log.Warn("closing the token store failed", slog.Any("error", err))
	}
}

// reload applies a re-read configuration: the log level at once, the limits and the backend
// through Client.Reload without dropping the connection. Settings that need a restart are
// logged and keep their running value. An invalid configuration changes nothing.
func (r *runner) reload(next Config, errs []error) {
	if len(errs) > 0 {
		for _, err := range errs {
			r.log.Error("reload: invalid configuration; nothing changed", slog.String("error", err.Error()))
		}
		return
	}
	live, restart := r.cfg.diff(&next)
	if len(restart) > 0 {
		r.log.Warn("reload: these settings take effect only after a restart", slog.Any("settings", restart))
	}
	if len(live) == 0 {
		r.log.Info("reload: no setting that can change live has changed")
		return
	}
	cand := r.cfg.withLive(&next, live)
	rootsFor(cand) // the backend may now be https
	changed, needRestart, err := r.client.Reload(cand.liveOptions()...)
	if err != nil {
		r.log.Error("reload: the client refused the new settings; nothing changed", slog.Any("error", err))
		return
	}
	if len(needRestart) > 0 {
		r.log.Warn("reload: the client needs a restart for these options", slog.Any("options", needRestart))
	}
	r.level.Set(cand.LogLevel)
	if r.insp != nil && cand.backendURL() != r.cfg.backendURL() {
		if u, err := url.Parse(cand.backendURL()); err == nil { // validated by loadConfig
			r.insp.ins.SetBackend(u) // replays follow the backend
		}
	}
	r.cfg = cand
	r.log.Info("configuration reloaded", slog.Any("applied", live))
	r.log.Debug("reload: client options changed", slog.Any("options", changed))
}
