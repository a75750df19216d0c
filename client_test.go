package telephone_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/verastack/telephone"
	"github.com/verastack/telephone/internal/testnet"
	"github.com/verastack/telephone/telephonetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// net/http keeps idle keep-alive connections of the test's own HTTP clients.
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
	)
}

// tunnel is a Client running against an in-memory Plugboard.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }

func (s *syncBuf) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

type tunnel struct {
	dbg    *syncBuf
	t      *testing.T
	srv    *telephonetest.Server
	client *telephone.Client
	tok    telephonetest.Token
	runErr chan error
	http   *http.Client
}

func (tn *tunnel) call(path string) string { return tn.srv.CallURL(tn.tok.PathID) + path }

// startTunnel starts a Client with opts against srv (a new one when nil) and waits for it to join.
func startTunnel(t *testing.T, srv *telephonetest.Server, opts ...telephone.Option) *tunnel {
	t.Helper()
	if srv == nil {
		srv = telephonetest.NewServer(telephonetest.WithRecorder())
		t.Cleanup(srv.Close)
	}
	dbg := &syncBuf{}
	opts = append(opts, telephone.WithLogger(slog.New(slog.NewTextHandler(dbg, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	tok, err := srv.Mint(telephonetest.NewPathID(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	opts = append([]telephone.Option{telephone.WithToken(tok.Token), telephone.WithReconnectBackoff(10*time.Millisecond, 200*time.Millisecond)}, opts...)
	c, err := telephone.New(srv.SocketURL(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	tn := &tunnel{dbg: dbg, t: t, srv: srv, client: c, tok: tok, runErr: make(chan error, 1),
		http: &http.Client{Timeout: waitBound, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	go func() { tn.runErr <- c.Run(context.Background()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitBound)
		defer cancel()
		if err := c.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		tn.http.CloseIdleConnections()
	})
	tn.waitJoined(1)
	return tn
}

func (tn *tunnel) waitJoined(n int) {
	tn.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	if err := tn.srv.WaitJoined(ctx, tn.tok.PathID, n); err != nil {
		tn.t.Fatalf("telephone did not join: %v (status %+v)", err, tn.client.Status())
	}
	// The server counts the join when it sends the reply; the client's Status says joined
	// once the reply has been read, and has the path (and the metrics) once the session has
	// recorded the join a moment later: wait for that.
	waitFor(tn.t, func() bool { return joinRecorded(tn.client.Status()) })
}

// joinRecorded reports whether some session has recorded its join (state, path and metrics).
func joinRecorded(st telephone.Status) bool {
	for _, s := range st.Sessions {
		if s.State == telephone.SessionJoined && !s.JoinedSince.IsZero() {
			return st.Joined && st.Path != ""
		}
	}
	return false
}

func (tn *tunnel) do(method, path string, body io.Reader, hdr ...string) (*http.Response, string) {
	tn.t.Helper()
	req, err := http.NewRequest(method, tn.call(path), body)
	if err != nil {
		tn.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := tn.http.Do(req)
	if err != nil {
		tn.t.Fatalf("%v\nclient log:\n%s", err, tn.dbg.String())
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		tn.t.Fatal(err)
	}
	return res, string(b)
}

// echoBackend answers with what it received.
func echoBackend(t *testing.T) *httptest.Server {
	t.Helper()
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Method", r.Method)
		w.Header().Set("X-Path", r.URL.Path)
		w.Header().Set("X-Raw-Path", r.URL.EscapedPath())
		w.Header().Set("X-Query", r.URL.RawQuery)
		w.Header().Set("X-Got-Custom", r.Header.Get("X-Custom"))
		w.Header().Set("X-Forwarded-Host-Seen", r.Header.Get("X-Forwarded-Host"))
		w.Header().Set("X-Accept-Encoding-Seen", r.Header.Get("Accept-Encoding"))
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write(body)
	}))
	t.Cleanup(b.Close)
	return b
}

func TestMethodsBodiesAndHeaders(t *testing.T) {
	t.Parallel()
	backend := echoBackend(t)
	tn := startTunnel(t, nil, telephone.WithBackendURL(backend.URL))
	for _, method := range []string{"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"} {
		body := "payload for " + method
		res, got := tn.do(method, "/api/items?x=1&y=%20z", strings.NewReader(body), "X-Custom", "abc")
		if res.StatusCode != 200 || got != body {
			t.Errorf("%s: %d %q", method, res.StatusCode, got)
		}
		if res.Header.Get("X-Method") != method || res.Header.Get("X-Path") != "/api/items" ||
			res.Header.Get("X-Query") != "x=1&y=%20z" || res.Header.Get("X-Got-Custom") != "abc" {
			t.Errorf("%s: backend saw %v", method, res.Header)
		}
		if res.Header.Get("X-Accept-Encoding-Seen") != "identity" || res.Header.Get("X-Forwarded-Host-Seen") == "" {
			t.Errorf("%s: forwarding headers %v", method, res.Header)
		}
	}
}

func TestPathsAreKeptExactly(t *testing.T) {
	t.Parallel()
	backend := echoBackend(t)
	tn := startTunnel(t, nil, telephone.WithBackendURL(backend.URL))
	for _, tt := range []struct{ call, path, raw string }{
		{"/a/b/", "/a/b/", "/a/b/"},                                         // trailing slash kept
		{"/files/my%20doc.txt", "/files/my doc.txt", "/files/my%20doc.txt"}, // decoded once by Plugboard, re-encoded once
		{"/a%2520b", "/a%20b", "/a%2520b"},                                  // no double decoding
		{"/", "/", "/"},
	} {
		res, _ := tn.do("GET", tt.call, nil)
		if res.Header.Get("X-Path") != tt.path || res.Header.Get("X-Raw-Path") != tt.raw {
			t.Errorf("%s: backend path %q raw %q, want %q %q", tt.call, res.Header.Get("X-Path"), res.Header.Get("X-Raw-Path"), tt.path, tt.raw)
		}
	}
}

func TestBodiesLargeAndMultibyte(t *testing.T) {
	t.Parallel()
	backend := echoBackend(t)
	// Small chunks for the character boundaries; the large body in 256 KiB chunks (5 000
	// chunks of 1 000 bytes take tens of seconds under -race on a loaded machine).
	small := startTunnel(t, nil, telephone.WithBackendURL(backend.URL), telephone.WithChunkSize(1000))
	large := startTunnel(t, nil, telephone.WithBackendURL(backend.URL), telephone.WithChunkSize(256<<10),
		telephone.WithMaxResponseSize(8<<20))
	big := strings.Repeat("0123456789abcdef", 5<<20/16) // 5 MiB
	for _, tt := range []struct {
		name string
		tn   *tunnel
		body string
	}{
		{"empty", small, ""},
		{"small", small, "hi"},
		{"multibyte", small, strings.Repeat("日本語😀é", 500)}, // 8 500 bytes: characters straddle every chunk boundary
		{"5MiB", large, big},
	} {
		res, got := tt.tn.do("POST", "/echo", strings.NewReader(tt.body))
		if res.StatusCode != 200 || got != tt.body {
			t.Errorf("%s: status %d, body of %d bytes (want %d)", tt.name, res.StatusCode, len(got), len(tt.body))
		}
	}
}

func TestStatusRedirectAndHeadersBack(t *testing.T) {
	t.Parallel()
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/redirect":
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		case "/teapot":
			w.Header().Add("Set-Cookie", "a=1")
			w.Header().Add("Set-Cookie", "b=2")
			w.Header().Add("Vary", "Accept")
			w.Header().Add("Vary", "Origin")
			w.WriteHeader(http.StatusTeapot)
			_, _ = io.WriteString(w, "short and stout")
		case "/binary":
			_, _ = w.Write([]byte{0xff, 0xd8, 0xff, 0xe0})
		case "/slow":
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
		}
	}))
	defer backend.Close()
	tn := startTunnel(t, nil, telephone.WithBackendURL(backend.URL))
	res, _ := tn.do("GET", "/redirect", nil)
	if res.StatusCode != http.StatusFound || res.Header.Get("Location") != "/elsewhere" {
		t.Errorf("redirect: %d %q", res.StatusCode, res.Header.Get("Location"))
	}
	res, body := tn.do("GET", "/teapot", nil)
	if res.StatusCode != http.StatusTeapot || body != "short and stout" || res.Header.Get("Set-Cookie") != "a=1" || res.Header.Get("Vary") != "Accept, Origin" {
		t.Errorf("teapot: %d %q %v", res.StatusCode, body, res.Header)
	}
	res, body = tn.do("GET", "/binary", nil)
	if res.StatusCode != http.StatusBadGateway || !strings.Contains(body, "not valid UTF-8") {
		t.Errorf("binary: %d %q", res.StatusCode, body)
	}
	// Only the slow request may meet the short deadline: the others take what a loaded machine needs.
	short := startTunnel(t, nil, telephone.WithBackendURL(backend.URL), telephone.WithRequestTimeout(300*time.Millisecond))
	res, body = short.do("GET", "/slow", nil)
	if res.StatusCode != http.StatusGatewayTimeout || strings.Contains(body, "127.0.0.1") {
		t.Errorf("slow: %d %q", res.StatusCode, body)
	}
}

func TestBackendDown(t *testing.T) {
	t.Parallel()
	addr, release, err := testnet.RefusedAddr() // nothing listens there
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	tn := startTunnel(t, nil, telephone.WithBackendURL("http://"+addr), telephone.WithRetries(0, 0))
	res, body := tn.do("GET", "/", nil)
	if res.StatusCode != http.StatusBadGateway || strings.Contains(body, addr) || strings.Contains(body, "dial") {
		t.Errorf("backend down: %d %q (must not leak internals)", res.StatusCode, body)
	}
}

func TestInvalidProxyReqGets400(t *testing.T) {
	t.Parallel()
	srv := telephonetest.NewServer(telephonetest.WithRecorder())
	defer srv.Close()
	tn := startTunnel(t, srv, telephone.WithHandler(http.NotFoundHandler()))
	const id = "11111111-2222-4333-8444-555555555555"
	if err := srv.Push(tn.tok.PathID, "proxy_req", map[string]any{"request_id": id, "method": "TRACE", "path": "/"}); err != nil {
		t.Fatal(err)
	}
	if f := waitFrame(t, srv, `"proxy_res"`, id); !strings.Contains(f, `"status":400`) || !strings.Contains(f, "unsupported method") {
		t.Fatalf("reply = %s", f)
	}
}

func TestInProcessHandler(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello/{name}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s via %s", r.PathValue("name"), r.Host)
	})
	mux.HandleFunc("GET /panic", func(http.ResponseWriter, *http.Request) { panic("boom") })
	tn := startTunnel(t, nil, telephone.WithHandler(mux))
	res, body := tn.do("GET", "/hello/gopher", nil)
	if res.StatusCode != 200 || !strings.HasPrefix(body, "hello gopher via 127.0.0.1:") {
		t.Errorf("handler: %d %q", res.StatusCode, body)
	}
	res, _ = tn.do("GET", "/panic", nil)
	if res.StatusCode != http.StatusBadGateway {
		t.Errorf("panicking handler: %d", res.StatusCode)
	}
}

func TestHandlerIgnoringDeadlineGets504(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release // ignores r.Context()
		_, _ = io.WriteString(w, "too late")
	})
	tn := startTunnel(t, nil, telephone.WithHandler(h), telephone.WithRequestTimeout(100*time.Millisecond))
	res, body := tn.do("GET", "/", nil)
	close(release)
	if res.StatusCode != http.StatusGatewayTimeout || body == "too late" {
		t.Errorf("got %d %q", res.StatusCode, body)
	}
}

func TestReconnectsAfterDropAndRestart(t *testing.T) {
	t.Parallel()
	backend := echoBackend(t)
	tn := startTunnel(t, nil, telephone.WithBackendURL(backend.URL))
	for _, fault := range []func(){tn.srv.DropAll, tn.srv.Restart} {
		fault()
		tn.waitJoined(1)
		waitFor(t, func() bool { res, _ := tn.do("GET", "/ok", nil); return res.StatusCode == 200 })
	}
	if st := tn.client.Status(); st.Reconnects < 2 || !st.Joined {
		t.Errorf("status after faults = %+v", st)
	}
}

func TestHeartbeatAcksStopReconnects(t *testing.T) {
	t.Parallel()
	tn := startTunnel(t, nil, telephone.WithHandler(http.NotFoundHandler()), telephone.WithHeartbeat(30*time.Millisecond, 2))
	tn.srv.StopHeartbeatAcks(true)
	waitFor(t, func() bool { return tn.client.Status().Reconnects > 0 })
	tn.srv.StopHeartbeatAcks(false)
	tn.waitJoined(1)
	if st := tn.client.Status(); !strings.Contains(st.LastError, "heartbeat") {
		t.Errorf("last error = %q", st.LastError)
	}
}

func TestRejoinsAfterChannelCrash(t *testing.T) {
	t.Parallel()
	tn := startTunnel(t, nil, telephone.WithHandler(http.NotFoundHandler()))
	tn.srv.CrashChannels(tn.tok.PathID)
	waitFor(t, func() bool {
		return tn.srv.Joined(tn.tok.PathID) == telephone.DefaultConnections && joinedCount(tn.client.Status()) == telephone.DefaultConnections
	})
	if st := tn.client.Status(); st.Reconnects != 0 {
		t.Errorf("a channel crash must re-join on the same socket, got %d reconnects", st.Reconnects)
	}
	res, _ := tn.do("GET", "/", nil)
	if res.StatusCode != http.StatusNotFound {
		t.Errorf("after re-join: %d", res.StatusCode)
	}
}

func TestRefusedTokenStopsRun(t *testing.T) {
	t.Parallel()
	srv := telephonetest.NewServer()
	defer srv.Close()
	tok, _ := srv.Mint(telephonetest.NewPathID(), time.Hour)
	srv.Revoke(tok.ID)
	c, err := telephone.New(srv.SocketURL(), telephone.WithToken(tok.Token), telephone.WithHandler(http.NotFoundHandler()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	if err := c.Run(ctx); !errors.Is(err, telephone.ErrTokenRefused) {
		t.Fatalf("Run = %v, want ErrTokenRefused", err)
	}
}

func TestShutdownUnderLoadCompletesInFlight(t *testing.T) {
	t.Parallel()
	started := make(chan struct{}, 100)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		time.Sleep(200 * time.Millisecond)
		_, _ = io.WriteString(w, "done")
	})
	tn := startTunnel(t, nil, telephone.WithHandler(h))
	const n = 20
	var wg sync.WaitGroup
	results := make(chan string, n)
	for range n {
		wg.Go(func() {
			res, body := tn.do("GET", "/work", nil)
			results <- fmt.Sprint(res.StatusCode, body)
		})
	}
	for range n {
		<-started
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	if err := tn.client.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(results)
	for r := range results {
		if r != "200done" {
			t.Errorf("in-flight request ended with %q", r)
		}
	}
	if err := <-tn.runErr; err != nil {
		t.Errorf("Run after Shutdown = %v", err)
	}
	// Plugboard forgets a channel once its process has ended, after it answered the leave.
	waitFor(t, func() bool { return tn.srv.Joined(tn.tok.PathID) == 0 })
	res, _ := tn.do("GET", "/after", nil)
	if res.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("after shutdown: %d, want 503 from Plugboard", res.StatusCode)
	}
}

func TestThousandConcurrentRequests(t *testing.T) {
	t.Parallel()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond)
		_, _ = io.WriteString(w, r.URL.Query().Get("i"))
	})
	tn := startTunnel(t, nil, telephone.WithHandler(h))
	tr := &http.Transport{MaxConnsPerHost: 1000, MaxIdleConnsPerHost: 1000}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 60 * time.Second}
	var wg sync.WaitGroup
	var mu sync.Mutex
	bad := 0
	for i := range 1000 {
		wg.Go(func() {
			res, err := client.Get(tn.call(fmt.Sprintf("/n?i=%d", i)))
			ok := err == nil && res.StatusCode == 200
			if err == nil {
				b, _ := io.ReadAll(res.Body)
				res.Body.Close()
				ok = ok && string(b) == fmt.Sprint(i)
			}
			if !ok {
				mu.Lock()
				bad++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if bad != 0 {
		t.Fatalf("%d of 1000 requests failed", bad)
	}
}

func TestStatusReportsSession(t *testing.T) {
	t.Parallel()
	// Frequent beats for a quick first ack, and 100 misses allowed so that a loaded machine's
	// late acks never reconnect the session under the checks below.
	tn := startTunnel(t, nil, telephone.WithHandler(http.NotFoundHandler()), telephone.WithHeartbeat(20*time.Millisecond, 100))
	waitFor(t, func() bool { return !tn.client.Status().LastAck.IsZero() })
	st := tn.client.Status()
	if !st.Connected || !st.Joined || st.PathID != tn.tok.PathID || st.Path != "/"+tn.tok.PathID || st.TokenID != tokenID(t, tn.tok.Token) ||
		!st.TokenExpiry.Equal(tn.tok.ExpiresAt.Truncate(time.Second)) || st.InFlight != 0 {
		t.Errorf("status = %+v", st)
	}
}

func TestNewValidatesOptions(t *testing.T) {
	t.Parallel()
	h := telephone.WithHandler(http.NotFoundHandler())
	for _, tt := range []struct {
		url    string
		opts   []telephone.Option
		option string
	}{
		{"http://x/telephone/websocket", []telephone.Option{h}, "plugboardURL"},
		{"ws:///nohost", []telephone.Option{h}, "plugboardURL"},
		{"ws://x", nil, "WithBackendURL"},
		{"ws://x", []telephone.Option{h, telephone.WithBackendURL("http://b")}, "WithHandler"},
		{"ws://x", []telephone.Option{telephone.WithBackendURL("ftp://b")}, "WithBackendURL"},
		{"ws://x", []telephone.Option{h, telephone.WithToken("")}, "WithToken"},
		{"ws://x", []telephone.Option{h, telephone.WithHeartbeat(0, 2)}, "WithHeartbeat"},
		{"ws://x", []telephone.Option{h, telephone.WithChunkSize(2)}, "WithChunkSize"},
		{"ws://x", []telephone.Option{h, telephone.WithMaxResponseSize(10), telephone.WithChunkSize(100)}, "WithChunkSize"},
		{"ws://x", []telephone.Option{h, telephone.WithReconnectBackoff(time.Second, time.Millisecond)}, "WithReconnectBackoff"},
		{"ws://x", []telephone.Option{h, telephone.WithPlugboardSecret("short")}, "WithPlugboardSecret"},
		{"ws://x", []telephone.Option{h, telephone.WithRateLimit(0, 1)}, "WithRateLimit"},
		{"ws://x", []telephone.Option{h, telephone.WithMaxConcurrentRequests(0, 0)}, "WithMaxConcurrentRequests"},
		{"ws://x", []telephone.Option{h, telephone.WithRetries(11, time.Millisecond)}, "WithRetries"},
		{"ws://x", []telephone.Option{h, telephone.WithWebSocketLimits(1, 10, time.Second, 5)}, "WithWebSocketLimits"},
		{"ws://x", []telephone.Option{h, telephone.WithBackend(http.DefaultTransport)}, "WithBackend"},
	} {
		_, err := telephone.New(tt.url, tt.opts...)
		var oe *telephone.OptionError
		if !errors.As(err, &oe) || oe.Option != tt.option {
			t.Errorf("%s %d opts: err = %v, want an OptionError for %s", tt.url, len(tt.opts), err, tt.option)
		}
	}
}

func TestRunWithoutTokenFails(t *testing.T) {
	t.Parallel()
	c, err := telephone.New("ws://127.0.0.1:1/telephone/websocket", telephone.WithHandler(http.NotFoundHandler()))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Run(context.Background()); !errors.Is(err, telephone.ErrNoToken) {
		t.Fatalf("Run = %v", err)
	}
	if err := c.Run(context.Background()); !errors.Is(err, telephone.ErrAlreadyRunning) {
		t.Fatalf("second Run = %v", err)
	}
}

// TestStartsWhilePlugboardIsDown: the first connect at start-up is retried like any other
// (the original exited). A gate in front of telephonetest drops connections until it opens.
func TestStartsWhilePlugboardIsDown(t *testing.T) {
	t.Parallel()
	srv := telephonetest.NewServer()
	defer srv.Close()
	tok, _ := srv.Mint(telephonetest.NewPathID(), time.Hour)
	gate := newGate(t, strings.TrimPrefix(srv.URL(), "http://"))
	c, _ := telephone.New("ws://"+gate.addr()+"/telephone/websocket", telephone.WithToken(tok.Token),
		telephone.WithHandler(http.NotFoundHandler()), telephone.WithReconnectBackoff(10*time.Millisecond, 50*time.Millisecond))
	runErr := make(chan error, 1)
	go func() { runErr <- c.Run(context.Background()) }()
	waitFor(t, func() bool { return c.Status().Reconnects >= 2 })
	if c.Status().Joined {
		t.Fatal("joined through a closed gate")
	}
	gate.open.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	if err := srv.WaitJoined(ctx, tok.PathID, 1); err != nil {
		t.Fatalf("did not connect once Plugboard was up: %v (status %+v)", err, c.Status())
	}
	if err := c.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-runErr; err != nil {
		t.Fatalf("Run = %v", err)
	}
}

// gate is a TCP listener that drops every connection until open, then relays to target.
type gate struct {
	l    net.Listener
	open atomic.Bool
	wg   sync.WaitGroup
}

func newGate(t *testing.T, target string) *gate {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{l: l}
	g.wg.Go(func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			if !g.open.Load() {
				conn.Close()
				continue
			}
			g.wg.Go(func() { relay(conn, target) })
		}
	})
	t.Cleanup(func() { l.Close(); g.wg.Wait() })
	return g
}

func (g *gate) addr() string { return g.l.Addr().String() }

// relay copies both ways between conn and a new connection to target until either side ends.
func relay(conn net.Conn, target string) {
	defer conn.Close()
	up, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	defer up.Close()
	var wg sync.WaitGroup
	wg.Go(func() { _, _ = io.Copy(up, conn); _ = up.Close() })
	_, _ = io.Copy(conn, up)
	_ = conn.Close()
	wg.Wait()
}

func tokenID(t *testing.T, jwt string) string {
	t.Helper()
	c, err := telephone.ParseToken(jwt)
	if err != nil {
		t.Fatal(err)
	}
	return c.ID
}

// waitBound bounds every wait of these tests so that a bug fails instead of hanging; it is
// never a timing assertion, so it is generous enough for a loaded 2-core machine under -race.
const waitBound = 60 * time.Second

// waitFor polls cond until it holds, failing the test after waitBound.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	waitForWithin(t, waitBound, cond)
}

// waitForWithin polls cond until it holds, failing the test after d.
func waitForWithin(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestParseTokenRejectsGarbage(t *testing.T) {
	t.Parallel()
	if _, err := telephone.ParseToken("not.a.jwt"); !errors.Is(err, telephone.ErrInvalidToken) {
		t.Fatalf("ParseToken = %v", err)
	}
}

func TestShutdownBeforeRun(t *testing.T) {
	t.Parallel()
	c, _ := telephone.New("ws://x", telephone.WithHandler(http.NotFoundHandler()))
	if err := c.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	// A stop asked for before Run started (a SIGTERM at start-up) is a clean stop.
	if err := c.Run(context.Background()); err != nil {
		t.Fatalf("Run after Shutdown = %v, want nil", err)
	}
	if err := c.Run(context.Background()); !errors.Is(err, telephone.ErrClientClosed) {
		t.Fatalf("Run again = %v, want ErrClientClosed", err)
	}
	if !c.Status().Draining {
		t.Fatal("status not draining")
	}
}

// TestRunReturnsNilWhenItsContextEnds: a deadline or a cancellation with a cause of the
// caller's is not an error of Run's (it stops as asked).
func TestRunReturnsNilWhenItsContextEnds(t *testing.T) {
	t.Parallel()
	srv := telephonetest.NewServer()
	defer srv.Close()
	for name, ctx := range map[string]func() (context.Context, func()){
		"deadline": func() (context.Context, func()) {
			d := deadlineOnCue{Context: context.Background(), done: make(chan struct{})}
			return d, func() { close(d.done) }
		},
		"cancelled with a cause": func() (context.Context, func()) {
			ctx, cancel := context.WithCancelCause(context.Background())
			return ctx, func() { cancel(errors.New("the caller's reason")) }
		},
	} {
		tok, err := srv.Mint(telephonetest.NewPathID(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		c, err := telephone.New(srv.SocketURL(), telephone.WithToken(tok.Token), telephone.WithHandler(http.NotFoundHandler()))
		if err != nil {
			t.Fatal(err)
		}
		runCtx, end := ctx()
		done := make(chan error, 1)
		go func() { done <- c.Run(runCtx) }()
		// Joined, then the caller's context ends: the path the test is about.
		wait, cancel := context.WithTimeout(context.Background(), waitBound)
		if err := srv.WaitJoined(wait, tok.PathID, 1); err != nil {
			t.Fatalf("%s: join: %v", name, err)
		}
		cancel()
		waitFor(t, func() bool { return joinRecorded(c.Status()) })
		end()
		if err := <-done; err != nil {
			t.Errorf("%s: Run = %v, want nil", name, err)
		}
		if st := c.Status(); st.LastError != "" {
			t.Errorf("%s: Status.LastError = %q", name, st.LastError)
		}
	}
}

// deadlineOnCue is a context whose deadline passes when the test closes done.
type deadlineOnCue struct {
	context.Context
	done chan struct{}
}

func (d deadlineOnCue) Done() <-chan struct{} { return d.done }

func (d deadlineOnCue) Err() error {
	select {
	case <-d.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}
