package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Backend endpoints.
const (
	pathSmall  = "/small"  // a short text body
	pathLarge  = "/large"  // ?size=N: N bytes of generated UTF-8 text, streamed in pieces
	pathSlow   = "/slow"   // ?ms=N: answers after N milliseconds
	pathBinary = "/binary" // bytes that are not valid UTF-8 (cannot cross Plugboard: 502)
)

// smallBody is the body of /small, slowBody the body of /slow.
const (
	smallBody = "hello from the loadtest backend\n"
	slowBody  = "slow\n"
)

// maxLargeSize bounds /large so that a typo cannot exhaust memory downstream (1 GiB).
const maxLargeSize = 1 << 30

// binarySize is the length of the /binary body.
const binarySize = 4096

// pieceSize is the size of each write of /large.
const pieceSize = 64 << 10

// testBackend is the HTTP backend behind the telephone. Kill stops it (listener and every
// connection closed); Restart serves again on the same address. Its methods are safe for
// concurrent use; the caller must Close it.
type testBackend struct {
	addr    string // host:port, fixed for the backend's life
	handler http.Handler

	mu  sync.Mutex // guards srv
	srv *http.Server
	wg  sync.WaitGroup // joins the Serve goroutines
}

// startBackend listens on addr ("127.0.0.1:0" picks a port) and serves the endpoints.
func startBackend(addr string) (*testBackend, error) {
	b := &testBackend{handler: backendHandler()}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("backend: %w", err)
	}
	b.addr = ln.Addr().String()
	b.serve(ln)
	return b, nil
}

func (b *testBackend) serve(ln net.Listener) {
	srv := &http.Server{Handler: b.handler, ReadHeaderTimeout: 10 * time.Second}
	b.mu.Lock()
	b.srv = srv
	b.mu.Unlock()
	b.wg.Go(func() { _ = srv.Serve(ln) })
}

// URL returns the backend's base URL.
func (b *testBackend) URL() string { return "http://" + b.addr }

// Kill closes the listener and every connection at once, as a crashed backend would.
func (b *testBackend) Kill() {
	b.mu.Lock()
	srv := b.srv
	b.srv = nil
	b.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
	b.wg.Wait()
}

// Restart serves again on the same address after Kill. It retries the listen for up to 5 s
// in case the port is still held.
func (b *testBackend) Restart(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for {
		ln, err := net.Listen("tcp", b.addr)
		if err == nil {
			b.serve(ln)
			return nil
		}
		t := time.NewTimer(20 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("backend restart: %w", errors.Join(err, ctx.Err()))
		case <-t.C:
		}
	}
}

// Close stops the backend for good.
func (b *testBackend) Close() { b.Kill() }

func backendHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+pathSmall, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte(smallBody))
	})
	mux.HandleFunc("GET "+pathLarge, serveLarge)
	mux.HandleFunc("GET "+pathSlow, serveSlow)
	mux.HandleFunc("POST "+pathSlow, serveSlow) // answers without reading the body: a stalled upload
	bin := binaryBody()
	mux.HandleFunc("GET "+pathBinary, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(bin)
	})
	return mux
}

// serveLarge writes size bytes of text in pieces of pieceSize, flushing each, so that the
// body is streamed (chunked transfer encoding) and never held whole by the backend.
func serveLarge(w http.ResponseWriter, r *http.Request) {
	size, err := strconv.ParseInt(r.URL.Query().Get("size"), 10, 64)
	if err != nil || size < 0 || size > maxLargeSize {
		http.Error(w, "size must be an integer between 0 and 1 GiB", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	flusher, _ := w.(http.Flusher)
	piece := textPiece()
	for size > 0 {
		n := min(size, int64(len(piece)))
		if _, err := w.Write(textPrefix(piece, int(n))); err != nil {
			return
		}
		if flusher != nil {
			flusher.Flush()
		}
		size -= n
	}
}

// textLine is one 64-byte line of the generated text; it has multi-byte characters so that
// chunking must respect UTF-8 boundaries.
const textLine = "telephone load test · ünïcödé · 0123456789 abcdefghijklmnopqr\n"

// textPiece returns pieceSize bytes of whole text lines.
func textPiece() []byte {
	return []byte(strings.Repeat(textLine, pieceSize/len(textLine)))
}

// textPrefix returns the first n bytes of piece, with the last line cut at n replaced by
// ASCII so that the result is valid UTF-8 of exactly n bytes.
func textPrefix(piece []byte, n int) []byte {
	if n == len(piece) {
		return piece
	}
	whole := n / len(textLine) * len(textLine)
	out := make([]byte, n)
	copy(out, piece[:whole])
	for i := whole; i < n; i++ {
		out[i] = 'x'
	}
	return out
}

// serveSlow answers after ?ms=N milliseconds (at most 10 minutes), or when the caller goes.
func serveSlow(w http.ResponseWriter, r *http.Request) {
	ms, err := strconv.Atoi(r.URL.Query().Get("ms"))
	if err != nil || ms < 0 || ms > 600_000 {
		http.Error(w, "ms must be an integer between 0 and 600000", http.StatusBadRequest)
		return
	}
	t := time.NewTimer(time.Duration(ms) * time.Millisecond)
	defer t.Stop()
	select {
	case <-r.Context().Done():
		return
	case <-t.C:
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte(slowBody))
}

// binaryBody returns binarySize bytes that are not valid UTF-8.
func binaryBody() []byte {
	b := make([]byte, binarySize)
	for i := range b {
		b[i] = byte(0x80 + i%0x80) // lone continuation bytes and invalid leads
	}
	return b
}
