package transport

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
)

// connectProxy is an HTTP CONNECT proxy test server that records the targets
// it was asked to tunnel to.
type connectProxy struct {
	*httptest.Server
	mu      sync.Mutex // guards targets
	targets []string
}

func newConnectProxy(t *testing.T) *connectProxy {
	t.Helper()
	p := &connectProxy{}
	p.Server = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.Close)
	return p
}

func (p *connectProxy) seen() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.targets...)
}

// serve tunnels a CONNECT request and returns once both directions ended.
func (p *connectProxy) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodConnect {
		http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
		return
	}
	p.mu.Lock()
	p.targets = append(p.targets, r.Host)
	p.mu.Unlock()
	dst, err := net.Dial("tcp", r.Host)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer dst.Close()
	w.WriteHeader(http.StatusOK)
	src, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer src.Close()
	var wg sync.WaitGroup
	wg.Go(func() {
		_, _ = io.Copy(dst, brw)
		_ = dst.Close()
	})
	_, _ = io.Copy(src, dst)
	_ = src.Close()
	wg.Wait()
}

func TestDialThroughConnectProxy(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	backend := newWSServer(t, p.serverTLS(tls.NoClientCert), echo)
	proxy := newConnectProxy(t)
	proxyURL, err := url.Parse(proxy.URL)
	if err != nil {
		t.Fatal(err)
	}
	c := mustDial(t, backend.wsURL("/telephone/websocket"), Options{
		Token:  testToken,
		CAFile: p.caFile,
		Proxy:  http.ProxyURL(proxyURL),
	})
	roundTrip(t, c, true, "through the proxy")
	if err := c.Close(1000, ""); err != nil {
		t.Fatal(err)
	}
	want := backend.Listener.Addr().String()
	if got := proxy.seen(); len(got) != 1 || got[0] != want {
		t.Fatalf("proxy saw CONNECT to %q, want [%q]", got, want)
	}
	if n := len(backend.requests()); n != 1 {
		t.Fatalf("backend saw %d upgrade requests, want 1", n)
	}
}

func TestDialProxyRefusesIsNetworkError(t *testing.T) {
	t.Parallel()
	proxy := statusServer(t, http.StatusProxyAuthRequired, nil)
	proxyURL, err := url.Parse(proxy.URL)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Dial(t.Context(), "wss://plugboard.invalid/telephone/websocket", Options{Token: testToken, Proxy: http.ProxyURL(proxyURL)})
	assertNetworkError(t, err)
}
