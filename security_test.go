package telephone_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"github.com/verastack/telephone"
	"github.com/verastack/telephone/telephonetest"
)

// TestWSNeverFollowsBackendRedirects checks that a backend answering the upgrade with a
// redirect fails the handshake: telephone must not open a WebSocket wherever Location points
// (another host or port, with the client's Cookie and Authorization).
func TestWSNeverFollowsBackendRedirects(t *testing.T) {
	t.Parallel()
	internal := newWSBackend(t, nil, nil) // the service an attacker wants to reach
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, internal.URL+"/admin", http.StatusFound)
	}))
	t.Cleanup(redirector.Close)
	srv := telephonetest.NewServer(telephonetest.WithRecorder(), telephonetest.WithWSCheck())
	t.Cleanup(srv.Close)
	p := &pushTunnel{tunnel: startTunnel(t, srv, telephone.WithBackendURL(redirector.URL))}
	p.push("ws_connect", map[string]any{"connection_id": "r-1", "path": "/open-redirect", "query_string": "",
		"headers": map[string]any{"cookie": "session=secret", "authorization": "Bearer secret"}})
	waitFrame(t, srv, `"ws_error"`, `"r-1"`, `"invalid_upgrade"`)
	p.push("ws_check", map[string]any{"check_id": "k-1", "path": "/open-redirect", "query_string": ""})
	waitFrame(t, srv, `"ws_check_result"`, `"k-1"`, `"supported":false`, `"invalid_upgrade"`)
	select {
	case seen := <-internal.opened:
		t.Fatalf("telephone followed the redirect to %s with headers %v", seen.path, seen.header)
	default:
	}
}

// pathBackend records the request URI of every request that reaches it.
func pathBackend(t *testing.T) (*httptest.Server, chan string) {
	t.Helper()
	seen := make(chan string, 10)
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.RequestURI
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(b.Close)
	return b, seen
}

// pushReq pushes a proxy_req for method GET and returns its proxy_res frame.
func pushReq(t *testing.T, tn *tunnel, id, path, query string) string {
	t.Helper()
	if err := tn.srv.Push(tn.tok.PathID, "proxy_req", map[string]any{"request_id": id, "method": "GET",
		"path": path, "query_string": query, "headers": map[string]any{}}); err != nil {
		t.Fatal(err)
	}
	return waitFrame(t, tn.srv, `"proxy_res"`, id)
}

// TestDotSegmentsNeverReachTheBackend checks that a path with "." or ".." segments cannot
// climb above BACKEND_URL's prefix, over HTTP and WebSocket.
func TestDotSegmentsNeverReachTheBackend(t *testing.T) {
	t.Parallel()
	b, seen := pathBackend(t)
	srv := telephonetest.NewServer(telephonetest.WithRecorder(), telephonetest.WithWSCheck())
	t.Cleanup(srv.Close)
	tn := startTunnel(t, srv, telephone.WithBackendURL(b.URL+"/app"))
	for i, path := range []string{"/../admin", "/a/../../admin", "/./x", "/x/..", "/x/."} {
		id := fmt.Sprintf("00000000-0000-4000-8000-00000000000%d", i)
		if res := pushReq(t, tn, id, path, ""); !strings.Contains(res, `"status":400`) || !strings.Contains(res, "dot segment") {
			t.Errorf("%s: reply %s", path, res)
		}
		p := &pushTunnel{tunnel: tn}
		p.push("ws_connect", map[string]any{"connection_id": "d-" + id, "path": path, "query_string": ""})
		waitFrame(t, srv, `"ws_error"`, `"d-`+id+`"`, `"invalid_path"`)
		p.push("ws_check", map[string]any{"check_id": "k-" + id, "path": path, "query_string": ""})
		waitFrame(t, srv, `"ws_check_result"`, `"k-`+id+`"`, `"invalid_path"`)
	}
	// Dots inside a segment are ordinary characters.
	if res := pushReq(t, tn, "00000000-0000-4000-8000-000000000009", "/a..b/.well-known/x.", ""); !strings.Contains(res, `"status":200`) {
		t.Errorf("reply %s", res)
	}
	if uri := <-seen; uri != "/app/a..b/.well-known/x." {
		t.Errorf("backend saw %q", uri)
	}
	select {
	case uri := <-seen:
		t.Errorf("backend saw %q", uri)
	default:
	}
}

// TestEightBitQueryBytesAreEscaped checks that raw non-ASCII bytes in query_string reach the
// backend percent-encoded, never raw on the request line, over HTTP and WebSocket.
func TestEightBitQueryBytesAreEscaped(t *testing.T) {
	t.Parallel()
	b, seen := pathBackend(t)
	tn := startTunnel(t, nil, telephone.WithBackendURL(b.URL))
	if res := pushReq(t, tn, "00000000-0000-4000-8000-000000000001", "/x", "q=café&a=%C3%A9"); !strings.Contains(res, `"status":200`) {
		t.Errorf("reply %s", res)
	}
	if uri := <-seen; uri != "/x?q=caf%C3%A9&a=%C3%A9" {
		t.Errorf("backend saw %q", uri)
	}

	p := newPushTunnel(t)
	p.push("ws_connect", map[string]any{"connection_id": "q-1", "path": "/x", "query_string": "q=café"})
	waitFrame(t, p.srv, `"ws_connected"`, `"q-1"`)
	if s := p.b.nextOpen(t); s.query != "q=caf%C3%A9" {
		t.Errorf("WebSocket backend saw query %q", s.query)
	}
}

// seenRequest is what a handler saw of a forwarded request's origin.
type seenRequest struct {
	remote, xff, xfh, xfp, realIP, forwarded, cdn string
}

func recordOrigin(seen chan<- seenRequest) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "" { // a WebSocket pre-check or connect: record, refuse
			w.WriteHeader(http.StatusTeapot)
		}
		seen <- seenRequest{remote: r.RemoteAddr, xff: r.Header.Get("X-Forwarded-For"),
			xfh: r.Header.Get("X-Forwarded-Host"), xfp: r.Header.Get("X-Forwarded-Proto"),
			realIP: r.Header.Get("X-Real-Ip"), forwarded: r.Header.Get("Forwarded"), cdn: r.Header.Get("Cdn-Client-Ip")}
	}
}

// spoof sends a request through Plugboard with every forwarding header an end client could
// use to pose as someone else.
func spoof(t *testing.T, tn *tunnel, xff string) {
	t.Helper()
	req, err := http.NewRequest("GET", tn.call("/who"), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "evil.example"
	req.Header.Set("X-Forwarded-For", xff)
	req.Header.Set("X-Real-Ip", "127.0.0.1")
	req.Header.Set("X-Forwarded-Proto", "https")
	req.Header.Set("X-Forwarded-Host", "evil.example")
	req.Header.Set("Forwarded", "for=127.0.0.1;proto=https")
	req.Header.Set("Cdn-Client-Ip", "198.51.100.4")
	res, err := tn.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
}

// TestEndClientCannotChooseItsAddress checks the forwarding-header policy: by default the
// request comes from Plugboard (RemoteAddr and X-Forwarded-For) whatever X-Forwarded-For or
// X-Real-Ip the end client sent, and X-Forwarded-Host/-Proto are telephone's, for in-process
// handlers and TCP backends alike; WithClientIPHeader trusts one header, counting hops from
// the right.
func TestEndClientCannotChooseItsAddress(t *testing.T) {
	t.Parallel()
	srv := telephonetest.NewServer()
	t.Cleanup(srv.Close)
	pb, _ := url.Parse(srv.SocketURL())
	want := seenRequest{remote: pb.Host, xff: pb.Hostname(), xfh: pb.Host, xfp: "http"}
	seen := make(chan seenRequest, 10)
	backend := httptest.NewServer(recordOrigin(seen))
	t.Cleanup(backend.Close)
	inProcess := startTunnel(t, srv, telephone.WithHandler(recordOrigin(seen)))
	tcp := startTunnel(t, srv, telephone.WithBackendURL(backend.URL))

	for _, xff := range []string{"127.0.0.1", "10.9.8.7, 127.0.0.1"} {
		spoof(t, inProcess, xff)
		want := want
		want.cdn = "198.51.100.4" // a header telephone knows nothing of passes through
		if got := <-seen; got != want {
			t.Errorf("in-process handler, X-Forwarded-For %q: saw %+v, want %+v", xff, got, want)
		}
		spoof(t, tcp, xff)
		got := <-seen
		got.remote = want.remote // the TCP backend's peer is telephone itself
		if got != want {
			t.Errorf("TCP backend, X-Forwarded-For %q: saw %+v, want %+v", xff, got, want)
		}
	}

	// WebSockets: the same headers on the upgrade (pre-check first, then the connect).
	h := http.Header{"X-Forwarded-For": {"127.0.0.1"}, "X-Real-Ip": {"127.0.0.1"}, "X-Forwarded-Proto": {"https"}}
	for _, tn := range []*tunnel{inProcess, tcp} {
		_, _, _ = websocket.Dial(wsCtx(t), "ws"+strings.TrimPrefix(tn.call("/ws"), "http"), &websocket.DialOptions{HTTPHeader: h})
		got := <-seen
		if tn == tcp {
			got.remote = want.remote
		}
		if got != want {
			t.Errorf("WebSocket upgrade: saw %+v, want %+v", got, want)
		}
	}
}

// TestClientIPHeaderTrustsConfiguredHops checks WithClientIPHeader: the address is the
// trustedHops-th entry from the right of the named header; anything unusable falls back to
// Plugboard's address.
func TestClientIPHeaderTrustsConfiguredHops(t *testing.T) {
	t.Parallel()
	srv := telephonetest.NewServer()
	t.Cleanup(srv.Close)
	pb, _ := url.Parse(srv.SocketURL())
	seen := make(chan seenRequest, 10)
	one := startTunnel(t, srv, telephone.WithHandler(recordOrigin(seen)), telephone.WithClientIPHeader("X-Forwarded-For", 1))
	two := startTunnel(t, srv, telephone.WithHandler(recordOrigin(seen)), telephone.WithClientIPHeader("x-forwarded-for", 2))
	cdn := startTunnel(t, srv, telephone.WithHandler(recordOrigin(seen)), telephone.WithClientIPHeader("CDN-Client-IP", 1))
	for _, tt := range []struct {
		tn         *tunnel
		xff        string
		remote, ip string
	}{
		{one, "10.9.8.7, 203.0.113.7", "203.0.113.7:0", "203.0.113.7"},
		{one, "2001:db8::1", "[2001:db8::1]:0", "2001:db8::1"},
		{two, "10.9.8.7, 203.0.113.7", "10.9.8.7:0", "10.9.8.7"},
		{two, "203.0.113.7", pb.Host, pb.Hostname()}, // fewer hops than configured
		{one, "not-an-ip", pb.Host, pb.Hostname()},
		{cdn, "10.9.8.7", "198.51.100.4:0", "198.51.100.4"},
	} {
		spoof(t, tt.tn, tt.xff)
		if got := <-seen; got.remote != tt.remote || got.xff != tt.ip || got.realIP != "" || got.xfp != "http" || got.xfh != pb.Host {
			t.Errorf("X-Forwarded-For %q: saw %+v, want remote %s and X-Forwarded-For %s", tt.xff, got, tt.remote, tt.ip)
		}
	}
	for _, hops := range []int{0, -1} {
		if _, err := telephone.New(srv.SocketURL(), telephone.WithHandler(http.NotFoundHandler()), telephone.WithClientIPHeader("X-Forwarded-For", hops)); err == nil {
			t.Errorf("hops %d accepted", hops)
		}
	}
	if _, err := telephone.New(srv.SocketURL(), telephone.WithHandler(http.NotFoundHandler()), telephone.WithClientIPHeader("bad header", 1)); err == nil {
		t.Error("an invalid header name was accepted")
	}
}
