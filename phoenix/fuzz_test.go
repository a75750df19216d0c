package phoenix

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

// goldenMessages decodes the golden frames for seeding fuzz targets.
func goldenMessages(f *testing.F) []Message {
	var ms []Message
	for _, g := range loadGolden(f) {
		m, err := DecodeText([]byte(g.raw))
		if err != nil {
			f.Fatal(err)
		}
		ms = append(ms, m)
	}
	return ms
}

func FuzzDecodeText(f *testing.F) {
	for _, g := range loadGolden(f) {
		f.Add([]byte(g.raw))
	}
	for _, s := range []string{`[]`, `[null,null,"t","e",{},1]`, `["1",2,"t","e",{}]`, "[\"\xff\",null,\"t\",\"e\",\"\\u00e9\"]"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m1, err := DecodeText(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		enc, err := EncodeText(m1)
		if err != nil {
			t.Fatalf("EncodeText of an accepted frame: %v", err)
		}
		if !json.Valid(enc) {
			t.Fatalf("EncodeText produced invalid JSON: %q", enc)
		}
		m2, err := DecodeText(enc)
		if err != nil {
			t.Fatalf("DecodeText(EncodeText(m)) = %v for %q", err, enc)
		}
		assertMessage(t, m2, m1)
	})
}

func FuzzDecodeBinary(f *testing.F) {
	for _, m := range goldenMessages(f) {
		for _, enc := range []func(Message) ([]byte, error){encodeBinaryServerPush, encodeBinaryReply, encodeBinaryBroadcast} {
			m.Status = "ok"
			data, err := enc(m)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Add([]byte{})
	f.Add([]byte{1, 255, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		m1, kind, err := DecodeBinary(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		var enc []byte
		switch kind {
		case KindPush:
			enc, err = encodeBinaryServerPush(m1)
		case KindReply:
			enc, err = encodeBinaryReply(m1)
		case KindBroadcast:
			enc, err = encodeBinaryBroadcast(m1)
		default:
			t.Fatalf("accepted unknown kind %v", kind)
		}
		if err != nil {
			t.Fatalf("re-encode %v: %v", kind, err)
		}
		if !bytes.Equal(enc, data) {
			t.Fatalf("re-encoded %v frame differs:\n got % x\nwant % x", kind, enc, data)
		}
		m2, kind2, err := DecodeBinary(enc)
		if err != nil || kind2 != kind {
			t.Fatalf("second decode: %v, %v", kind2, err)
		}
		assertMessage(t, m2, m1)
	})
}

func FuzzDecodeBinaryPush(f *testing.F) {
	for _, m := range goldenMessages(f) {
		data, err := encodeBinaryPush(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte{0, 0, 0, 0, 0})
	f.Add([]byte{0, 9, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		m1, err := DecodeBinaryPush(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		enc, err := encodeBinaryPush(m1)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(enc, data) {
			t.Fatalf("re-encoded push differs:\n got % x\nwant % x", enc, data)
		}
		m2, err := DecodeBinaryPush(enc)
		if err != nil {
			t.Fatal(err)
		}
		assertMessage(t, m2, m1)
	})
}

func FuzzDecodeReply(f *testing.F) {
	for _, m := range goldenMessages(f) {
		f.Add([]byte(m.Payload))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := DecodeReply(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		if r.Status == "" {
			t.Fatal("accepted a reply without status")
		}
		e := &ReplyError{Status: r.Status, Response: r.Response}
		_ = e.Error()
	})
}

// FuzzAppendString checks the string escaping against encoding/json.
func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "a", "<&>", "\u2028", "\xff", "\x00\"\\"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendString(nil, s); !bytes.Equal(got, want) {
			t.Fatalf("appendString(%q) = %s, want %s", s, got, want)
		}
	})
}
