package telephonetest

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/coder/websocket"
)

// DropAll cuts every telephone socket abruptly: the TCP connection is closed
// without a close frame, as when the network fails. Channels end as on a
// disconnect (waiting HTTP callers get 502). Proxied client WebSockets of those
// channels are closed with 1001.
func (s *Server) DropAll() {
	for _, sk := range s.liveSockets() {
		sk.shutdown(websocket.StatusNormalClosure, "", true)
	}
}

// DropSocket cuts one telephone socket abruptly, as a network failure on that
// one connection would: its channels end at once (unregistered, so no request
// is routed to them any more), and it returns how many HTTP callers were
// waiting on them; those get 502. Other sockets, of the same token too, are
// untouched. id is a SocketInfo.ID from Sockets; an id that names no live
// socket gives ErrUnknownSocket.
func (s *Server) DropSocket(id string) (failed int, err error) {
	s.mu.Lock()
	var sk *socket
	for c := range s.sockets {
		if c.id == id {
			sk = c
		}
	}
	var chans []*channel
	if sk != nil {
		chans = sk.channelsLocked()
	}
	s.mu.Unlock()
	if sk == nil {
		return 0, fmt.Errorf("%w: %q", ErrUnknownSocket, id)
	}
	// End the channels before the socket: the socket's own teardown would otherwise race to end
	// them and the count of failed callers would be lost.
	for _, ch := range chans {
		failed += s.endChannel(ch, endSilent)
	}
	sk.shutdown(websocket.StatusNormalClosure, "", true)
	return failed, nil
}

// SocketInfo describes one live telephone socket (Sockets).
type SocketInfo struct {
	ID         string `json:"id"`       // the server's id for the socket: "1", "2", ... in connect order
	TokenID    string `json:"token_id"` // the token it authenticated with
	PathID     string `json:"path_id"`
	Joined     bool   `json:"joined"`     // its telephone channel is joined
	Pending    int    `json:"pending"`    // HTTP callers waiting for a proxy_res on it
	WebSockets int    `json:"websockets"` // proxied client WebSockets carried by it
}

// Sockets lists the live telephone sockets in connect order.
func (s *Server) Sockets() []SocketInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	socks := slices.SortedFunc(maps.Keys(s.sockets), func(a, b *socket) int { return cmp.Compare(a.seq, b.seq) })
	out := make([]SocketInfo, 0, len(socks))
	for _, sk := range socks {
		info := SocketInfo{ID: sk.id, TokenID: sk.tokenID, PathID: sk.pathID}
		for _, ch := range sk.channels {
			info.Joined = true
			info.Pending += len(ch.pending)
			info.WebSockets += len(ch.wsConns)
		}
		out = append(out, info)
	}
	return out
}

// Restart closes every telephone socket with close code 1012 (service restart),
// as a draining Plugboard node does. Tokens stay valid: telephones may
// reconnect at once.
func (s *Server) Restart() {
	for _, sk := range s.liveSockets() {
		sk.shutdown(websocket.StatusServiceRestart, "", false)
	}
}

// Disconnect closes every socket opened with the token with close code 1011,
// as Bandit 1.8.0 does for Phoenix's "disconnect" broadcast to the socket id
// (docs/PROTOCOL.md §2.8). The token is not revoked.
func (s *Server) Disconnect(tokenID string) {
	s.closeTokenSockets(tokenID, websocket.StatusInternalError)
}

// closeTokenSockets closes the token's sockets with code and returns how many.
func (s *Server) closeTokenSockets(tokenID string, code websocket.StatusCode) int {
	n := 0
	for _, sk := range s.liveSockets() {
		if sk.tokenID == tokenID {
			sk.shutdown(code, "", false)
			n++
		}
	}
	return n
}

func (s *Server) liveSockets() []*socket {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.socketsLocked()
}

// RefuseTokens makes every socket upgrade fail with 403 while on, as if every
// token were refused. Open sockets are not affected.
func (s *Server) RefuseTokens(on bool) { s.refuse.Store(on) }

// DelayReplies delays every phx_reply and heartbeat_ack by d (0 turns it off).
// Frames keep their order: frames queued after a delayed one wait for it.
func (s *Server) DelayReplies(d time.Duration) { s.replyDelay.Store(int64(max(d, 0))) }

// DropReplies makes the server send no phx_reply at all while on (joins,
// refreshes, leaves, phoenix heartbeats, errors); the messages are still
// handled.
func (s *Server) DropReplies(on bool) { s.dropReplies.Store(on) }

// StopHeartbeatAcks stops heartbeat_ack pushes while on; heartbeat events still
// count as liveness for the channel's heartbeat timeout.
func (s *Server) StopHeartbeatAcks(on bool) { s.stopAcks.Store(on) }

// CrashChannels kills every channel of the path as a crash does: the telephone
// gets phx_error, waiting HTTP callers 502, proxied WebSockets close with 1001.
// The sockets stay open; the telephones may re-join.
func (s *Server) CrashChannels(pathID string) {
	s.mu.Lock()
	chans := append([]*channel(nil), s.paths[pathID]...)
	s.mu.Unlock()
	for _, ch := range chans {
		s.endChannel(ch, endCrash)
	}
}

// Push pushes an arbitrary event to one joined telephone of the path (chosen
// round-robin like requests), for tests of how a client handles unexpected or
// invalid pushes. payload may be a json.RawMessage or []byte (sent as they
// are), nil ({}), or any value json.Marshal accepts. It returns ErrNoTelephone
// when no telephone has joined the path.
func (s *Server) Push(pathID, event string, payload any) error {
	data, err := marshalPayload(payload)
	if err != nil {
		return fmt.Errorf("telephonetest: encode payload: %w", err)
	}
	if !json.Valid(data) {
		return fmt.Errorf("telephonetest: payload is not valid JSON")
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	ch := s.pickLocked(pathID)
	s.mu.Unlock()
	if ch == nil {
		return fmt.Errorf("%w: %s", ErrNoTelephone, pathID)
	}
	ch.sock.push(ch.joinRef, ch.topic, event, data, false)
	return nil
}
