package phoenix

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
)

// channelQueueSize is how many inbound events may wait for a channel's handler
// before the socket's reader blocks (back-pressure).
const channelQueueSize = 256

// Channel is one topic on a Socket. Create it with Socket.Channel.
//
// Inbound messages whose JoinRef is empty or equals the current join_ref are
// delivered to the handler in order on one goroutine per channel; replies to our
// own pushes go to the waiting caller instead. Messages carrying another join_ref
// are stale and dropped. phx_error and phx_close that are not stale mark the
// channel not joined and are delivered to the handler, so that its owner can
// re-join (with backoff) on the same Channel; each Join uses a new join_ref, the
// ref of its own phx_join. Every message the channel sends carries the current
// join_ref, as Phoenix 1.8.3+ requires.
//
// A Join that times out is not followed by a phx_leave; a later Join replaces it
// on the server. All methods are safe for concurrent use.
type Channel struct {
	s       *Socket
	topic   string
	handler func(Message)
	in      chan Message // delivery queue; nil without handler

	mu      sync.Mutex // guards joinRef and joined
	joinRef string
	joined  bool
}

// Topic returns the channel's topic.
func (c *Channel) Topic() string { return c.topic }

// Queued returns how many inbound messages wait for the handler (received from the socket,
// not yet delivered): work that has reached the client but that the handler has not seen.
// It is always 0 with SocketOptions.InlineHandlers, which has no queue.
func (c *Channel) Queued() int { return len(c.in) }

// JoinRef returns the current join_ref: the ref of the latest phx_join sent, or ""
// before the first Join.
func (c *Channel) JoinRef() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.joinRef
}

// Joined reports whether the latest Join succeeded and the channel has not been
// left, errored or closed since, and the socket is still running.
func (c *Channel) Joined() bool {
	c.mu.Lock()
	joined := c.joined
	c.mu.Unlock()
	return joined && c.s.Err() == nil
}

// Join sends phx_join with payload and waits for the reply (at most the socket's
// PushTimeout or ctx's deadline). It returns the reply's response when the status
// is "ok", a *ReplyError for any other status, an error wrapping ErrTimeout when
// no reply came, and one wrapping ErrClosed when the socket has stopped. Joining
// again (also while joined) starts a new join with a new join_ref; messages for
// the old one are dropped from then on.
//
// payload, here and in Push and Send: json.RawMessage and []byte are used as-is
// and must be valid JSON (else ErrInvalidPayload), ValidJSON is used as-is without
// that check, nil sends {}, anything else is encoded with json.Marshal.
func (c *Channel) Join(ctx context.Context, payload any) (json.RawMessage, error) {
	ref := c.s.nextRef()
	data, err := c.encode(ref, ref, EventJoin, payload)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.joinRef, c.joined = ref, false
	c.mu.Unlock()
	return replyResponse(c.s.roundTrip(ctx, ref, data))
}

// Push sends event with payload, stamped with the current join_ref, and waits for
// the phx_reply carrying its ref. Results are as for Join; a channel that is not
// joined gives ErrChannelClosed.
func (c *Channel) Push(ctx context.Context, event string, payload any) (json.RawMessage, error) {
	ref, data, err := c.prepare(event, payload)
	if err != nil {
		return nil, err
	}
	return replyResponse(c.s.roundTrip(ctx, ref, data))
}

// Send sends event with payload without waiting for a reply (for events the
// server answers with :noreply, like proxy_res). The message still carries a ref
// and the current join_ref. Send returns once the frame is queued for writing; it
// blocks only while the outbound queue is full, until ctx is done.
func (c *Channel) Send(ctx context.Context, event string, payload any) error {
	_, data, err := c.prepare(event, payload)
	if err != nil {
		return err
	}
	return c.s.enqueue(ctx, data)
}

// Leave sends phx_leave with the current join_ref, waits for its reply (results
// as for Join) and then marks the channel not joined. Until then the channel
// stays joined: replies to requests still in flight can be sent, and the server
// reads them before the phx_leave, as frames are written in order. Leaving a
// channel that never joined does nothing. The server follows its reply with a
// phx_close, which is delivered to the handler like any other.
func (c *Channel) Leave(ctx context.Context) error {
	c.mu.Lock()
	joinRef := c.joinRef
	c.mu.Unlock()
	if joinRef == "" {
		return nil
	}
	ref := c.s.nextRef()
	data, err := c.encode(joinRef, ref, EventLeave, nil)
	if err != nil {
		return err
	}
	_, err = replyResponse(c.s.roundTrip(ctx, ref, data))
	c.mu.Lock()
	if c.joinRef == joinRef {
		c.joined = false
	}
	c.mu.Unlock()
	return err
}

// prepare checks the channel can send and encodes a message with a fresh ref.
func (c *Channel) prepare(event string, payload any) (string, []byte, error) {
	joinRef, err := c.sendable()
	if err != nil {
		return "", nil, err
	}
	ref := c.s.nextRef()
	data, err := c.encode(joinRef, ref, event, payload)
	return ref, data, err
}

// sendable returns the join_ref to send with, or why the channel cannot send.
func (c *Channel) sendable() (string, error) {
	if err := c.s.Err(); err != nil {
		return "", closedErr(err)
	}
	c.mu.Lock()
	joined, joinRef := c.joined, c.joinRef
	c.mu.Unlock()
	if !joined {
		return "", fmt.Errorf("%w: %s", ErrChannelClosed, c.topic)
	}
	return joinRef, nil
}

// SendAppend is Send for a payload that appendPayload appends straight into the frame, so
// that a large payload is built once instead of built and then copied into a frame.
// What it appends must be valid JSON; like ValidJSON it is not checked (nothing appended
// sends {}). sizeHint is the payload's expected size, to allocate the frame once.
func (c *Channel) SendAppend(ctx context.Context, event string, sizeHint int, appendPayload func(dst []byte) []byte) error {
	joinRef, err := c.sendable()
	if err != nil {
		return err
	}
	m := Message{JoinRef: joinRef, Ref: c.s.nextRef(), Topic: c.topic, Event: event}
	dst := appendEnvelope(make([]byte, 0, max(sizeHint, 0)+len(c.topic)+len(event)+48), m)
	n := len(dst)
	if dst = appendPayload(dst); len(dst) == n {
		dst = append(dst, emptyObject...)
	}
	return c.s.enqueue(ctx, append(dst, ']'))
}

// SendParts is Send for a large payload given in parts, which together must be valid JSON
// (not checked, like ValidJSON): they are written in order as one text message without being
// joined (as a fragmented WebSocket message, when the Conn is a PartsWriter). release, when
// not nil, is called with each part and its index in parts once it has been written or will
// not be (an error), so that its memory can be reused; the channel keeps no reference to a
// released part. The channel owns parts from the call on.
func (c *Channel) SendParts(ctx context.Context, event string, parts [][]byte, release func(i int, p []byte)) error {
	joinRef, err := c.sendable()
	if err != nil {
		if release != nil {
			for i, p := range parts {
				release(i, p)
				parts[i] = nil
			}
		}
		return err
	}
	m := Message{JoinRef: joinRef, Ref: c.s.nextRef(), Topic: c.topic, Event: event}
	head := appendEnvelope(make([]byte, 0, len(c.topic)+len(event)+48), m)
	f := frame{parts: append(append(make([][]byte, 0, len(parts)+2), head), parts...)}
	f.parts = append(f.parts, []byte{']'})
	clear(parts)
	if release != nil {
		last := len(f.parts) - 1
		f.release = func(i int, p []byte) {
			if i > 0 && i < last { // not the envelope's own parts
				release(i-1, p)
			}
		}
	}
	return c.s.enqueueFrame(ctx, f)
}

func (c *Channel) encode(joinRef, ref, event string, payload any) ([]byte, error) {
	m := Message{JoinRef: joinRef, Ref: ref, Topic: c.topic, Event: event}
	switch p := payload.(type) {
	case nil:
	case ValidJSON:
		m.Payload = json.RawMessage(p)
		return appendTextTrusted(make([]byte, 0, len(p)+len(c.topic)+len(event)+32), m), nil
	case json.RawMessage:
		m.Payload = p
	case []byte:
		m.Payload = p
	default:
		b, err := json.Marshal(payload)
		if err != nil {
			return nil, fmt.Errorf("phoenix: encode payload: %w", err)
		}
		m.Payload = b
		return appendTextTrusted(make([]byte, 0, len(b)+len(c.topic)+len(event)+32), m), nil
	}
	return EncodeText(m) // validates caller-supplied JSON
}

// replyResponse turns a reply into Join/Push results.
func replyResponse(r Reply, err error) (json.RawMessage, error) {
	if err != nil {
		return nil, err
	}
	if r.Status != "ok" {
		return nil, &ReplyError{Status: r.Status, Response: r.Response}
	}
	return r.Response, nil
}

// replied runs on the reader goroutine for every awaited reply on this topic, in
// frame order, so that the join state is right before later frames are routed.
func (c *Channel) replied(ref string, res replyResult) {
	c.mu.Lock()
	if ref == c.joinRef {
		c.joined = res.err == nil && res.reply.Status == "ok"
	}
	c.mu.Unlock()
}

// receive runs on the reader goroutine: it drops stale messages, tracks
// phx_error/phx_close and queues the message for the handler (blocking while the
// queue is full, which back-pressures the reader).
func (c *Channel) receive(m Message) {
	c.mu.Lock()
	stale := m.JoinRef != "" && m.JoinRef != c.joinRef
	if !stale && (m.Event == EventError || m.Event == EventClose) {
		c.joined = false
	}
	c.mu.Unlock()
	if stale {
		c.s.log.Debug("phoenix: dropping message for an old join", "topic", c.topic, "event", m.Event, "join_ref", m.JoinRef)
		return
	}
	if c.in == nil {
		if c.handler != nil && c.s.opts.InlineHandlers {
			select {
			case <-c.s.closing: // as with a delivery goroutine: nothing is delivered once stopping
			default:
				c.handler(m)
			}
		}
		return
	}
	select {
	case c.in <- m:
	case <-c.s.closing:
	}
}

// deliverLoop calls the handler for each queued message until the socket stops;
// messages still queued then are dropped.
func (c *Channel) deliverLoop() {
	defer c.s.wg.Done()
	for {
		select {
		case <-c.s.closing:
			return
		case m := <-c.in:
			c.handler(m)
		}
	}
}
