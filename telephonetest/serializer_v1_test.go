package telephonetest

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
)

// TestV1SerializerWithoutVsn speaks V1 object frames to a socket opened without vsn, as a
// Phoenix server does: join, the phoenix heartbeat, a proxied HTTP request and its answer.
func TestV1SerializerWithoutVsn(t *testing.T) {
	t.Parallel()
	s := newTestServer(t)
	tok := mint(t, s, "")
	c, status, err := dialRaw(t, s.SocketURL()+"?token="+url.QueryEscape(tok.Token))
	if err != nil {
		t.Fatalf("dial without vsn: %d %v", status, err)
	}
	topic := topicPrefix + tok.PathID
	c.sendRaw(`{"topic":"` + topic + `","event":"phx_join","payload":{},"ref":"1","join_ref":"1"}`)
	var reply map[string]any
	if err := json.Unmarshal([]byte(c.readRaw()), &reply); err != nil {
		t.Fatal(err)
	}
	p, _ := reply["payload"].(map[string]any)
	if reply["topic"] != topic || reply["event"] != "phx_reply" || reply["ref"] != "1" || p["status"] != "ok" {
		t.Fatalf("join reply %v", reply)
	}
	if _, has := reply["join_ref"]; has || len(reply) != 4 {
		t.Fatalf("V1 frames carry topic, event, payload and ref only: %v", reply)
	}
	c.sendRaw(`{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"2"}`)
	if got := c.readRaw(); got != `{"topic":"phoenix","event":"phx_reply","payload":{"response":{},"status":"ok"},"ref":"2"}` {
		t.Fatalf("heartbeat reply %s", got)
	}
	res := goHTTP(t, http.MethodGet, s.CallURL(tok.PathID)+"/v1", "", nil)
	var push struct {
		Topic   string
		Event   string
		Ref     *string
		Payload proxyRequest
	}
	if err := json.Unmarshal([]byte(c.readRaw()), &push); err != nil || push.Event != "proxy_req" || push.Ref != nil || push.Payload.Path != "/v1" {
		t.Fatalf("push %+v: %v", push, err)
	}
	b, _ := json.Marshal(map[string]any{"topic": topic, "event": "proxy_res", "ref": "3", "join_ref": "1",
		"payload": map[string]any{"request_id": push.Payload.RequestID, "status": 201, "headers": map[string]string{}, "body": "v1 ok"}})
	c.sendRaw(string(b))
	if r := await(t, res); r.status != 201 || r.body != "v1 ok" {
		t.Fatalf("call through V1: %d %q", r.status, r.body)
	}
}

func TestDecodeV1Refusals(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		`[]`, `null`, `nope`,
		`{"event":"e","payload":{},"ref":null}`,
		`{"topic":"t","payload":{},"ref":null}`,
		`{"topic":"t","event":"e","payload":{}}`,
		`{"topic":"t","event":"e","ref":null}`,
		`{"topic":1,"event":"e","payload":{},"ref":null}`,
		`{"topic":"t","event":"e","payload":{},"ref":5}`,
		`{"topic":"t","event":"e","payload":{},"ref":"1","join_ref":[]}`,
	} {
		if m, err := decodeV1([]byte(in)); err == nil {
			t.Errorf("%s decoded as %+v", in, m)
		}
	}
	m, err := decodeV1([]byte(`{"topic":"t","event":"e","payload":[1],"ref":null,"join_ref":null}`))
	if err != nil || m.Ref != "" || m.JoinRef != "" || string(m.Payload) != "[1]" {
		t.Fatalf("%+v %v", m, err)
	}
}

// FuzzDecodeV1 checks that any frame either fails to decode or survives an encode/decode round
// trip with its topic, event, ref and payload (the server never sends join_ref in V1).
func FuzzDecodeV1(f *testing.F) {
	f.Add(`{"topic":"t","event":"e","payload":{"a":1},"ref":"1","join_ref":"1"}`)
	f.Add(`{"topic":"phoenix","event":"heartbeat","payload":{},"ref":null}`)
	f.Add(`{"topic":"t","event":"e","payload":"x","ref":"2","extra":true}`)
	f.Fuzz(func(t *testing.T, in string) {
		m, err := decodeV1([]byte(in))
		if err != nil {
			return
		}
		out, err := encodeV1(m)
		if err != nil {
			t.Fatalf("encode %+v: %v", m, err)
		}
		back, err := decodeV1(out)
		if err != nil || back.Topic != m.Topic || back.Event != m.Event || back.Ref != m.Ref || back.JoinRef != "" {
			t.Fatalf("%s -> %s -> %+v (%v)", in, out, back, err)
		}
	})
}
