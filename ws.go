package telephone

// Proxied WebSockets (docs/PROTOCOL.md §5): Plugboard accepts an end client's WebSocket, pushes
// ws_connect, and relays frames as ws_frame events; the telephone opens the matching WebSocket to
// the backend and relays the other way. The decisions where the protocol is silent (fixed reason
// words, legal close codes, ping and pong per hop, the limits and their close codes, flushing
// before a close, bounded close handshakes) are in docs/PROTOCOL.md §5.3-§5.5 and the WSStatus
// fields. This file holds the manager and its events; ws_conn.go one proxied connection;
// ws_backend.go the backend target, close codes, ws_check and dialing.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/verastack/telephone/internal/metrics"
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
// Connection belong to each hop and are never forwarded. X-Forwarded-For and X-Real-Ip are
// read by WithClientIPHeader and then replaced (clientip.go).
var wsForwarded = []string{"Origin", "Cookie", "Authorization", "X-Forwarded-For", "X-Real-Ip", "X-Request-Id"}

// wsManager proxies Plugboard's WebSocket connections to the backend. It owns one goroutine
// per connection (which starts and joins the connection's reader) and one per running
// ws_check; closeAll stops and joins them (per session, or all). handle runs on the channel's delivery goroutine
// and never blocks on the network. All methods are safe for concurrent use.
type wsManager struct {
	c      *Client
	m      *metrics.Metrics
	client *http.Client // TCP backends: dials record the raw connection (see rawConn)

	mu     sync.Mutex            // guards everything below
	conns  map[string]*wsConn    // by connection_id, until closed or ws_close
	all    map[*wsConn]struct{}  // every connection whose goroutine runs
	checks map[*wsCheck]struct{} // running ws_checks
	st     WSStatus
}

func newWSManager(c *Client) *wsManager {
	wm := &wsManager{
		c:      c,
		m:      c.m,
		conns:  make(map[string]*wsConn),
		all:    make(map[*wsConn]struct{}),
		checks: make(map[*wsCheck]struct{}),
		st: WSStatus{Max: c.conf().maxWebSockets, MaxFrame: c.conf().maxWebSocketFrame,
			QueueBytes: c.conf().webSocketQueue, IdleTimeout: c.conf().webSocketIdle},
	}
	if c.conf().handler == nil {
		wm.client = &http.Client{Transport: wsTransport(c.conf().backend), CheckRedirect: noRedirects}
	}
	return wm
}

// limits are the limits for a connection or check that starts now.
func (wm *wsManager) limits() wsLimits {
	o := wm.c.conf()
	return wsLimits{grace: o.webSocketHandshake, idle: o.webSocketIdle, queue: o.webSocketQueue, maxFrame: o.maxWebSocketFrame}
}

func (wm *wsManager) status() WSStatus {
	wm.mu.Lock()
	defer wm.mu.Unlock()
	return wm.st
}

func (wm *wsManager) count(f func(*WSStatus)) {
	wm.mu.Lock()
	f(&wm.st)
	wm.mu.Unlock()
}

// handle applies one ws_* event from Plugboard. It runs on the channel's delivery goroutine:
// it only parses, updates state and queues; dials, writes and reads run elsewhere.
func (wm *wsManager) handle(s *session, m phoenix.Message) {
	var f map[string]json.RawMessage
	if err := json.Unmarshal(m.Payload, &f); err != nil {
		wm.c.log.Warn("ignoring a malformed WebSocket event", slog.String("event", m.Event))
		return
	}
	switch m.Event {
	case "ws_connect":
		wm.connect(s, f)
	case "ws_frame":
		wm.frame(f)
	case "ws_close":
		wm.closeOne(f)
	case "ws_check":
		wm.check(s, f)
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
func (wm *wsManager) send(s *session, event string, payload any) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), wm.c.conf().connectTimeout)
	defer cancel()
	if err := s.ch.Send(ctx, event, payload); err != nil {
		wm.c.log.Debug("WebSocket event not sent", slog.String("event", event), slog.Any("error", err))
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
func (wm *wsManager) connect(s *session, f map[string]json.RawMessage) {
	id := str(f, "connection_id")
	if !validWSID(id) {
		wm.c.log.Warn("dropping ws_connect without a usable connection_id")
		return
	}
	log := wm.c.log.With(slog.String("connection_id", id))
	t, ok := wm.target(f)
	reason := ""
	switch {
	case !ok:
		reason = wsInvalidPath
	case wm.c.draining():
		reason = wsRefused
	}
	var wc *wsConn
	if reason == "" {
		wc, reason = wm.admit(s, id, t, log)
	}
	if wc == nil {
		wm.count(func(st *WSStatus) { st.Rejected++ })
		log.Warn("WebSocket connection refused", slog.String("reason", reason), slog.String("path", str(f, "path")))
		wm.send(s, "ws_error", wsErrorMsg{ConnectionID: id, Reason: reason})
		return
	}
	go wc.run() // owned by wm: joined through wc.done by closeAll
}

// admit registers a new connection, or says why it cannot be.
func (wm *wsManager) admit(s *session, id string, t *wsTarget, log *slog.Logger) (*wsConn, string) {
	wm.mu.Lock()
	defer wm.mu.Unlock()
	if wm.conns[id] != nil {
		return nil, wsRefused
	}
	if len(wm.all) >= wm.c.conf().maxWebSockets {
		wm.m.Rejected("websocket_limit")
		return nil, wsRefused
	}
	wc := newWSConn(wm, s, id, t, log)
	wm.conns[id] = wc
	wm.all[wc] = struct{}{}
	return wc, ""
}

// lookup returns the open connection with id, or nil.
func (wm *wsManager) lookup(id string) *wsConn {
	wm.mu.Lock()
	defer wm.mu.Unlock()
	return wm.conns[id]
}

// forget removes wc when its goroutine ends.
func (wm *wsManager) forget(wc *wsConn) {
	wm.mu.Lock()
	defer wm.mu.Unlock()
	if wm.conns[wc.id] == wc {
		delete(wm.conns, wc.id)
	}
	delete(wm.all, wc)
}

// frame handles an inbound ws_frame: decode, check the size and queue it for the writer.
func (wm *wsManager) frame(f map[string]json.RawMessage) {
	wc := wm.lookup(str(f, "connection_id"))
	if wc == nil {
		wm.c.log.Debug("ws_frame for an unknown connection ignored", slog.String("connection_id", str(f, "connection_id")))
		return
	}
	var typ websocket.MessageType
	switch str(f, "opcode") {
	case "text":
		typ = websocket.MessageText
	case "binary":
		typ = websocket.MessageBinary
	case "ping", "pong":
		wc.touch()
		return
	default:
		wc.invalidFrame()
		return
	}
	data := str(f, "data")
	limit := wc.lim.maxFrame
	if int64(len(data)) > int64(base64.StdEncoding.EncodedLen(int(min(limit, 1<<40)))) {
		wc.tooLarge()
		return
	}
	raw, err := base64.StdEncoding.DecodeString(data)
	switch {
	case err != nil:
		wc.invalidFrame()
	case int64(len(raw)) > limit:
		wc.tooLarge()
	default:
		wc.enqueue(typ, raw)
	}
}

// closeOne handles ws_close: close the backend with the given code (after the frames already
// queued) and forget the id, without answering. Unknown ids are ignored: Plugboard sends
// ws_close also after ws_closed and ws_error.
func (wm *wsManager) closeOne(f map[string]json.RawMessage) {
	id := str(f, "connection_id")
	wm.mu.Lock()
	wc := wm.conns[id]
	delete(wm.conns, id)
	wm.mu.Unlock()
	if wc == nil {
		return
	}
	code := 1000
	_ = json.Unmarshal(f["code"], &code)
	if !wireCloseCode(code) {
		code = 1000
	}
	wc.log.Debug("Plugboard closed the WebSocket", slog.Int("code", code))
	wc.end(&wsEnd{code: code, reason: trimReason(str(f, "reason"))})
}

// closeAll closes the backend WebSockets that session s carries (every one when s is nil) with
// code, forgets them and tells Plugboard nothing; their running ws_checks are abandoned. It
// waits for their goroutines, at most about three times the handshake timeout plus the connect
// timeout.
func (wm *wsManager) closeAll(s *session, code int) {
	conns, checks := wm.detach(s)
	for _, wc := range conns {
		wc.end(&wsEnd{code: code, reason: "Telephone going away"})
	}
	for _, k := range checks {
		k.cancel()
	}
	bound := time.NewTimer(3*wm.limits().grace + wm.c.conf().connectTimeout + time.Second)
	defer bound.Stop()
	for _, done := range doneChans(conns, checks) {
		select {
		case <-done:
		case <-bound.C:
			wm.c.log.Warn("proxied WebSockets did not stop in time")
			return
		}
	}
}

// detach takes the connections and checks of s (all of them when s is nil) out of the id
// index and returns them.
func (wm *wsManager) detach(s *session) ([]*wsConn, []*wsCheck) {
	wm.mu.Lock()
	defer wm.mu.Unlock()
	var conns []*wsConn
	for wc := range wm.all {
		if s == nil || wc.s == s {
			conns = append(conns, wc)
			if wm.conns[wc.id] == wc {
				delete(wm.conns, wc.id)
			}
		}
	}
	var checks []*wsCheck
	for k := range wm.checks {
		if s == nil || k.s == s {
			checks = append(checks, k)
		}
	}
	return conns, checks
}

func doneChans(conns []*wsConn, checks []*wsCheck) []<-chan struct{} {
	out := make([]<-chan struct{}, 0, len(conns)+len(checks))
	for _, wc := range conns {
		out = append(out, wc.done)
	}
	for _, k := range checks {
		out = append(out, k.done)
	}
	return out
}
