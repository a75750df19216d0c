// Command testing serves a small JSON API through a telephone tunnel; its point is
// main_test.go, which tests the handler through an in-memory Plugboard (telephonetest) in an
// ordinary `go test`, the way net/http/httptest tests a handler without the network: real
// Phoenix frames, the real forwarding rules, and faults such as a dropped socket.
//
// Configuration: PLUGBOARD_URL and TELEPHONE_TOKEN. README.md beside this file shows how to
// run it against `go run ./cmd/telephone devserver`.
package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/verastack/telephone"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(ctx, os.Getenv("PLUGBOARD_URL"), os.Getenv("TELEPHONE_TOKEN"), log); err != nil {
		log.Error("testing example failed", slog.Any("error", err))
		os.Exit(1)
	}
}

// run serves newHandler through the tunnel until ctx is done.
func run(ctx context.Context, plugboardURL, token string, log *slog.Logger) error {
	client, err := telephone.New(plugboardURL, telephone.WithToken(token), telephone.WithHandler(newHandler()), telephone.WithLogger(log))
	if err != nil {
		return err
	}
	ran := make(chan error, 1)
	go func() { ran <- client.Run(context.Background()) }()
	select {
	case err := <-ran:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := client.Shutdown(shutdownCtx); err != nil {
		log.Warn("shutdown", slog.Any("error", err))
	}
	return <-ran // nil after Shutdown
}

// newHandler is the API under test: a key-value store of notes.
//
//	PUT    /notes/{name}   stores the body (text, at most 1 KiB): 204
//	GET    /notes/{name}   the note as JSON: 200, or 404
//	DELETE /notes/{name}   204, or 404
func newHandler() http.Handler {
	var (
		mu    sync.Mutex // guards notes
		notes = map[string]string{}
	)
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /notes/{name}", func(w http.ResponseWriter, r *http.Request) {
		text, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1024))
		if err != nil {
			http.Error(w, "a note is at most 1 KiB", http.StatusRequestEntityTooLarge)
			return
		}
		mu.Lock()
		notes[r.PathValue("name")] = string(text)
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /notes/{name}", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		text, ok := notes[r.PathValue("name")]
		mu.Unlock()
		if !ok {
			http.Error(w, "no such note", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"name": r.PathValue("name"), "text": text})
	})
	mux.HandleFunc("DELETE /notes/{name}", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		_, ok := notes[r.PathValue("name")]
		delete(notes, r.PathValue("name"))
		mu.Unlock()
		if !ok {
			http.Error(w, "no such note", http.StatusNotFound)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}
