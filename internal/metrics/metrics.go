// Package metrics holds the Prometheus metrics of a telephone Client. Every method is safe on
// a nil *Metrics (metrics off) and for concurrent use. Metric names are prefixed telephone_.
package metrics

import (
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics is the set of collectors of one Client.
type Metrics struct {
	requests       *prometheus.CounterVec
	latency        prometheus.Histogram
	inFlight       prometheus.Gauge
	queueWait      prometheus.Histogram
	rejections     *prometheus.CounterVec
	backend        prometheus.Histogram
	reconnects     prometheus.Counter
	heartbeatsMiss prometheus.Counter
	refreshes      *prometheus.CounterVec
	tokenExpiry    prometheus.Gauge
	breakerState   prometheus.Gauge
	connected      prometheus.Gauge
	sessions       *prometheus.GaugeVec
	websockets     prometheus.Gauge
	wsOverflows    prometheus.Counter
	retries        prometheus.Counter
	cookiesDropped prometheus.Counter

	requestsBy sync.Map // requestKey → prometheus.Counter: children resolved once, not per request
}

// requestKey is the label pair of telephone_requests_total.
type requestKey struct {
	method string
	status int
}

// New creates the metrics and registers them with reg; a nil reg returns nil (metrics off).
func New(reg prometheus.Registerer) (*Metrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "telephone_requests_total",
			Help: "Requests answered, by method and status code."}, []string{"method", "status"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "telephone_request_duration_seconds",
			Help: "Time from proxy_req to proxy_res.", Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12)}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{Name: "telephone_requests_in_flight",
			Help: "Requests being forwarded now."}),
		queueWait: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "telephone_queue_wait_seconds",
			Help: "Time requests waited for a concurrency slot.", Buckets: prometheus.ExponentialBuckets(0.0005, 3, 10)}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "telephone_rejections_total",
			Help: "Requests refused by the telephone itself, by reason (rate, concurrency, size, breaker, invalid, encoding, shutdown)."}, []string{"reason"}),
		backend: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "telephone_backend_duration_seconds",
			Help: "Backend round-trip time until response headers.", Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 14)}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{Name: "telephone_reconnects_total",
			Help: "Reconnect attempts to Plugboard."}),
		heartbeatsMiss: prometheus.NewCounter(prometheus.CounterOpts{Name: "telephone_heartbeats_missed_total",
			Help: "Sessions declared dead because heartbeat_ack stopped."}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "telephone_token_refreshes_total",
			Help: "Token refresh attempts by result (success, failure)."}, []string{"result"}),
		tokenExpiry: prometheus.NewGauge(prometheus.GaugeOpts{Name: "telephone_token_expiry_timestamp_seconds",
			Help: "Expiry of the token in use, as a Unix time."}),
		breakerState: prometheus.NewGauge(prometheus.GaugeOpts{Name: "telephone_breaker_state",
			Help: "Backend circuit breaker state: 0 closed, 1 half-open, 2 open."}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{Name: "telephone_plugboard_connected",
			Help: "1 while the WebSocket to Plugboard is up."}),
		sessions: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "telephone_sessions",
			Help: "Sessions with Plugboard by state (connecting, joined, rejoining, leaving, down)."}, []string{"state"}),
		websockets: prometheus.NewGauge(prometheus.GaugeOpts{Name: "telephone_websocket_connections",
			Help: "Proxied WebSocket connections open now."}),
		wsOverflows: prometheus.NewCounter(prometheus.CounterOpts{Name: "telephone_websocket_overflows_total",
			Help: "Proxied WebSocket connections closed because a send queue overflowed."}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{Name: "telephone_backend_retries_total",
			Help: "Backend attempts repeated after a connection error."}),
		cookiesDropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "telephone_set_cookie_dropped_total",
			Help: "Set-Cookie headers that could not be carried (only one per response crosses Plugboard)."}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.latency, m.inFlight, m.queueWait, m.rejections,
		m.backend, m.reconnects, m.heartbeatsMiss, m.refreshes, m.tokenExpiry, m.breakerState, m.connected,
		m.sessions, m.websockets, m.wsOverflows, m.retries, m.cookiesDropped} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, errors.New("metrics already registered: use one registry per Client")
			}
			return nil, err
		}
	}
	return m, nil
}

// Request records an answered request.
func (m *Metrics) Request(method string, status int, d time.Duration) {
	if m == nil {
		return
	}
	k := requestKey{method, status}
	c, ok := m.requestsBy.Load(k)
	if !ok {
		c, _ = m.requestsBy.LoadOrStore(k, m.requests.WithLabelValues(method, strconv.Itoa(status)))
	}
	c.(prometheus.Counter).Inc()
	m.latency.Observe(d.Seconds())
}

// InFlight adds delta to the in-flight gauge.
func (m *Metrics) InFlight(delta int) {
	if m != nil {
		m.inFlight.Add(float64(delta))
	}
}

// QueueWait records a wait for a concurrency slot.
func (m *Metrics) QueueWait(d time.Duration) {
	if m != nil {
		m.queueWait.Observe(d.Seconds())
	}
}

// Rejected counts a request refused for reason.
func (m *Metrics) Rejected(reason string) {
	if m != nil {
		m.rejections.WithLabelValues(reason).Inc()
	}
}

// Backend records a backend round trip.
func (m *Metrics) Backend(d time.Duration) {
	if m != nil {
		m.backend.Observe(d.Seconds())
	}
}

// Reconnect counts a reconnect attempt.
func (m *Metrics) Reconnect() {
	if m != nil {
		m.reconnects.Inc()
	}
}

// HeartbeatMissed counts a session declared dead for lack of heartbeat_ack.
func (m *Metrics) HeartbeatMissed() {
	if m != nil {
		m.heartbeatsMiss.Inc()
	}
}

// TokenRefresh counts a refresh attempt.
func (m *Metrics) TokenRefresh(ok bool) {
	if m == nil {
		return
	}
	result := "failure"
	if ok {
		result = "success"
	}
	m.refreshes.WithLabelValues(result).Inc()
}

// TokenExpiry sets the expiry of the token in use.
func (m *Metrics) TokenExpiry(t time.Time) {
	if m != nil {
		m.tokenExpiry.Set(float64(t.Unix()))
	}
}

// BreakerState sets the breaker state (0 closed, 1 half-open, 2 open).
func (m *Metrics) BreakerState(s int) {
	if m != nil {
		m.breakerState.Set(float64(s))
	}
}

// Sessions sets the number of sessions in each state, and telephone_plugboard_connected to 1
// while at least one session is joined, re-joining or leaving (its WebSocket is up).
func (m *Metrics) Sessions(byState map[string]int) {
	if m == nil {
		return
	}
	up := 0
	for state, n := range byState {
		m.sessions.WithLabelValues(state).Set(float64(n))
		if state == "joined" || state == "rejoining" || state == "leaving" {
			up += n
		}
	}
	v := 0.0
	if up > 0 {
		v = 1
	}
	m.connected.Set(v)
}

// WebSockets adds delta to the proxied WebSocket gauge.
func (m *Metrics) WebSockets(delta int) {
	if m != nil {
		m.websockets.Add(float64(delta))
	}
}

// WebSocketOverflow counts a proxied connection closed because its queue overflowed.
func (m *Metrics) WebSocketOverflow() {
	if m != nil {
		m.wsOverflows.Inc()
	}
}

// Retry counts a repeated backend attempt.
func (m *Metrics) Retry() {
	if m != nil {
		m.retries.Inc()
	}
}

// CookiesDropped counts Set-Cookie headers that could not be carried.
func (m *Metrics) CookiesDropped(n int) {
	if m != nil {
		m.cookiesDropped.Add(float64(n))
	}
}
