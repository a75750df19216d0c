package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/verastack/telephone"
)

// opsShutdownGrace bounds how long in-flight operations requests may finish at exit.
const opsShutdownGrace = 5 * time.Second

// newRegistry returns a Prometheus registry with the Go and process collectors; the Client
// registers its own metrics in it through telephone.WithMetrics.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// ops serves the operations endpoints of one Client: health, readiness, liveness, version
// and metrics. Its methods are safe for concurrent use.
type ops struct {
	status  func() telephone.Status
	metrics http.Handler
	info    buildInfo
	started time.Time
	now     func() time.Time
}

func newOps(status func() telephone.Status, reg prometheus.Gatherer, info buildInfo, started time.Time) *ops {
	return &ops{
		status:  status,
		metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
		info:    info,
		started: started,
		now:     time.Now,
	}
}

// handler routes the endpoints. Only GET and HEAD are allowed (405 otherwise).
func (o *ops) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/health", o.health)
	mux.HandleFunc("/healthz", o.health)
	mux.HandleFunc("/ready", o.ready)
	mux.HandleFunc("/readyz", o.ready)
	mux.HandleFunc("/live", o.live)
	mux.HandleFunc("/livez", o.live)
	mux.HandleFunc("/version", o.version)
	mux.Handle("/metrics", o.metrics)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// healthBody is the JSON of /health: the original's fields, truthful, plus a few more.
type healthBody struct {
	Status        string `json:"status"`    // healthy, degraded or unhealthy
	Connected     bool   `json:"connected"` // the telephone channel is joined
	Uptime        string `json:"uptime"`
	LastHeartbeat string `json:"last_heartbeat,omitempty"` // since the last heartbeat_ack
	TokenExpiry   string `json:"token_expiry,omitempty"`   // time left, or "expired"
	Version       string `json:"version"`

	SocketConnected bool `json:"socket_connected"` // the WebSocket is up (joined or not)
	Draining        bool `json:"draining"`
	TokenRevoked    bool `json:"token_revoked,omitempty"`
	InFlight        int  `json:"in_flight"`
	Reconnects      int  `json:"reconnects"`

	Sessions []sessionBody `json:"sessions"` // one per CONNECTIONS slot
}

// sessionBody is one session (socket) in /health.
type sessionBody struct {
	ID          int    `json:"id"`
	State       string `json:"state"` // connecting, joined, rejoining, leaving or down
	JoinedFor   string `json:"joined_for,omitempty"`
	Reconnects  int    `json:"reconnects"`
	LastError   string `json:"last_error,omitempty"`
	LastErrorAt string `json:"last_error_at,omitempty"` // RFC 3339
	InFlight    int    `json:"in_flight"`
}

func sessionsOf(st telephone.Status, now time.Time) (out []sessionBody, down int) {
	out = make([]sessionBody, 0, len(st.Sessions))
	for _, s := range st.Sessions {
		b := sessionBody{ID: s.ID, State: s.State, Reconnects: s.Reconnects, LastError: s.LastError, InFlight: s.InFlight}
		if !s.JoinedSince.IsZero() {
			b.JoinedFor = now.Sub(s.JoinedSince).Round(time.Second).String()
		}
		if !s.LastErrorAt.IsZero() {
			b.LastErrorAt = s.LastErrorAt.UTC().Format(time.RFC3339)
		}
		if s.State != telephone.SessionJoined {
			down++
		}
		out = append(out, b)
	}
	return out, down
}

// healthOf evaluates a status: unhealthy when no channel is joined; degraded when one is but
// another session is not, the token is expired or revoked, or a shutdown is draining; healthy
// otherwise.
func (o *ops) healthOf(st telephone.Status) healthBody {
	now := o.now()
	b := healthBody{
		Connected:       st.Joined,
		Uptime:          now.Sub(o.started).Round(time.Second).String(),
		Version:         o.info.Version,
		SocketConnected: st.Connected,
		Draining:        st.Draining,
		TokenRevoked:    st.TokenRevoked,
		InFlight:        st.InFlight,
		Reconnects:      st.Reconnects,
	}
	sessions, down := sessionsOf(st, now)
	b.Sessions = sessions
	if !st.LastAck.IsZero() {
		b.LastHeartbeat = now.Sub(st.LastAck).Round(time.Second).String() + " ago"
	}
	expired := !st.TokenExpiry.After(now)
	if !st.TokenExpiry.IsZero() {
		b.TokenExpiry = "expired"
		if !expired {
			b.TokenExpiry = st.TokenExpiry.Sub(now).Round(time.Second).String()
		}
	}
	switch {
	case !st.Joined:
		b.Status = "unhealthy"
	case expired || st.TokenRevoked || st.Draining || down > 0:
		b.Status = "degraded"
	default:
		b.Status = "healthy"
	}
	return b
}

func (o *ops) health(w http.ResponseWriter, _ *http.Request) {
	b := o.healthOf(o.status())
	code := http.StatusOK
	if b.Status != "healthy" {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, b)
}

// notReady returns why the Client cannot take requests, or "" when it can.
func (o *ops) notReady(st telephone.Status) string {
	switch {
	case st.Draining:
		return "shutting down"
	case !st.Joined:
		return "not connected to Plugboard"
	case !st.TokenExpiry.After(o.now()):
		return "token expired or invalid"
	}
	return ""
}

func (o *ops) ready(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if why := o.notReady(o.status()); why != "" {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(why + "\n"))
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

func (o *ops) live(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte("alive\n"))
}

func (o *ops) version(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, o.info)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// opsServer is the operations HTTP server: it owns its listener and its serving goroutine.
type opsServer struct {
	srv  *http.Server
	addr net.Addr
	wg   sync.WaitGroup
}

// startOps listens on addr and serves h with the original's timeouts (read and write 5 s,
// headers 2 s, idle 30 s). The caller must call stop.
func startOps(addr string, h http.Handler, log *slog.Logger) (*opsServer, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &opsServer{
		srv: &http.Server{
			Handler:           h,
			ReadTimeout:       5 * time.Second,
			ReadHeaderTimeout: 2 * time.Second,
			WriteTimeout:      5 * time.Second,
			IdleTimeout:       30 * time.Second,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		},
		addr: l.Addr(),
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("operations server stopped", slog.Any("error", err))
		}
	}()
	return s, nil
}

// stop shuts the server down, letting requests finish for up to opsShutdownGrace.
func (s *opsServer) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), opsShutdownGrace)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		_ = s.srv.Close()
	}
	s.wg.Wait()
}

// url is the server's base URL for display; a wildcard host is shown as localhost.
func (s *opsServer) url() string {
	host, port, _ := net.SplitHostPort(s.addr.String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port)
}
