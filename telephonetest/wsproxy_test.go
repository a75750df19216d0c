package telephonetest

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/verastack/telephone/phoenix"
)

// wsConnect reads ws_connect and returns its payload.
func wsConnect(t *testing.T, c *rawClient) map[string]any {
	t.Helper()
	return payloadMap(t, c.expect("ws_connect").Payload)
}

func TestWSProxyNoTelephone(t *testing.T) {
	t.Parallel()
	s := newTestServer(t)
	tok := mint(t, s, "")
	_, status, err := dialProxied(t, s, "/call/"+tok.PathID+"/ws", nil, nil)
	if err == nil || status != http.StatusServiceUnavailable {
		t.Fatalf("no telephone: status %d err %v", status, err)
	}
	_, status, _ = dialProxied(t, s, "/call/"+tok.PathID+"/%2e%2e", nil, nil)
	if status != http.StatusBadRequest {
		t.Errorf("bad path: %d, want 400", status)
	}
	_, status, _ = dialProxied(t, s, "/call/"+NewPathID()+"/ws", nil, nil)
	if status != http.StatusNotFound {
		t.Errorf("unknown path: %d, want 404", status)
	}
}

func TestWSProxyConnectTimeout(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, WithWSConnectTimeout(50*time.Millisecond))
	c, tok := joinedClient(t, s, "")
	pc := proxiedClient(t, s, "/call/"+tok.PathID+"/ws", http.Header{
		"Origin": {"http://o.example"}, "Authorization": {"Bearer x"}, "X-Other": {"dropped"},
	})
	conn := wsConnect(t, c)
	h := conn["headers"].(map[string]any)
	if h["origin"] != "http://o.example" || h["authorization"] != "Bearer x" || h["x-other"] != nil {
		t.Errorf("ws_connect headers %v", h)
	}
	if ce := clientClosed(t, pc); ce.Code != websocket.StatusBadGateway || ce.Reason != "Backend connection timeout" {
		t.Errorf("client closed with %v", ce)
	}
	m := c.expect("ws_close")
	p := payloadMap(t, m.Payload)
	if p["code"] != float64(1014) || p["reason"] != "Connect timeout" || p["connection_id"] != conn["connection_id"] {
		t.Errorf("ws_close %v", p)
	}
	c.expectNothing("b") // no second ws_close: the backend never connected
	// A late ws_connected for the finished connection is ignored.
	c.send("1", "x", m.Topic, "ws_connected", map[string]any{"connection_id": conn["connection_id"]})
	c.expectNothing("b2")
}

func TestWSProxyBufferOverflow(t *testing.T) {
	t.Parallel()
	s := newTestServer(t)
	c, tok := joinedClient(t, s, "")
	pc := proxiedClient(t, s, "/call/"+tok.PathID+"/ws", nil)
	wsConnect(t, c)
	ce := make(chan websocket.CloseError, 1)
	go func() { ce <- clientClosed(t, pc) }()
	for range wsBufferFrames + 1 {
		ctx, cancel := contextWithTestTimeout()
		err := pc.Write(ctx, websocket.MessageText, []byte("x"))
		cancel()
		if err != nil {
			break // the server closed first
		}
	}
	if got := <-ce; got.Code != websocket.StatusMessageTooBig {
		t.Errorf("overflow: client closed with %v, want 1009", got)
	}
}

func TestWSProxyTelephoneFrames(t *testing.T) {
	t.Parallel()
	s := newTestServer(t)
	c, tok := joinedClient(t, s, "")
	pc := proxiedClient(t, s, "/call/"+tok.PathID+"/ws", nil)
	id := wsConnect(t, c)["connection_id"]
	topic := topicPrefix + tok.PathID
	c.send("1", "2", topic, "ws_connected", map[string]any{"connection_id": id})
	send := func(opcode, data string) {
		c.send("1", "3", topic, "ws_frame", map[string]any{"connection_id": id, "opcode": opcode, "data": data})
	}
	send("ping", "AA==")        // ignored
	send("text", "not base64!") // forwarded raw
	send("binary", "AQID")
	if typ, got := clientRead(t, pc); typ != websocket.MessageText || got != "not base64!" {
		t.Errorf("raw text frame: %v %q", typ, got)
	}
	if typ, got := clientRead(t, pc); typ != websocket.MessageBinary || got != "\x01\x02\x03" {
		t.Errorf("binary frame: %v %q", typ, got)
	}
	// Unknown connection ids are ignored; a ws_closed without code closes with the defaults.
	c.send("1", "4", topic, "ws_frame", map[string]any{"connection_id": "nope", "opcode": "text", "data": ""})
	c.expectNothing("b")
	c.send("1", "5", topic, "ws_closed", map[string]any{"connection_id": id})
	if ce := clientClosed(t, pc); ce.Code != websocket.StatusNormalClosure || ce.Reason != "Backend closed connection" {
		t.Errorf("ws_closed without code: %v", ce)
	}
	c.expect("ws_close")
}

func TestWSProxyEventsThatCrash(t *testing.T) {
	t.Parallel()
	tests := []struct {
		event   string
		payload map[string]any
	}{
		{"ws_frame", map[string]any{"connection_id": "c", "data": ""}},
		{"ws_frame", map[string]any{"connection_id": "c", "opcode": "text"}},
		{"ws_error", map[string]any{"connection_id": "c"}},
		{"ws_connected", map[string]any{}},
		{"ws_closed", map[string]any{"code": 1000}},
		{"ws_check_result", map[string]any{"check_id": "c", "supported": true}}, // no handler without WithWSCheck
	}
	s := newTestServer(t)
	tok := mint(t, s, "")
	c := dial(t, s, tok.Token)
	for i, tt := range tests {
		ref := string(rune('a' + i))
		jr := "j" + ref
		c.join(tok.PathID, jr)
		c.send(jr, ref, topicPrefix+tok.PathID, tt.event, tt.payload)
		if m := c.expect(phoenix.EventError); m.JoinRef != jr {
			t.Errorf("%s %v: %+v", tt.event, tt.payload, m)
		}
	}
}

func TestWSCheck(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		answer  func(id any) map[string]any // nil: never answer
		crash   bool
		status  int
		errText string
		proto   string
	}{
		{"supported with protocol", func(id any) map[string]any {
			return map[string]any{"check_id": id, "supported": true, "protocol": "chat.v2"}
		}, false, 101, "", "chat.v2"},
		{"not supported", func(id any) map[string]any {
			return map[string]any{"check_id": id, "supported": false, "reason": "no upgrade"}
		}, false, 502, `"reason":"no upgrade"`, ""},
		{"failed without reason", func(id any) map[string]any {
			return map[string]any{"check_id": id, "supported": false}
		}, false, 502, "Backend check failed", ""},
		{"channel dies", nil, true, 502, "Backend check failed", ""},
		{"timeout", nil, false, 504, "Backend check timeout", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// Only the timeout case may time out: the others answer, however slowly a loaded
			// machine gets there.
			checkTimeout := testTimeout
			if tt.status == 504 {
				checkTimeout = 100 * time.Millisecond
			}
			s := newTestServer(t, WithWSCheck(), WithWSCheckTimeout(checkTimeout))
			c, tok := joinedClient(t, s, "")
			type result struct {
				conn   *websocket.Conn
				status int
				body   string
			}
			out := make(chan result, 1)
			go func() {
				ctx, cancel := contextWithTestTimeout()
				defer cancel()
				u := "ws" + strings.TrimPrefix(s.URL(), "http") + "/call/" + tok.PathID + "/ws?q=1"
				conn, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPClient: noKeepAliveClient(), Subprotocols: []string{"chat.v1", "chat.v2"}})
				r := result{conn: conn}
				if err == nil {
					r.status = 101
				} else if resp != nil {
					r.status = resp.StatusCode
					b := make([]byte, 512)
					n, _ := resp.Body.Read(b)
					r.body = string(b[:n])
				}
				out <- r
			}()
			check := payloadMap(t, c.expect("ws_check").Payload)
			if check["path"] != "/ws" || check["query_string"] != "q=1" || check["headers"] == nil {
				t.Errorf("ws_check %v", check)
			}
			switch {
			case tt.answer != nil:
				c.send("1", "2", topicPrefix+tok.PathID, "ws_check_result", tt.answer(check["check_id"]))
			case tt.crash:
				s.CrashChannels(tok.PathID)
			}
			r := <-out
			if r.conn != nil {
				defer r.conn.CloseNow()
			}
			if r.status != tt.status || !strings.Contains(r.body, tt.errText) {
				t.Fatalf("status %d body %q, want %d %q", r.status, r.body, tt.status, tt.errText)
			}
			if r.conn != nil {
				if r.conn.Subprotocol() != tt.proto {
					t.Errorf("subprotocol %q, want %q", r.conn.Subprotocol(), tt.proto)
				}
				if h := wsConnect(t, c)["headers"].(map[string]any); h["sec-websocket-protocol"] != "chat.v1,chat.v2" {
					t.Errorf("ws_connect headers %v", h)
				}
			}
		})
	}
}

func TestWSProxyServerClose(t *testing.T) {
	t.Parallel()
	s := NewServer()
	c, tok := joinedClient(t, s, "")
	pc := proxiedClient(t, s, "/call/"+tok.PathID+"/ws", nil)
	id := wsConnect(t, c)["connection_id"]
	c.send("1", "2", topicPrefix+tok.PathID, "ws_connected", map[string]any{"connection_id": id})
	clientWrite(t, pc, websocket.MessageText, "after connect")
	if m := c.expect("ws_frame"); !strings.Contains(string(m.Payload), `"data":"YWZ0ZXIgY29ubmVjdA=="`) {
		t.Errorf("ws_frame %s", m.Payload)
	}
	closed := make(chan websocket.CloseError, 1)
	go func() { closed <- clientClosed(t, pc) }()
	if code := closeAndWatch(s, c); code != websocket.StatusGoingAway {
		t.Errorf("telephone at Close: %d, want 1001", code)
	}
	if ce := <-closed; ce.Code != websocket.StatusGoingAway {
		t.Errorf("proxied client at Close: %v", ce)
	}
}

// closeAndWatch closes s while c reads, and returns c's close code.
func closeAndWatch(s *Server, c *rawClient) websocket.StatusCode {
	code := make(chan websocket.StatusCode, 1)
	go func() { code <- c.closeStatus() }()
	s.Close()
	return <-code
}

func TestWSProxyCloseCodes(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é", 100) // 200 bytes: over the 123 a close frame allows
	tests := []struct {
		event      string
		payload    map[string]any
		code       websocket.StatusCode
		reasonPref string
	}{
		{"ws_closed", map[string]any{"code": 1006, "reason": "abnormal"}, websocket.StatusNormalClosure, "abnormal"},
		{"ws_closed", map[string]any{"code": 4001, "reason": nil}, 4001, ""},
		{"ws_error", map[string]any{"reason": long}, websocket.StatusBadGateway, "Bad Gateway: éé"},
	}
	s := newTestServer(t)
	c, tok := joinedClient(t, s, "")
	for _, tt := range tests {
		pc := proxiedClient(t, s, "/call/"+tok.PathID+"/ws", nil)
		id := wsConnect(t, c)["connection_id"]
		c.send("1", "2", topicPrefix+tok.PathID, "ws_connected", map[string]any{"connection_id": id})
		tt.payload["connection_id"] = id
		c.send("1", "3", topicPrefix+tok.PathID, tt.event, tt.payload)
		ce := clientClosed(t, pc)
		if ce.Code != tt.code || !strings.HasPrefix(ce.Reason, tt.reasonPref) || len(ce.Reason) > 123 {
			t.Errorf("%s %v: client closed with %d %q", tt.event, tt.payload["code"], ce.Code, ce.Reason)
		}
		c.expect("ws_close")
	}
}
