package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/verastack/telephone/internal/testnet"
	"github.com/verastack/telephone/telephonetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newPlugboard starts an in-memory Plugboard for the test and mints a token for a new path.
func newPlugboard(t *testing.T) (*telephonetest.Server, telephonetest.Token) {
	t.Helper()
	plugboard := telephonetest.NewServer()
	t.Cleanup(plugboard.Close)
	tok, err := plugboard.Mint("", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return plugboard, tok
}

// startRun runs the program's run against plugboardURL until ctx ends: addr gives the local
// listener's address once it listens, done run's result.
func startRun(ctx context.Context, plugboardURL, token string) (addr <-chan string, done <-chan error) {
	listening, result := make(chan string, 1), make(chan error, 1)
	go func() {
		result <- run(ctx, config{PlugboardURL: plugboardURL, Token: token, ListenAddr: "127.0.0.1:0"},
			slog.New(slog.DiscardHandler), func(a string) { listening <- a })
	}()
	return listening, result
}

// TestEmbedded runs the example against an in-memory Plugboard: one request through the
// tunnel, /healthz on the local listener, and a clean stop when the context ends.
func TestEmbedded(t *testing.T) {
	plugboard, tok := newPlugboard(t)
	ctx, stop := context.WithCancel(context.Background())
	addr, done := startRun(ctx, plugboard.SocketURL(), tok.Token)
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

// TestMainProgram runs main as the program runs: configured by the environment, stopped by
// SIGTERM. A Plugboard that cannot be reached first: /healthz answers 503.
func TestMainProgram(t *testing.T) {
	plugboard, tok := newPlugboard(t)
	t.Setenv("PLUGBOARD_URL", plugboard.SocketURL())
	t.Setenv("TELEPHONE_TOKEN", tok.Token)
	t.Setenv("LISTEN_ADDR", "127.0.0.1:0") // any free port: this test goes through the tunnel only
	done := make(chan struct{})
	go func() { defer close(done); main() }()
	wait, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := plugboard.WaitJoined(wait, tok.PathID, 1); err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, plugboard.CallURL(tok.PathID)+"/hello/main"); code != 200 || !strings.HasPrefix(body, "hello, main") {
		t.Errorf("through the tunnel: %d %q", code, body)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil { // main's signal.NotifyContext takes it
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-wait.Done():
		t.Fatal("main did not return after SIGTERM")
	}
}

// TestHealthzBeforeJoin: while the tunnel cannot join, /healthz answers 503.
func TestHealthzBeforeJoin(t *testing.T) {
	deadAddr, release, err := testnet.RefusedAddr() // connections are refused: the tunnel keeps retrying
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	dead := "ws://" + deadAddr + "/telephone/websocket"
	_, tok := newPlugboard(t)
	ctx, stop := context.WithCancel(context.Background())
	addr, done := startRun(ctx, dead, tok.Token)
	if code, body := get(t, "http://"+<-addr+"/healthz"); code != http.StatusServiceUnavailable || !strings.Contains(body, `"joined":false`) {
		t.Errorf("/healthz before join: %d %q", code, body)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("run = %v", err)
	}
	if err := run(context.Background(), config{PlugboardURL: "http://not-a-socket"}, slog.New(slog.DiscardHandler), nil); err == nil {
		t.Error("a bad Plugboard URL must be an error")
	}
}

// TestStopBeforeRunStarts stops the program before the tunnel's Run has begun (a SIGTERM at
// start-up): Shutdown comes first, and Run answers nil: a clean stop.
func TestStopBeforeRunStarts(t *testing.T) {
	plugboard, tok := newPlugboard(t)
	ctx, stop := context.WithCancel(context.Background())
	stop()
	if err := run(ctx, config{PlugboardURL: plugboard.SocketURL(), Token: tok.Token, ListenAddr: "127.0.0.1:0"},
		slog.New(slog.DiscardHandler), nil); err != nil {
		t.Fatalf("run with a cancelled context = %v, want nil", err)
	}
}
