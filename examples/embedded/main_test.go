package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/verastack/telephone/telephonetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestEmbedded runs the example against an in-memory Plugboard: one request through the
// tunnel, /healthz on the local listener, and a clean stop when the context ends.
func TestEmbedded(t *testing.T) {
	plugboard := telephonetest.NewServer()
	defer plugboard.Close()
	tok, err := plugboard.Mint("", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, config{PlugboardURL: plugboard.SocketURL(), Token: tok.Token, ListenAddr: "127.0.0.1:0"},
			slog.New(slog.DiscardHandler), func(a string) { addr <- a })
	}()
	local := "http://" + <-addr
	wait, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := plugboard.WaitJoined(wait, tok.PathID, 1); err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, plugboard.CallURL(tok.PathID)+"/hello/gopher"); code != 200 || !strings.HasPrefix(body, "hello, gopher") {
		t.Errorf("through the tunnel: %d %q", code, body)
	}
	// Status follows the join reply once the client has read it.
	for code, body := get(t, local+"/healthz"); code != 200; code, body = get(t, local+"/healthz") {
		if wait.Err() != nil {
			t.Fatalf("/healthz: %d %q", code, body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("run = %v", err)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}
