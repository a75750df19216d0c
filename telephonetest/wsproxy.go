package telephonetest

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
	"github.com/verastack/telephone/phoenix"
)

// Limits of the proxied-WebSocket handler (docs/PROTOCOL.md §5).
const (
	wsBufferFrames = 100     // client frames buffered before ws_connected
	wsBufferBytes  = 1 << 20 // bytes buffered before ws_connected
	wsMaxFrame     = 1 << 20 // WEBSOCKET_MAX_FRAME_SIZE
)

// wsForwardedHeaders are the client headers ws_connect carries.
var wsForwardedHeaders = []string{
	"sec-websocket-protocol", "sec-websocket-extensions", "origin", "cookie",
	"authorization", "x-forwarded-for", "x-real-ip", "x-request-id",
}

// wsProxy is one proxied client WebSocket (Plugboard's proxy handler).
type wsProxy struct {
	id     string
	ch     *channel
	conn   wireConn
	raw    net.Conn
	events *mailbox[wsEvent] // from the channel
}

type wsEventKind int

const (
	evConnected wsEventKind = iota // ws_connected
	evFrame                        // ws_frame from the telephone
	evClosed                       // ws_closed
	evError                        // ws_error
	evGone                         // the channel ended
)

type wsEvent struct {
	kind     wsEventKind
	protocol string
	binary   bool
	data     []byte
	code     int
	reason   string
}

// wsCheckResult is a ws_check_result, or failed when the channel died.
type wsCheckResult struct {
	failed    bool
	supported bool
	protocol  string
	reason    any
}

// serveWSProxy handles a WebSocket upgrade to /call/<path_id>/...: optional
// ws_check pre-check, upgrade, ws_connect, then relays frames until either side
// closes. The client is accepted before the telephone answers ws_connect, as
// Plugboard does, so its Sec-WebSocket-Protocol is answered only with
// WithWSCheck (with the protocol of ws_check_result).
func (s *Server) serveWSProxy(w http.ResponseWriter, r *http.Request) {
	pathID, fwd, ok := s.mountedPath(w, r)
	if !ok {
		return
	}
	headers := wsHeaders(r)
	s.mu.Lock()
	ch := s.pickLocked(pathID)
	s.mu.Unlock()
	if ch == nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": "No telephone available for WebSocket proxy"})
		return
	}
	opts := &websocket.AcceptOptions{InsecureSkipVerify: true}
	if s.cfg.wsCheck {
		proto, ok := s.wsCheck(w, r, ch, fwd, headers)
		if !ok {
			return
		}
		if proto != "" {
			opts.Subprotocols = []string{proto}
		}
	}
	c, raw, err := accept(w, r, opts)
	if err != nil {
		return
	}
	c.SetReadLimit(wsMaxFrame)
	p := &wsProxy{id: uuid.NewString(), ch: ch, conn: c, raw: raw, events: newMailbox[wsEvent]()}
	if !s.addProxy(p) {
		closeWithin(c, raw, websocket.StatusGoingAway, "Telephone sidecar disconnected", s.cfg.closeGrace)
		return
	}
	ch.sock.push(ch.joinRef, ch.topic, "ws_connect", map[string]any{
		"connection_id": p.id, "path": fwd, "query_string": r.URL.RawQuery, "headers": headers,
	}, false)
	p.run(s)
}

// wsHeaders keeps the client headers that ws_connect and ws_check carry.
func wsHeaders(r *http.Request) map[string]string {
	h := make(map[string]string)
	for _, name := range wsForwardedHeaders {
		if vs := r.Header.Values(name); len(vs) > 0 {
			h[name] = vs[len(vs)-1]
		}
	}
	return h
}

// wsCheck runs the ws_check pre-check; it answers the upgrade itself (504/502
// JSON) and reports false when the upgrade must not go on.
func (s *Server) wsCheck(w http.ResponseWriter, r *http.Request, ch *channel, fwd string, headers map[string]string) (string, bool) {
	id := uuid.NewString()
	res := make(chan wsCheckResult, 1)
	s.mu.Lock()
	if !ch.alive {
		s.mu.Unlock()
		writeJSON(w, http.StatusBadGateway, map[string]any{"error": "Backend check failed"})
		return "", false
	}
	ch.checks[id] = res
	s.mu.Unlock()
	ch.sock.push(ch.joinRef, ch.topic, "ws_check", map[string]any{
		"check_id": id, "path": fwd, "query_string": r.URL.RawQuery, "headers": headers,
	}, false)
	t := time.NewTimer(s.cfg.wsCheckTimeout)
	defer t.Stop()
	var out wsCheckResult
	select {
	case out = <-res:
	case <-t.C:
		if !s.dropCheck(ch, id) {
			out = <-res
			break
		}
		writeJSON(w, http.StatusGatewayTimeout, map[string]any{"error": "Backend check timeout"})
		return "", false
	case <-r.Context().Done():
		if s.dropCheck(ch, id) {
			return "", false
		}
		out = <-res
	}
	switch reason, isString := out.reason.(string); {
	case out.supported && !out.failed:
		return out.protocol, true
	case !out.failed && isString:
		writeJSON(w, http.StatusBadGateway, map[string]any{"error": "Backend WebSocket not supported", "reason": reason})
	default:
		writeJSON(w, http.StatusBadGateway, map[string]any{"error": "Backend check failed"})
	}
	return "", false
}

// dropCheck removes a pending check; false means its result is being sent.
func (s *Server) dropCheck(ch *channel, id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := ch.checks[id]
	delete(ch.checks, id)
	return ok
}

// addProxy registers p with its channel; false when the channel has ended.
func (s *Server) addProxy(p *wsProxy) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !p.ch.alive {
		return false
	}
	p.ch.wsConns[p.id] = p
	return true
}

// clientMsg is one message read from the proxied client, or the read error.
type clientMsg struct {
	typ  websocket.MessageType
	data []byte
	err  error
}

// run relays frames until either side closes, then unregisters the proxy and,
// like the real handler's terminate, pushes ws_close {1000, "Client
// disconnected"} when the backend had connected and the channel is alive.
func (p *wsProxy) run(s *Server) {
	msgs := make(chan clientMsg)
	stopReader := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { p.readClient(msgs, stopReader) })
	st := &proxyState{}
	p.loop(s, msgs, st)
	if !st.closed {
		closeWithin(p.conn, p.raw, websocket.StatusNormalClosure, "", s.cfg.closeGrace)
	}
	close(stopReader)
	wg.Wait()
	s.mu.Lock()
	alive := p.ch.alive
	if alive {
		delete(p.ch.wsConns, p.id)
	}
	s.mu.Unlock()
	if alive && st.connected && !st.timedOut {
		p.ch.sock.push(p.ch.joinRef, p.ch.topic, "ws_close",
			map[string]any{"connection_id": p.id, "code": 1000, "reason": "Client disconnected"}, false)
	}
}

// proxyState is the relay loop's state; only the loop goroutine touches it.
type proxyState struct {
	connected bool
	timedOut  bool
	closed    bool // the client was closed by the loop
	buf       []clientMsg
	bufBytes  int
}

// readClient reads client messages until an error, handing each to the loop.
func (p *wsProxy) readClient(msgs chan<- clientMsg, stop <-chan struct{}) {
	for {
		typ, data, err := p.conn.Read(context.Background())
		select {
		case msgs <- clientMsg{typ: typ, data: data, err: err}:
		case <-stop:
			return
		}
		if err != nil {
			return
		}
	}
}

// loop is the relay: it returns when the proxied connection is over.
func (p *wsProxy) loop(s *Server, msgs <-chan clientMsg, st *proxyState) {
	connect := time.NewTimer(s.cfg.wsConnectTimeout)
	defer connect.Stop()
	for {
		select {
		case <-s.quit:
			p.closeClient(s, st, websocket.StatusGoingAway, "Server shutting down")
			return
		case <-connect.C:
			if st.connected {
				continue
			}
			st.timedOut = true
			p.closeClient(s, st, websocket.StatusBadGateway, "Backend connection timeout")
			p.ch.sock.push(p.ch.joinRef, p.ch.topic, "ws_close",
				map[string]any{"connection_id": p.id, "code": 1014, "reason": "Connect timeout"}, false)
			return
		case m := <-msgs:
			if m.err != nil || !p.fromClient(s, st, m) {
				return
			}
		case <-p.events.Ready():
			for _, ev := range p.events.Drain() {
				if !p.fromTelephone(s, st, ev) {
					return
				}
			}
		}
	}
}

// fromClient forwards or buffers one client message; false ends the proxy.
func (p *wsProxy) fromClient(s *Server, st *proxyState, m clientMsg) bool {
	if st.connected {
		p.pushFrame(m)
		return true
	}
	st.buf = append(st.buf, m)
	st.bufBytes += len(m.data)
	if len(st.buf) > wsBufferFrames || st.bufBytes > wsBufferBytes {
		p.closeClient(s, st, websocket.StatusMessageTooBig, "Buffer overflow")
		return false
	}
	return true
}

// fromTelephone applies one channel event; false ends the proxy.
func (p *wsProxy) fromTelephone(s *Server, st *proxyState, ev wsEvent) bool {
	switch ev.kind {
	case evConnected:
		if !st.connected {
			st.connected = true
			for _, m := range st.buf {
				p.pushFrame(m)
			}
			st.buf, st.bufBytes = nil, 0
		}
	case evFrame:
		typ := websocket.MessageText
		if ev.binary {
			typ = websocket.MessageBinary
		}
		ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
		err := p.conn.Write(ctx, typ, ev.data)
		cancel()
		return err == nil
	case evClosed:
		p.closeClient(s, st, websocket.StatusCode(ev.code), ev.reason)
		return false
	case evError:
		p.closeClient(s, st, websocket.StatusBadGateway, "Bad Gateway: "+ev.reason)
		return false
	case evGone:
		p.closeClient(s, st, websocket.StatusGoingAway, "Telephone sidecar disconnected")
		return false
	}
	return true
}

// pushFrame sends one client message to the telephone as ws_frame.
func (p *wsProxy) pushFrame(m clientMsg) {
	opcode := "text"
	if m.typ == websocket.MessageBinary {
		opcode = "binary"
	}
	p.ch.sock.push(p.ch.joinRef, p.ch.topic, "ws_frame", map[string]any{
		"connection_id": p.id, "opcode": opcode, "data": base64.StdEncoding.EncodeToString(m.data),
	}, false)
}

func (p *wsProxy) closeClient(s *Server, st *proxyState, code websocket.StatusCode, reason string) {
	st.closed = true
	closeWithin(p.conn, p.raw, code, reason, s.cfg.closeGrace)
}

// wsEvent handles ws_connected, ws_frame, ws_closed and ws_error from the
// telephone. Missing required keys crash the channel (docs/PROTOCOL.md §2.5); an
// unknown connection_id is ignored.
func (ch *channel) wsEvent(m phoenix.Message, obj map[string]json.RawMessage) {
	required := map[string][]string{
		"ws_connected": {"connection_id"},
		"ws_frame":     {"connection_id", "opcode", "data"},
		"ws_closed":    {"connection_id"},
		"ws_error":     {"connection_id", "reason"},
	}[m.Event]
	for _, k := range required {
		if _, ok := obj[k]; !ok {
			ch.crash("missing "+k, m)
			return
		}
	}
	var id string
	_ = json.Unmarshal(obj["connection_id"], &id)
	s := ch.sock.srv
	s.mu.Lock()
	p := ch.wsConns[id]
	if p != nil && (m.Event == "ws_closed" || m.Event == "ws_error") {
		delete(ch.wsConns, id) // Plugboard removes the entry
	}
	s.mu.Unlock()
	if p == nil {
		s.cfg.logger.Warn("telephonetest: event for an unknown connection_id ignored", "event", m.Event, "connection_id", id)
		return
	}
	if ev, ok := decodeWSEvent(m.Event, obj); ok {
		p.events.Put(ev)
	}
}

// decodeWSEvent turns a telephone ws_* payload into a wsEvent. ok is false for
// frames that are not forwarded (ping, pong, unknown opcodes).
func decodeWSEvent(event string, obj map[string]json.RawMessage) (wsEvent, bool) {
	str := func(k string) string {
		var v string
		_ = json.Unmarshal(obj[k], &v)
		return v
	}
	switch event {
	case "ws_connected":
		return wsEvent{kind: evConnected, protocol: str("protocol")}, true
	case "ws_frame":
		op := str("opcode")
		if op != "text" && op != "binary" {
			return wsEvent{}, false
		}
		data := str("data")
		raw, err := base64.StdEncoding.DecodeString(data)
		if err != nil {
			raw = []byte(data) // decode_frame_data forwards the raw string
		}
		return wsEvent{kind: evFrame, binary: op == "binary", data: raw}, true
	case "ws_closed":
		code := 1000
		if c := obj["code"]; !isNull(c) {
			_ = json.Unmarshal(c, &code)
		}
		reason := "Backend closed connection"
		if _, ok := obj["reason"]; ok {
			reason = str("reason")
		}
		return wsEvent{kind: evClosed, code: code, reason: reason}, true
	}
	return wsEvent{kind: evError, reason: str("reason")}, true
}

// checkResult hands a ws_check_result to the waiting upgrade (WithWSCheck).
func (ch *channel) checkResult(m phoenix.Message, obj map[string]json.RawMessage) {
	var id string
	if json.Unmarshal(obj["check_id"], &id) != nil {
		ch.crash("ws_check_result without check_id", m)
		return
	}
	var res struct {
		Supported bool   `json:"supported"`
		Protocol  string `json:"protocol"`
		Reason    any    `json:"reason"`
	}
	_ = json.Unmarshal(m.Payload, &res)
	s := ch.sock.srv
	s.mu.Lock()
	c := ch.checks[id]
	delete(ch.checks, id)
	s.mu.Unlock()
	if c != nil {
		c <- wsCheckResult{supported: res.Supported, protocol: res.Protocol, reason: res.Reason}
	}
}

// writeJSON writes v as a JSON response.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// trimReason keeps close reasons within the 123 bytes a close frame allows.
func trimReason(s string) string {
	if len(s) <= 123 {
		return s
	}
	return strings.ToValidUTF8(s[:123], "")
}
