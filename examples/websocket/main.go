// Command websocket serves a chat room over a telephone tunnel: browsers (or any WebSocket
// client) connect to /chat on the Plugboard path, Plugboard proxies each WebSocket over the
// tunnel, and every text message is sent to everyone in the room. GET / serves a small page
// that uses it. The handler runs in this process (WithHandler); with WithBackendURL the same
// proxying reaches a WebSocket server on a TCP backend.
//
// Configuration: PLUGBOARD_URL and TELEPHONE_TOKEN. README.md beside this file shows how to
// run it against `go run ./cmd/telephone devserver`.
package main

import (
	"context"
	_ "embed"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/coder/websocket"

	"github.com/verastack/telephone"
)

//go:embed index.html
var indexHTML []byte

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(ctx, os.Getenv("PLUGBOARD_URL"), os.Getenv("TELEPHONE_TOKEN"), log); err != nil {
		log.Error("websocket example failed", slog.Any("error", err))
		os.Exit(1)
	}
}

// run serves the chat through the tunnel until ctx is done.
func run(ctx context.Context, plugboardURL, token string, log *slog.Logger) error {
	room := newRoom(log)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(indexHTML)
	})
	mux.Handle("GET /chat", room)
	client, err := telephone.New(plugboardURL, telephone.WithToken(token), telephone.WithHandler(mux), telephone.WithLogger(log))
	if err != nil {
		return err
	}
	ran := make(chan error, 1)
	go func() { ran <- client.Run(context.Background()) }()
	select {
	case err = <-ran:
	case <-ctx.Done():
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := client.Shutdown(shutdownCtx); err != nil { // closes the proxied WebSockets too
			log.Warn("shutdown", slog.Any("error", err))
		}
		err = <-ran // nil after Shutdown
	}
	room.wait()
	return err
}

// room is a chat room: every text message from a member is sent to all members.
type room struct {
	log     *slog.Logger
	mu      sync.Mutex // guards members
	members map[*websocket.Conn]bool
	wg      sync.WaitGroup // one per member being served
}

func newRoom(log *slog.Logger) *room {
	return &room{log: log, members: map[*websocket.Conn]bool{}}
}

// ServeHTTP accepts a WebSocket and relays its messages until it closes.
func (rm *room) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	conn, err := websocket.Accept(w, r, nil)
	if err != nil {
		return // Accept has answered the request
	}
	rm.wg.Add(1)
	defer rm.wg.Done()
	conn.SetReadLimit(64 << 10)
	rm.mu.Lock()
	rm.members[conn] = true
	rm.mu.Unlock()
	defer func() {
		rm.mu.Lock()
		delete(rm.members, conn)
		rm.mu.Unlock()
		conn.CloseNow()
	}()
	for {
		typ, msg, err := conn.Read(r.Context())
		if err != nil {
			rm.log.Debug("chat member left", slog.Int("close_status", int(websocket.CloseStatus(err))))
			return
		}
		if typ == websocket.MessageText {
			rm.broadcast(r.Context(), msg)
		}
	}
}

// broadcast sends msg to every member, each with its own deadline, so that one slow member
// cannot hold the others up for long.
func (rm *room) broadcast(ctx context.Context, msg []byte) {
	rm.mu.Lock()
	members := make([]*websocket.Conn, 0, len(rm.members))
	for c := range rm.members {
		members = append(members, c)
	}
	rm.mu.Unlock()
	for _, c := range members {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := c.Write(wctx, websocket.MessageText, msg); err != nil {
			c.CloseNow() // its reader ends and removes it
		}
		cancel()
	}
}

// wait returns when every member's handler has returned.
func (rm *room) wait() { rm.wg.Wait() }
