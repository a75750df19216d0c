package telephone_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/verastack/telephone"
)

func TestReloadAppliesLiveSettings(t *testing.T) {
	t.Parallel()
	first := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "first") }))
	defer first.Close()
	second := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, strings.Repeat("x", 64))
	}))
	defer second.Close()
	tn := startTunnel(t, nil, telephone.WithBackendURL(first.URL))
	if _, body := tn.do("GET", "/", nil); body != "first" {
		t.Fatalf("before reload: %q", body)
	}
	changed, restart, err := tn.client.Reload(telephone.WithBackendURL(second.URL), telephone.WithMaxResponseSize(32),
		telephone.WithChunkSize(16), telephone.WithRateLimit(5, 1), telephone.WithMaxRequestBody(4),
		telephone.WithRequestTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(changed)
	want := []string{"WithBackendURL", "WithMaxRequestBody", "WithMaxResponseSize", "WithRateLimit", "WithRequestTimeout"}
	if !slices.Equal(changed, want) || !slices.Equal(restart, []string{"WithChunkSize"}) {
		t.Fatalf("changed %v, needRestart %v", changed, restart)
	}
	res, body := tn.do("GET", "/", nil) // second backend, 64 bytes > new 32-byte limit
	if res.StatusCode != http.StatusBadGateway || !strings.Contains(body, "larger than") {
		t.Fatalf("after reload: %d %q", res.StatusCode, body)
	}
	if res, _ := tn.do("POST", "/", strings.NewReader("12345")); res.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("request body over the reloaded limit: %d", res.StatusCode)
	}
	if st := tn.client.Status(); st.Limits.RateLimit != 5 || st.Limits.RateBurst != 1 || !st.Joined || st.Reconnects != 0 {
		t.Fatalf("status after reload %+v", st)
	}
	// Invalid options change nothing.
	if _, _, err := tn.client.Reload(telephone.WithRateLimit(-1, 1)); !errors.As(err, new(*telephone.OptionError)) {
		t.Fatalf("invalid reload: %v", err)
	}
	if st := tn.client.Status(); st.Limits.RateLimit != 5 {
		t.Fatalf("invalid reload changed the rate: %+v", st.Limits)
	}
}

func TestReloadBackendURLNeedsRestartWithHandler(t *testing.T) {
	t.Parallel()
	c, err := telephone.New("ws://x/telephone/websocket", telephone.WithHandler(http.NotFoundHandler()))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Reload(telephone.WithBackendURL("http://127.0.0.1:1")); err == nil {
		t.Fatal("Reload accepted WithBackendURL beside WithHandler")
	}
	changed, restart, err := c.Reload(telephone.WithRateLimit(math.Inf(1), 0), telephone.WithHeartbeat(time.Second, 3))
	if err != nil || !slices.Equal(changed, []string{"WithRateLimit"}) || !slices.Equal(restart, []string{"WithHeartbeat"}) {
		t.Fatalf("changed %v restart %v err %v", changed, restart, err)
	}
}

func TestMetricsCountRequestsAndRejections(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Set-Cookie", "a=1")
		w.Header().Add("Set-Cookie", "b=2")
		_, _ = io.WriteString(w, "ok")
	})
	tn := startTunnel(t, nil, telephone.WithHandler(h), telephone.WithMetrics(reg), telephone.WithMaxRequestBody(3))
	tn.do("GET", "/", nil)
	tn.do("POST", "/", strings.NewReader("too long"))
	if got := gather(t, reg, "telephone_requests_total", map[string]string{"method": "GET", "status": "200"}); got != 1 {
		t.Errorf("GET 200 = %v", got)
	}
	if got := gather(t, reg, "telephone_rejections_total", map[string]string{"reason": "size"}); got != 1 {
		t.Errorf("size rejections = %v", got)
	}
	if got := gather(t, reg, "telephone_set_cookie_dropped_total", nil); got != 1 {
		t.Errorf("dropped cookies = %v", got)
	}
	if got := gather(t, reg, "telephone_plugboard_connected", nil); got != 1 {
		t.Errorf("connected gauge = %v", got)
	}
	if got := gather(t, reg, "telephone_token_expiry_timestamp_seconds", nil); got != float64(tn.tok.ExpiresAt.Unix()) {
		t.Errorf("token expiry = %v", got)
	}
	if _, err := telephone.New("ws://x", telephone.WithHandler(h), telephone.WithMetrics(reg)); !errors.As(err, new(*telephone.OptionError)) {
		t.Errorf("second Client on one registry: %v", err)
	}
}

// gather returns the value of the metric family name's series with labels.
func gather(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue series
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			}
		}
	}
	return math.NaN()
}

func TestOptionsAccepted(t *testing.T) {
	t.Parallel()
	_, err := telephone.New("wss://pb.example/telephone/websocket",
		telephone.WithBackendURL("https://backend.internal:8443/base"),
		telephone.WithBackend(http.DefaultTransport),
		telephone.WithTLSConfig(nil2tls()), telephone.WithProxy(http.ProxyFromEnvironment),
		telephone.WithClockSkew(time.Minute), telephone.WithPhoenixHeartbeat(time.Second),
		telephone.WithConnectTimeout(time.Second), telephone.WithUTF8Policy(telephone.UTF8Replace),
		telephone.WithAcceptEncodingPassthrough(), telephone.WithWebSocketHandshakeTimeout(time.Second),
		telephone.WithWebSocketLimits(2, 10, time.Minute, 100), telephone.WithCircuitBreaker(0, 0),
		telephone.WithRetries(0, 0), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []telephone.Option{
		telephone.WithTLSConfig(nil), telephone.WithProxy(nil), telephone.WithClockSkew(-time.Second),
		telephone.WithUTF8Policy(7), telephone.WithWebSocketHandshakeTimeout(0), telephone.WithMetrics(nil),
		telephone.WithTokenStore(nil), telephone.WithHandler(nil), telephone.WithLogger(nil), telephone.WithBackend(nil),
		telephone.WithMaxRequestBody(0), telephone.WithMaxResponseSize(-1), telephone.WithRequestTimeout(0),
		telephone.WithWebSocketLimits(0, 1, time.Second, 1), telephone.WithWebSocketLimits(1, 0, time.Second, 1),
		telephone.WithCircuitBreaker(1, 0), telephone.WithBackendURL("http://x/?q=1"), telephone.WithBackendURL("http://"),
		telephone.WithBackendURL("::"),
	} {
		if _, err := telephone.New("ws://x", telephone.WithBackendURL("http://b"), bad); !errors.As(err, new(*telephone.OptionError)) {
			t.Errorf("accepted an invalid option: %v", err)
		}
	}
	var oe *telephone.OptionError
	_, err = telephone.New("ws://x", telephone.WithBackendURL("http://b"), telephone.WithRequestTimeout(0))
	if !errors.As(err, &oe) || !strings.Contains(oe.Error(), "WithRequestTimeout") {
		t.Errorf("error does not name the option: %v", err)
	}
}

func TestShutdownBeforeRun(t *testing.T) {
	t.Parallel()
	c, _ := telephone.New("ws://x", telephone.WithHandler(http.NotFoundHandler()))
	if err := c.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := c.Run(context.Background()); !errors.Is(err, telephone.ErrClientClosed) {
		t.Fatalf("Run after Shutdown = %v", err)
	}
	if !c.Status().Draining {
		t.Fatal("status not draining")
	}
}

func nil2tls() *tls.Config { return &tls.Config{MinVersion: tls.VersionTLS12} }
