package telephone

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/verastack/telephone/internal/metrics"
	"github.com/verastack/telephone/phoenix"
	"github.com/verastack/telephone/transport"
)

// Client keeps WithConnections sessions with Plugboard (each its own WebSocket, all joined to
// the token's path) and serves the requests Plugboard pushes to any of them. Create it with
// New, start it with Run and stop it with Shutdown. All methods are safe for concurrent use.
type Client struct {
	url     string
	pbHost  string  // Plugboard's host:port, computed once from url
	pbProto string  // "https" for wss://, else "http"
	cfg     *config // the configuration snapshot; Reload swaps it
	log     *slog.Logger
	handler http.Handler
	tokens  *tokenManager
	m       *metrics.Metrics
	guard   *guard
	ws      *wsManager
	dialFn  func(ctx context.Context, token string) (phoenix.Conn, error) // dialTransport; replaced in tests
	// joinReplied, when set (tests only), runs after a join reply arrived, before join records it.
	joinReplied func()

	// Plugboard's host name and URL host, for X-Forwarded-For and -Host (see clientip.go).
	pbHostname, pbPublicHost string

	sessions sessionSet // the sessions with Plugboard, one per WithConnections slot

	reloadMu sync.Mutex // serialises Reload

	shutdownCtx context.Context    // cancelled when Shutdown begins: stop accepting, stop reconnecting
	beginShut   context.CancelFunc // cancels shutdownCtx
	shutdownCh  <-chan struct{}    // shutdownCtx.Done()
	drainedCh   chan struct{}      // closed when in-flight requests drained (or the drain gave up)
	drainOnce   sync.Once
	hardCancel  context.CancelFunc // cancels in-flight work; set while Run runs
	done        chan struct{}      // closed when Run returns

	mu       sync.Mutex // guards everything below
	running  bool
	started  bool
	st       Status
	inflight int
	idle     chan struct{} // closed when inflight reaches 0 during a drain
}

// New validates the options and returns a Client for the Plugboard socket URL, for example
// "wss://plugboard.example.com/telephone/websocket". It does not connect; Run does.
func New(plugboardURL string, opts ...Option) (*Client, error) {
	pu, err := checkSocketURL(plugboardURL)
	if err != nil {
		return nil, err
	}
	o := defaultOptions()
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	if o.logger == nil {
		o.logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	c := &Client{
		url:       plugboardURL,
		cfg:       newConfig(o),
		log:       o.logger,
		drainedCh: make(chan struct{}),
		done:      make(chan struct{}),
	}
	c.pbHost, c.pbProto = plugboardOrigin(pu)
	c.pbHostname, c.pbPublicHost = pu.Hostname(), pu.Host
	c.shutdownCtx, c.beginShut = context.WithCancel(context.Background())
	c.shutdownCh = c.shutdownCtx.Done()
	m, err := metrics.New(o.metrics)
	if err != nil {
		return nil, optErr("WithMetrics", "%v", err)
	}
	c.m = m
	c.dialFn = c.dialTransport
	c.tokens = newTokenManager(c.cfg, c.log, c.m)
	if o.vending != nil {
		if c.tokens.vend, err = newVendor(c.conf(), pu); err != nil {
			return nil, err
		}
	}
	c.guard = newGuard(c.cfg, c.log, c.m)
	c.handler = c.buildHandler()
	c.ws = newWSManager(c)
	c.sessions.init(o.connections, c.m.Sessions)
	return c, nil
}

func checkSocketURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, optErr("plugboardURL", "%v", err)
	}
	if u.Scheme != "ws" && u.Scheme != "wss" {
		return nil, optErr("plugboardURL", "scheme must be ws or wss, got %q", u.Scheme)
	}
	if u.Host == "" {
		return nil, optErr("plugboardURL", "URL has no host")
	}
	return u, nil
}

// Run connects to Plugboard, joins the path named by the token and serves requests until
// Shutdown completes or ctx is cancelled; it reconnects after every failure, the first connect
// included. It returns nil after Shutdown or cancellation (also when Shutdown came before Run
// started: a stop asked for at start-up), and an error only for what retrying cannot fix:
// every token refused (ErrTokenRefused) or no usable token (ErrNoToken).
// Cancelling ctx stops at once and cancels in-flight requests; Shutdown drains them first.
func (c *Client) Run(ctx context.Context) error {
	workCtx, cancel := context.WithCancel(ctx)
	if err := c.begin(cancel); err != nil {
		cancel()
		if err == errShutDownFirst {
			return nil
		}
		return err
	}
	var workers sync.WaitGroup
	defer close(c.done)
	defer workers.Wait() // after cancel: handlers that honour their context return at once
	defer cancel()
	defer c.ws.closeAll(nil, websocketGoingAway)
	if err := c.tokens.init(workCtx); err != nil {
		c.setError(err)
		return err
	}
	refreshCtx, stopRefresh := context.WithCancel(workCtx)
	var refresh sync.WaitGroup
	refresh.Go(func() { c.refreshLoop(refreshCtx) })
	defer refresh.Wait()
	defer stopRefresh()
	err := c.runSlots(workCtx, &workers)
	if err != nil {
		c.setError(err)
		c.log.Error("telephone stopped", slog.Any("error", err))
	}
	return err
}

// errShutDownFirst is begin's answer when Shutdown came before the first Run.
var errShutDownFirst = errors.New("telephone: shut down before Run started")

func (c *Client) begin(cancel context.CancelFunc) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.shutdownCh:
		if !c.started {
			c.started = true // a later Run is a reuse: ErrClientClosed
			return errShutDownFirst
		}
		return ErrClientClosed
	default:
	}
	if c.started {
		return ErrAlreadyRunning
	}
	c.started, c.running, c.hardCancel = true, true, cancel
	return nil
}

// runSlots runs one reconnect loop per session slot (WithConnections) until shutdown,
// cancellation, or a permanent error in a slot while no other session is joined; that error
// stops every slot and is returned.
func (c *Client) runSlots(ctx context.Context, workers *sync.WaitGroup) error {
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	var (
		slots sync.WaitGroup
		first sync.Once
		perm  error // the first permanent error of a slot (never the caller's cancellation)
	)
	for _, sl := range c.sessions.slots {
		slots.Go(func() {
			if err := c.loop(ctx, sl, workers); err != nil {
				first.Do(func() { perm = err })
				stop()
			}
		})
	}
	slots.Wait()
	return perm
}

// loop runs the sessions of one slot, one after another, until shutdown, cancellation or a
// permanent error. A refused token is permanent only while no other session is joined: a
// healthy session keeps the path served (and can refresh the token), and this slot keeps
// trying with its backoff.
func (c *Client) loop(ctx context.Context, sl *slot, workers *sync.WaitGroup) error {
	bo := &phoenix.Backoff{Initial: c.conf().backoffInitial, Max: c.conf().backoffMax, StableAfter: c.conf().stableAfter}
	for {
		c.sessions.setState(sl, SessionConnecting)
		up, err := c.runSession(ctx, sl, workers)
		if c.stopping(ctx) {
			c.sessions.down(sl, nil)
			c.waitDrained(ctx)
			return nil
		}
		c.sessions.down(sl, err)
		if (errors.Is(err, ErrTokenRefused) || errors.Is(err, ErrNoToken)) && !c.sessions.anyJoined() {
			return err
		}
		c.setError(err)
		if up > 0 {
			c.log.Warn("session ended; reconnecting", slog.Int("session", sl.id), slog.Any("error", err), slog.Duration("up", up))
		} else {
			c.log.Warn("could not connect to Plugboard; retrying", slog.Int("session", sl.id), slog.Any("error", err))
		}
		bo.ConnectionLost(up)
		waitCtx, stop := c.untilShutdown(ctx)
		werr := bo.Wait(waitCtx)
		stop()
		if werr != nil {
			continue // shutdown or cancellation; checked at the top of the next round
		}
		c.sessions.reconnecting(sl)
		c.m.Reconnect()
	}
}

func (c *Client) stopping(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	select {
	case <-c.shutdownCh:
		return true
	default:
		return false
	}
}

// untilShutdown returns a context cancelled when ctx is, or when Shutdown begins.
func (c *Client) untilShutdown(ctx context.Context) (context.Context, context.CancelFunc) {
	wctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(c.shutdownCtx, cancel)
	return wctx, func() { stop(); cancel() }
}

// waitDrained waits until Shutdown has drained in-flight requests, or ctx ends.
func (c *Client) waitDrained(ctx context.Context) {
	select {
	case <-c.drainedCh:
	case <-ctx.Done():
	}
}

// Shutdown stops the Client gracefully, losing nothing Plugboard has routed to it. The sessions
// leave their channels one after another, so the path keeps a channel while one remains; each
// keeps serving every request that reaches it normally and leaves at a moment when it has
// nothing in flight, so that Plugboard's end-of-channel 502 hits no caller. A session that
// finds no such moment within its share of ctx's deadline (the time left divided among the
// sessions still to leave and a final share for in-flight work; the request timeout when ctx
// has no deadline) leaves anyway. Then in-flight requests finish (they are not cancelled), and
// the sockets close with code 1000. New proxied WebSockets are refused from the start. If ctx
// ends first, in-flight requests are cancelled and ctx's error is returned. Shutdown returns
// once Run has returned; calling it before or without Run is allowed.
func (c *Client) Shutdown(ctx context.Context) error {
	c.beginShut()
	c.mu.Lock()
	running := c.running
	c.mu.Unlock()
	err := c.leaveOneByOne(ctx)
	if err == nil {
		err = c.waitIdle(ctx)
	}
	c.drainOnce.Do(func() { close(c.drainedCh) })
	if !running {
		return err
	}
	if err != nil {
		c.cancelWork()
	}
	select {
	case <-c.done:
		return err
	case <-ctx.Done():
		c.cancelWork() // Run returns once every handler has returned
		return ctx.Err()
	}
}

// leaveOneByOne asks each joined session in turn to leave when it is idle, each within its
// share of the time left, and waits for it to have left.
func (c *Client) leaveOneByOne(ctx context.Context) error {
	for {
		s, remaining := c.sessions.nextToLeave()
		if s == nil {
			return nil
		}
		deadline := time.Now().Add(c.conf().requestTimeout)
		if d, ok := ctx.Deadline(); ok {
			deadline = time.Now().Add(time.Until(d) / time.Duration(remaining+1))
		}
		req := leaveAt{deadline: deadline, left: make(chan struct{})}
		s.leaveReq <- req // buffered 1; nextToLeave hands each session out once
		select {
		case <-req.left:
		case <-s.ended.Done():
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// waitIdle waits until no request is in flight, or ctx ends.
func (c *Client) waitIdle(ctx context.Context) error {
	c.mu.Lock()
	var idle chan struct{}
	if c.inflight > 0 {
		if c.idle == nil {
			c.idle = make(chan struct{})
		}
		idle = c.idle
	}
	c.mu.Unlock()
	if idle == nil {
		return nil
	}
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *Client) cancelWork() {
	c.mu.Lock()
	cancel := c.hardCancel
	c.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// acquire registers an in-flight request; false once the drain is over (every session has
// left, or Shutdown gave up waiting): a request that still arrives then gets 503.
func (c *Client) acquire() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.drainedCh:
		return false
	default:
	}
	c.inflight++
	c.st.InFlight = c.inflight
	c.m.InFlight(1)
	return true
}

func (c *Client) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inflight--
	c.st.InFlight = c.inflight
	c.m.InFlight(-1)
	if c.inflight == 0 && c.idle != nil {
		close(c.idle)
		c.idle = nil
	}
}

func (c *Client) draining() bool {
	select {
	case <-c.shutdownCh:
		return true
	default:
		return false
	}
}

func (c *Client) setState(f func(*Status)) {
	c.mu.Lock()
	f(&c.st)
	c.mu.Unlock()
}

func (c *Client) setError(err error) {
	if err == nil {
		return
	}
	c.setState(func(s *Status) { s.LastError = err.Error(); s.LastErrorAt = time.Now() })
}

// dialPlugboard opens the WebSocket to Plugboard with the current token. A refused token is
// reported to the token manager, which offers the other token source once, or vends a new
// token (WithTokenVending); ErrTokenRefused when none is left. A refused vended token waits
// for the reconnect backoff.
func (c *Client) dialPlugboard(ctx context.Context) (phoenix.Conn, error) {
	for {
		tok, err := c.tokens.forDial(ctx)
		if err != nil {
			return nil, err
		}
		conn, err := c.dialFn(ctx, tok.raw)
		if err == nil {
			return conn, nil
		}
		if !errors.Is(err, transport.ErrUnauthorized) {
			return nil, err
		}
		c.tokens.explainRefusal(tok, err)
		if !c.tokens.refused(tok) {
			return nil, fmt.Errorf("%w: %w", ErrTokenRefused, err)
		}
		if tok.source == sourceVended {
			return nil, fmt.Errorf("vended token refused: %w", err)
		}
	}
}

func (c *Client) dialTransport(ctx context.Context, token string) (phoenix.Conn, error) {
	conn, err := transport.Dial(ctx, c.url, transport.Options{
		Token:            token,
		HandshakeTimeout: c.conf().connectTimeout,
		TLSConfig:        c.conf().tlsConfig,
		Proxy:            c.conf().proxy,
	})
	if err != nil {
		return nil, err // a nil *transport.Conn must not become a non-nil interface
	}
	return conn, nil
}
