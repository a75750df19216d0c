package telephone

// Proxied WebSockets (PROTOCOL.md Part B §3.10): Plugboard accepts an end client's WebSocket,
// pushes ws_connect, and relays frames as ws_frame events; the telephone opens the matching
// WebSocket to the backend and relays the other way.
//
// Decisions where the protocol is silent (see also the WSStatus fields):
//   - Reasons in ws_error and ws_check_result are fixed words, never Go error text (Plugboard
//     shows them to the end client as "Bad Gateway: <reason>"): connection_refused (the dial
//     was refused, the connection limit is reached, the connection_id is already in use or the
//     telephone is shutting down), connection_timeout (no handshake within the handshake
//     timeout), invalid_upgrade (the backend answered without upgrading), backend_error
//     (anything else, and a backend connection that broke without a close frame),
//     invalid_path (a path or query string that cannot be a request target) and
//     invalid_frame_data (an inbound ws_frame whose data is not standard base64 or whose
//     opcode is unknown; the backend is then closed with 1011).
//   - A frame larger than the frame limit, either way, closes the connection with 1009 "Frame
//     too large"; a send queue that overflows (the backend reads too slowly) closes it with
//     1009 "Send queue overflow"; a connection without frames either way for the idle timeout
//     is closed with 1001 "Idle timeout". In each case Plugboard gets ws_closed with the same
//     code and reason, so the end client sees it.
//   - Close codes are made legal on the wire: a ws_close code that may not be sent (1004-1006,
//     1015, out of range) closes the backend with 1000; a backend close without status (1005)
//     becomes 1000 in ws_closed, and any other code that may not be sent (1006, 1015)
//     becomes 1011.
//   - Inbound ping and pong opcodes count as activity and are not forwarded: ping and pong
//     are per hop, Plugboard never sends them (it relays client text and binary only), and the
//     backend's own pings are answered by the WebSocket library. Backend pings and pongs are
//     not forwarded to Plugboard either.
//   - ws_close, and closeAll, flush the frames already queued before the close frame; every
//     close handshake is bounded by the handshake timeout, after which the connection is cut.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/verastack/telephone/phoenix"
)

// websocketGoingAway is the close code for proxied WebSockets when the telephone stops or
// loses its session.
const websocketGoingAway = 1001

// Reasons reported to Plugboard in ws_error and ws_check_result.
const (
	wsRefused        = "connection_refused"
	wsTimeout        = "connection_timeout"
	wsInvalidUpgrade = "invalid_upgrade"
	wsBackendError   = "backend_error"
	wsInvalidPath    = "invalid_path"
	wsInvalidFrame   = "invalid_frame_data"
)

// maxWSID bounds connection_id and check_id (Plugboard sends UUIDs).
const maxWSID = 128

// wsForwarded are the ws_connect headers passed to the backend. Sec-WebSocket-Protocol is
// offered as the subprotocol list; Sec-WebSocket-Key/-Version/-Extensions, Upgrade and
// Connection belong to each hop and are never forwarded.
var wsForwarded = []string{"Origin", "Cookie", "Authorization", "X-Forwarded-For", "X-Real-Ip", "X-Request-Id"}

// wsManager proxies Plugboard's WebSocket connections to the backend. It owns one goroutine
// per connection (which starts and joins the connection's reader) and one per running
// ws_check; closeAll stops and joins them. handle runs on the channel's delivery goroutine
// and never blocks on the network. All methods are safe for concurrent use.
type wsManager struct {
	c      *Client
	client *http.Client // TCP backends: dials record the raw connection (see rawConn)

	mu     sync.Mutex            // guards everything below
	conns  map[string]*wsConn    // by connection_id, until closed or ws_close
	all    map[*wsConn]struct{}  // every connection whose goroutine runs
	checks map[*wsCheck]struct{} // running ws_checks
	st     WSStatus
}

func newWSManager(c *Client) *wsManager {
	w := &wsManager{
		c:      c,
		conns:  make(map[string]*wsConn),
		all:    make(map[*wsConn]struct{}),
		checks: make(map[*wsCheck]struct{}),
		st: WSStatus{Max: c.o.maxWebSockets, MaxFrame: c.o.maxWebSocketFrame,
			QueueBytes: c.o.webSocketQueue, IdleTimeout: c.o.webSocketIdle},
	}
	if c.o.handler == nil {
		w.client = &http.Client{Transport: wsTransport(c.o.backend)}
	}
	return w
}

// grace bounds each close handshake and each wait for an in-process handler.
func (w *wsManager) grace() time.Duration { return w.c.o.webSocketHandshake }

func (w *wsManager) status() WSStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.st
}

func (w *wsManager) count(f func(*WSStatus)) {
	w.mu.Lock()
	f(&w.st)
	w.mu.Unlock()
}

// handle applies one ws_* event from Plugboard. It runs on the channel's delivery goroutine:
// it only parses, updates state and queues; dials, writes and reads run elsewhere.
func (w *wsManager) handle(s *session, m phoenix.Message) {
	var f map[string]json.RawMessage
	if err := json.Unmarshal(m.Payload, &f); err != nil {
		w.c.log.Warn("ignoring a malformed WebSocket event", slog.String("event", m.Event))
		return
	}
	switch m.Event {
	case "ws_connect":
		w.connect(s, f)
	case "ws_frame":
		w.frame(f)
	case "ws_close":
		w.closeOne(f)
	case "ws_check":
		w.check(s, f)
	}
}

// str returns the string field key of f, or "" when it is absent or not a string.
func str(f map[string]json.RawMessage, key string) string {
	var s string
	_ = json.Unmarshal(f[key], &s)
	return s
}

func validWSID(id string) bool { return id != "" && len(id) <= maxWSID }

// send sends an event to Plugboard, waiting at most the connect timeout for room in the
// socket's outbound queue. A failure means the socket is gone; Plugboard then cleans up.
func (w *wsManager) send(s *session, event string, payload any) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), w.c.o.connectTimeout)
	defer cancel()
	if err := s.ch.Send(ctx, event, payload); err != nil {
		w.c.log.Debug("WebSocket event not sent", slog.String("event", event), slog.Any("error", err))
	}
}

type wsErrorMsg struct {
	ConnectionID string `json:"connection_id"`
	Reason       string `json:"reason"`
}

type wsConnectedMsg struct {
	ConnectionID string `json:"connection_id"`
	Protocol     string `json:"protocol,omitempty"`
}

type wsClosedMsg struct {
	ConnectionID string `json:"connection_id"`
	Code         int    `json:"code"`
	Reason       string `json:"reason"`
}

// wsFrameMsg is an outbound ws_frame; encoding/json encodes Data as standard base64.
type wsFrameMsg struct {
	ConnectionID string `json:"connection_id"`
	Opcode       string `json:"opcode"`
	Data         []byte `json:"data"`
}

type wsCheckResultMsg struct {
	CheckID   string `json:"check_id"`
	Supported bool   `json:"supported"`
	Protocol  string `json:"protocol,omitempty"`
	Reason    string `json:"reason,omitempty"`
}

// connect handles ws_connect: validate, admit, and start the connection's goroutine.
func (w *wsManager) connect(s *session, f map[string]json.RawMessage) {
	id := str(f, "connection_id")
	if !validWSID(id) {
		w.c.log.Warn("dropping ws_connect without a usable connection_id")
		return
	}
	log := w.c.log.With(slog.String("connection_id", id))
	t, ok := w.target(f)
	reason := ""
	switch {
	case !ok:
		reason = wsInvalidPath
	case w.c.draining():
		reason = wsRefused
	}
	var c *wsConn
	if reason == "" {
		c, reason = w.admit(s, id, t, log)
	}
	if c == nil {
		w.count(func(st *WSStatus) { st.Rejected++ })
		log.Warn("WebSocket connection refused", slog.String("reason", reason), slog.String("path", str(f, "path")))
		w.send(s, "ws_error", wsErrorMsg{ConnectionID: id, Reason: reason})
		return
	}
	go c.run() // owned by w: joined through c.done by closeAll
}

// admit registers a new connection, or says why it cannot be.
func (w *wsManager) admit(s *session, id string, t *wsTarget, log *slog.Logger) (*wsConn, string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.conns[id] != nil {
		return nil, wsRefused
	}
	if len(w.all) >= w.c.o.maxWebSockets {
		w.c.m.Rejected("websocket_limit")
		return nil, wsRefused
	}
	c := newWSConn(w, s, id, t, log)
	w.conns[id] = c
	w.all[c] = struct{}{}
	return c, ""
}

// lookup returns the open connection with id, or nil.
func (w *wsManager) lookup(id string) *wsConn {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.conns[id]
}

// forget removes c when its goroutine ends.
func (w *wsManager) forget(c *wsConn) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.conns[c.id] == c {
		delete(w.conns, c.id)
	}
	delete(w.all, c)
}

// frame handles an inbound ws_frame: decode, check the size and queue it for the writer.
func (w *wsManager) frame(f map[string]json.RawMessage) {
	c := w.lookup(str(f, "connection_id"))
	if c == nil {
		w.c.log.Debug("ws_frame for an unknown connection ignored", slog.String("connection_id", str(f, "connection_id")))
		return
	}
	var typ websocket.MessageType
	switch str(f, "opcode") {
	case "text":
		typ = websocket.MessageText
	case "binary":
		typ = websocket.MessageBinary
	case "ping", "pong":
		c.touch()
		return
	default:
		c.invalidFrame()
		return
	}
	data := str(f, "data")
	limit := w.c.o.maxWebSocketFrame
	if int64(len(data)) > int64(base64.StdEncoding.EncodedLen(int(min(limit, 1<<40)))) {
		c.tooLarge()
		return
	}
	raw, err := base64.StdEncoding.DecodeString(data)
	switch {
	case err != nil:
		c.invalidFrame()
	case int64(len(raw)) > limit:
		c.tooLarge()
	default:
		c.enqueue(typ, raw)
	}
}

// closeOne handles ws_close: close the backend with the given code (after the frames already
// queued) and forget the id, without answering. Unknown ids are ignored: Plugboard sends
// ws_close also after ws_closed and ws_error.
func (w *wsManager) closeOne(f map[string]json.RawMessage) {
	id := str(f, "connection_id")
	w.mu.Lock()
	c := w.conns[id]
	delete(w.conns, id)
	w.mu.Unlock()
	if c == nil {
		return
	}
	code := 1000
	_ = json.Unmarshal(f["code"], &code)
	if !wireCloseCode(code) {
		code = 1000
	}
	c.log.Debug("Plugboard closed the WebSocket", slog.Int("code", code))
	c.end(&wsEnd{code: code, reason: trimReason(str(f, "reason"))})
}

// closeAll closes every backend WebSocket with code, forgets it and tells Plugboard nothing;
// running ws_checks are abandoned. It waits for their goroutines, at most about three times
// the handshake timeout plus the connect timeout.
func (w *wsManager) closeAll(code int) {
	w.mu.Lock()
	conns := slices.Collect(maps.Keys(w.all))
	checks := slices.Collect(maps.Keys(w.checks))
	clear(w.conns)
	w.mu.Unlock()
	for _, c := range conns {
		c.end(&wsEnd{code: code, reason: "Telephone going away"})
	}
	for _, k := range checks {
		k.cancel()
	}
	bound := time.NewTimer(3*w.grace() + w.c.o.connectTimeout + time.Second)
	defer bound.Stop()
	for _, done := range doneChans(conns, checks) {
		select {
		case <-done:
		case <-bound.C:
			w.c.log.Warn("proxied WebSockets did not stop in time")
			return
		}
	}
}

func doneChans(conns []*wsConn, checks []*wsCheck) []<-chan struct{} {
	out := make([]<-chan struct{}, 0, len(conns)+len(checks))
	for _, c := range conns {
		out = append(out, c.done)
	}
	for _, k := range checks {
		out = append(out, k.done)
	}
	return out
}

// wsTarget is where and how a backend WebSocket is dialed.
type wsTarget struct {
	url    string
	host   string // Host header; "" means the URL's host
	header http.Header
	protos []string
}

// target builds the backend URL and headers of a ws_connect or ws_check. The path is the one
// Plugboard sent, taken as the decoded path and never decoded again (as for HTTP).
func (w *wsManager) target(f map[string]json.RawMessage) (*wsTarget, bool) {
	path, query := str(f, "path"), str(f, "query_string")
	if !strings.HasPrefix(path, "/") || strings.HasPrefix(path, "//") ||
		strings.ContainsAny(path, "\r\n\x00") || !validQuery(query) {
		return nil, false
	}
	u := url.URL{Scheme: "ws", Path: path, RawQuery: query}
	t := &wsTarget{header: make(http.Header)}
	if w.c.o.handler != nil {
		u.Host = w.c.pbHost
		t.host = u.Host
	} else {
		b := w.c.live.backend.Load()
		if b.Scheme == "https" {
			u.Scheme = "wss"
		}
		u.Host = b.Host
		u.Path = strings.TrimSuffix(b.Path, "/") + path
	}
	t.url = u.String()
	t.parseHeaders(f["headers"])
	t.header.Set("X-Forwarded-Proto", w.c.pbProto)
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
		if p = strings.TrimSpace(p); p != "" && validHeaderName(p) {
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

// wsEnd says how a connection ends: the close sent to the backend and what Plugboard hears.
type wsEnd struct {
	code   int    // close code for the backend
	reason string // close reason for the backend (and ws_closed)
	event  string // "ws_closed", "ws_error" or "" (Plugboard is not told)
	errMsg string // the ws_error reason
	gone   bool   // the backend connection is already closed: no close handshake
	drop   bool   // discard the frames still queued
}

func closedEnd(code int, reason string) *wsEnd {
	return &wsEnd{code: code, reason: reason, event: "ws_closed"}
}

// backendEnd classifies the error that ended the backend reader.
func backendEnd(err error) *wsEnd {
	var ce websocket.CloseError
	switch {
	case errors.Is(err, websocket.ErrMessageTooBig):
		e := closedEnd(1009, "Frame too large")
		e.gone = true
		return e
	case errors.As(err, &ce):
		e := closedEnd(plugboardCode(int(ce.Code)), ce.Reason)
		e.gone = true
		return e
	}
	return &wsEnd{event: "ws_error", errMsg: wsBackendError, gone: true}
}

type wsFrame struct {
	typ  websocket.MessageType
	data []byte
}

// wsConn is one proxied WebSocket. Its goroutine (run) dials, announces, writes queued frames
// in order and closes; a reader goroutine, started and joined by run, forwards backend
// messages in order.
type wsConn struct {
	w    *wsManager
	s    *session
	id   string
	t    *wsTarget
	log  *slog.Logger
	base time.Time
	raw  *rawConn // the backend connection under the WebSocket, to cut it

	soft     context.Context    // done once the connection must end: stops the dial and the writer loop
	stop     context.CancelFunc // cancels soft
	hard     context.Context    // done when the connection is cut: bounds reads, writes and sends
	cutHard  context.CancelFunc // cancels hard
	done     chan struct{}      // closed when run has returned and joined its reader
	wake     chan struct{}      // capacity 1: frames were queued
	active   atomic.Int64       // time.Since(base) at the last frame either way
	readDone chan error         // capacity 1: the reader's final error
	rerr     error              // the reader's final error once received; run's goroutine only
	rgot     bool               // rerr is set; run's goroutine only

	mu     sync.Mutex // guards queue, queued, ending, cutter, pipe
	queue  []wsFrame
	queued int64 // bytes queued or being written
	ending *wsEnd
	cutter *time.Timer // cuts the connection when a close takes longer than the grace period
	pipe   *pipeServer // in-process handler only
}

func newWSConn(w *wsManager, s *session, id string, t *wsTarget, log *slog.Logger) *wsConn {
	c := &wsConn{w: w, s: s, id: id, t: t, log: log, base: time.Now(), raw: &rawConn{},
		done: make(chan struct{}), wake: make(chan struct{}, 1), readDone: make(chan error, 1)}
	c.soft, c.stop = context.WithCancel(context.Background())
	c.hard, c.cutHard = context.WithCancel(context.Background())
	return c
}

func (c *wsConn) touch() { c.active.Store(int64(time.Since(c.base))) }

// idleFor is how long no frame went either way.
func (c *wsConn) idleFor() time.Duration {
	return time.Since(c.base) - time.Duration(c.active.Load())
}

// end records why the connection ends (the first reason wins), stops the writer loop and
// arms the cut. It never blocks.
func (c *wsConn) end(e *wsEnd) bool {
	c.mu.Lock()
	if c.ending != nil {
		c.mu.Unlock()
		return false
	}
	c.ending = e
	if e.drop {
		c.queue, c.queued = nil, 0
	}
	c.armCutLocked()
	c.mu.Unlock()
	c.stop()
	return true
}

func (c *wsConn) armCutLocked() {
	if c.cutter == nil {
		c.cutter = time.AfterFunc(c.w.grace(), c.cut)
	}
}

// cut aborts every read, write and send of the connection and closes the raw connection.
func (c *wsConn) cut() {
	c.cutHard()
	c.raw.close()
}

func (c *wsConn) finalEnd() *wsEnd {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ending
}

func (c *wsConn) enqueue(typ websocket.MessageType, data []byte) {
	c.touch()
	c.mu.Lock()
	if c.ending != nil {
		c.mu.Unlock()
		return
	}
	if c.queued+int64(len(data)) > c.w.c.o.webSocketQueue {
		c.mu.Unlock()
		c.w.count(func(st *WSStatus) { st.Overflow++ })
		c.w.c.m.WebSocketOverflow()
		c.log.Warn("WebSocket send queue overflowed; closing", slog.Int64("limit", c.w.c.o.webSocketQueue))
		e := closedEnd(1009, "Send queue overflow")
		e.drop = true
		c.end(e)
		return
	}
	c.queue = append(c.queue, wsFrame{typ: typ, data: data})
	c.queued += int64(len(data))
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *wsConn) tooLarge() {
	if c.end(closedEnd(1009, "Frame too large")) {
		c.w.count(func(st *WSStatus) { st.TooLarge++ })
		c.w.c.m.Rejected("websocket_frame")
		c.log.Warn("WebSocket frame over the size limit; closing", slog.Int64("limit", c.w.c.o.maxWebSocketFrame))
	}
}

func (c *wsConn) invalidFrame() {
	if c.end(&wsEnd{code: 1011, reason: "Invalid frame data", event: "ws_error", errMsg: wsInvalidFrame}) {
		c.log.Warn("invalid ws_frame (opcode or base64 data); closing")
	}
}

// next pops the oldest queued frame.
func (c *wsConn) next() (wsFrame, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.queue) == 0 {
		return wsFrame{}, false
	}
	f := c.queue[0]
	c.queue[0] = wsFrame{}
	c.queue = c.queue[1:]
	return f, true
}

func (c *wsConn) written(n int) {
	c.mu.Lock()
	c.queued = max(c.queued-int64(n), 0)
	c.mu.Unlock()
}

// run is the connection's goroutine.
func (c *wsConn) run() {
	defer close(c.done)
	defer c.w.forget(c)
	defer c.cleanup()
	ws, reason := c.dial()
	if ws == nil {
		if reason != "" {
			c.w.count(func(st *WSStatus) { st.Failed++ })
			c.w.send(c.s, "ws_error", wsErrorMsg{ConnectionID: c.id, Reason: reason})
		}
		return
	}
	c.w.count(func(st *WSStatus) { st.Open++; st.Opened++ })
	c.w.c.m.WebSockets(1)
	defer c.w.c.m.WebSockets(-1)
	defer c.w.count(func(st *WSStatus) { st.Open-- })
	c.log.Debug("backend WebSocket open", slog.String("protocol", ws.Subprotocol()))
	if err := c.s.ch.Send(c.hard, "ws_connected", wsConnectedMsg{ConnectionID: c.id, Protocol: ws.Subprotocol()}); err != nil {
		c.end(&wsEnd{code: websocketGoingAway, reason: "Telephone disconnected"})
	}
	var reader sync.WaitGroup
	reader.Go(func() { c.read(ws) })
	e := c.pump(ws)
	if e.gone {
		_ = ws.CloseNow()
	} else {
		_ = ws.Close(websocket.StatusCode(e.code), e.reason)
	}
	c.cut()
	reader.Wait()
	c.notify(e)
}

// dial opens the backend WebSocket; reason is empty when nobody needs to hear of a failure
// (the connection was closed or abandoned meanwhile).
func (c *wsConn) dial() (*websocket.Conn, string) {
	ws, pipe, reason := c.w.dial(c.soft, c.t, c.raw, c.log)
	c.mu.Lock()
	c.pipe = pipe
	ending := c.ending
	c.mu.Unlock()
	if ws != nil && ending != nil {
		_ = ws.CloseNow() // closed while the handshake ran
		return nil, ""
	}
	return ws, reason
}

// cleanup cuts what is left and joins the in-process handler, if any.
func (c *wsConn) cleanup() {
	c.mu.Lock()
	if c.cutter != nil {
		c.cutter.Stop()
	}
	pipe := c.pipe
	c.mu.Unlock()
	c.stop()
	c.cut()
	if pipe != nil && !pipe.stop(c.w.grace()) {
		c.log.Warn("in-process WebSocket handler did not return after its connection closed")
	}
}

// notify tells Plugboard how the backend side ended, after the reader has stopped, so that
// nothing follows it.
func (c *wsConn) notify(e *wsEnd) {
	switch e.event {
	case "ws_closed":
		c.log.Debug("backend WebSocket closed", slog.Int("code", e.code), slog.String("reason", e.reason))
		c.w.send(c.s, "ws_closed", wsClosedMsg{ConnectionID: c.id, Code: e.code, Reason: e.reason})
	case "ws_error":
		c.log.Debug("backend WebSocket failed", slog.String("reason", e.errMsg))
		c.w.send(c.s, "ws_error", wsErrorMsg{ConnectionID: c.id, Reason: e.errMsg})
	}
}

// pump writes queued frames to the backend in order until the connection ends, then writes
// what is still queued (unless dropped; bounded by the cut) and returns the end.
func (c *wsConn) pump(ws *websocket.Conn) *wsEnd {
	idle := time.NewTimer(c.w.c.o.webSocketIdle)
	defer idle.Stop()
	for {
		select {
		case <-c.wake:
			c.flush(ws)
		case err := <-c.readerDone():
			c.rerr, c.rgot = err, true
			c.end(backendEnd(err))
		case <-c.s.sock.Done():
			c.end(&wsEnd{code: websocketGoingAway, reason: "Telephone disconnected"})
		case <-idle.C:
			if left := c.w.c.o.webSocketIdle - c.idleFor(); left > 0 {
				idle.Reset(left)
				continue
			}
			c.idleTimeout()
		case <-c.soft.Done():
			if e := c.finalEnd(); !e.gone {
				c.flush(ws)
			}
			return c.finalEnd()
		}
	}
}

// readerDone is the channel of the reader's final error, or nil once it was received.
func (c *wsConn) readerDone() <-chan error {
	if c.rgot {
		return nil
	}
	return c.readDone
}

func (c *wsConn) idleTimeout() {
	if c.end(closedEnd(websocketGoingAway, "Idle timeout")) {
		c.w.count(func(st *WSStatus) { st.IdleClosed++ })
		c.log.Info("WebSocket idle; closing", slog.Duration("idle", c.w.c.o.webSocketIdle))
	}
}

// flush writes the queued frames. After a failed write it waits for the reader's verdict
// (a close frame, or the error that broke the connection), cutting the connection after the
// grace period if none comes.
func (c *wsConn) flush(ws *websocket.Conn) {
	for {
		f, ok := c.next()
		if !ok {
			return
		}
		err := ws.Write(c.hard, f.typ, f.data)
		c.written(len(f.data))
		if err != nil {
			c.mu.Lock()
			c.armCutLocked()
			c.mu.Unlock()
			if !c.rgot {
				c.rerr, c.rgot = <-c.readDone, true
			}
			c.end(backendEnd(c.rerr))
			return
		}
	}
}

// read forwards backend messages to Plugboard in order until the connection fails or is
// closed. A full Plugboard socket blocks it, which stops reading from the backend.
func (c *wsConn) read(ws *websocket.Conn) {
	for {
		typ, data, err := ws.Read(c.hard)
		if err != nil {
			c.readDone <- err
			return
		}
		c.touch()
		if c.finalEnd() != nil {
			continue // Plugboard has been or will be told the connection is over
		}
		op := "binary"
		if typ == websocket.MessageText {
			op = "text"
		}
		if data == nil {
			data = []byte{} // "data":"" rather than null
		}
		if err := c.s.ch.Send(c.hard, "ws_frame", wsFrameMsg{ConnectionID: c.id, Opcode: op, Data: data}); err != nil {
			c.log.Debug("ws_frame not sent", slog.Any("error", err))
		}
	}
}

// wsCheck is one running ws_check.
type wsCheck struct {
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	raw    *rawConn
}

// check handles ws_check: a real handshake, closed with 1000, answered with ws_check_result.
func (w *wsManager) check(s *session, f map[string]json.RawMessage) {
	id := str(f, "check_id")
	if !validWSID(id) {
		w.c.log.Warn("dropping ws_check without a usable check_id")
		return
	}
	t, ok := w.target(f)
	if !ok {
		w.send(s, "ws_check_result", wsCheckResultMsg{CheckID: id, Reason: wsInvalidPath})
		return
	}
	k := &wsCheck{done: make(chan struct{}), raw: &rawConn{}}
	k.ctx, k.cancel = context.WithCancel(context.Background())
	w.mu.Lock()
	full := len(w.checks) >= w.c.o.maxWebSockets
	if !full {
		w.checks[k] = struct{}{}
	}
	w.mu.Unlock()
	if full {
		k.cancel()
		w.send(s, "ws_check_result", wsCheckResultMsg{CheckID: id, Reason: wsRefused})
		return
	}
	go w.runCheck(s, id, t, k) // owned by w: joined through k.done by closeAll
}

func (w *wsManager) runCheck(s *session, id string, t *wsTarget, k *wsCheck) {
	defer close(k.done)
	defer func() {
		w.mu.Lock()
		delete(w.checks, k)
		w.mu.Unlock()
	}()
	defer k.cancel()
	log := w.c.log.With(slog.String("check_id", id))
	ws, pipe, reason := w.dial(k.ctx, t, k.raw, log)
	res := wsCheckResultMsg{CheckID: id, Reason: reason}
	if ws != nil {
		res.Supported, res.Protocol = true, ws.Subprotocol()
		cutter := time.AfterFunc(w.grace(), k.raw.close)
		_ = ws.Close(websocket.StatusNormalClosure, "check complete")
		cutter.Stop()
	}
	k.raw.close()
	if pipe != nil && !pipe.stop(w.grace()) {
		log.Warn("in-process WebSocket handler did not return after its connection closed")
	}
	if k.ctx.Err() != nil {
		return // abandoned by closeAll: the session is gone
	}
	w.count(func(st *WSStatus) { st.Checks++ })
	w.send(s, "ws_check_result", res)
}

// dial performs the backend handshake within the handshake timeout. On failure, reason says
// why for Plugboard, or is empty when ctx was cancelled. pipe is the in-process server to stop
// (nil for TCP backends), also after a failure.
func (w *wsManager) dial(ctx context.Context, t *wsTarget, raw *rawConn, log *slog.Logger) (ws *websocket.Conn, pipe *pipeServer, reason string) {
	dctx, cancel := context.WithTimeout(ctx, w.grace())
	defer cancel()
	opts := &websocket.DialOptions{HTTPClient: w.client, HTTPHeader: t.header.Clone(), Host: t.host, Subprotocols: t.protos}
	if w.c.o.handler != nil {
		pipe = newPipeServer(w.c.o.handler, log)
		raw.set(pipe.client)
		opts.HTTPClient = pipe.httpClient()
	} else {
		dctx = context.WithValue(dctx, rawConnKey{}, raw)
	}
	ws, resp, err := websocket.Dial(dctx, t.url, opts)
	if err == nil {
		ws.SetReadLimit(w.c.o.maxWebSocketFrame)
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

// rawConnKey is the context key under which a TCP dial finds where to record its connection.
type rawConnKey struct{}

// rawConn holds the network connection under a backend WebSocket so that a close that takes
// too long can be cut. Once closed, a connection recorded later is closed at once.
type rawConn struct {
	mu     sync.Mutex // guards conn, closed
	conn   net.Conn
	closed bool
}

func (r *rawConn) set(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		_ = c.Close()
		return false
	}
	r.conn = c
	return true
}

func (r *rawConn) close() {
	r.mu.Lock()
	c := r.conn
	r.closed = true
	r.mu.Unlock()
	if c != nil {
		_ = c.Close()
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

// pipeServer serves one backend handshake with the in-process handler over net.Pipe: the
// client end goes to the WebSocket dialer, the server end to an http.Server. The Server's
// connection goroutine runs the handler; stop closes the pipe and waits for the handler.
type pipeServer struct {
	h      http.Handler
	srv    *http.Server
	client net.Conn

	mu      sync.Mutex // guards running, stopped, idle
	running int
	stopped bool
	idle    chan struct{} // closed when running drops to 0 after stop
}

func newPipeServer(h http.Handler, log *slog.Logger) *pipeServer {
	client, server := net.Pipe()
	p := &pipeServer{h: h, client: client}
	p.srv = &http.Server{Handler: p, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	// Serve returns as soon as the listener has handed over its only connection.
	_ = p.srv.Serve(&pipeListener{conn: server})
	return p
}

// httpClient dials the pipe's client end, once.
func (p *pipeServer) httpClient() *http.Client {
	var once atomic.Bool
	return &http.Client{Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(context.Context, string, string) (net.Conn, error) {
			if once.Swap(true) {
				return nil, net.ErrClosed
			}
			return p.client, nil
		},
	}}
}

func (p *pipeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
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
	p.h.ServeHTTP(w, r)
}

// stop closes the connection and waits at most d for a running handler to return.
func (p *pipeServer) stop(d time.Duration) bool {
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

// pipeListener hands out one connection, then reports itself closed.
type pipeListener struct {
	mu   sync.Mutex // guards conn
	conn net.Conn
}

func (l *pipeListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.conn
	l.conn = nil
	if c == nil {
		return nil, net.ErrClosed
	}
	return c, nil
}

func (l *pipeListener) Close() error   { return nil }
func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "telephone-in-process" }
