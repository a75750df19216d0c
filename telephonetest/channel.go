package telephonetest

import (
	"encoding/json"
	"time"

	"github.com/verastack/telephone/phoenix"
)

// endKind says how a channel ends and what the telephone is told.
type endKind int

const (
	endSilent endKind = iota // the socket is gone: nothing can be sent
	endClose                 // graceful (leave, duplicate join): phx_close
	endCrash                 // abnormal exit (crash, heartbeat timeout): phx_error
)

// channel is one joined telephone channel (Plugboard's TelephoneChannel
// process) on one socket.
type channel struct {
	sock    *socket
	topic   string
	joinRef string
	pathID  string
	stop    chan struct{} // closed when the channel ends

	// Guarded by Server.mu:
	alive         bool
	lastHeartbeat time.Time
	pending       map[string]*pendingCall       // request_id → waiting HTTP caller
	wsConns       map[string]*wsProxy           // connection_id → proxied WebSocket
	checks        map[string]chan wsCheckResult // check_id → waiting ws_check
}

// startChannel joins topic on sk: the new channel replaces any live channel of
// the topic on the socket (returned as old, still alive), is registered for its
// path and gets its heartbeat watchdog. reply queues the join reply; it runs with s.mu held,
// right after the registration (it must not block or take s.mu). ok is false when the
// socket is closing.
func (s *Server) startChannel(sk *socket, topic, joinRef string, reply func()) (old *channel, ok bool) {
	ch := &channel{
		sock: sk, topic: topic, joinRef: joinRef, pathID: sk.pathID,
		stop:          make(chan struct{}),
		alive:         true,
		lastHeartbeat: time.Now(),
		pending:       make(map[string]*pendingCall),
		wsConns:       make(map[string]*wsProxy),
		checks:        make(map[string]chan wsCheckResult),
	}
	s.mu.Lock()
	if sk.closed {
		s.mu.Unlock()
		return nil, false
	}
	old = sk.channels[topic]
	sk.channels[topic] = ch
	s.paths[ch.pathID] = append(s.paths[ch.pathID], ch)
	reply()
	s.notifyLocked()
	s.mu.Unlock()
	sk.wg.Go(ch.watchHeartbeat)
	return old, true
}

// watchHeartbeat stops the channel with phx_error when no heartbeat event came
// for longer than the heartbeat timeout, checking every timeout/2 from the
// join (docs/PROTOCOL.md §3.6).
func (ch *channel) watchHeartbeat() {
	s := ch.sock.srv
	timeout := s.cfg.heartbeatTimeout
	t := time.NewTicker(max(timeout/2, time.Nanosecond))
	defer t.Stop()
	for {
		select {
		case <-ch.stop:
			return
		case <-t.C:
			s.mu.Lock()
			last := ch.lastHeartbeat
			s.mu.Unlock()
			if time.Since(last) > timeout {
				s.cfg.logger.Info("telephonetest: channel heartbeat timeout", "topic", ch.topic)
				s.endChannel(ch, endCrash)
				return
			}
		}
	}
}

// endChannel runs the channel's terminate: unregister it, fail waiting HTTP
// callers with 502, close its proxied WebSockets with 1001, fail pending
// ws_checks, and tell the telephone (phx_close or phx_error with ref and
// join_ref both set to the join_ref). It returns how many HTTP callers it
// failed. Ending an ended channel does nothing.
func (s *Server) endChannel(ch *channel, how endKind) (failed int) {
	s.mu.Lock()
	if !ch.alive {
		s.mu.Unlock()
		return 0
	}
	ch.alive = false
	if ch.sock.channels[ch.topic] == ch {
		delete(ch.sock.channels, ch.topic)
	}
	s.unregisterLocked(ch)
	pending, conns, checks := ch.pending, ch.wsConns, ch.checks
	ch.pending, ch.wsConns, ch.checks = nil, nil, nil
	s.mu.Unlock()
	close(ch.stop)
	for _, pc := range pending {
		pc.res <- callResult{disconnected: true}
	}
	for _, p := range conns {
		p.events.Put(wsEvent{kind: evGone})
	}
	for _, c := range checks {
		c <- wsCheckResult{failed: true}
	}
	switch how {
	case endClose:
		ch.sock.send(phoenix.Message{JoinRef: ch.joinRef, Ref: ch.joinRef, Topic: ch.topic, Event: phoenix.EventClose}, false)
	case endCrash:
		ch.sock.send(phoenix.Message{JoinRef: ch.joinRef, Ref: ch.joinRef, Topic: ch.topic, Event: phoenix.EventError}, false)
	}
	return len(pending)
}

// unregisterLocked removes ch from its path's registry. s.mu must be held.
func (s *Server) unregisterLocked(ch *channel) {
	list := s.paths[ch.pathID]
	for i, c := range list {
		if c == ch {
			list = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(s.paths, ch.pathID)
		delete(s.rr, ch.pathID)
	} else {
		s.paths[ch.pathID] = list
	}
	s.notifyLocked()
}

// notifyLocked wakes WaitJoined callers. s.mu must be held.
func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// crash ends the channel like an exception in a handle_in clause would.
func (ch *channel) crash(why string, m phoenix.Message) {
	ch.sock.srv.cfg.logger.Info("telephonetest: channel crashed (no matching handle_in clause)",
		"topic", ch.topic, "event", m.Event, "why", why)
	ch.sock.srv.endChannel(ch, endCrash)
}

// handleIn handles one event of the telephone channel (docs/PROTOCOL.md §3.2). An
// event or payload shape the real channel has no clause for crashes it; a
// proxy_res it cannot route is ignored.
func (ch *channel) handleIn(m phoenix.Message) {
	var obj map[string]json.RawMessage
	if m.Binary || json.Unmarshal(m.Payload, &obj) != nil || obj == nil {
		if m.Event == "proxy_res" {
			return // the catch-all proxy_res clause logs and ignores it
		}
		ch.crash("payload is not a JSON object", m)
		return
	}
	switch m.Event {
	case phoenix.EventHeartbeat:
		ch.heartbeat(obj)
	case "refresh_token":
		ch.refreshToken(m)
	case "proxy_res":
		ch.proxyRes(obj, m.Payload)
	case "ws_connected", "ws_frame", "ws_closed", "ws_error":
		ch.wsEvent(m, obj)
	case "ws_check_result":
		if !ch.sock.srv.cfg.wsCheck {
			ch.crash("no ws_check_result handler (enable WithWSCheck)", m)
			return
		}
		ch.checkResult(m, obj)
	default:
		ch.crash("unknown event", m)
	}
}

// heartbeat refreshes the channel's liveness and pushes heartbeat_ack with the
// echoed ts, or the server's Unix time in seconds when ts is absent or null.
func (ch *channel) heartbeat(obj map[string]json.RawMessage) {
	s := ch.sock.srv
	now := time.Now()
	s.mu.Lock()
	ch.lastHeartbeat = now
	s.mu.Unlock()
	if s.stopAcks.Load() {
		return
	}
	ts, ok := obj["ts"]
	if !ok || string(ts) == "null" {
		ts, _ = json.Marshal(now.Unix())
	}
	ch.sock.push(ch.joinRef, ch.topic, "heartbeat_ack", map[string]json.RawMessage{"ts": ts}, true)
}

// refreshToken rotates the socket's token and answers with a reply (newest
// Plugboard) or a refresh_token_ack push (WithRefreshPushForm).
func (ch *channel) refreshToken(m phoenix.Message) {
	s := ch.sock.srv
	jwt, err := s.refresh(ch.sock.tokenID)
	if err != nil {
		ch.sock.reply(ch.joinRef, m.Ref, ch.topic, "error", map[string]string{"reason": err.Error()})
		return
	}
	resp := map[string]any{"token": jwt, "expires_in": s.lifetimeSeconds()}
	if s.cfg.refreshPush {
		ch.sock.push(ch.joinRef, ch.topic, "refresh_token_ack", resp, false)
		return
	}
	ch.sock.reply(ch.joinRef, m.Ref, ch.topic, "ok", resp)
}

// proxyRes hands a proxy_res to the HTTP caller waiting for its request_id. An
// unknown or missing request_id is ignored (no reply), like Plugboard.
func (ch *channel) proxyRes(obj map[string]json.RawMessage, raw json.RawMessage) {
	var id string
	if json.Unmarshal(obj["request_id"], &id) != nil || id == "" {
		ch.sock.srv.cfg.logger.Warn("telephonetest: proxy_res without a request_id ignored")
		return
	}
	s := ch.sock.srv
	s.mu.Lock()
	pc := ch.pending[id]
	delete(ch.pending, id)
	s.mu.Unlock()
	if pc == nil {
		s.cfg.logger.Warn("telephonetest: proxy_res for an unknown request_id ignored", "request_id", id)
		return
	}
	pc.res <- callResult{payload: append(json.RawMessage(nil), raw...)}
}
