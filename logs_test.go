package telephone_test

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/verastack/telephone"
	"github.com/verastack/telephone/internal/testnet"
	"github.com/verastack/telephone/telephonetest"
)

// TestBackendFailureLogNamesTheRequest checks that a failed backend request is logged with its
// method, path and request_id.
func TestBackendFailureLogNamesTheRequest(t *testing.T) {
	t.Parallel()
	addr, release, err := testnet.RefusedAddr() // connections there are refused
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	closed := "http://" + addr
	tn := startTunnel(t, nil, telephone.WithBackendURL(closed), telephone.WithRetries(0, time.Millisecond))
	if res, _ := tn.do(http.MethodDelete, "/items/7", nil); res.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d, want 502", res.StatusCode)
	}
	var line string
	waitFor(t, func() bool {
		for _, l := range strings.Split(tn.dbg.String(), "\n") {
			if strings.Contains(l, `msg="backend request failed"`) {
				line = l
				return true
			}
		}
		return false
	})
	for _, want := range []string{"level=WARN", "request_id=", "method=DELETE", "path=/items/7", "status=502"} {
		if !strings.Contains(line, want) {
			t.Errorf("log line lacks %q: %s", want, line)
		}
	}
}

// TestConnectFailureIsNotASessionEnd checks that failing to connect is not reported as the end
// of a session that never started.
func TestConnectFailureIsNotASessionEnd(t *testing.T) {
	t.Parallel()
	addr, release, err := testnet.RefusedAddr()
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	url := "ws://" + addr + "/telephone/websocket"
	srv := telephonetest.NewServer()
	defer srv.Close()
	tok, err := srv.Mint("", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuf{}
	c, err := telephone.New(url, telephone.WithToken(tok.Token), telephone.WithHandler(http.NotFoundHandler()),
		telephone.WithReconnectBackoff(time.Millisecond, 10*time.Millisecond),
		telephone.WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(context.Background()) }()
	waitFor(t, func() bool { return strings.Contains(logs.String(), "could not connect to Plugboard; retrying") })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	if strings.Contains(logs.String(), "session ended") {
		t.Errorf("a session that never started was reported as ended:\n%s", logs)
	}
}
