package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/verastack/telephone"
	"github.com/verastack/telephone/telephonetest"
)

var discard = slog.New(slog.DiscardHandler)

// eventually waits until cond holds, failing the test after testTimeout.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(testTimeout)
	defer deadline.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// tunnel is a real Client against a telephonetest server, with the operations handler.
type tunnel struct {
	srv    *telephonetest.Server
	tok    telephonetest.Token
	client *telephone.Client
	runErr chan error
	ops    *httptest.Server
	reg    *prometheus.Registry
}

// startTunnel builds a Client through the CLI's configuration (base environment plus extra
// variables), runs it and waits for its join. It is shut down when the test ends.
func startTunnel(t *testing.T, srv *telephonetest.Server, backendURL string, extra ...string) *tunnel {
	t.Helper()
	tok, err := srv.Mint("", 0)
	if err != nil {
		t.Fatal(err)
	}
	env := base(append([]string{"PLUGBOARD_URL", srv.SocketURL(), "TELEPHONE_TOKEN", tok.Token, "BACKEND_URL", backendURL}, extra...)...)
	cfg, errs := load(env, nil)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	tu := &tunnel{srv: srv, tok: tok, runErr: make(chan error, 1), reg: newRegistry()}
	tu.client, err = telephone.New(cfg.PlugboardURL, cfg.options(discard, nil, tu.reg)...)
	if err != nil {
		t.Fatal(err)
	}
	go func() { tu.runErr <- tu.client.Run(context.Background()) }()
	tu.ops = httptest.NewServer(newOps(tu.client.Status, tu.reg, readBuildInfo(), time.Now()).handler())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		_ = tu.client.Shutdown(ctx)
		<-tu.runErr
		tu.ops.Close()
	})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := srv.WaitJoined(ctx, tok.PathID, cfg.Connections); err != nil {
		t.Fatalf("join: %v", err)
	}
	eventually(t, "the client to see its joins", func() bool { return allJoined(tu.client.Status()) })
	return tu
}

func allJoined(st telephone.Status) bool {
	for _, s := range st.Sessions {
		if s.State != telephone.SessionJoined {
			return false
		}
	}
	return st.Joined
}

func (tu *tunnel) health(t *testing.T) (int, healthBody) {
	t.Helper()
	code, _, body := get(t, http.MethodGet, tu.ops.URL+"/health", nil)
	var h healthBody
	if err := json.Unmarshal([]byte(body), &h); err != nil {
		t.Fatalf("health body %q: %v", body, err)
	}
	return code, h
}

func (tu *tunnel) expect(t *testing.T, path string, wantCode int, wantBody string) {
	t.Helper()
	code, _, body := get(t, http.MethodGet, tu.ops.URL+path, nil)
	if code != wantCode || body != wantBody {
		t.Errorf("GET %s = %d %q, want %d %q", path, code, body, wantCode, wantBody)
	}
}

func newBackend(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	b := httptest.NewServer(h)
	t.Cleanup(b.Close)
	return b
}

// blockingBackend returns a server whose handlers wait until their request is cancelled or the
// test ends, and a channel closed when the first request arrives.
func blockingBackend(t *testing.T) (*httptest.Server, <-chan struct{}) {
	t.Helper()
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		once.Do(func() { close(entered) })
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(release) }) // before the server closes: cleanups run last first
	return b, entered
}

func okBackend(t *testing.T, text string) *httptest.Server {
	return newBackend(t, func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, text) })
}

func newPlugboard(t *testing.T, opts ...telephonetest.Option) *telephonetest.Server {
	srv := telephonetest.NewServer(opts...)
	t.Cleanup(srv.Close)
	return srv
}

func TestOpsConnected(t *testing.T) {
	t.Parallel()
	srv := newPlugboard(t)
	// Frequent beats for a quick first ack; 100 misses allowed so that a loaded machine's late
	// acks never reconnect the session under the checks below.
	tu := startTunnel(t, srv, okBackend(t, "hi").URL, "HEARTBEAT_INTERVAL", "100ms", "HEARTBEAT_MISSES", "100")
	eventually(t, "a heartbeat_ack", func() bool { return !tu.client.Status().LastAck.IsZero() })

	for _, p := range []string{"/health", "/healthz"} {
		code, _, body := get(t, http.MethodGet, tu.ops.URL+p, nil)
		var h healthBody
		if err := json.Unmarshal([]byte(body), &h); err != nil {
			t.Fatal(err)
		}
		if code != 200 || h.Status != "healthy" || !h.Connected || !h.SocketConnected || h.Draining ||
			!strings.HasSuffix(h.LastHeartbeat, " ago") || h.TokenExpiry == "" || h.TokenExpiry == "expired" ||
			h.Version != readBuildInfo().Version || h.Uptime == "" {
			t.Errorf("GET %s = %d %+v", p, code, h)
		}
	}
	for _, p := range []string{"/ready", "/readyz"} {
		tu.expect(t, p, 200, "ready\n")
	}
	for _, p := range []string{"/live", "/livez"} {
		tu.expect(t, p, 200, "alive\n")
	}
	code, _, body := get(t, http.MethodGet, tu.ops.URL+"/version", nil)
	var v buildInfo
	if err := json.Unmarshal([]byte(body), &v); err != nil || code != 200 || v.GoVersion != runtime.Version() || v.Version == "" {
		t.Errorf("/version = %d %q (%v)", code, body, err)
	}

	if code, _, body := get(t, http.MethodGet, srv.CallURL(tu.tok.PathID)+"/x", nil); code != 200 || body != "hi" {
		t.Fatalf("call = %d %q", code, body)
	}
	_, hdr, metrics := get(t, http.MethodGet, tu.ops.URL+"/metrics", nil)
	for _, want := range []string{`telephone_requests_total{method="GET",status="200"} 1`, "telephone_plugboard_connected 1",
		"telephone_token_expiry_timestamp_seconds", "go_goroutines", "process_start_time_seconds"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain") {
		t.Errorf("/metrics content type %q", hdr.Get("Content-Type"))
	}
}

func TestOpsMethodsAndRoutes(t *testing.T) {
	t.Parallel()
	srv := newPlugboard(t)
	tu := startTunnel(t, srv, okBackend(t, "hi").URL)
	code, _, body := get(t, http.MethodHead, tu.ops.URL+"/health", nil)
	if code != 200 || body != "" {
		t.Errorf("HEAD /health = %d %q", code, body)
	}
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		code, hdr, _ := get(t, m, tu.ops.URL+"/ready", strings.NewReader("x"))
		if code != http.StatusMethodNotAllowed || hdr.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s /ready = %d Allow %q", m, code, hdr.Get("Allow"))
		}
	}
	if code, _, _ := get(t, http.MethodGet, tu.ops.URL+"/nope", nil); code != http.StatusNotFound {
		t.Errorf("GET /nope = %d", code)
	}
}

// TestOpsReconnecting drops the socket and keeps the Client waiting in its backoff.
func TestOpsReconnecting(t *testing.T) {
	t.Parallel()
	srv := newPlugboard(t)
	tu := startTunnel(t, srv, okBackend(t, "hi").URL, "INITIAL_BACKOFF", "1h", "MAX_BACKOFF", "1h")
	srv.DropAll()
	eventually(t, "the socket to drop", func() bool { return !tu.client.Status().Connected })
	code, h := tu.health(t)
	if code != 503 || h.Status != "unhealthy" || h.Connected || h.SocketConnected || h.Draining {
		t.Errorf("health while reconnecting = %d %+v", code, h)
	}
	tu.expect(t, "/ready", 503, "not connected to Plugboard\n")
	tu.expect(t, "/live", 200, "alive\n")
	// The gauge follows the sessions' states, which change when each session has ended, a
	// moment after the socket is gone.
	eventually(t, "telephone_plugboard_connected 0", func() bool {
		_, _, m := get(t, http.MethodGet, tu.ops.URL+"/metrics", nil)
		return strings.Contains(m, "telephone_plugboard_connected 0")
	})
}

// TestOpsOneSessionDown cuts one of two sockets and keeps its session in its backoff: the
// other keeps the Client ready, /health says degraded and lists both sessions.
func TestOpsOneSessionDown(t *testing.T) {
	t.Parallel()
	srv := newPlugboard(t)
	tu := startTunnel(t, srv, okBackend(t, "hi").URL, "CONNECTIONS", "2", "INITIAL_BACKOFF", "1h", "MAX_BACKOFF", "1h")
	if _, err := srv.DropSocket(srv.Sockets()[0].ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the session to go down", func() bool { return !allJoined(tu.client.Status()) })
	code, h := tu.health(t)
	if code != 503 || h.Status != "degraded" || !h.Connected || len(h.Sessions) != 2 {
		t.Fatalf("health with one session down = %d %+v", code, h)
	}
	states := map[string]int{}
	for _, s := range h.Sessions {
		states[s.State]++
		if s.State == telephone.SessionDown && (s.LastError == "" || s.LastErrorAt == "" || s.JoinedFor != "") {
			t.Errorf("down session %+v", s)
		}
		if s.State == telephone.SessionJoined && s.JoinedFor == "" {
			t.Errorf("joined session %+v", s)
		}
	}
	if states[telephone.SessionJoined] != 1 || states[telephone.SessionDown] != 1 {
		t.Errorf("session states %v", states)
	}
	tu.expect(t, "/ready", 200, "ready\n")
	_, _, m := get(t, http.MethodGet, tu.ops.URL+"/metrics", nil)
	for _, want := range []string{`telephone_sessions{state="joined"} 1`, `telephone_sessions{state="down"} 1`, "telephone_plugboard_connected 1"} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestOpsTokenRefused makes every reconnect fail with 403, so Run stops for good.
func TestOpsTokenRefused(t *testing.T) {
	t.Parallel()
	srv := newPlugboard(t)
	tu := startTunnel(t, srv, okBackend(t, "hi").URL, "INITIAL_BACKOFF", "10ms", "MAX_BACKOFF", "10ms")
	srv.RefuseTokens(true)
	srv.DropAll()
	select {
	case err := <-tu.runErr:
		tu.runErr <- err // for the cleanup
		if err == nil {
			t.Fatal("Run returned nil after every token was refused")
		}
	case <-time.After(testTimeout):
		t.Fatal("Run did not stop")
	}
	code, h := tu.health(t)
	if code != 503 || h.Status != "unhealthy" || h.Connected {
		t.Errorf("health after refusal = %d %+v", code, h)
	}
	tu.expect(t, "/ready", 503, "not connected to Plugboard\n")
}

// TestOpsDrainingAndShutDown holds a request in flight while Shutdown drains.
func TestOpsDrainingAndShutDown(t *testing.T) {
	t.Parallel()
	entered, release := make(chan struct{}), make(chan struct{})
	backend := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		io.WriteString(w, "slow")
	})
	srv := newPlugboard(t)
	tu := startTunnel(t, srv, backend.URL)
	called := make(chan string, 1)
	go func() {
		_, _, body := get(t, http.MethodGet, srv.CallURL(tu.tok.PathID)+"/slow", nil)
		called <- body
	}()
	<-entered
	shut := make(chan error, 1)
	go func() { shut <- tu.client.Shutdown(context.Background()) }()
	eventually(t, "draining", func() bool { return tu.client.Status().Draining })
	code, h := tu.health(t)
	if code != 503 || h.Status != "degraded" || !h.Connected || !h.Draining || h.InFlight != 1 {
		t.Errorf("health while draining = %d %+v", code, h)
	}
	tu.expect(t, "/ready", 503, "shutting down\n")
	close(release)
	if body := <-called; body != "slow" {
		t.Errorf("in-flight request answered %q", body)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	code, h = tu.health(t)
	if code != 503 || h.Status != "unhealthy" || h.Connected || h.SocketConnected || !h.Draining {
		t.Errorf("health after shutdown = %d %+v", code, h)
	}
	tu.expect(t, "/ready", 503, "shutting down\n")
	tu.expect(t, "/live", 200, "alive\n")
}

// TestHealthOf covers the states a live Plugboard cannot easily produce.
func TestHealthOf(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	o := &ops{info: buildInfo{Version: "v9"}, started: now.Add(-90 * time.Minute), now: func() time.Time { return now }}
	joined := telephone.Status{Connected: true, Joined: true, TokenExpiry: now.Add(time.Hour), LastAck: now.Add(-12 * time.Second)}
	tests := []struct {
		name   string
		st     telephone.Status
		status string
		ready  string
		expiry string
	}{
		{"healthy", joined, "healthy", "", "1h0m0s"},
		{"expired", withStatus(joined, func(s *telephone.Status) { s.TokenExpiry = now.Add(-time.Second) }), "degraded", "token expired or invalid", "expired"},
		{"revoked", withStatus(joined, func(s *telephone.Status) { s.TokenRevoked = true }), "degraded", "", "1h0m0s"},
		{"draining", withStatus(joined, func(s *telephone.Status) { s.Draining = true }), "degraded", "shutting down", "1h0m0s"},
		{"socket without channel", withStatus(joined, func(s *telephone.Status) { s.Joined = false }), "unhealthy", "not connected to Plugboard", "1h0m0s"},
		{"never started", telephone.Status{}, "unhealthy", "not connected to Plugboard", ""},
		{"all sessions joined", withStatus(joined, func(s *telephone.Status) {
			s.Sessions = []telephone.SessionStatus{{ID: 0, State: telephone.SessionJoined}, {ID: 1, State: telephone.SessionJoined}}
		}), "healthy", "", "1h0m0s"},
		{"one session down", withStatus(joined, func(s *telephone.Status) {
			s.Sessions = []telephone.SessionStatus{{ID: 0, State: telephone.SessionJoined}, {ID: 1, State: telephone.SessionDown}}
		}), "degraded", "", "1h0m0s"},
	}
	for _, tt := range tests {
		h := o.healthOf(tt.st)
		if h.Status != tt.status || h.TokenExpiry != tt.expiry || h.Uptime != "1h30m0s" || h.Version != "v9" {
			t.Errorf("%s: health %+v", tt.name, h)
		}
		if got := o.notReady(tt.st); got != tt.ready {
			t.Errorf("%s: notReady %q, want %q", tt.name, got, tt.ready)
		}
	}
	if h := o.healthOf(joined); h.LastHeartbeat != "12s ago" {
		t.Errorf("last_heartbeat %q", h.LastHeartbeat)
	}
	if h := o.healthOf(telephone.Status{}); h.LastHeartbeat != "" {
		t.Errorf("last_heartbeat without ack %q", h.LastHeartbeat)
	}
}

func withStatus(st telephone.Status, f func(*telephone.Status)) telephone.Status {
	f(&st)
	return st
}

func TestOpsServer(t *testing.T) {
	t.Parallel()
	o := newOps(func() telephone.Status { return telephone.Status{} }, newRegistry(), buildInfo{Version: "x"}, time.Now())
	s, err := startOps("127.0.0.1:0", o.handler(), discard)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(s.url(), "http://127.0.0.1:") {
		t.Errorf("url %q", s.url())
	}
	if code, _, _ := get(t, http.MethodGet, s.url()+"/live", nil); code != 200 {
		t.Errorf("/live = %d", code)
	}
	if _, err := startOps(s.addr.String(), o.handler(), discard); err == nil {
		t.Error("a second server on the same address started")
	}
	s.stop()
	w, err := startOps(":0", o.handler(), discard)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(w.url(), "http://localhost:") {
		t.Errorf("wildcard url %q", w.url())
	}
	w.stop()
}
