package telephone_test

import (
	"errors"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/verastack/telephone"
)

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
