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

	"github.com/verastack/telephone"
	"github.com/verastack/telephone/telephonetest"
)

// goleak checks that the tunnel's goroutines stop with it.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startTunnel serves h through a Client joined to a fresh in-memory Plugboard and returns the
// Plugboard and the path id whose call URL reaches h. Everything stops when the test ends.
func startTunnel(t *testing.T, h http.Handler) (*telephonetest.Server, string) {
	t.Helper()
	plugboard := telephonetest.NewServer()
	t.Cleanup(plugboard.Close)
	tok, err := plugboard.Mint("", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	client, err := telephone.New(plugboard.SocketURL(), telephone.WithToken(tok.Token), telephone.WithHandler(h),
		telephone.WithReconnectBackoff(10*time.Millisecond, 100*time.Millisecond)) // reconnect fast in tests
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan error, 1)
	go func() { ran <- client.Run(context.Background()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := client.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-ran; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	waitJoined(t, plugboard, tok.PathID)
	return plugboard, tok.PathID
}

func waitJoined(t *testing.T, plugboard *telephonetest.Server, pathID string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := plugboard.WaitJoined(ctx, pathID, 1); err != nil {
		t.Fatal(err)
	}
}

func do(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// TestNotesThroughTheTunnel is a table test of the API, every request through Plugboard.
func TestNotesThroughTheTunnel(t *testing.T) {
	plugboard, pathID := startTunnel(t, newHandler())
	base := plugboard.CallURL(pathID)
	for _, step := range []struct {
		method, path, body string
		status             int
		want               string
	}{
		{"GET", "/notes/todo", "", 404, "no such note\n"},
		{"PUT", "/notes/todo", "buy milk", 204, ""},
		{"GET", "/notes/todo", "", 200, `{"name":"todo","text":"buy milk"}` + "\n"},
		{"PUT", "/notes/big", strings.Repeat("x", 2000), 413, "a note is at most 1 KiB\n"},
		{"DELETE", "/notes/todo", "", 204, ""},
		{"DELETE", "/notes/todo", "", 404, "no such note\n"},
		{"POST", "/notes/todo", "", 405, "Method Not Allowed\n"},
	} {
		if status, body := do(t, step.method, base+step.path, step.body); status != step.status || body != step.want {
			t.Errorf("%s %s = %d %q, want %d %q", step.method, step.path, status, body, step.status, step.want)
		}
	}
}

// TestNotesSurviveADroppedSocket drops every socket: the Client reconnects and the handler
// keeps its state, because it lives in this process.
func TestNotesSurviveADroppedSocket(t *testing.T) {
	plugboard, pathID := startTunnel(t, newHandler())
	base := plugboard.CallURL(pathID)
	if status, _ := do(t, "PUT", base+"/notes/keep", "still here"); status != 204 {
		t.Fatalf("PUT = %d", status)
	}
	plugboard.DropAll()
	waitJoined(t, plugboard, pathID) // the re-joined channel
	for {                            // until the reconnect has replaced the dropped session
		status, body := do(t, "GET", base+"/notes/keep", "")
		if status == 200 {
			if !strings.Contains(body, "still here") {
				t.Fatalf("after reconnect: %q", body)
			}
			break
		}
		if status != http.StatusServiceUnavailable && status != http.StatusBadGateway {
			t.Fatalf("while reconnecting: %d %q (want 503, or 502 for a request caught by the drop)", status, body)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRun runs the program itself for one request.
func TestRun(t *testing.T) {
	plugboard := telephonetest.NewServer()
	defer plugboard.Close()
	tok, err := plugboard.Mint("", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, plugboard.SocketURL(), tok.Token, slog.New(slog.DiscardHandler)) }()
	waitJoined(t, plugboard, tok.PathID)
	if status, _ := do(t, "GET", plugboard.CallURL(tok.PathID)+"/notes/none", ""); status != 404 {
		t.Errorf("GET = %d, want 404 from the handler", status)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("run = %v", err)
	}
}
