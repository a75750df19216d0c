package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/verastack/telephone/internal/plugtoken"
	"github.com/verastack/telephone/telephonetest"
)

// plugboard is the devserver: a telephonetest.Server on a loopback listener. Its handler is
// wrapped to log every telephone socket connect per path (for the reconnect spread). The
// caller must Close it.
type plugboard struct {
	srv   *telephonetest.Server
	hs    *http.Server
	conns *connLog
	wg    sync.WaitGroup // joins the Serve goroutine

	refused atomic.Int64 // telephone socket upgrades answered 403
	vended  atomic.Int64 // tokens vended (201 from the token vending endpoint)
}

// startPlugboard serves a telephonetest.Server on 127.0.0.1 with the given caller-side
// request timeout (0: the server's default, 60 s) and further server options.
func startPlugboard(requestTimeout time.Duration, opts ...telephonetest.Option) (*plugboard, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("devserver: %w", err)
	}
	// telephonetest.Serve derives its URLs from the listener's address; it gets an idle stand-in
	// so that the wrapped handler below serves the real listener.
	idle := newIdleListener(ln.Addr())
	p := &plugboard{
		srv:   telephonetest.Serve(idle, append([]telephonetest.Option{telephonetest.WithRequestTimeout(requestTimeout)}, opts...)...),
		conns: newConnLog(),
	}
	p.hs = &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	p.wg.Go(func() { _ = p.hs.Serve(ln) })
	return p, nil
}

// ServeHTTP logs telephone socket connects, then hands every request to the server; it
// counts refused socket upgrades and vended tokens.
func (p *plugboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var counter *atomic.Int64
	var counted int // the status that counter counts
	switch r.URL.Path {
	case "/telephone/websocket":
		if c, err := plugtoken.Parse(r.URL.Query().Get("token")); err == nil {
			p.conns.add(c.PathID, time.Now())
		}
		counter, counted = &p.refused, http.StatusForbidden
	case telephonetest.VendPath:
		counter, counted = &p.vended, http.StatusCreated
	default:
		p.srv.Handler().ServeHTTP(w, r)
		return
	}
	sw := &statusWriter{ResponseWriter: w}
	p.srv.Handler().ServeHTTP(sw, r)
	if sw.status == counted {
		counter.Add(1)
	}
}

// statusWriter records the status of a response; it passes Hijack through for WebSocket
// upgrades.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(s.ResponseWriter).Hijack()
}

// Close closes every telephone socket (1001), fails waiting callers and stops serving.
func (p *plugboard) Close() {
	p.srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if p.hs.Shutdown(ctx) != nil {
		_ = p.hs.Close()
	}
	p.wg.Wait()
}

// idleListener is a net.Listener that accepts nothing until it is closed.
type idleListener struct {
	addr net.Addr
	once sync.Once
	done chan struct{}
}

func newIdleListener(addr net.Addr) *idleListener {
	return &idleListener{addr: addr, done: make(chan struct{})}
}

func (l *idleListener) Accept() (net.Conn, error) {
	<-l.done
	return nil, net.ErrClosed
}

func (l *idleListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *idleListener) Addr() net.Addr { return l.addr }

// connLog records when each path's telephones opened a socket. Safe for concurrent use.
type connLog struct {
	mu      sync.Mutex // guards byPath and changed
	byPath  map[string][]time.Time
	changed chan struct{} // closed and replaced on every add
}

func newConnLog() *connLog {
	return &connLog{byPath: make(map[string][]time.Time), changed: make(chan struct{})}
}

func (c *connLog) add(pathID string, t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.byPath[pathID] = append(c.byPath[pathID], t)
	close(c.changed)
	c.changed = make(chan struct{})
}

// after returns the connects of pathID at or after t, and the channel closed at the next add.
func (c *connLog) after(pathID string, t time.Time) ([]time.Time, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var at []time.Time
	for _, x := range c.byPath[pathID] {
		if !x.Before(t) {
			at = append(at, x)
		}
	}
	return at, c.changed
}

// firstAfter returns the first connect of pathID at or after t.
func (c *connLog) firstAfter(pathID string, t time.Time) (time.Time, bool) {
	if at, _ := c.after(pathID, t); len(at) > 0 {
		return at[0], true
	}
	return time.Time{}, false
}

// waitAfter waits for the first connect of pathID at or after t.
func (c *connLog) waitAfter(ctx context.Context, pathID string, t time.Time) (time.Time, error) {
	at, err := c.waitN(ctx, pathID, t, 1)
	if err != nil {
		return time.Time{}, err
	}
	return at[0], nil
}

// waitN waits for n connects of pathID at or after t and returns their times.
func (c *connLog) waitN(ctx context.Context, pathID string, t time.Time, n int) ([]time.Time, error) {
	for {
		at, changed := c.after(pathID, t)
		if len(at) >= n {
			return at[:n], nil
		}
		select {
		case <-ctx.Done():
			return at, fmt.Errorf("%d of %d reconnects: %w", len(at), n, ctx.Err())
		case <-changed:
		}
	}
}
