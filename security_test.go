package telephone_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

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
