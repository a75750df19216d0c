// Package inproc serves one HTTP exchange (a WebSocket handshake and what follows it) with an
// in-process http.Handler over net.Pipe, so that a WebSocket dialer can reach the handler
// without a TCP hop.
package inproc

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Server serves one connection with the handler: the client end goes to the dialer, the
// server end to an http.Server whose connection goroutine runs the handler. Stop closes the
// pipe and waits for the handler.
type Server struct {
	h      http.Handler
	srv    *http.Server
	client net.Conn
	remote string // RemoteAddr given to the handler

	mu      sync.Mutex // guards running, stopped, idle
	running int
	stopped bool
	idle    chan struct{} // closed when running drops to 0 after Stop
}

// New starts a Server for h, whose requests get remote as RemoteAddr; the http.Server's own
// errors go to log at debug level.
func New(h http.Handler, remote string, log *slog.Logger) *Server {
	client, server := net.Pipe()
	p := &Server{h: h, client: client, remote: remote}
	p.srv = &http.Server{Handler: p, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	// Serve returns as soon as the listener has handed over its only connection.
	_ = p.srv.Serve(&listener{conn: server})
	return p
}

// Conn is the client end of the pipe.
func (p *Server) Conn() net.Conn { return p.client }

// HTTPClient dials the pipe's client end, once. It never follows a redirect: the handler's
// 3xx is the answer.
func (p *Server) HTTPClient() *http.Client {
	var once atomic.Bool
	return &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(context.Context, string, string) (net.Conn, error) {
			if once.Swap(true) {
				return nil, net.ErrClosed
			}
			return p.client, nil
		},
	}}
}

// ServeHTTP runs the handler unless Stop was called, counting it as running.
func (p *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		http.Error(w, "closing", http.StatusServiceUnavailable)
		return
	}
	p.running++
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.running--
		if p.running == 0 && p.idle != nil {
			close(p.idle)
			p.idle = nil
		}
		p.mu.Unlock()
	}()
	r.RemoteAddr = p.remote
	p.h.ServeHTTP(w, r)
}

// Stop closes the connection and waits at most d for a running handler to return; false
// when it did not.
func (p *Server) Stop(d time.Duration) bool {
	_ = p.client.Close()
	_ = p.srv.Close()
	p.mu.Lock()
	p.stopped = true
	var idle chan struct{}
	if p.running > 0 {
		if p.idle == nil {
			p.idle = make(chan struct{})
		}
		idle = p.idle
	}
	p.mu.Unlock()
	if idle == nil {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-idle:
		return true
	case <-t.C:
		return false
	}
}

// listener hands out one connection, then reports itself closed.
type listener struct {
	mu   sync.Mutex // guards conn
	conn net.Conn
}

func (l *listener) Accept() (net.Conn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.conn
	l.conn = nil
	if c == nil {
		return nil, net.ErrClosed
	}
	return c, nil
}

func (l *listener) Close() error   { return nil }
func (l *listener) Addr() net.Addr { return addr{} }

type addr struct{}

func (addr) Network() string { return "pipe" }
func (addr) String() string  { return "telephone-in-process" }
