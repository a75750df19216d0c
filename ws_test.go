package telephone_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/verastack/telephone"
	"github.com/verastack/telephone/internal/testnet"
	"github.com/verastack/telephone/telephonetest"
)

// wsSeen is what a test backend saw of one proxied WebSocket.
type wsSeen struct {
	path, rawPath, query, proto string
	header                      http.Header
}

// wsBackend is a real WebSocket server (websocket.Accept) used as the telephone's backend,
// over TCP (URL) or in process (handler). It reports every handshake and how every
// connection ended.
type wsBackend struct {
	URL     string
	handler http.Handler
	opened  chan wsSeen
	closed  chan websocket.CloseError // Code -1: ended without a close frame from the telephone
}

// wsServe runs one accepted backend connection and returns the error that ended it.
type wsServe func(ctx context.Context, c *websocket.Conn, r *http.Request) error

// echo writes every message back.
func echo(ctx context.Context, c *websocket.Conn, _ *http.Request) error {
	for {
		typ, data, err := c.Read(ctx)
		if err != nil {
			return err
		}
		if err := c.Write(ctx, typ, data); err != nil {
			return err
		}
	}
}

func newWSHandler(protos []string, serve wsServe) *wsBackend {
	b := &wsBackend{opened: make(chan wsSeen, 100), closed: make(chan websocket.CloseError, 100)}
	b.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: protos, InsecureSkipVerify: true})
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(1 << 20)
		b.opened <- wsSeen{path: r.URL.Path, rawPath: r.URL.EscapedPath(), query: r.URL.RawQuery,
			proto: c.Subprotocol(), header: r.Header.Clone()}
		err = serve(r.Context(), c, r)
		ce := websocket.CloseError{Code: -1}
		errors.As(err, &ce)
		b.closed <- ce
	})
	return b
}

// newWSBackend serves serve (echo when nil) on a TCP port, with a plain HTTP 404 under /nows.
func newWSBackend(t *testing.T, protos []string, serve wsServe) *wsBackend {
	t.Helper()
	if serve == nil {
		serve = echo
	}
	b := newWSHandler(protos, serve)
	mux := http.NewServeMux()
	mux.Handle("/", b.handler)
	mux.Handle("/nows", http.NotFoundHandler())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	b.URL = srv.URL
	return b
}

func (b *wsBackend) nextOpen(t *testing.T) wsSeen {
	t.Helper()
	select {
	case s := <-b.opened:
		return s
	case <-time.After(waitBound):
		t.Fatal("the backend saw no handshake")
	}
	return wsSeen{}
}

func (b *wsBackend) nextClose(t *testing.T) websocket.CloseError {
	t.Helper()
	select {
	case ce := <-b.closed:
		return ce
	case <-time.After(waitBound):
		t.Fatal("the backend connection did not end")
	}
	return websocket.CloseError{}
}

func wsCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	t.Cleanup(cancel)
	return ctx
}

// dialWS opens a proxied WebSocket through Plugboard's front, as an end client does.
func dialWS(t *testing.T, tn *tunnel, path string, opts *websocket.DialOptions) *websocket.Conn {
	t.Helper()
	c, res, err := websocket.Dial(wsCtx(t), "ws"+strings.TrimPrefix(tn.call(path), "http"), opts)
	if err != nil {
		t.Fatalf("dial %s: %v (response %v)", path, err, res)
	}
	t.Cleanup(func() { _ = c.CloseNow() })
	return c
}

func roundTrip(t *testing.T, c *websocket.Conn, typ websocket.MessageType, msg []byte) {
	t.Helper()
	ctx := wsCtx(t)
	if err := c.Write(ctx, typ, msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	gotTyp, got, err := c.Read(ctx)
	if err != nil || gotTyp != typ || !bytes.Equal(got, msg) {
		t.Fatalf("echo = %v %q %v, want %v %q", gotTyp, got, err, typ, msg)
	}
}

// expectClosed reads until c is closed and checks the close code and reason.
func expectClosed(t *testing.T, c *websocket.Conn, code websocket.StatusCode, reason string) {
	t.Helper()
	ctx := wsCtx(t)
	for {
		_, _, err := c.Read(ctx)
		if err == nil {
			continue
		}
		var ce websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != code || ce.Reason != reason {
			t.Fatalf("client closed with %v, want %d %q", err, code, reason)
		}
		return
	}
}

// waitFrame waits for a recorded telephone→Plugboard frame containing every part.
func waitFrame(t *testing.T, srv *telephonetest.Server, parts ...string) string {
	t.Helper()
	deadline := time.Now().Add(waitBound)
	for time.Now().Before(deadline) {
		for _, f := range srv.Frames() {
			if f.Dir != telephonetest.DirIn {
				continue
			}
			ok := true
			for _, p := range parts {
				ok = ok && strings.Contains(f.Data, p)
			}
			if ok {
				return f.Data
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no frame with %q", parts)
	return ""
}

func wsStatus(tn *tunnel) telephone.WSStatus { return tn.client.Status().WebSocket }

func TestWSEchoTextAndBinary(t *testing.T) {
	t.Parallel()
	b := newWSBackend(t, nil, nil)
	tn := startTunnel(t, nil, telephone.WithBackendURL(b.URL+"/base/"))
	c := dialWS(t, tn, "/room/a%20b?x=1&y=%2F", &websocket.DialOptions{
		CompressionMode: websocket.CompressionContextTakeover, // the client offers an extension
		HTTPHeader: http.Header{"Cookie": {"sid=1"}, "Authorization": {"Bearer t"}, "X-Request-Id": {"req-7"},
			"Origin": {"https://app.example"}},
	})
	seen := b.nextOpen(t)
	if seen.path != "/base/room/a b" || seen.rawPath != "/base/room/a%20b" || seen.query != "x=1&y=%2F" {
		t.Errorf("backend path %q raw %q query %q", seen.path, seen.rawPath, seen.query)
	}
	for name, want := range map[string]string{"Cookie": "sid=1", "Authorization": "Bearer t", "X-Request-Id": "req-7",
		"Origin": "https://app.example", "X-Forwarded-Proto": "http", "Sec-Websocket-Extensions": ""} {
		if got := seen.header.Get(name); got != want {
			t.Errorf("backend header %s = %q, want %q", name, got, want)
		}
	}
	roundTrip(t, c, websocket.MessageText, []byte("hello backend"))
	roundTrip(t, c, websocket.MessageBinary, []byte{0, 0xff, 0xfe, 1, 2, 3})
	roundTrip(t, c, websocket.MessageText, []byte(""))
	if st := wsStatus(tn); st.Open != 1 || st.Opened != 1 || st.Max != telephone.DefaultMaxWebSockets {
		t.Errorf("status %+v", st)
	}
	waitFrame(t, tn.srv, `"ws_connected"`)
}

// TestWSSecureBackendUsesConfiguredTransport dials a wss:// backend through the
// *http.Transport given to WithBackend (its TLS settings trust the test certificate).
func TestWSSecureBackendUsesConfiguredTransport(t *testing.T) {
	t.Parallel()
	b := newWSHandler(nil, echo)
	backend := httptest.NewTLSServer(b.handler)
	t.Cleanup(backend.Close)
	tr := backend.Client().Transport.(*http.Transport)
	t.Cleanup(tr.CloseIdleConnections)
	tn := startTunnel(t, nil, telephone.WithBackendURL(backend.URL), telephone.WithBackend(tr))
	c := dialWS(t, tn, "/secure", nil)
	roundTrip(t, c, websocket.MessageText, []byte("over TLS"))
	if seen := b.nextOpen(t); seen.path != "/secure" {
		t.Errorf("backend saw %+v", seen)
	}
}

func TestWSTenThousandOrderedMessages(t *testing.T) {
	t.Parallel()
	b := newWSBackend(t, nil, nil)
	tn := startTunnel(t, nil, telephone.WithBackendURL(b.URL))
	c := dialWS(t, tn, "/stream", nil)
	roundTrip(t, c, websocket.MessageText, []byte("ready")) // connected: no client-side buffering limit
	const n = 10_000
	ctx := wsCtx(t)
	var wg sync.WaitGroup
	var werr error
	wg.Go(func() {
		for i := range n {
			if werr = c.Write(ctx, websocket.MessageText, []byte(strconv.Itoa(i))); werr != nil {
				return
			}
		}
	})
	for i := range n {
		_, data, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if string(data) != strconv.Itoa(i) {
			t.Fatalf("message %d arrived as %q: order lost", i, data)
		}
	}
	wg.Wait()
	if werr != nil {
		t.Fatal(werr)
	}
}

func TestWSSubprotocolAndCheck(t *testing.T) {
	t.Parallel()
	srv := telephonetest.NewServer(telephonetest.WithRecorder(), telephonetest.WithWSCheck())
	t.Cleanup(srv.Close)
	b := newWSBackend(t, []string{"chat.v2"}, nil)
	tn := startTunnel(t, srv, telephone.WithBackendURL(b.URL))
	c := dialWS(t, tn, "/chat", &websocket.DialOptions{Subprotocols: []string{"chat.v1", "chat.v2"}})
	if c.Subprotocol() != "chat.v2" {
		t.Errorf("client got subprotocol %q, want chat.v2", c.Subprotocol())
	}
	check := b.nextOpen(t) // the pre-check's handshake, closed with 1000
	if ce := b.nextClose(t); check.proto != "chat.v2" || ce.Code != websocket.StatusNormalClosure {
		t.Errorf("check handshake: protocol %q, closed with %v", check.proto, ce)
	}
	if conn := b.nextOpen(t); conn.proto != "chat.v2" {
		t.Errorf("backend connection negotiated %q", conn.proto)
	}
	roundTrip(t, c, websocket.MessageText, []byte("hi"))
	waitFrame(t, srv, `"ws_check_result"`, `"supported":true`, `"protocol":"chat.v2"`)
	waitFrame(t, srv, `"ws_connected"`, `"protocol":"chat.v2"`)

	// A backend that answers without upgrading fails the pre-check with its reason.
	_, res, err := websocket.Dial(wsCtx(t), "ws"+strings.TrimPrefix(tn.call("/nows"), "http"), nil)
	if err == nil || res == nil || res.StatusCode != http.StatusBadGateway {
		t.Fatalf("dial /nows: %v %v", err, res)
	}
	body, _ := io.ReadAll(res.Body)
	if !strings.Contains(string(body), "invalid_upgrade") {
		t.Errorf("pre-check failure body %q", body)
	}
	if st := wsStatus(tn); st.Checks != 2 || st.Opened != 1 {
		t.Errorf("status %+v", st)
	}
}

// hangingBackend accepts TCP connections and never answers.
func hangingBackend(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	})
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
		for _, c := range conns {
			c.Close()
		}
	})
	return "http://" + l.Addr().String()
}

// closedPort returns the URL of a loopback port that refuses connections for the whole test.
func closedPort(t *testing.T) string {
	addr, closeAddr, err := testnet.RefusedAddr()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeAddr)
	return "http://" + addr
}

func TestWSBackendRefuses(t *testing.T) {
	t.Parallel()
	b := newWSBackend(t, nil, nil)
	for _, tt := range []struct {
		name, backend, path, reason string
		handshake                   time.Duration
	}{
		{"refused", closedPort(t), "/ws", "connection_refused", telephone.DefaultWebSocketHandshake},
		{"no upgrade", b.URL, "/nows", "invalid_upgrade", telephone.DefaultWebSocketHandshake},
		{"timeout", hangingBackend(t), "/ws", "connection_timeout", 300 * time.Millisecond},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tn := startTunnel(t, nil, telephone.WithBackendURL(tt.backend),
				telephone.WithWebSocketHandshakeTimeout(tt.handshake))
			c := dialWS(t, tn, tt.path, nil)
			expectClosed(t, c, websocket.StatusBadGateway, "Bad Gateway: "+tt.reason)
			waitFor(t, func() bool { return wsStatus(tn).Failed == 1 })
			if st := wsStatus(tn); st.Open != 0 || st.Opened != 0 {
				t.Errorf("status %+v", st)
			}
		})
	}
}

func TestWSBackendCloses(t *testing.T) {
	t.Parallel()
	b := newWSBackend(t, nil, func(ctx context.Context, c *websocket.Conn, r *http.Request) error {
		if _, _, err := c.Read(ctx); err != nil {
			return err
		}
		switch r.URL.Path {
		case "/custom":
			return c.Close(4000, "backend done")
		case "/nostatus":
			return c.Close(websocket.StatusNoStatusRcvd, "") // a close frame without a code
		case "/drop":
			return c.CloseNow() // TCP closed without a close frame
		default: // a message over the client's frame limit
			return c.Write(ctx, websocket.MessageBinary, make([]byte, 1025))
		}
	})
	tn := startTunnel(t, nil, telephone.WithBackendURL(b.URL),
		telephone.WithWebSocketLimits(10, 1024, time.Minute, 1<<20))
	for _, tt := range []struct {
		path   string
		code   websocket.StatusCode
		reason string
	}{
		{"/custom", 4000, "backend done"},
		{"/nostatus", websocket.StatusNormalClosure, ""},
		{"/drop", websocket.StatusBadGateway, "Bad Gateway: backend_error"},
		{"/toolarge", websocket.StatusMessageTooBig, "Frame too large"},
	} {
		c := dialWS(t, tn, tt.path, nil)
		if err := c.Write(wsCtx(t), websocket.MessageText, []byte("go")); err != nil {
			t.Fatal(err)
		}
		expectClosed(t, c, tt.code, tt.reason)
	}
	waitFor(t, func() bool { return wsStatus(tn).Open == 0 })
}

func TestWSClientCloses(t *testing.T) {
	t.Parallel()
	b := newWSBackend(t, nil, nil)
	tn := startTunnel(t, nil, telephone.WithBackendURL(b.URL))
	c := dialWS(t, tn, "/ws", nil)
	roundTrip(t, c, websocket.MessageText, []byte("x"))
	b.nextOpen(t)
	if err := c.Close(4001, "bye"); err != nil {
		t.Fatal(err)
	}
	// Plugboard does not pass the client's code on: it always sends 1000 (docs/PROTOCOL.md §5.4).
	if ce := b.nextClose(t); ce.Code != websocket.StatusNormalClosure || ce.Reason != "Client disconnected" {
		t.Errorf("backend saw %v", ce)
	}
	waitFor(t, func() bool { return wsStatus(tn).Open == 0 })
}

func TestWSReconnectClosesProxiedConnections(t *testing.T) {
	t.Parallel()
	b := newWSBackend(t, nil, nil)
	tn := startTunnel(t, nil, telephone.WithBackendURL(b.URL))
	var clients []*websocket.Conn
	for i := range 3 {
		c := dialWS(t, tn, fmt.Sprintf("/ws/%d", i), nil)
		roundTrip(t, c, websocket.MessageText, []byte("up"))
		clients = append(clients, c)
	}
	before := tn.srv.Sockets()
	tn.srv.DropAll()
	for _, c := range clients {
		expectClosed(t, c, websocket.StatusGoingAway, "Telephone sidecar disconnected")
	}
	for range 3 {
		if ce := b.nextClose(t); ce.Code != websocket.StatusGoingAway {
			t.Errorf("backend saw %v, want 1001", ce)
		}
	}
	// A dropped socket whose connections all lived on the other one may still be registered
	// for a moment: wait until the server has let every old socket go, then for a new join.
	waitFor(t, func() bool {
		for _, now := range tn.srv.Sockets() {
			if slices.ContainsFunc(before, func(old telephonetest.SocketInfo) bool { return old.ID == now.ID }) {
				return false
			}
		}
		return true
	})
	tn.waitJoined(1)
	waitFor(t, func() bool { return wsStatus(tn).Open == 0 })
	c := dialWS(t, tn, "/ws/again", nil)
	roundTrip(t, c, websocket.MessageText, []byte("after reconnect"))
}

// stuckHandler serves HTTP under /api and, under /ws, WebSockets that never read until release
// is closed.
func stuckHandler(t *testing.T) (http.Handler, *wsBackend, chan struct{}) {
	release := make(chan struct{})
	b := newWSHandler(nil, func(ctx context.Context, c *websocket.Conn, _ *http.Request) error {
		<-release
		return c.CloseNow()
	})
	mux := http.NewServeMux()
	mux.Handle("/ws", b.handler)
	mux.HandleFunc("/api", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
	return mux, b, release
}

func TestWSSlowBackendDoesNotDelayHTTP(t *testing.T) {
	t.Parallel()
	h, b, release := stuckHandler(t)
	tn := startTunnel(t, nil, telephone.WithHandler(h))
	t.Cleanup(func() { close(release) })
	c := dialWS(t, tn, "/ws", nil)
	b.nextOpen(t)
	for range 200 {
		if err := c.Write(wsCtx(t), websocket.MessageBinary, make([]byte, 4096)); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			res, body := tn.do("GET", "/api?i="+strconv.Itoa(i), nil)
			if res.StatusCode != http.StatusOK || body != "ok" {
				t.Errorf("HTTP request %d: %d %q", i, res.StatusCode, body)
			}
		})
	}
	wg.Wait()
	if st := wsStatus(tn); st.Open != 1 || st.Overflow != 0 {
		t.Errorf("the stuck connection should still be open: %+v", st)
	}
}

func TestWSQueueOverflow(t *testing.T) {
	t.Parallel()
	h, b, release := stuckHandler(t)
	tn := startTunnel(t, nil, telephone.WithHandler(h), telephone.WithWebSocketLimits(10, 1024, time.Minute, 4096),
		telephone.WithWebSocketHandshakeTimeout(500*time.Millisecond))
	t.Cleanup(func() { close(release) })
	stuck := dialWS(t, tn, "/ws", nil)
	b.nextOpen(t)
	for range 10 { // the first is being written, three more fit, the fifth overflows
		_ = stuck.Write(wsCtx(t), websocket.MessageBinary, make([]byte, 1024))
	}
	expectClosed(t, stuck, websocket.StatusMessageTooBig, "Send queue overflow")
	if st := wsStatus(tn); st.Overflow != 1 {
		t.Errorf("status %+v", st)
	}
	res, body := tn.do("GET", "/api", nil)
	if res.StatusCode != http.StatusOK || body != "ok" {
		t.Errorf("HTTP after overflow: %d %q", res.StatusCode, body)
	}
}

func TestWSConnectionLimit(t *testing.T) {
	t.Parallel()
	b := newWSBackend(t, nil, nil)
	tn := startTunnel(t, nil, telephone.WithBackendURL(b.URL), telephone.WithWebSocketLimits(2, 1024, time.Minute, 4096))
	first := dialWS(t, tn, "/ws", nil)
	roundTrip(t, first, websocket.MessageText, []byte("1"))
	second := dialWS(t, tn, "/ws", nil)
	roundTrip(t, second, websocket.MessageText, []byte("2")) // N = 2: accepted
	third := dialWS(t, tn, "/ws", nil)
	expectClosed(t, third, websocket.StatusBadGateway, "Bad Gateway: connection_refused") // N+1
	if st := wsStatus(tn); st.Rejected != 1 || st.Open != 2 || st.Max != 2 {
		t.Errorf("status %+v", st)
	}
	_ = first.Close(websocket.StatusNormalClosure, "")
	waitFor(t, func() bool { return wsStatus(tn).Open == 1 })
	again := dialWS(t, tn, "/ws", nil)
	roundTrip(t, again, websocket.MessageText, []byte("3"))
}

func TestWSFrameSizeLimit(t *testing.T) {
	t.Parallel()
	b := newWSBackend(t, nil, func(ctx context.Context, c *websocket.Conn, r *http.Request) error {
		if n, err := strconv.Atoi(r.URL.Query().Get("send")); err == nil {
			if err := c.Write(ctx, websocket.MessageBinary, bytes.Repeat([]byte{7}, n)); err != nil {
				return err
			}
		}
		return echo(ctx, c, r)
	})
	tn := startTunnel(t, nil, telephone.WithBackendURL(b.URL), telephone.WithWebSocketLimits(10, 1024, time.Minute, 4096))

	in := dialWS(t, tn, "/in", nil)
	roundTrip(t, in, websocket.MessageBinary, bytes.Repeat([]byte{1}, 1024)) // at the limit
	if err := in.Write(wsCtx(t), websocket.MessageBinary, make([]byte, 1025)); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, in, websocket.StatusMessageTooBig, "Frame too large")
	if ce := b.nextClose(t); ce.Code != websocket.StatusMessageTooBig {
		t.Errorf("backend saw %v", ce)
	}

	out := dialWS(t, tn, "/out?send=1024", nil)
	if _, data, err := out.Read(wsCtx(t)); err != nil || len(data) != 1024 {
		t.Fatalf("1024-byte backend message: %d bytes, %v", len(data), err)
	}
	out2 := dialWS(t, tn, "/out?send=1025", nil)
	expectClosed(t, out2, websocket.StatusMessageTooBig, "Frame too large")
	// The close goes out before the connection counts it.
	waitFor(t, func() bool { return wsStatus(tn).TooLarge >= 1 })
	if st := wsStatus(tn); st.TooLarge != 1 || st.MaxFrame != 1024 || st.QueueBytes != 4096 {
		t.Errorf("status %+v", st)
	}
}

func TestWSIdleTimeout(t *testing.T) {
	t.Parallel()
	b := newWSBackend(t, nil, nil)
	tn := startTunnel(t, nil, telephone.WithBackendURL(b.URL),
		telephone.WithWebSocketLimits(10, 1024, 300*time.Millisecond, 4096))
	c := dialWS(t, tn, "/ws", nil) // and then silence
	expectClosed(t, c, websocket.StatusGoingAway, "Idle timeout")
	if ce := b.nextClose(t); ce.Code != websocket.StatusGoingAway || ce.Reason != "Idle timeout" {
		t.Errorf("backend saw %v", ce)
	}
	if st := wsStatus(tn); st.IdleClosed != 1 || st.IdleTimeout != 300*time.Millisecond {
		t.Errorf("status %+v", st)
	}
}

func TestWSInProcessHandler(t *testing.T) {
	t.Parallel()
	srv := telephonetest.NewServer(telephonetest.WithRecorder(), telephonetest.WithWSCheck())
	t.Cleanup(srv.Close)
	b := newWSHandler([]string{"v1"}, echo)
	mux := http.NewServeMux()
	mux.Handle("/live/{room}", b.handler)
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "hello") })
	tn := startTunnel(t, srv, telephone.WithHandler(mux))
	c := dialWS(t, tn, "/live/r%201?q=1", &websocket.DialOptions{Subprotocols: []string{"v1"}})
	b.nextOpen(t) // pre-check
	if ce := b.nextClose(t); ce.Code != websocket.StatusNormalClosure || ce.Reason != "check complete" {
		t.Errorf("pre-check closed with %v", ce)
	}
	seen := b.nextOpen(t)
	if seen.path != "/live/r 1" || seen.query != "q=1" || seen.proto != "v1" || c.Subprotocol() != "v1" {
		t.Errorf("handler saw %+v; client protocol %q", seen, c.Subprotocol())
	}
	roundTrip(t, c, websocket.MessageText, []byte("in process"))
	roundTrip(t, c, websocket.MessageBinary, []byte{0xde, 0xad})
	if res, body := tn.do("GET", "/hello", nil); res.StatusCode != 200 || body != "hello" {
		t.Errorf("HTTP beside WebSocket: %d %q", res.StatusCode, body)
	}
	_ = c.Close(websocket.StatusNormalClosure, "")
	if ce := b.nextClose(t); ce.Code != websocket.StatusNormalClosure {
		t.Errorf("handler saw %v", ce)
	}
	// A path the handler does not upgrade.
	_, res, err := websocket.Dial(wsCtx(t), "ws"+strings.TrimPrefix(tn.call("/hello"), "http"), nil)
	if err == nil || res == nil || res.StatusCode != http.StatusBadGateway {
		t.Fatalf("dial /hello: %v %v", err, res)
	}
	waitFor(t, func() bool { return wsStatus(tn).Open == 0 })
}

// pushTunnel is a tunnel to an echo backend driven with hand-made pushes.
type pushTunnel struct {
	*tunnel
	b *wsBackend
}

func newPushTunnel(t *testing.T) *pushTunnel {
	srv := telephonetest.NewServer(telephonetest.WithRecorder(), telephonetest.WithWSCheck())
	t.Cleanup(srv.Close)
	b := newWSBackend(t, nil, nil)
	return &pushTunnel{tunnel: startTunnel(t, srv, telephone.WithBackendURL(b.URL)), b: b}
}

func (p *pushTunnel) push(event string, payload any) {
	p.t.Helper()
	if err := p.srv.Push(p.tok.PathID, event, payload); err != nil {
		p.t.Fatal(err)
	}
}

// connect pushes ws_connect with headers of which only the subprotocols can be sent.
func (p *pushTunnel) connect(id, path string) {
	p.push("ws_connect", map[string]any{"connection_id": id, "path": path, "query_string": "",
		"headers": map[string]any{"sec-websocket-protocol": "a, b", "x-request-id": 7, "cookie": "bad\r\nvalue"}})
}

func TestWSDuplicateIDsFramesAndCloseCodes(t *testing.T) {
	t.Parallel()
	p := newPushTunnel(t)
	b64 := base64.StdEncoding.EncodeToString
	p.connect("c-1", "/one")
	waitFrame(t, p.srv, `"ws_connected"`, `"c-1"`)
	if seen := p.b.nextOpen(t); seen.header.Get("Cookie") != "" || seen.header.Get("X-Request-Id") != "" {
		t.Errorf("unsendable headers forwarded: %v", seen.header)
	}
	p.connect("c-1", "/one") // duplicate id: refused, the first stays
	waitFrame(t, p.srv, `"ws_error"`, `"c-1"`, `"connection_refused"`)
	p.push("ws_frame", map[string]any{"connection_id": "c-1", "opcode": "ping", "data": ""})
	p.push("ws_frame", map[string]any{"connection_id": "c-1", "opcode": "text", "data": b64([]byte("hi"))})
	waitFrame(t, p.srv, `"ws_frame"`, `"c-1"`, `"`+b64([]byte("hi"))+`"`, `"text"`)
	p.push("ws_close", map[string]any{"connection_id": "c-1", "code": 1006, "reason": strings.Repeat("r", 200)})
	if ce := p.b.nextClose(t); ce.Code != websocket.StatusNormalClosure || ce.Reason != strings.Repeat("r", 123) {
		t.Errorf("backend saw %d %d-byte reason", ce.Code, len(ce.Reason))
	}
	p.push("ws_close", map[string]any{"connection_id": "c-1", "code": 1000, "reason": ""}) // already closed: ignored
	p.push("ws_frame", map[string]any{"connection_id": "c-1", "opcode": "text", "data": ""})

	p.connect("c-2", "/two")
	waitFrame(t, p.srv, `"ws_connected"`, `"c-2"`)
	p.b.nextOpen(t)
	p.push("ws_close", map[string]any{"connection_id": "c-2", "code": 4001, "reason": "custom"})
	if ce := p.b.nextClose(t); ce.Code != 4001 || ce.Reason != "custom" {
		t.Errorf("backend saw %v", ce)
	}
	for id, frame := range map[string]map[string]any{
		"c-3": {"opcode": "continuation", "data": ""},
		"c-4": {"opcode": "binary", "data": "not base64!"},
	} {
		p.connect(id, "/bad")
		waitFrame(t, p.srv, `"ws_connected"`, `"`+id+`"`)
		p.b.nextOpen(t)
		frame["connection_id"] = id
		p.push("ws_frame", frame)
		waitFrame(t, p.srv, `"ws_error"`, `"`+id+`"`, `"invalid_frame_data"`)
		if ce := p.b.nextClose(t); ce.Code != websocket.StatusInternalError {
			t.Errorf("%s: backend saw %v", id, ce)
		}
	}
}

func TestWSInvalidPushes(t *testing.T) {
	t.Parallel()
	p := newPushTunnel(t)
	p.connect("c-5", "relative")
	waitFrame(t, p.srv, `"ws_error"`, `"c-5"`, `"invalid_path"`)
	p.push("ws_check", map[string]any{"check_id": "k-1", "path": "//x", "query_string": ""})
	waitFrame(t, p.srv, `"ws_check_result"`, `"k-1"`, `"supported":false`, `"invalid_path"`)
	p.push("ws_check", map[string]any{"check_id": "k-2", "path": "/ok", "query_string": "a=1"})
	waitFrame(t, p.srv, `"ws_check_result"`, `"k-2"`, `"supported":true`)
	p.push("ws_check", map[string]any{"path": "/ok"})        // no check_id: dropped
	p.push("ws_connect", map[string]any{"path": "/ok"})      // no connection_id: dropped
	p.push("ws_connect", []int{1})                           // not an object: dropped
	p.push("ws_close", map[string]any{"connection_id": "x"}) // unknown: ignored
	p.connect("c-6", "/six")                                 // still served afterwards
	waitFrame(t, p.srv, `"ws_connected"`, `"c-6"`)
	if !p.client.Status().Joined {
		t.Error("the channel must survive every push above")
	}
}

// TestWSRefusedWhileDraining checks that a Client that is shutting down refuses new
// connections at once instead of letting Plugboard time out.
func TestWSRefusedWhileDraining(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	started := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
	})
	// One session: it holds /hold, so it stays joined while draining. (With two, the idle one
	// would leave at once, and a ws_connect routed to it would find no channel to answer on.)
	tn := startTunnel(t, nil, telephone.WithHandler(h), telephone.WithConnections(1))
	var held sync.WaitGroup
	defer held.Wait()
	held.Go(func() { tn.do("GET", "/hold", nil) })
	<-started
	done := make(chan error, 1)
	go func() { done <- tn.client.Shutdown(context.Background()) }()
	waitFor(t, func() bool { return tn.client.Status().Draining })
	if err := tn.srv.Push(tn.tok.PathID, "ws_connect", map[string]any{"connection_id": "d-1", "path": "/ws",
		"query_string": "", "headers": map[string]any{}}); err != nil {
		t.Fatal(err)
	}
	waitFrame(t, tn.srv, `"ws_error"`, `"d-1"`, `"connection_refused"`)
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestWSNoGoroutineLeftAfterClose runs connections of every kind, then shuts down and checks
// that nothing the Client started is still running. It is not parallel, so that other tests'
// goroutines do not count.
func TestWSNoGoroutineLeftAfterClose(t *testing.T) {
	ignore := []goleak.Option{goleak.IgnoreCurrent(),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop")}
	for _, inProcess := range []bool{false, true} {
		srv := telephonetest.NewServer(telephonetest.WithWSCheck())
		b := newWSHandler(nil, echo)
		backend := httptest.NewServer(b.handler)
		opt := telephone.WithBackendURL(backend.URL)
		if inProcess {
			opt = telephone.WithHandler(b.handler)
		}
		tn := startTunnel(t, srv, opt)
		var clients []*websocket.Conn
		for i := range 3 {
			c := dialWS(t, tn, "/ws", nil)
			roundTrip(t, c, websocket.MessageText, []byte(strconv.Itoa(i)))
			clients = append(clients, c)
		}
		_ = clients[0].Close(websocket.StatusNormalClosure, "")
		if err := tn.client.Shutdown(wsCtx(t)); err != nil {
			t.Fatal(err)
		}
		for _, c := range clients[1:] {
			expectClosed(t, c, websocket.StatusGoingAway, "Telephone sidecar disconnected")
		}
		srv.Close()
		backend.Close()
		if st := wsStatus(tn); st.Open != 0 {
			t.Errorf("in process %v: %d connections still open", inProcess, st.Open)
		}
	}
	http.DefaultClient.CloseIdleConnections()
	goleak.VerifyNone(t, ignore...)
}
