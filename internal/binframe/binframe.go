// Package binframe encodes Phoenix V2 binary frames (docs/PROTOCOL.md §2.2) for the
// tests of the decoders in phoenix and of the fake Plugboard in telephonetest. The telephone
// itself never sends a binary frame, so the encoders are not part of the public API.
package binframe

import (
	"errors"
	"fmt"
)

// ErrFieldTooLong is returned for a join_ref, ref, topic, event or status longer than the
// 255 bytes one length byte can describe.
var ErrFieldTooLong = errors.New("binframe: binary frame field longer than 255 bytes")

// Frame kinds: the first byte of a binary frame.
const (
	kindPush      = 0
	kindReply     = 1
	kindBroadcast = 2
)

const maxFieldLen = 255

// Push encodes a client→server push: kind 0, four length bytes, then join_ref, ref, topic,
// event and the raw payload.
func Push(joinRef, ref, topic, event string, payload []byte) ([]byte, error) {
	return encode(kindPush, payload, joinRef, ref, topic, event)
}

// ServerPush encodes a server→client push (no ref): kind 0, three length bytes, then join_ref,
// topic, event and the raw payload.
func ServerPush(joinRef, topic, event string, payload []byte) ([]byte, error) {
	return encode(kindPush, payload, joinRef, topic, event)
}

// Reply encodes a server→client reply: kind 1, four length bytes, then join_ref, ref, topic,
// status and the raw payload (the response).
func Reply(joinRef, ref, topic, status string, payload []byte) ([]byte, error) {
	return encode(kindReply, payload, joinRef, ref, topic, status)
}

// Broadcast encodes a server→client broadcast: kind 2, two length bytes, then topic, event
// and the raw payload.
func Broadcast(topic, event string, payload []byte) ([]byte, error) {
	return encode(kindBroadcast, payload, topic, event)
}

func encode(kind byte, payload []byte, fields ...string) ([]byte, error) {
	n := 1 + len(fields) + len(payload)
	for i, f := range fields {
		if len(f) > maxFieldLen {
			return nil, fmt.Errorf("%w: field %d of a kind %d frame is %d bytes", ErrFieldTooLong, i, kind, len(f))
		}
		n += len(f)
	}
	buf := make([]byte, 0, n)
	buf = append(buf, kind)
	for _, f := range fields {
		buf = append(buf, byte(len(f)))
	}
	for _, f := range fields {
		buf = append(buf, f...)
	}
	return append(buf, payload...), nil
}
