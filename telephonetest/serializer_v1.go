package telephonetest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"

	"github.com/verastack/telephone/phoenix"
)

// Phoenix's V1 JSON serializer (docs/PROTOCOL.md §1: a socket URL without vsn, or
// with a vsn matching "~> 1.0.0", gets it). Frames are JSON objects
// {"topic","event","payload","ref"}; inbound "join_ref" is optional, and the
// server never sends one (Phoenix's encode_v1_fields_only).

// v1Version matches the vsn values Phoenix accepts for its V1 serializer.
var v1Version = regexp.MustCompile(`^1\.0\.(0|[1-9][0-9]*)(\+[0-9A-Za-z.-]+)?$`)

// decodeV1 decodes an inbound V1 frame like Phoenix.Socket.Message.from_map!:
// topic, event, payload and ref are required, join_ref may be absent.
func decodeV1(data []byte) (phoenix.Message, error) {
	var f map[string]json.RawMessage
	if err := json.Unmarshal(data, &f); err != nil || f == nil {
		return phoenix.Message{}, errors.New("V1 frame is not a JSON object")
	}
	var m phoenix.Message
	for _, k := range []struct {
		name     string
		dst      *string
		nullable bool
		required bool
	}{
		{"topic", &m.Topic, false, true},
		{"event", &m.Event, false, true},
		{"ref", &m.Ref, true, true},
		{"join_ref", &m.JoinRef, true, false},
	} {
		raw, ok := f[k.name]
		if !ok {
			if k.required {
				return phoenix.Message{}, fmt.Errorf("V1 frame: missing key %q", k.name)
			}
			continue
		}
		if k.nullable && bytes.Equal(raw, []byte("null")) {
			continue
		}
		if err := json.Unmarshal(raw, k.dst); err != nil {
			return phoenix.Message{}, fmt.Errorf("V1 frame: %s is not a string", k.name)
		}
	}
	payload, ok := f["payload"]
	if !ok {
		return phoenix.Message{}, errors.New(`V1 frame: missing key "payload"`)
	}
	m.Payload = payload
	return m, nil
}

// v1Frame is an outbound V1 frame; the field order is Phoenix's.
type v1Frame struct {
	Topic   string          `json:"topic"`
	Event   string          `json:"event"`
	Payload json.RawMessage `json:"payload"`
	Ref     *string         `json:"ref"`
}

// encodeV1 encodes an outbound message as a V1 frame: join_ref is dropped and an
// empty ref is null.
func encodeV1(m phoenix.Message) ([]byte, error) {
	f := v1Frame{Topic: m.Topic, Event: m.Event, Payload: m.Payload}
	if len(f.Payload) == 0 {
		f.Payload = json.RawMessage("{}")
	}
	if m.Ref != "" {
		f.Ref = &m.Ref
	}
	return json.Marshal(f)
}
