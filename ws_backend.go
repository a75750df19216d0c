package telephone

// The backend side of proxied WebSockets: where a connection goes (target), the close codes
// that may cross each hop, ws_check, and the handshake (dialing, recording the raw connection).

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/verastack/telephone/internal/httptoken"
	"github.com/verastack/telephone/internal/inproc"
)

// wsTarget is where and how a backend WebSocket is dialed.
type wsTarget struct {
	url    string
	host   string // Host header; "" means the URL's host
	header http.Header
	protos []string
	remote string // the client address (clientip.go): RemoteAddr for an in-process handler
}

// target builds the backend URL and headers of a ws_connect or ws_check. The path is the one
// Plugboard sent, taken as the decoded path and never decoded again (as for HTTP).
func (wm *wsManager) target(f map[string]json.RawMessage) (*wsTarget, bool) {
	path, query := str(f, "path"), str(f, "query_string")
	if checkTarget(path, query) != "" {
		return nil, false
	}
	u := url.URL{Scheme: "ws", Path: path, RawQuery: escapeQuery(query)}
	t := &wsTarget{header: make(http.Header)}
	if wm.c.conf().handler != nil {
		u.Host = wm.c.pbHost
		t.host = u.Host
	} else {
		b := wm.c.conf().backendURL
		if b.Scheme == "https" {
			u.Scheme = "wss"
		}
		u.Host = b.Host
		u.Path = strings.TrimSuffix(b.Path, "/") + path
	}
	t.url = u.String()
	t.parseHeaders(f["headers"])
	t.remote = wm.c.setForwarded(t.header)
	return t, true
}

// parseHeaders keeps the forwarded headers and the offered subprotocols; values that could
// not be sent are skipped.
func (t *wsTarget) parseHeaders(raw json.RawMessage) {
	var h map[string]any
	_ = json.Unmarshal(raw, &h)
	for name, v := range h {
		value, ok := v.(string)
		if !ok || strings.ContainsAny(value, "\r\n\x00") {
			continue
		}
		name = http.CanonicalHeaderKey(name)
		if name == "Sec-Websocket-Protocol" {
			t.protos = subprotocols(value)
		} else if slices.Contains(wsForwarded, name) {
			t.header.Set(name, value)
		}
	}
}

// subprotocols splits a Sec-WebSocket-Protocol value on commas, keeping valid tokens.
func subprotocols(v string) []string {
	var out []string
	for p := range strings.SplitSeq(v, ",") {
		if p = strings.TrimSpace(p); p != "" && httptoken.Valid(p) {
			out = append(out, p)
		}
	}
	return out
}

// wireCloseCode reports whether code may be sent in a close frame (RFC 6455 §7.4.1).
func wireCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1014:
		return code < 1004 || code > 1006
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// plugboardCode is the ws_closed code for a backend close code: 1005 (no status) becomes
// 1000, other codes that may not be sent become 1011.
func plugboardCode(code int) int {
	switch {
	case code == 1005:
		return 1000
	case !wireCloseCode(code):
		return 1011
	}
	return code
}

// trimReason keeps a close reason within the 123 bytes a close frame allows.
func trimReason(s string) string {
	if len(s) <= 123 {
		return s
	}
	return strings.ToValidUTF8(s[:123], "")
}

// wsCheck is one running ws_check.
type wsCheck struct {
	s      *session // the session that asked
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	raw    *rawConn
}

// check handles ws_check: a real handshake, closed with 1000, answered with ws_check_result.
func (wm *wsManager) check(s *session, f map[string]json.RawMessage) {
	id := str(f, "check_id")
	if !validWSID(id) {
		wm.c.log.Warn("dropping ws_check without a usable check_id")
		return
	}
	t, ok := wm.target(f)
	if !ok {
		wm.send(s, "ws_check_result", wsCheckResultMsg{CheckID: id, Reason: wsInvalidPath})
		return
	}
	k := &wsCheck{s: s, done: make(chan struct{}), raw: &rawConn{}}
	k.ctx, k.cancel = context.WithCancel(context.Background())
	wm.mu.Lock()
	full := len(wm.checks) >= wm.c.conf().maxWebSockets
	if !full {
		wm.checks[k] = struct{}{}
	}
	wm.mu.Unlock()
	if full {
		k.cancel()
		wm.send(s, "ws_check_result", wsCheckResultMsg{CheckID: id, Reason: wsRefused})
		return
	}
	go wm.runCheck(s, id, t, k) // owned by wm: joined through k.done by closeAll
}

func (wm *wsManager) runCheck(s *session, id string, t *wsTarget, k *wsCheck) {
	defer close(k.done)
	defer func() {
		wm.mu.Lock()
		delete(wm.checks, k)
		wm.mu.Unlock()
	}()
	defer k.cancel()
	log := wm.c.log.With(slog.String("check_id", id))
	lim := wm.limits()
	ws, pipe, reason := wm.dialBackend(k.ctx, t, k.raw, lim, log)
	res := wsCheckResultMsg{CheckID: id, Reason: reason}
	if ws != nil {
		res.Supported, res.Protocol = true, ws.Subprotocol()
		cutter := time.AfterFunc(lim.grace, k.raw.close)
		_ = ws.Close(websocket.StatusNormalClosure, "check complete")
		cutter.Stop()
	}
	k.raw.close()
	if pipe != nil && !pipe.Stop(lim.grace) {
		log.Warn("in-process WebSocket handler did not return after its connection closed")
	}
	if k.ctx.Err() != nil {
		return // abandoned by closeAll: the session is gone
	}
	wm.count(func(st *WSStatus) { st.Checks++ })
	wm.send(s, "ws_check_result", res)
}

// dialBackend performs the backend handshake within lim's grace (the handshake timeout). On failure, reason says
// why for Plugboard, or is empty when ctx was cancelled. pipe is the in-process server to stop
// (nil for TCP backends), also after a failure.
func (wm *wsManager) dialBackend(ctx context.Context, t *wsTarget, raw *rawConn, lim wsLimits, log *slog.Logger) (ws *websocket.Conn, pipe *inproc.Server, reason string) {
	dctx, cancel := context.WithTimeout(ctx, lim.grace)
	defer cancel()
	opts := &websocket.DialOptions{HTTPClient: wm.client, HTTPHeader: t.header.Clone(), Host: t.host, Subprotocols: t.protos}
	if wm.c.conf().handler != nil {
		pipe = inproc.New(wm.c.conf().handler, t.remote, log)
		raw.set(pipe.Conn())
		opts.HTTPClient = pipe.HTTPClient()
	} else {
		dctx = context.WithValue(dctx, rawConnKey{}, raw)
	}
	ws, resp, err := websocket.Dial(dctx, t.url, opts)
	if err == nil {
		ws.SetReadLimit(lim.maxFrame)
		return ws, pipe, ""
	}
	if ctx.Err() != nil {
		return nil, pipe, ""
	}
	reason = dialFailure(dctx, resp, err)
	log.Warn("backend WebSocket handshake failed", slog.String("reason", reason), slog.Any("error", err))
	return nil, pipe, reason
}

// dialFailure maps a failed handshake to a reason for Plugboard.
func dialFailure(ctx context.Context, resp *http.Response, err error) string {
	var op *net.OpError
	switch {
	case resp != nil:
		return wsInvalidUpgrade
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return wsTimeout
	case errors.As(err, &op) && op.Op == "dial":
		return wsRefused
	}
	return wsBackendError
}

// noRedirects makes a backend's 3xx answer to the upgrade a failed handshake
// (invalid_upgrade): following Location would let an end client reach any host or port the
// backend redirects to, with the client's Cookie and Authorization.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// rawConnKey is the context key under which a TCP dial finds where to record its connection.
type rawConnKey struct{}

// rawConn holds the network connection under a backend WebSocket so that a close that takes
// too long can be cut. Once closed, a connection recorded later is closed at once.
type rawConn struct {
	mu     sync.Mutex // guards conn, closed
	conn   net.Conn
	closed bool
}

func (rc *rawConn) set(wc net.Conn) bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.closed {
		_ = wc.Close()
		return false
	}
	rc.conn = wc
	return true
}

func (rc *rawConn) close() {
	rc.mu.Lock()
	wc := rc.conn
	rc.closed = true
	rc.mu.Unlock()
	if wc != nil {
		_ = wc.Close()
	}
}

// wsTransport is the transport for TCP backend handshakes: the configured *http.Transport
// (TLS, proxy and dialer settings) or the default backend transport, without keep-alives
// (each handshake gets its own connection) and recording every connection it dials.
func wsTransport(rt http.RoundTripper) *http.Transport {
	t, ok := rt.(*http.Transport)
	if ok {
		t = t.Clone()
	} else {
		t = defaultBackendTransport()
	}
	t.DisableKeepAlives = true
	if t.DialContext == nil {
		t.DialContext = (&net.Dialer{}).DialContext
	}
	t.DialContext = recordDial(t.DialContext)
	if t.DialTLSContext != nil {
		t.DialTLSContext = recordDial(t.DialTLSContext)
	}
	return t
}

type dialFunc = func(ctx context.Context, network, addr string) (net.Conn, error)

func recordDial(dial dialFunc) dialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if r, ok := ctx.Value(rawConnKey{}).(*rawConn); ok && !r.set(conn) {
			return nil, net.ErrClosed
		}
		return conn, nil
	}
}
