package transport

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
)

func TestDialAddsTokenAndVersion(t *testing.T) {
	t.Parallel()
	srv := newWSServer(t, nil, echo)
	tests := []struct {
		name, query string
		want        url.Values
	}{
		{"no query", "", url.Values{"token": {testToken}, "vsn": {"2.0.0"}}},
		{"other params kept", "?region=eu&x=1&x=2", url.Values{"token": {testToken}, "vsn": {"2.0.0"}, "region": {"eu"}, "x": {"1", "2"}}},
		{"token replaced", "?token=stale", url.Values{"token": {testToken}, "vsn": {"2.0.0"}}},
		{"vsn not doubled", "?vsn=2.0.0", url.Values{"token": {testToken}, "vsn": {"2.0.0"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustDial(t, srv.wsURL("/telephone/websocket"+tt.query), Options{
				Token:  testToken,
				Header: http.Header{"X-Test": {tt.name}},
			})
			if err := c.Close(int(websocket.StatusNormalClosure), "bye"); err != nil {
				t.Fatalf("Close: %v", err)
			}
			var req *http.Request
			for _, r := range srv.requests() {
				if r.Header.Get("X-Test") == tt.name {
					req = r
				}
			}
			if req == nil {
				t.Fatal("server did not see the upgrade request with the extra header")
			}
			if got := req.URL.Query(); got.Encode() != tt.want.Encode() {
				t.Fatalf("server saw query %q, want %q", got.Encode(), tt.want.Encode())
			}
			if req.URL.Path != "/telephone/websocket" {
				t.Fatalf("path %q", req.URL.Path)
			}
			if ext := req.Header.Get("Sec-WebSocket-Extensions"); ext != "" {
				t.Fatalf("client offered extensions %q, want none (compression disabled)", ext)
			}
			if c.RedactedURL() == "" || strings.Contains(c.RedactedURL(), testToken) {
				t.Fatalf("RedactedURL() = %q", c.RedactedURL())
			}
		})
	}
}

func TestDialRefusedUpgrade(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status       int
		unauthorized bool
	}{
		{http.StatusForbidden, true},
		{http.StatusUnauthorized, true},
		{http.StatusInternalServerError, false},
		{http.StatusNotFound, false},
		{http.StatusBadRequest, false},
		{http.StatusOK, false},
	}
	for _, tt := range tests {
		t.Run(http.StatusText(tt.status), func(t *testing.T) {
			t.Parallel()
			srv := statusServer(t, tt.status, nil)
			_, err := Dial(t.Context(), srv.URL+"/telephone/websocket", Options{Token: testToken})
			var ue *UpgradeError
			if !errors.As(err, &ue) {
				t.Fatalf("Dial error = %v (%T), want *UpgradeError", err, err)
			}
			if ue.StatusCode != tt.status {
				t.Fatalf("StatusCode = %d, want %d", ue.StatusCode, tt.status)
			}
			if got := errors.Is(err, ErrUnauthorized); got != tt.unauthorized {
				t.Fatalf("errors.Is(err, ErrUnauthorized) = %v, want %v", got, tt.unauthorized)
			}
			if ue.Permanent() != tt.unauthorized || IsPermanent(err) != tt.unauthorized {
				t.Fatalf("Permanent() = %v, IsPermanent = %v, want %v", ue.Permanent(), IsPermanent(err), tt.unauthorized)
			}
			if !strings.Contains(ue.URL, "token=REDACTED") {
				t.Fatalf("URL %q is not the redacted socket URL", ue.URL)
			}
			assertNoToken(t, err, testToken)
		})
	}
}

func TestDialRedirectNotFollowed(t *testing.T) {
	t.Parallel()
	followed := make(chan struct{}, 1)
	target := statusServer(t, http.StatusOK, nil)
	target.Config.Handler = http.HandlerFunc(func(http.ResponseWriter, *http.Request) { followed <- struct{}{} })
	loc := "wss" + strings.TrimPrefix(target.URL, "http") + "/telephone/websocket?token=" + testToken + "&vsn=2.0.0"
	srv := statusServer(t, http.StatusMovedPermanently, map[string]string{"Location": loc})

	_, err := Dial(t.Context(), srv.URL+"/telephone/websocket", Options{Token: testToken})
	var ue *UpgradeError
	if !errors.As(err, &ue) || ue.StatusCode != http.StatusMovedPermanently {
		t.Fatalf("Dial error = %v, want *UpgradeError 301", err)
	}
	if !strings.Contains(ue.Location, "token=REDACTED") || ue.Permanent() {
		t.Fatalf("Location = %q, Permanent = %v", ue.Location, ue.Permanent())
	}
	if !strings.Contains(err.Error(), "redirected to") {
		t.Fatalf("error text %q does not mention the redirect", err)
	}
	assertNoToken(t, err, testToken)
	select {
	case <-followed:
		t.Fatal("redirect was followed")
	default:
	}
}

func TestDialRetryAfter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		header string
		want   time.Duration
	}{
		{"7", 7 * time.Second},
		{" 120 ", 2 * time.Minute},
		{"Wed, 21 Oct 2015 07:28:00 GMT", 0},
		{"-3", 0},
		{"", 0},
	}
	for _, tt := range tests {
		t.Run(tt.header, func(t *testing.T) {
			t.Parallel()
			srv := statusServer(t, http.StatusServiceUnavailable, map[string]string{"Retry-After": tt.header})
			_, err := Dial(t.Context(), srv.URL, Options{Token: testToken})
			var ue *UpgradeError
			if !errors.As(err, &ue) {
				t.Fatalf("Dial error = %v, want *UpgradeError", err)
			}
			if ue.RetryAfter != tt.want {
				t.Fatalf("RetryAfter = %v, want %v", ue.RetryAfter, tt.want)
			}
		})
	}
}

func TestDialConnectionRefused(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = Dial(t.Context(), "ws://"+addr+"/telephone/websocket", Options{Token: testToken})
	assertNetworkError(t, err)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("error %v does not match ECONNREFUSED", err)
	}
	if !strings.Contains(err.Error(), "token=REDACTED") {
		t.Fatalf("error %q does not show the redacted URL", err)
	}
}

// assertNetworkError checks that err is a non-permanent *DialError, not an
// *UpgradeError, and does not leak the token.
func assertNetworkError(t *testing.T, err error) {
	t.Helper()
	var ue *UpgradeError
	if errors.As(err, &ue) {
		t.Fatalf("network error reported as *UpgradeError: %v", err)
	}
	var de *DialError
	if !errors.As(err, &de) {
		t.Fatalf("error %v (%T) is not a *DialError", err, err)
	}
	if IsPermanent(err) || de.Permanent() || errors.Is(err, ErrUnauthorized) {
		t.Fatalf("network error %v reported as permanent", err)
	}
	assertNoToken(t, err, testToken)
}

func TestDialDNSErrorIsNetworkError(t *testing.T) {
	t.Parallel()
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(context.Context, string, string) (net.Conn, error) {
			return nil, &net.DNSError{Err: "no such host", Name: "plugboard.invalid", IsNotFound: true}
		},
	}}
	_, err := Dial(t.Context(), "wss://plugboard.invalid/telephone/websocket", Options{Token: testToken, HTTPClient: client})
	assertNetworkError(t, err)
	var dnsErr *net.DNSError
	if !errors.As(err, &dnsErr) {
		t.Fatalf("error %v does not carry the *net.DNSError", err)
	}
}

// stallListener accepts TCP connections, reads whatever comes and never
// answers. Everything stops at the end of the test.
func stallListener(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex // guards conns
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() { _, _ = io.Copy(io.Discard, c) })
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func TestDialHandshakeTimeout(t *testing.T) {
	t.Parallel()
	addr := stallListener(t)
	_, err := Dial(t.Context(), "ws://"+addr+"/telephone/websocket", Options{Token: testToken, HandshakeTimeout: 100 * time.Millisecond})
	assertNetworkError(t, err)
	if !errors.Is(err, ErrHandshakeTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v does not match ErrHandshakeTimeout and context.DeadlineExceeded", err)
	}
}

func TestDialParentContextCancelled(t *testing.T) {
	t.Parallel()
	addr := stallListener(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := Dial(ctx, "ws://"+addr+"/", Options{Token: testToken})
	assertNetworkError(t, err)
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrHandshakeTimeout) {
		t.Fatalf("error %v: want context.Canceled and not ErrHandshakeTimeout", err)
	}
}

func TestDialContextOnlyBoundsHandshake(t *testing.T) {
	t.Parallel()
	srv := newWSServer(t, nil, echo)
	ctx, cancel := context.WithCancel(t.Context())
	c, err := Dial(ctx, srv.wsURL("/"), Options{Token: testToken})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	cancel()
	if err := c.Write(t.Context(), false, []byte("still open")); err != nil {
		t.Fatalf("Write after the dial context ended: %v", err)
	}
	if _, got, err := c.Read(t.Context()); err != nil || string(got) != "still open" {
		t.Fatalf("Read = %q, %v", got, err)
	}
}

func TestDialBadOptions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		url  string
		opts Options
		want error
	}{
		{"bad scheme", "ftp://h/p?token=" + testToken, Options{}, ErrBadURL},
		{"bad CA file", "wss://h/p", Options{Token: testToken, CAFile: "/nonexistent/ca.pem"}, ErrTLSConfig},
		{"bad pin", "wss://h/p", Options{Token: testToken, PinSHA256: []string{"xyz"}}, ErrTLSConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Dial(t.Context(), tt.url, tt.opts)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Dial error = %v, want %v", err, tt.want)
			}
			assertNoToken(t, err, testToken)
		})
	}
}

func TestDialProtocolViolationIsDialError(t *testing.T) {
	t.Parallel()
	// A 101 answer without a valid Sec-WebSocket-Accept.
	srv := statusServer(t, http.StatusSwitchingProtocols, map[string]string{"Connection": "Upgrade", "Upgrade": "websocket"})
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: wrong\r\n\r\n")
		_ = brw.Flush()
	})
	_, err := Dial(t.Context(), srv.URL, Options{Token: testToken})
	assertNetworkError(t, err)
}
