package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestNilIsSafe(t *testing.T) {
	var m *Metrics
	m.Request("GET", 200, time.Second)
	m.InFlight(1)
	m.QueueWait(time.Millisecond)
	m.Rejected("rate")
	m.Backend(time.Millisecond)
	m.Reconnect()
	m.HeartbeatMissed()
	m.TokenRefresh(true)
	m.TokenExpiry(time.Now())
	m.BreakerState(2)
	m.Sessions(map[string]int{"joined": 1})
	m.WebSockets(1)
	m.WebSocketOverflow()
	m.Retry()
	m.CookiesDropped(1)
	if got, err := New(nil); got != nil || err != nil {
		t.Fatalf("New(nil) = %v, %v", got, err)
	}
}

func TestEveryMetricIsExported(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := New(reg)
	if err != nil {
		t.Fatal(err)
	}
	m.Request("POST", 502, 20*time.Millisecond)
	m.InFlight(2)
	m.InFlight(-1)
	m.QueueWait(time.Millisecond)
	m.Rejected("concurrency")
	m.Backend(time.Millisecond)
	m.Reconnect()
	m.HeartbeatMissed()
	m.TokenRefresh(true)
	m.TokenRefresh(false)
	m.TokenExpiry(time.Unix(1795643040, 0))
	m.BreakerState(2)
	m.Sessions(map[string]int{"joined": 1, "down": 1})
	m.Sessions(map[string]int{"joined": 0, "down": 2})
	m.WebSockets(3)
	m.WebSocketOverflow()
	m.Retry()
	m.CookiesDropped(2)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]float64{}
	for _, f := range families {
		if !strings.HasPrefix(f.GetName(), "telephone_") {
			t.Errorf("metric %s lacks the telephone_ prefix", f.GetName())
		}
		for _, s := range f.GetMetric() {
			key := f.GetName()
			for _, l := range s.GetLabel() {
				key += "," + l.GetName() + "=" + l.GetValue()
			}
			switch {
			case s.GetCounter() != nil:
				values[key] = s.GetCounter().GetValue()
			case s.GetGauge() != nil:
				values[key] = s.GetGauge().GetValue()
			case s.GetHistogram() != nil:
				values[key] = float64(s.GetHistogram().GetSampleCount())
			}
		}
	}
	want := map[string]float64{
		"telephone_requests_total,method=POST,status=502": 1,
		"telephone_request_duration_seconds":              1,
		"telephone_requests_in_flight":                    1,
		"telephone_queue_wait_seconds":                    1,
		"telephone_rejections_total,reason=concurrency":   1,
		"telephone_backend_duration_seconds":              1,
		"telephone_reconnects_total":                      1,
		"telephone_heartbeats_missed_total":               1,
		"telephone_token_refreshes_total,result=success":  1,
		"telephone_token_refreshes_total,result=failure":  1,
		"telephone_token_expiry_timestamp_seconds":        1795643040,
		"telephone_breaker_state":                         2,
		"telephone_plugboard_connected":                   0,
		"telephone_sessions,state=joined":                 0,
		"telephone_sessions,state=down":                   2,
		"telephone_websocket_connections":                 3,
		"telephone_websocket_overflows_total":             1,
		"telephone_backend_retries_total":                 1,
		"telephone_set_cookie_dropped_total":              2,
	}
	for k, v := range want {
		if values[k] != v {
			t.Errorf("%s = %v, want %v", k, values[k], v)
		}
	}
	if _, err := New(reg); err == nil || !strings.Contains(err.Error(), "one registry per Client") {
		t.Errorf("second registration: %v", err)
	}
}
