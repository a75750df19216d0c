package telephone_test

import (
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

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

func TestReloadAcceptEncodingPassthroughAppliesToNextRequest(t *testing.T) {
	t.Parallel()
	tn := startTunnel(t, nil, telephone.WithBackendURL(echoBackend(t).URL))
	if res, _ := tn.do("GET", "/", nil, "Accept-Encoding", "br"); res.Header.Get("X-Accept-Encoding-Seen") != "identity" {
		t.Fatalf("before Reload the backend saw Accept-Encoding %q", res.Header.Get("X-Accept-Encoding-Seen"))
	}
	changed, restart, err := tn.client.Reload(telephone.WithAcceptEncodingPassthrough())
	if err != nil || !slices.Equal(changed, []string{"WithAcceptEncodingPassthrough"}) || restart != nil {
		t.Fatalf("changed %v restart %v err %v", changed, restart, err)
	}
	if res, _ := tn.do("GET", "/", nil, "Accept-Encoding", "br"); res.Header.Get("X-Accept-Encoding-Seen") != "br" {
		t.Fatalf("after Reload the backend saw Accept-Encoding %q", res.Header.Get("X-Accept-Encoding-Seen"))
	}
}
