package phoenix

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/verastack/telephone/internal/binframe"
)

func TestBinaryRoundTrip(t *testing.T) {
	t.Parallel()
	payload := []byte{0, 1, 2, 0xff, '{'}
	long := strings.Repeat("x", 255)
	tests := []struct {
		name   string
		encode func(Message) ([]byte, error)
		kind   FrameKind
		in     Message
		want   Message // what DecodeBinary returns
	}{
		{"server push", encodeBinaryServerPush, KindPush,
			Message{JoinRef: "1", Ref: "ignored", Topic: "t", Event: "e", Payload: payload},
			Message{JoinRef: "1", Topic: "t", Event: "e", Payload: payload, Binary: true}},
		{"reply", encodeBinaryReply, KindReply,
			Message{JoinRef: "1", Ref: "7", Topic: "t", Status: "ok", Payload: payload},
			Message{JoinRef: "1", Ref: "7", Topic: "t", Event: EventReply, Status: "ok", Payload: payload, Binary: true}},
		{"broadcast", encodeBinaryBroadcast, KindBroadcast,
			Message{JoinRef: "ignored", Topic: "t", Event: "e", Payload: payload},
			Message{Topic: "t", Event: "e", Payload: payload, Binary: true}},
		{"empty fields", encodeBinaryServerPush, KindPush,
			Message{},
			Message{Payload: []byte{}, Binary: true}},
		{"max length fields", encodeBinaryReply, KindReply,
			Message{JoinRef: long, Ref: long, Topic: long, Status: long},
			Message{JoinRef: long, Ref: long, Topic: long, Event: EventReply, Status: long, Payload: []byte{}, Binary: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			data, err := tt.encode(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if FrameKind(data[0]) != tt.kind {
				t.Fatalf("kind byte %d, want %d", data[0], tt.kind)
			}
			got, kind, err := DecodeBinary(data)
			if err != nil || kind != tt.kind {
				t.Fatalf("DecodeBinary = %v, %v; want kind %v", kind, err, tt.kind)
			}
			assertMessage(t, got, tt.want)
		})
	}
}

func TestBinaryClientPushRoundTrip(t *testing.T) {
	t.Parallel()
	in := Message{JoinRef: "3", Ref: "12", Topic: "telephone:x", Event: "bin", Payload: []byte("\x00\x01raw")}
	data, err := encodeBinaryPush(in)
	if err != nil {
		t.Fatal(err)
	}
	want := append([]byte{0, 1, 2, 11, 3}, "312telephone:xbin\x00\x01raw"...)
	if !bytes.Equal(data, want) {
		t.Fatalf("encoded % x, want % x", data, want)
	}
	got, err := DecodeBinaryPush(data)
	if err != nil {
		t.Fatal(err)
	}
	in.Binary = true
	assertMessage(t, got, in)
}

func TestBinaryWireLayout(t *testing.T) {
	t.Parallel()
	m := Message{JoinRef: "1", Ref: "22", Topic: "ab", Event: "ev", Status: "ok", Payload: []byte("P")}
	tests := []struct {
		name   string
		encode func(Message) ([]byte, error)
		want   string
	}{
		{"server push", encodeBinaryServerPush, "\x00\x01\x02\x02" + "1abevP"},
		{"reply", encodeBinaryReply, "\x01\x01\x02\x02\x02" + "122abokP"},
		{"broadcast", encodeBinaryBroadcast, "\x02\x02\x02" + "abevP"},
	}
	for _, tt := range tests {
		got, err := tt.encode(m)
		if err != nil || string(got) != tt.want {
			t.Errorf("%s: got %q, %v; want %q", tt.name, got, err, tt.want)
		}
	}
}

func TestBinaryEncodeFieldTooLong(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 256)
	encoders := map[string]func(Message) ([]byte, error){
		"push": encodeBinaryPush, "server push": encodeBinaryServerPush,
		"reply": encodeBinaryReply, "broadcast": encodeBinaryBroadcast,
	}
	for name, enc := range encoders {
		if _, err := enc(Message{Topic: long}); !errors.Is(err, binframe.ErrFieldTooLong) {
			t.Errorf("%s: err = %v, want binframe.ErrFieldTooLong", name, err)
		}
	}
}

func TestDecodeBinaryRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"unknown kind", []byte{3, 0, 0}},
		{"push header truncated", []byte{0, 1}},
		{"reply header truncated", []byte{1, 0, 0, 0}},
		{"broadcast header truncated", []byte{2}},
		{"length past end", []byte{2, 5, 0, 'a', 'b'}},
		{"second length past end", []byte{0, 1, 1, 9, 'j', 't'}},
		{"oversize reply status", []byte{1, 0, 0, 0, 255, 'o', 'k'}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, _, err := DecodeBinary(tt.in); !errors.Is(err, ErrMalformed) {
				t.Fatalf("DecodeBinary(% x) err = %v, want ErrMalformed", tt.in, err)
			}
		})
	}
}

func TestDecodeBinaryPushRejects(t *testing.T) {
	t.Parallel()
	for _, in := range [][]byte{nil, {1, 0, 0, 0, 0}, {2, 0, 0}, {0, 0, 0, 0}, {0, 0, 0, 2, 0, 'a'}} {
		if _, err := DecodeBinaryPush(in); !errors.Is(err, ErrMalformed) {
			t.Errorf("DecodeBinaryPush(% x) err = %v, want ErrMalformed", in, err)
		}
	}
}

func TestFrameKindString(t *testing.T) {
	t.Parallel()
	for k, want := range map[FrameKind]string{KindPush: "push", KindReply: "reply", KindBroadcast: "broadcast", 9: "kind(9)"} {
		if got := k.String(); got != want {
			t.Errorf("FrameKind(%d).String() = %q, want %q", byte(k), got, want)
		}
	}
}

// The encoders live in internal/binframe (only tests send binary frames); these adapt them to
// Message.
func encodeBinaryPush(m Message) ([]byte, error) {
	return binframe.Push(m.JoinRef, m.Ref, m.Topic, m.Event, m.Payload)
}

func encodeBinaryServerPush(m Message) ([]byte, error) {
	return binframe.ServerPush(m.JoinRef, m.Topic, m.Event, m.Payload)
}

func encodeBinaryReply(m Message) ([]byte, error) {
	return binframe.Reply(m.JoinRef, m.Ref, m.Topic, m.Status, m.Payload)
}

func encodeBinaryBroadcast(m Message) ([]byte, error) {
	return binframe.Broadcast(m.Topic, m.Event, m.Payload)
}
