package telephone

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"
)

// leanTransport is the default backend RoundTripper for plain-HTTP backends: HTTP/1.1 over
// kept-alive connections, each round trip done entirely on the calling goroutine
// (http.Request.Write, then http.ReadResponse). net/http's Transport runs two goroutines per
// connection (a reader and a writer) and hands every request to them and back; with one
// connection per request in flight that is two goroutines, two hand-offs and two 4 KiB
// buffers more per request than this. Requests it does not handle (https, a proxy from the
// environment) go to fallback.
//
// It keeps at most maxIdle idle connections per host, closes one idle for idleTimeout, and
// holds no buffer for an idle connection. A request on a reused connection that fails before
// any response byte (the backend closed the idle connection) is sent again once on a new
// connection when it is idempotent and its body can be replayed, as net/http does. The
// request's context cancels a dial, a write or a read at once (the connection is closed).
// It is safe for concurrent use.
type leanTransport struct {
	fallback    http.RoundTripper
	proxy       func(*http.Request) (*url.URL, error)
	dialer      net.Dialer
	maxIdle     int
	idleTimeout time.Duration
	// peekAfter is how long a connection may sit idle before it is peeked at before use
	// (100 ms): under load connections come back within microseconds and backends do not
	// close kept-alive connections that fast, so the peek (a system call) is spared there.
	peekAfter time.Duration

	mu   sync.Mutex             // guards idle
	idle map[string][]*leanConn // host:port → idle connections, most recent last
}

// leanConn is one backend connection, owned by one request at a time or by the idle list.
type leanConn struct {
	net.Conn
	head   int64 // bytes the response head may still take; < 0 while reading the body
	t      *leanTransport
	addr   string
	br     *bufio.Reader // only while a request owns the connection
	timer  *time.Timer   // closes the connection after idleTimeout in the idle list
	reused bool
	// idleSince is when lc was last put in the idle list.
	idleSince time.Time
}

var (
	leanReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4<<10) }}
	leanWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}
)

func newLeanTransport(maxIdle int, fallback *http.Transport) *leanTransport {
	return &leanTransport{
		fallback:    fallback,
		proxy:       fallback.Proxy,
		dialer:      net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second},
		maxIdle:     maxIdle,
		idleTimeout: fallback.IdleConnTimeout,
		peekAfter:   100 * time.Millisecond,
		idle:        make(map[string][]*leanConn),
	}
}

// RoundTrip implements http.RoundTripper.
func (t *leanTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Scheme != "http" || t.proxied(r) {
		return t.fallback.RoundTrip(r)
	}
	addr := r.URL.Host
	if r.URL.Port() == "" {
		addr = net.JoinHostPort(r.URL.Hostname(), "80")
	}
	for fresh := false; ; fresh = true {
		lc, err := t.conn(r.Context(), addr, fresh)
		if err != nil {
			return nil, err
		}
		res, err := lc.roundTrip(r)
		if err == nil || !lc.reused || !replayable(r) {
			return res, err
		}
		// A kept-alive connection the backend had closed: once more on a new one, as
		// net/http does. A new connection is never retried here (retryTransport's job).
		if !rewindBody(r) {
			return nil, err
		}
	}
}

func (t *leanTransport) proxied(r *http.Request) bool {
	if t.proxy == nil {
		return false
	}
	u, err := t.proxy(r)
	return err != nil || u != nil
}

// replayable reports whether r may be sent again after a reused connection failed before
// any response byte: an idempotent method, or an Idempotency-Key. (Whether its body can be
// rebuilt is rewindBody's to say.)
func replayable(r *http.Request) bool {
	switch r.Method {
	case "GET", "HEAD", "OPTIONS", "TRACE":
		return true
	}
	return r.Header.Get("Idempotency-Key") != "" || r.Header.Get("X-Idempotency-Key") != ""
}

// conn returns an idle connection to addr that the backend has not closed, else (or when
// fresh) a new one.
func (t *leanTransport) conn(ctx context.Context, addr string, fresh bool) (*leanConn, error) {
	for !fresh {
		lc := t.popIdle(addr)
		if lc == nil {
			break
		}
		if time.Since(lc.idleSince) < t.peekAfter || alive(lc.Conn) {
			lc.reused = true
			return lc, nil
		}
		lc.Conn.Close()
	}
	c, err := t.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &leanConn{Conn: c, t: t, addr: addr}, nil
}

func (t *leanTransport) popIdle(addr string) *leanConn {
	t.mu.Lock()
	defer t.mu.Unlock()
	list := t.idle[addr]
	if len(list) == 0 {
		return nil
	}
	lc := list[len(list)-1]
	list[len(list)-1] = nil
	t.idle[addr] = list[:len(list)-1]
	lc.timer.Stop()
	return lc
}

// putIdle keeps lc for the next request, or closes it when the idle list is full.
func (t *leanTransport) putIdle(lc *leanConn) {
	leanReaders.Put(lc.br)
	lc.br = nil
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.idle[lc.addr]) >= t.maxIdle {
		lc.Conn.Close()
		return
	}
	lc.idleSince = time.Now()
	t.idle[lc.addr] = append(t.idle[lc.addr], lc)
	if lc.timer == nil {
		lc.timer = time.AfterFunc(t.idleTimeout, lc.expire)
	} else {
		lc.timer.Reset(t.idleTimeout)
	}
}

// expire closes lc if it is still idle (its timer fired), unless it was used and put back
// since (its timer was reset while this call waited for the lock).
func (lc *leanConn) expire() {
	t := lc.t
	t.mu.Lock()
	list := t.idle[lc.addr]
	for i, c := range list {
		if c == lc && time.Since(lc.idleSince) >= t.idleTimeout {
			t.idle[lc.addr] = slices.Delete(list, i, i+1) // clears the tail: no stale pointer to lc
			t.mu.Unlock()
			lc.Conn.Close()
			return
		}
	}
	t.mu.Unlock()
}

// CloseIdleConnections closes the idle connections (and the fallback's).
func (t *leanTransport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = make(map[string][]*leanConn)
	t.mu.Unlock()
	for _, list := range idle {
		for _, lc := range list {
			lc.timer.Stop()
			lc.Conn.Close()
		}
	}
	if ci, ok := t.fallback.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// roundTrip writes r and reads the response head; the body reads from the connection until
// it is closed or read to its end, which gives the connection back or closes it.
func (lc *leanConn) roundTrip(r *http.Request) (*http.Response, error) {
	ctx := r.Context()
	stop := context.AfterFunc(ctx, func() { lc.Conn.Close() })
	fail := func(err error) (*http.Response, error) {
		stop()
		lc.Conn.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	bw := leanWriters.Get().(*bufio.Writer)
	bw.Reset(lc.Conn)
	err := r.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	bw.Reset(nil)
	leanWriters.Put(bw)
	// A backend may answer before it has read the whole body (413, 401) and close: its
	// answer is still read, as net/http does; without one the write error is the error.
	writeErr := err
	if writeErr != nil && ctx.Err() != nil {
		return fail(writeErr)
	}
	if err := waitReadable(lc.Conn); err != nil {
		return fail(cmp.Or(writeErr, err))
	}
	lc.br = leanReaders.Get().(*bufio.Reader)
	lc.head = maxResponseHeaderBytes
	lc.br.Reset((*headLimit)(lc))
	res, err := readFinal(lc.br, r)
	lc.head = -1 // the body is bounded by the collector's response size limit
	if err != nil {
		lc.br.Reset(nil)
		leanReaders.Put(lc.br)
		lc.br = nil
		return fail(cmp.Or(writeErr, err))
	}
	lc.reused = false // a response byte came: no replay from here on
	keep := writeErr == nil && !res.Close && !r.Close && res.StatusCode != http.StatusSwitchingProtocols
	if res.Body == http.NoBody {
		lc.release(stop, keep, true)
		return res, nil
	}
	res.Body = &leanBody{rc: res.Body, lc: lc, stop: stop, keep: keep, ctx: ctx}
	return res, nil
}

// maxResponseHeaderBytes bounds a response head, as net/http's Transport does by default.
const maxResponseHeaderBytes = 10 << 20

var errHeadTooLarge = errors.New("telephone: backend response head exceeds 10 MiB")

// headLimit reads the connection, failing once the response head has taken
// maxResponseHeaderBytes (a backend sending headers without end).
type headLimit leanConn

func (h *headLimit) Read(p []byte) (int, error) {
	if h.head < 0 {
		return h.Conn.Read(p)
	}
	if h.head == 0 {
		return 0, errHeadTooLarge
	}
	if int64(len(p)) > h.head {
		p = p[:h.head]
	}
	n, err := h.Conn.Read(p)
	h.head -= int64(n)
	return n, err
}

// readFinal reads the response head, skipping 1xx informational responses but 101.
func readFinal(br *bufio.Reader, r *http.Request) (*http.Response, error) {
	for {
		res, err := http.ReadResponse(br, r)
		if err != nil {
			return nil, err
		}
		if res.StatusCode >= 200 || res.StatusCode < 100 || res.StatusCode == http.StatusSwitchingProtocols {
			return res, nil
		}
	}
}

// release ends the request's ownership of lc: it goes back to the idle list when keep and
// the body was read to its end with nothing more buffered, else it is closed.
func (lc *leanConn) release(stop func() bool, keep, complete bool) {
	if !stop() || !keep || !complete || lc.br.Buffered() > 0 {
		lc.br.Reset(nil)
		leanReaders.Put(lc.br)
		lc.br = nil
		lc.Conn.Close()
		return
	}
	lc.br.Reset(nil)
	lc.t.putIdle(lc)
}

// leanBody is a response body; its end (EOF or Close) releases the connection once.
type leanBody struct {
	rc   io.ReadCloser
	lc   *leanConn
	stop func() bool
	keep bool
	ctx  context.Context
	done bool
}

func (b *leanBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.done = true
		b.lc.release(b.stop, b.keep, true)
	} else if err != nil {
		if b.ctx.Err() != nil {
			err = b.ctx.Err()
		}
		b.done = true
		b.lc.release(b.stop, false, false)
	}
	return n, err
}

func (b *leanBody) Close() error {
	if !b.done {
		b.done = true
		b.lc.release(b.stop, false, false)
	}
	return nil
}
