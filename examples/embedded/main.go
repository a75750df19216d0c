// Command embedded serves its own http.ServeMux through a telephone tunnel, in the same
// process: no sidecar and no TCP hop. The same mux also listens locally, where /healthz
// reports the tunnel's state from Client.Status. SIGINT or SIGTERM drains in-flight requests
// with Client.Shutdown and exits.
//
// Configuration: PLUGBOARD_URL and TELEPHONE_TOKEN (required), LISTEN_ADDR (the local
// listener, default 127.0.0.1:8081). README.md beside this file shows how to run it against
// `go run ./cmd/telephone devserver`.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/verastack/telephone"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	cfg := config{
		PlugboardURL: os.Getenv("PLUGBOARD_URL"),
		Token:        os.Getenv("TELEPHONE_TOKEN"),
		ListenAddr:   envOr("LISTEN_ADDR", "127.0.0.1:8081"),
	}
	if err := run(ctx, cfg, log, nil); err != nil {
		log.Error("embedded example failed", slog.Any("error", err))
		os.Exit(1)
	}
}

type config struct {
	PlugboardURL string
	Token        string
	ListenAddr   string
}

// run serves until ctx is done, then drains and returns nil; an error means it could not start
// or the tunnel stopped for good (a refused token). listening, when not nil, gets the local
// address once it listens.
func run(ctx context.Context, cfg config, log *slog.Logger, listening func(addr string)) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello/{name}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello, %s (you called %s)\n", r.PathValue("name"), r.Host)
	})
	client, err := telephone.New(cfg.PlugboardURL,
		telephone.WithToken(cfg.Token),
		telephone.WithHandler(mux),
		telephone.WithLogger(log))
	if err != nil {
		return err
	}
	mux.HandleFunc("GET /healthz", healthz(client))

	l, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return err
	}
	local := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- local.Serve(l) }()
	if listening != nil {
		listening(l.Addr().String())
	}
	log.Info("serving", slog.String("local", "http://"+l.Addr().String()))

	ran := make(chan error, 1)
	go func() { ran <- client.Run(context.Background()) }()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	select {
	case <-ctx.Done():
		// 503 for new requests; in-flight ones finish; then phx_leave and close.
		if err := client.Shutdown(shutdownCtx); err != nil {
			log.Warn("tunnel shutdown", slog.Any("error", err))
		}
		err = <-ran // nil: the stop was asked for (also when Shutdown came before Run started)
	case err = <-ran: // Run stops by itself only for what retrying cannot fix
	}
	_ = local.Shutdown(shutdownCtx)
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

// healthz answers 200 while the tunnel is joined and 503 otherwise, with the Status as JSON.
func healthz(c *telephone.Client) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		st := c.Status()
		code := http.StatusOK
		if !st.Joined || st.Draining {
			code = http.StatusServiceUnavailable
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(map[string]any{
			"joined": st.Joined, "draining": st.Draining, "in_flight": st.InFlight,
			"reconnects": st.Reconnects, "token_expiry": st.TokenExpiry,
		})
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
