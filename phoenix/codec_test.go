package phoenix

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestEncodeText(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		m    Message
		want string
	}{
		{"heartbeat", Message{Ref: "2", Topic: "phoenix", Event: "heartbeat"}, `[null,"2","phoenix","heartbeat",{}]`},
		{"empty payload", Message{JoinRef: "1", Ref: "1", Topic: "t", Event: "e", Payload: []byte{}}, `["1","1","t","e",{}]`},
		{"verbatim payload", Message{JoinRef: "1", Ref: "5", Topic: "t", Event: "e", Payload: []byte(`{ "b":1, "a":[2] }`)}, `["1","5","t","e",{ "b":1, "a":[2] }]`},
		{"non-object payload", Message{Topic: "t", Event: "e", Payload: []byte(`"x"`)}, `[null,null,"t","e","x"]`},
		{"escapes", Message{Topic: "a\"b\\c\n<&>", Event: "\u2028\x01"}, `[null,null,"a\"b\\c\n\u003c\u0026\u003e","\u2028\u0001",{}]`},
		{"invalid utf8", Message{Topic: "a\xffb", Event: "é"}, `[null,null,"a\ufffdb","é",{}]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := EncodeText(tt.m)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestEncodeTextInvalidPayload(t *testing.T) {
	t.Parallel()
	dst := []byte("keep")
	out, err := AppendText(dst, Message{Topic: "t", Event: "e", Payload: []byte(`{"a":`)})
	if !errors.Is(err, ErrInvalidPayload) {
		t.Fatalf("err = %v, want ErrInvalidPayload", err)
	}
	if string(out) != "keep" {
		t.Fatalf("dst changed on error: %q", out)
	}
}

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	var all strings.Builder
	for b := 0; b < 256; b++ {
		all.WriteByte(byte(b))
	}
	inputs := []string{"", "plain", all.String(), "\u2028\u2029", "日本語", "\xed\xa0\x80", "tab\tnl\n\b\f\r", "\x7f"}
	for _, s := range inputs {
		want, _ := json.Marshal(s)
		if got := appendString(nil, s); string(got) != string(want) {
			t.Errorf("appendString(%q) = %s, want %s", s, got, want)
		}
	}
}

func TestDecodeTextAccepts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want Message
	}{
		{"nulls", `[null,null,"t","e",{}]`, Message{Topic: "t", Event: "e", Payload: []byte(`{}`)}},
		{"empty strings", `["","","t","e",{}]`, Message{Topic: "t", Event: "e", Payload: []byte(`{}`)}},
		{"whitespace", " [ \"1\" ,\n\"2\",\t\"t\" , \"e\" , { \"a\" : [1,{}] } ] ", Message{JoinRef: "1", Ref: "2", Topic: "t", Event: "e", Payload: []byte(`{ "a" : [1,{}] }`)}},
		{"extra elements ignored", `["1","2","t","e",{"x":"]"},3,"more",[]]`, Message{JoinRef: "1", Ref: "2", Topic: "t", Event: "e", Payload: []byte(`{"x":"]"}`)}},
		{"escaped strings", `["\u0031","2","a\"b\\c","\u00e9",{}]`, Message{JoinRef: "1", Ref: "2", Topic: `a"b\c`, Event: "é", Payload: []byte(`{}`)}},
		{"number payload", `[null,null,"t","e",12.5e3]`, Message{Topic: "t", Event: "e", Payload: []byte(`12.5e3`)}},
		{"literal payload", `[null,null,"t","e",true ]`, Message{Topic: "t", Event: "e", Payload: []byte(`true`)}},
		{"string payload", `[null,null,"t","e","x\"]"]`, Message{Topic: "t", Event: "e", Payload: []byte(`"x\"]"`)}},
		{"array payload", `[null,null,"t","e",[1,[2]]]`, Message{Topic: "t", Event: "e", Payload: []byte(`[1,[2]]`)}},
		{"invalid utf8 topic", "[null,null,\"a\xffb\",\"e\",{}]", Message{Topic: "a\ufffdb", Event: "e", Payload: []byte(`{}`)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := DecodeText([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			assertMessage(t, got, tt.want)
		})
	}
}

func TestDecodeTextRejects(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, in string }{
		{"empty", ``},
		{"not json", `hello`},
		{"truncated", `["1","1","t","e",{}`},
		{"invalid payload", `["1","1","t","e",{"a":}]`},
		{"object", `{"topic":"t"}`},
		{"string", `"x"`},
		{"empty array", `[]`},
		{"four elements", `["1","1","t","e"]`},
		{"one element", `["1"]`},
		{"number topic", `["1","1",5,"e",{}]`},
		{"null topic", `["1","1",null,"e",{}]`},
		{"object event", `["1","1","t",{},{}]`},
		{"number join_ref", `[1,"1","t","e",{}]`},
		{"bool ref", `["1",true,"t","e",{}]`},
		{"array ref", `["1",[],"t","e",{}]`},
		{"trailing garbage", `["1","1","t","e",{}]x`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := DecodeText([]byte(tt.in))
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("DecodeText(%q) err = %v, want ErrMalformed", tt.in, err)
			}
		})
	}
}

func TestDecodeTextPayloadDoesNotShareCapacity(t *testing.T) {
	t.Parallel()
	data := []byte(`[null,null,"t","e",{},"tail"]`)
	m, err := DecodeText(data)
	if err != nil {
		t.Fatal(err)
	}
	_ = append(m.Payload, 'X')
	if string(data) != `[null,null,"t","e",{},"tail"]` {
		t.Fatalf("appending to Payload overwrote the input: %s", data)
	}
}

func TestDecodeReply(t *testing.T) {
	t.Parallel()
	r, err := DecodeReply(json.RawMessage(`{"response":{"a":1},"status":"ok"}`))
	if err != nil || r.Status != "ok" || string(r.Response) != `{"a":1}` {
		t.Fatalf("DecodeReply = %+v, %v", r, err)
	}
	for _, bad := range []string{``, `null`, `[]`, `{"status":1}`, `{"response":{}}`, `{"status":""}`, `{`} {
		if _, err := DecodeReply(json.RawMessage(bad)); !errors.Is(err, ErrMalformed) {
			t.Errorf("DecodeReply(%q) err = %v, want ErrMalformed", bad, err)
		}
	}
}

func TestReplyError(t *testing.T) {
	t.Parallel()
	long := `{"x":"` + strings.Repeat("a", 300) + `"}`
	tests := []struct {
		resp       string
		reason     string
		msgContain string
	}{
		{`{"reason":"unmatched topic"}`, "unmatched topic", `phoenix: reply status "error": unmatched topic`},
		{`{"reason":42}`, "", `{"reason":42}`},
		{`"str"`, "", `"str"`},
		{``, "", `phoenix: reply status "error"`},
		{long, "", "..."},
	}
	for _, tt := range tests {
		e := &ReplyError{Status: "error", Response: json.RawMessage(tt.resp)}
		if got := e.Reason(); got != tt.reason {
			t.Errorf("Reason(%s) = %q, want %q", tt.resp, got, tt.reason)
		}
		if msg := e.Error(); !strings.Contains(msg, tt.msgContain) || !utf8.ValidString(msg) || len(msg) > 200 {
			t.Errorf("Error() = %q, want it to contain %q and be short", msg, tt.msgContain)
		}
	}
}
