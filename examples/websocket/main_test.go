package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/verastack/telephone/telephonetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestChat runs the example against an in-memory Plugboard: two WebSockets through Plugboard's
// front and the tunnel; a message from one reaches both; the page is served too.
func TestChat(t *testing.T) {
	plugboard := telephonetest.NewServer()
	defer plugboard.Close()
	tok, err := plugboard.Mint("", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(runCtx, plugboard.SocketURL(), tok.Token, slog.New(slog.DiscardHandler)) }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := plugboard.WaitJoined(ctx, tok.PathID, 1); err != nil {
		t.Fatal(err)
	}
	res, err := http.Get(plugboard.CallURL(tok.PathID) + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(page), "new WebSocket(url)") {
		t.Errorf("page: %d %q", res.StatusCode, page)
	}

	chat := "ws" + strings.TrimPrefix(plugboard.CallURL(tok.PathID), "http") + "/chat"
	// Each member is in the room once its own first message comes back to it.
	alice := dial(ctx, t, chat)
	say(ctx, t, alice, "alice here")
	expect(ctx, t, alice, "alice here")
	bob := dial(ctx, t, chat)
	say(ctx, t, bob, "bob here")
	expect(ctx, t, bob, "bob here")
	expect(ctx, t, alice, "bob here")
	say(ctx, t, alice, "hello, room")
	expect(ctx, t, alice, "hello, room")
	expect(ctx, t, bob, "hello, room")

	stop()
	if err := <-done; err != nil {
		t.Fatalf("run = %v", err)
	}
	// Shutdown closed the proxied WebSockets: the clients see the close.
	if _, _, err := bob.Read(ctx); err == nil {
		t.Errorf("bob's socket is still open after shutdown")
	}
	alice.CloseNow()
	bob.CloseNow()
}

func dial(ctx context.Context, t *testing.T, url string) *websocket.Conn {
	t.Helper()
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func expect(ctx context.Context, t *testing.T, c *websocket.Conn, want string) {
	t.Helper()
	typ, msg, err := c.Read(ctx)
	if err != nil || typ != websocket.MessageText || string(msg) != want {
		t.Fatalf("read %v %q %v, want %q", typ, msg, err, want)
	}
}

func say(ctx context.Context, t *testing.T, c *websocket.Conn, text string) {
	t.Helper()
	if err := c.Write(ctx, websocket.MessageText, []byte(text)); err != nil {
		t.Fatal(err)
	}
}
