package transport

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/coder/websocket"
)

func TestConnRoundTrip(t *testing.T) {
	t.Parallel()
	srv := newWSServer(t, nil, echo)
	c := mustDial(t, srv.wsURL("/"), Options{Token: testToken})
	tests := []struct {
		name   string
		binary bool
		msg    string
	}{
		{"text", false, `[null,"1","phoenix","heartbeat",{}]`},
		{"binary", true, "\x00\x01\x02\xff"},
		{"empty text", false, ""},
		{"large binary over the library default limit", true, strings.Repeat("x", 100_000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			roundTrip(t, c, tt.binary, tt.msg)
		})
	}
	if err := c.Close(1000, "done"); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := c.Close(1000, "again"); err != nil {
		t.Fatalf("second Close = %v, want nil", err)
	}
	if err := c.Write(t.Context(), false, []byte("x")); err == nil {
		t.Fatal("Write after Close succeeded")
	}
	if _, _, err := c.Read(t.Context()); err == nil {
		t.Fatal("Read after Close succeeded")
	}
}

func TestConnReadReportsCloseCode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code   websocket.StatusCode
		reason string
	}{
		{websocket.StatusServiceRestart, "server restarting"},
		{websocket.StatusNormalClosure, ""},
		{websocket.StatusGoingAway, "drain"},
		{4001, "custom"},
	}
	for _, tt := range tests {
		t.Run(tt.reason, func(t *testing.T) {
			t.Parallel()
			srv := newWSServer(t, nil, func(_ context.Context, c *websocket.Conn) {
				_ = c.Close(tt.code, tt.reason)
			})
			c := mustDial(t, srv.wsURL("/"), Options{Token: testToken})
			_, _, err := c.Read(t.Context())
			if got := CloseCode(err); got != int(tt.code) {
				t.Fatalf("CloseCode(%v) = %d, want %d", err, got, tt.code)
			}
			var ce *CloseError
			if !errors.As(err, &ce) || ce.Reason != tt.reason {
				t.Fatalf("error %v: want *CloseError with reason %q", err, tt.reason)
			}
			if err := c.Close(1000, ""); err != nil {
				t.Fatalf("Close after the peer closed = %v, want nil", err)
			}
		})
	}
}

// closeRecorder is a server handler that reports how the client closed.
func closeRecorder(got chan<- error) func(context.Context, *websocket.Conn) {
	return func(ctx context.Context, c *websocket.Conn) {
		_, _, err := c.Read(ctx)
		got <- err
	}
}

func TestConnCloseSendsCodeAndReason(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é", 100) // 200 bytes, truncated to 122
	tests := []struct {
		name       string
		code       int
		reason     string
		wantCode   websocket.StatusCode
		wantReason string
	}{
		{"normal", 1000, "bye", 1000, "bye"},
		{"going away", 1001, "", 1001, ""},
		{"application code", 4000, "app", 4000, "app"},
		{"long reason truncated", 1000, long, 1000, long[:122]},
		{"abnormal drops without handshake", 1006, "x", -1, ""},
		{"invalid code drops without handshake", 99, "x", -1, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := make(chan error, 1)
			srv := newWSServer(t, nil, closeRecorder(got))
			c := mustDial(t, srv.wsURL("/"), Options{Token: testToken})
			if err := c.Close(tt.code, tt.reason); err != nil {
				t.Fatalf("Close: %v", err)
			}
			err := <-got
			if code := websocket.CloseStatus(err); code != tt.wantCode {
				t.Fatalf("server saw close status %d (%v), want %d", code, err, tt.wantCode)
			}
			var ce websocket.CloseError
			if tt.wantCode != -1 && (!errors.As(err, &ce) || ce.Reason != tt.wantReason) {
				t.Fatalf("server saw reason %q, want %q", ce.Reason, tt.wantReason)
			}
		})
	}
}

func TestConnReadLimit(t *testing.T) {
	t.Parallel()
	big := bytes.Repeat([]byte("y"), 100_000)
	tests := []struct {
		name    string
		limit   int64
		wantErr bool
	}{
		{"exceeded", 1024, true},
		{"exact fit", int64(len(big)), false},
		{"default 64 MiB", 0, false},
		{"disabled", -1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			closed := make(chan error, 1)
			srv := newWSServer(t, nil, func(ctx context.Context, c *websocket.Conn) {
				if err := c.Write(ctx, websocket.MessageBinary, big); err != nil {
					closed <- err
					return
				}
				_, _, err := c.Read(ctx)
				closed <- err
			})
			c := mustDial(t, srv.wsURL("/"), Options{Token: testToken, ReadLimit: tt.limit})
			_, got, err := c.Read(t.Context())
			if !tt.wantErr {
				if err != nil || len(got) != len(big) {
					t.Fatalf("Read = %d bytes, %v", len(got), err)
				}
				_ = c.Close(1000, "")
				<-closed
				return
			}
			if !errors.Is(err, ErrMessageTooBig) || !errors.Is(err, websocket.ErrMessageTooBig) {
				t.Fatalf("Read error = %v, want ErrMessageTooBig", err)
			}
			if code := websocket.CloseStatus(<-closed); code != websocket.StatusMessageTooBig {
				t.Fatalf("server saw close status %d, want 1009", code)
			}
		})
	}
}

func TestConnWriteCancelledContext(t *testing.T) {
	t.Parallel()
	srv := newWSServer(t, nil, echo)
	c := mustDial(t, srv.wsURL("/"), Options{Token: testToken})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := c.Write(ctx, false, []byte("x")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Write with a cancelled context = %v, want context.Canceled", err)
	}
	roundTrip(t, c, false, "connection still usable")
}

func TestConnReadCancelledContext(t *testing.T) {
	t.Parallel()
	srv := newWSServer(t, nil, echo)
	c := mustDial(t, srv.wsURL("/"), Options{Token: testToken})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, _, err := c.Read(ctx); !errors.Is(err, context.Canceled) || CloseCode(err) != -1 {
		t.Fatalf("Read with a cancelled context = %v, want context.Canceled", err)
	}
	roundTrip(t, c, true, "connection still usable")
}

func TestConnReadContextEndsWhileWaiting(t *testing.T) {
	t.Parallel()
	srv := newWSServer(t, nil, echo) // echo never sends first: Read waits
	c := mustDial(t, srv.wsURL("/"), Options{Token: testToken})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, _, err := c.Read(ctx)
		done <- err
	}()
	cancel()
	if err := <-done; err == nil || CloseCode(err) != -1 {
		t.Fatalf("Read = %v, want a non-close error", err)
	}
}

func TestSendableCloseCode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code int
		want bool
	}{
		{999, false}, {1000, true}, {1003, true}, {1004, false}, {1005, false}, {1006, false},
		{1007, true}, {1012, true}, {1014, true}, {1015, false}, {1016, false}, {2999, false},
		{3000, true}, {4999, true}, {5000, false}, {-1, false},
	}
	for _, tt := range tests {
		if got := sendableCloseCode(tt.code); got != tt.want {
			t.Errorf("sendableCloseCode(%d) = %v, want %v", tt.code, got, tt.want)
		}
	}
}

func TestTruncateReason(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		wantLen int
	}{
		{"", 0},
		{strings.Repeat("a", 123), 123},
		{strings.Repeat("a", 124), 123},
		{strings.Repeat("é", 62), 122}, // 124 bytes: cut before the last rune
		{strings.Repeat("€", 50), 123}, // 3-byte runes: 41 fit exactly
	}
	for _, tt := range tests {
		got := truncateReason(tt.in)
		if len(got) != tt.wantLen || !utf8.ValidString(got) || !strings.HasPrefix(tt.in, got) {
			t.Errorf("truncateReason(%d bytes) = %d bytes (valid %v), want %d", len(tt.in), len(got), utf8.ValidString(got), tt.wantLen)
		}
	}
}
