// Command sidecar is a small sidecar built on the telephone library: it forwards Plugboard's
// requests to a TCP backend (WithBackendURL), keeps the refreshed token in the encrypted SQLite
// store (so a restart resumes with it), verifies every token's signature with Plugboard's
// secret, serves Prometheus metrics, and on SIGHUP re-reads BACKEND_URL and REQUEST_TIMEOUT
// (from ENV_FILE when set, else the environment) and applies them with Client.Reload without
// dropping the connection.
//
// cmd/telephone is the complete, configurable version of this program; this one shows the
// library calls. README.md beside this file shows how to run it against
// `go run ./cmd/telephone devserver`.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/joho/godotenv"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/verastack/telephone"
	"github.com/verastack/telephone/tokenstore"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(ctx, envLoader(os.Getenv("ENV_FILE")), hup, log, nil); err != nil {
		log.Error("sidecar example failed", slog.Any("error", err))
		os.Exit(1)
	}
}

// envLoader returns a loader of the configuration: the KEY=value lines of file, when set, over
// the process environment. The file is read on every load, so that SIGHUP sees its edits.
func envLoader(file string) func() (func(string) string, error) {
	return func() (func(string) string, error) {
		lines := map[string]string{}
		if file != "" {
			var err error
			if lines, err = godotenv.Read(file); err != nil {
				return nil, err
			}
		}
		return func(k string) string {
			if v := lines[k]; v != "" {
				return v
			}
			return os.Getenv(k)
		}, nil
	}
}

// run serves until ctx is done. load reads the configuration, at start and again on every value
// from reload; metricsListening, when not nil, gets the metrics address once it listens.
func run(ctx context.Context, load func() (func(string) string, error), reload <-chan os.Signal, log *slog.Logger, metricsListening func(string)) error {
	getenv, err := load()
	if err != nil {
		return err
	}
	store, err := tokenstore.OpenSQLite(envOr(getenv, "TOKEN_DB_PATH", "telephone.db"), getenv("SECRET_KEY_BASE"),
		tokenstore.SQLiteOptions{Logger: log})
	if err != nil {
		return fmt.Errorf("token store (set SECRET_KEY_BASE, at least 32 bytes): %w", err)
	}
	defer store.Close()

	reg := prometheus.NewRegistry()
	opts, err := liveOptions(getenv)
	if err != nil {
		return err
	}
	opts = append(opts,
		telephone.WithToken(getenv("TELEPHONE_TOKEN")), // may be empty: the stored token is used then
		telephone.WithTokenStore(store),
		telephone.WithMetrics(reg),
		telephone.WithLogger(log))
	if secret := getenv("PLUGBOARD_SECRET_KEY_BASE"); secret != "" {
		opts = append(opts, telephone.WithPlugboardSecret(secret)) // refuse tokens it did not sign
	}
	client, err := telephone.New(getenv("PLUGBOARD_URL"), opts...)
	if err != nil {
		return err
	}

	l, err := net.Listen("tcp", envOr(getenv, "METRICS_ADDR", "127.0.0.1:9090"))
	if err != nil {
		return err
	}
	metrics := &http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- metrics.Serve(l) }()
	if metricsListening != nil {
		metricsListening(l.Addr().String())
	}

	ran := make(chan error, 1)
	go func() { ran <- client.Run(context.Background()) }()
	err = serve(ctx, client, load, reload, ran, log)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = metrics.Shutdown(shutdownCtx)
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

// serve waits for the end, applying reloads on the way; it returns Run's result.
func serve(ctx context.Context, client *telephone.Client, load func() (func(string) string, error), reload <-chan os.Signal, ran <-chan error, log *slog.Logger) error {
	for {
		select {
		case <-reload:
			if err := reloadFrom(client, load, log); err != nil {
				log.Error("reload refused; nothing changed", slog.Any("error", err))
			}
		case err := <-ran:
			return err // only what retrying cannot fix, such as a refused token
		case <-ctx.Done():
			shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := client.Shutdown(shutdownCtx); err != nil {
				log.Warn("shutdown", slog.Any("error", err))
			}
			return <-ran // nil after Shutdown
		}
	}
}

// reloadFrom re-reads the live settings and applies them without reconnecting.
func reloadFrom(client *telephone.Client, load func() (func(string) string, error), log *slog.Logger) error {
	getenv, err := load()
	if err != nil {
		return err
	}
	opts, err := liveOptions(getenv)
	if err != nil {
		return err
	}
	changed, needRestart, err := client.Reload(opts...)
	if err != nil {
		return err
	}
	log.Info("reloaded", slog.Any("changed", changed), slog.Any("need_restart", needRestart))
	return nil
}

// liveOptions are the settings Reload can change while connected.
func liveOptions(getenv func(string) string) ([]telephone.Option, error) {
	opts := []telephone.Option{telephone.WithBackendURL(envOr(getenv, "BACKEND_URL", "http://127.0.0.1:8080"))}
	if v := getenv("REQUEST_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return nil, fmt.Errorf("REQUEST_TIMEOUT: not a duration such as 30s: %q", v)
		}
		opts = append(opts, telephone.WithRequestTimeout(d))
	}
	return opts, nil
}

func envOr(getenv func(string) string, name, def string) string {
	if v := getenv(name); v != "" {
		return v
	}
	return def
}
