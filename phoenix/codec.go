package phoenix

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"

	"github.com/verastack/telephone/internal/jsonstr"
)

// Well-known topic and event names of the Phoenix Channels protocol.
const (
	TopicPhoenix   = "phoenix"
	EventJoin      = "phx_join"
	EventReply     = "phx_reply"
	EventLeave     = "phx_leave"
	EventClose     = "phx_close"
	EventError     = "phx_error"
	EventHeartbeat = "heartbeat"
)

// Message is one Phoenix V2 message. An empty JoinRef or Ref stands for JSON null
// on the wire (a decoded "" also becomes empty). A Message is a plain value; the
// decoders return a Payload that aliases the decoded input (see DecodeText).
type Message struct {
	JoinRef string
	Ref     string
	Topic   string
	Event   string
	Payload json.RawMessage // text frames: JSON (nil encodes as {}); binary frames: raw bytes
	Status  string          // binary reply frames only ("ok"/"error"); Event is then "phx_reply"
	Binary  bool            // the message is (or will be) a binary frame
}

// Reply is the payload of a text phx_reply: {"status": "ok"|"error", "response": {...}}.
type Reply struct {
	Status   string          `json:"status"`
	Response json.RawMessage `json:"response"`
}

// DecodeReply decodes a phx_reply payload. A payload that is not a JSON object
// with a non-empty string "status" is rejected with an error wrapping ErrMalformed.
// A missing "response" leaves Response nil.
func DecodeReply(payload json.RawMessage) (Reply, error) {
	var r Reply
	if err := json.Unmarshal(payload, &r); err != nil {
		return Reply{}, malformed("reply payload: %v", err)
	}
	if r.Status == "" {
		return Reply{}, malformed("reply payload has no status")
	}
	return r, nil
}

var emptyObject = []byte("{}")

// ValidJSON is a payload its producer guarantees to be valid JSON (for example the
// output of encoding/json). Channel methods send it without scanning it again, which
// matters for large payloads; anything else passed as json.RawMessage or []byte is
// validated first.
type ValidJSON []byte

// EncodeText encodes m as a V2 text frame [join_ref, ref, topic, event, payload]
// with no insignificant whitespace: empty refs become null, strings are escaped as
// encoding/json escapes them, and the payload bytes are copied verbatim (nil or
// empty encodes as {}). A payload that is not valid JSON is rejected with
// ErrInvalidPayload. Status and Binary are ignored.
func EncodeText(m Message) ([]byte, error) {
	n := len(m.JoinRef) + len(m.Ref) + len(m.Topic) + len(m.Event) + len(m.Payload) + 32
	return AppendText(make([]byte, 0, n), m)
}

// AppendText is EncodeText appending to dst. On error dst is returned unchanged.
func AppendText(dst []byte, m Message) ([]byte, error) {
	if len(m.Payload) > 0 && !json.Valid(m.Payload) {
		return dst, ErrInvalidPayload
	}
	return appendTextTrusted(dst, m), nil
}

// appendTextTrusted is AppendText for a payload known to be valid JSON (empty or
// produced by json.Marshal), skipping the validation scan.
func appendTextTrusted(dst []byte, m Message) []byte {
	payload := []byte(m.Payload)
	if len(payload) == 0 {
		payload = emptyObject
	}
	dst = appendEnvelope(dst, m)
	dst = append(dst, payload...)
	return append(dst, ']')
}

// appendEnvelope appends a text frame up to its payload: [join_ref,ref,topic,event,
func appendEnvelope(dst []byte, m Message) []byte {
	dst = append(dst, '[')
	dst = appendNullable(dst, m.JoinRef)
	dst = append(dst, ',')
	dst = appendNullable(dst, m.Ref)
	dst = append(dst, ',')
	dst = appendString(dst, m.Topic)
	dst = append(dst, ',')
	dst = appendString(dst, m.Event)
	return append(dst, ',')
}

func appendNullable(dst []byte, s string) []byte {
	if s == "" {
		return append(dst, "null"...)
	}
	return appendString(dst, s)
}

// appendString appends s as a JSON string escaped exactly like encoding/json does
// by default (HTML-safe: <, > and & become \u003c, \u003e, \u0026; invalid UTF-8
// becomes \ufffd; U+2028 and U+2029 are escaped).
func appendString(dst []byte, s string) []byte { return jsonstr.Append(dst, s, true) }

// DecodeText decodes a V2 text frame [join_ref, ref, topic, event, payload].
//
// Like the Phoenix server it accepts arrays with more than five elements and
// ignores the extra trailing ones. join_ref and ref must be strings or null, topic
// and event strings, and the payload any JSON value. Anything else (invalid JSON,
// not an array, fewer than five elements, a wrong element type) is rejected with an
// error wrapping ErrMalformed; DecodeText never panics.
//
// The returned Payload aliases data (no copy is made), so data must not be
// modified while the Message is in use.
func DecodeText(data []byte) (Message, error) {
	if !json.Valid(data) {
		return Message{}, malformed("text frame is not valid JSON")
	}
	p := textParser{data: data}
	p.skipSpace()
	if p.peek() != '[' {
		return Message{}, malformed("text frame is not a JSON array")
	}
	p.pos++
	var m Message
	var err error
	fields := []struct {
		dst      *string
		name     string
		nullable bool
	}{
		{&m.JoinRef, "join_ref", true},
		{&m.Ref, "ref", true},
		{&m.Topic, "topic", false},
		{&m.Event, "event", false},
	}
	for i, f := range fields {
		if err = p.element(i); err != nil {
			return Message{}, err
		}
		if *f.dst, err = p.stringValue(f.name, f.nullable); err != nil {
			return Message{}, err
		}
	}
	if err = p.element(len(fields)); err != nil {
		return Message{}, err
	}
	m.Payload = p.skipValue()
	return m, nil
}

// textParser walks a text frame that json.Valid has already accepted, so it only
// needs to find element boundaries and check element types. It still checks bounds
// everywhere so that a bug can never turn into a panic.
type textParser struct {
	data []byte
	pos  int
}

func (p *textParser) peek() byte {
	if p.pos >= len(p.data) {
		return 0
	}
	return p.data[p.pos]
}

func (p *textParser) skipSpace() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

// element positions p at the start of element i, consuming the separating comma.
func (p *textParser) element(i int) error {
	p.skipSpace()
	if i > 0 {
		if p.peek() != ',' {
			return malformed("text frame has %d elements, want at least 5", i)
		}
		p.pos++
		p.skipSpace()
	}
	if c := p.peek(); c == ']' || c == 0 {
		return malformed("text frame has %d elements, want at least 5", i)
	}
	return nil
}

func (p *textParser) stringValue(name string, nullable bool) (string, error) {
	switch c := p.peek(); {
	case c == 'n' && nullable:
		p.pos += len("null")
		return "", nil
	case c == '"':
		raw := p.skipValue()
		return unquote(raw, name)
	default:
		return "", malformed("%s is %s, want string", name, jsonKind(c))
	}
}

// unquote decodes a JSON string literal. The fast path covers plain UTF-8 without
// escapes; everything else goes through encoding/json (which also maps invalid
// UTF-8 to U+FFFD, keeping decode→encode→decode stable).
func unquote(raw []byte, name string) (string, error) {
	if len(raw) < 2 {
		return "", malformed("%s: truncated string", name)
	}
	inner := raw[1 : len(raw)-1]
	if bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) {
		return string(inner), nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", malformed("%s: %v", name, err)
	}
	return s, nil
}

func jsonKind(c byte) string {
	switch c {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// skipValue returns the JSON value starting at p.pos and moves past it.
func (p *textParser) skipValue() []byte {
	start := p.pos
	switch p.peek() {
	case '"':
		p.skipString()
	case '{', '[':
		p.skipNested()
	default:
		p.skipLiteral()
	}
	return p.data[start:p.pos:p.pos]
}

func (p *textParser) skipString() {
	for p.pos++; p.pos < len(p.data); p.pos++ {
		switch p.data[p.pos] {
		case '\\':
			p.pos++
		case '"':
			p.pos++
			return
		}
	}
}

func (p *textParser) skipNested() {
	depth := 0
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case '"':
			p.skipString()
			continue
		case '{', '[':
			depth++
		case '}', ']':
			depth--
		}
		p.pos++
		if depth == 0 {
			return
		}
	}
}

func (p *textParser) skipLiteral() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ',', ']', '}', ' ', '\t', '\n', '\r':
			return
		}
		p.pos++
	}
}
