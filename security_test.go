package telephone_test

import (
	"net/http"
	"net/http/httptest"
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
