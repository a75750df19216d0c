package phoenix

import "fmt"

// FrameKind is the first byte of a V2 binary frame.
type FrameKind byte

// Binary frame kinds (docs/PROTOCOL.md §2.2).
const (
	KindPush      FrameKind = 0
	KindReply     FrameKind = 1
	KindBroadcast FrameKind = 2
)

// String returns "push", "reply", "broadcast" or "kind(N)".
func (k FrameKind) String() string {
	switch k {
	case KindPush:
		return "push"
	case KindReply:
		return "reply"
	case KindBroadcast:
		return "broadcast"
	}
	return fmt.Sprintf("kind(%d)", byte(k))
}

// DecodeBinaryPush decodes a client→server binary push (what a server receives): kind 0,
// four length bytes, then join_ref, ref, topic, event and the raw payload. The result has
// Binary set; its Payload aliases data. Any other kind, a truncated header or a length running past the end of data is
// rejected with an error wrapping ErrMalformed.
func DecodeBinaryPush(data []byte) (Message, error) {
	if len(data) == 0 {
		return Message{}, malformed("empty binary frame")
	}
	if k := FrameKind(data[0]); k != KindPush {
		return Message{}, malformed("binary frame kind is %s, want push", k)
	}
	var f [4]string
	payload, err := splitFields(data[1:], f[:])
	if err != nil {
		return Message{}, err
	}
	return Message{JoinRef: f[0], Ref: f[1], Topic: f[2], Event: f[3], Payload: payload, Binary: true}, nil
}

// DecodeBinary decodes any server→client binary frame (push, reply or broadcast)
// and reports its kind. Replies get Event "phx_reply" and their Status; the
// Payload (the raw response for replies) aliases data. Unknown kinds, truncated
// headers and lengths running past the end of data are rejected with an error
// wrapping ErrMalformed.
func DecodeBinary(data []byte) (Message, FrameKind, error) {
	if len(data) == 0 {
		return Message{}, 0, malformed("empty binary frame")
	}
	kind := FrameKind(data[0])
	var f [4]string
	var m Message
	var err error
	switch kind {
	case KindPush:
		m.Payload, err = splitFields(data[1:], f[:3])
		m.JoinRef, m.Topic, m.Event = f[0], f[1], f[2]
	case KindReply:
		m.Payload, err = splitFields(data[1:], f[:4])
		m.JoinRef, m.Ref, m.Topic, m.Status, m.Event = f[0], f[1], f[2], f[3], EventReply
	case KindBroadcast:
		m.Payload, err = splitFields(data[1:], f[:2])
		m.Topic, m.Event = f[0], f[1]
	default:
		return Message{}, kind, malformed("unknown binary frame %s", kind)
	}
	if err != nil {
		return Message{}, kind, err
	}
	m.Binary = true
	return m, kind, nil
}

// splitFields reads len(out) length bytes, then that many fields, from b and
// returns what follows (the payload).
func splitFields(b []byte, out []string) ([]byte, error) {
	if len(b) < len(out) {
		return nil, malformed("binary header truncated: %d of %d length bytes", len(b), len(out))
	}
	lens, rest := b[:len(out)], b[len(out):]
	for i, l := range lens {
		if int(l) > len(rest) {
			return nil, malformed("binary field %d length %d exceeds the %d bytes left", i, l, len(rest))
		}
		out[i] = string(rest[:l])
		rest = rest[l:]
	}
	return rest[:len(rest):len(rest)], nil
}
