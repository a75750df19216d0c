package telephonetest

import (
	"encoding/json"
	"strings"

	"github.com/verastack/telephone/phoenix"
)

// topicPrefix is the telephone channel route: Plugboard declares
// channel "telephone:*", TelephoneChannel.
const topicPrefix = "telephone:"

// dispatch handles one inbound message the way Phoenix.Socket does
// (docs/PROTOCOL.md §2.2-§2.7): the phoenix heartbeat, joins, leaves, the
// "unmatched topic" error, strict or lenient join_ref checks, and then the
// channel's own events.
func (sk *socket) dispatch(m phoenix.Message) {
	switch {
	case m.Topic == phoenix.TopicPhoenix && m.Event == phoenix.EventHeartbeat:
		sk.reply("", m.Ref, m.Topic, "ok", nil)
		return
	case m.Event == phoenix.EventJoin:
		sk.join(m)
		return
	}
	s := sk.srv
	s.mu.Lock()
	ch := sk.channels[m.Topic]
	s.mu.Unlock()
	switch {
	case ch == nil && m.Event == phoenix.EventLeave:
		sk.reply(m.JoinRef, m.Ref, m.Topic, "ok", nil)
	case ch == nil:
		sk.reply("", m.Ref, m.Topic, "error", map[string]string{"reason": "unmatched topic"})
	case !s.cfg.lenientJoinRef && m.JoinRef != ch.joinRef:
		s.cfg.logger.Debug("telephonetest: dropped message with a stale join_ref (strict, Phoenix 1.8.3+)",
			"topic", m.Topic, "event", m.Event, "join_ref", m.JoinRef, "current", ch.joinRef)
	case m.Event == phoenix.EventLeave:
		sk.reply(ch.joinRef, m.Ref, m.Topic, "ok", nil)
		s.endChannel(ch, endClose)
	default:
		ch.handleIn(m)
	}
}

// join handles phx_join: a duplicate join replaces the live channel (the new
// join is answered first, then phx_close goes out for the old join_ref), a
// topic outside the telephone route is "unmatched", and the path must be the
// token's.
func (sk *socket) join(m phoenix.Message) {
	s := sk.srv
	if !strings.HasPrefix(m.Topic, topicPrefix) {
		sk.reply("", m.Ref, m.Topic, "error", map[string]string{"reason": "unmatched topic"})
		return
	}
	if strings.TrimPrefix(m.Topic, topicPrefix) != sk.pathID {
		sk.reply(m.JoinRef, m.Ref, m.Topic, "error", map[string]string{"reason": "path_id_mismatch"})
		return
	}
	// The reply is queued in the same critical section that registers the channel: no push
	// for the channel can overtake it (a real Phoenix socket writes the join reply before any
	// push from the channel process), and a telephone that has read the reply is already
	// registered, so an HTTP call or Push right after it finds the channel.
	old, ok := s.startChannel(sk, m.Topic, m.JoinRef, func() {
		sk.reply(m.JoinRef, m.Ref, m.Topic, "ok", map[string]any{
			"status":     "ok",
			"path":       "/" + sk.pathID,
			"expires_in": s.lifetimeSeconds(),
		})
	})
	if !ok {
		return // the socket is closing
	}
	if old != nil {
		s.endChannel(old, endClose)
	}
}

// reply queues a phx_reply unless DropReplies is on. An empty joinRef is sent
// as null. A nil response is {}.
func (sk *socket) reply(joinRef, ref, topic, status string, response any) {
	if sk.srv.dropReplies.Load() {
		return
	}
	if response == nil {
		response = struct{}{}
	}
	payload, err := json.Marshal(map[string]any{"status": status, "response": response})
	if err != nil {
		sk.srv.cfg.logger.Error("telephonetest: cannot encode reply", "err", err)
		return
	}
	sk.send(phoenix.Message{JoinRef: joinRef, Ref: ref, Topic: topic, Event: phoenix.EventReply, Payload: payload}, true)
}

// push queues a server push [join_ref, null, topic, event, payload].
func (sk *socket) push(joinRef, topic, event string, payload any, delayed bool) {
	data, err := marshalPayload(payload)
	if err != nil {
		sk.srv.cfg.logger.Error("telephonetest: cannot encode push", "event", event, "err", err)
		return
	}
	sk.send(phoenix.Message{JoinRef: joinRef, Topic: topic, Event: event, Payload: data}, delayed)
}

// marshalPayload encodes a payload: json.RawMessage and []byte are used as they
// are, nil is {}, anything else goes through json.Marshal.
func marshalPayload(p any) (json.RawMessage, error) {
	switch v := p.(type) {
	case nil:
		return json.RawMessage("{}"), nil
	case json.RawMessage:
		return v, nil
	case []byte:
		return v, nil
	}
	return json.Marshal(p)
}

// lifetimeSeconds is the configured token lifetime in whole seconds.
func (s *Server) lifetimeSeconds() int64 {
	return int64(s.cfg.tokenLifetime.Seconds())
}
