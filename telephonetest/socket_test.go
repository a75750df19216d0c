package telephonetest

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/verastack/telephone/internal/binframe"
	"github.com/verastack/telephone/phoenix"
)

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestSocketUpgradeRefusals(t *testing.T) {
	t.Parallel()
	logs := &syncBuffer{}
	s := newTestServer(t, WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	tok := mint(t, s, "")
	base := s.SocketURL() + "?token=" + tok.Token
	tests := []struct {
		name   string
		url    string
		status int
	}{
		{"no vsn gets V1", base, http.StatusSwitchingProtocols},
		{"V1 vsn", base + "&vsn=1.0.0", http.StatusSwitchingProtocols},
		{"1.1.0 does not match ~> 1.0.0", base + "&vsn=1.1.0", http.StatusForbidden},
		{"garbage vsn", base + "&vsn=abc", http.StatusForbidden},
		{"2.1.0 does not match ~> 2.0.0", base + "&vsn=2.1.0", http.StatusForbidden},
		{"pre-release", base + "&vsn=2.0.0-rc.1", http.StatusForbidden},
		{"2.0.1 matches", base + "&vsn=2.0.1", http.StatusSwitchingProtocols},
		{"unknown token", socketURLFor(s, "abc.def.ghi"), http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, status, _ := dialRaw(t, tt.url)
			if status != tt.status {
				t.Fatalf("status %d, want %d", status, tt.status)
			}
			if c != nil {
				_ = c.c.CloseNow()
			}
		})
	}
	if !strings.Contains(logs.String(), "V1 JSON serializer (no vsn=2.0.0") {
		t.Errorf("V1 selection not logged clearly; log:\n%s", logs)
	}
	req, _ := http.NewRequest(http.MethodPost, strings.Replace(socketURLFor(s, tok.Token), "ws://", "http://", 1), nil)
	if res := doHTTP(req); res.status != http.StatusBadRequest {
		t.Errorf("POST to the socket: %d, want 400", res.status)
	}
	// Origin is not checked.
	ctx, cancel := contextWithTestTimeout()
	defer cancel()
	c, _, err := websocket.Dial(ctx, socketURLFor(s, tok.Token), &websocket.DialOptions{
		HTTPHeader: http.Header{"Origin": {"https://elsewhere.example"}}, HTTPClient: noKeepAliveClient(),
	})
	if err != nil {
		t.Fatalf("dial with a foreign Origin: %v", err)
	}
	_ = c.CloseNow()
}

func TestSocketProtocolErrors(t *testing.T) {
	t.Parallel()
	s := newTestServer(t)
	tok := mint(t, s, "")
	c := dial(t, s, tok.Token)
	topic := topicPrefix + tok.PathID

	// Anything on the phoenix topic but a heartbeat, and joins outside the route, are unmatched.
	c.send("", "1", phoenix.TopicPhoenix, "other", nil)
	if r := c.expectReply("1", "error"); !strings.Contains(string(r), "unmatched topic") {
		t.Errorf("phoenix/other: %s", r)
	}
	c.send("9", "2", "rooms:lobby", phoenix.EventJoin, nil)
	if r := c.expectReply("2", "error"); !strings.Contains(string(r), "unmatched topic") {
		t.Errorf("join rooms:lobby: %s", r)
	}
	// A leave for a topic that is not joined is answered ok, echoing join_ref.
	c.send("5", "3", topic, phoenix.EventLeave, nil)
	if m := c.expect(phoenix.EventReply); m.JoinRef != "5" || !strings.Contains(string(m.Payload), `"ok"`) {
		t.Errorf("leave unjoined: %+v", m)
	}
	// Binary join works; a binary proxy_res is ignored; another binary event crashes the channel.
	bin, err := binframe.Push("7", "7", topic, phoenix.EventJoin, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	writeBinary(t, c, bin)
	c.expectReply("7", "ok")
	bin, _ = binframe.Push("7", "8", topic, "proxy_res", []byte{0xff})
	writeBinary(t, c, bin)
	c.expectNothing("b1")
	bin, _ = binframe.Push("7", "9", topic, "heartbeat", []byte{1})
	writeBinary(t, c, bin)
	if m := c.expect(phoenix.EventError); m.JoinRef != "7" || m.Ref != "7" {
		t.Errorf("binary heartbeat: %+v", m)
	}
	// A heartbeat payload that is not an object crashes too; a non-object proxy_res is ignored.
	c.join(tok.PathID, "10")
	c.send("10", "11", topic, "proxy_res", []int{1})
	c.expectNothing("b2")
	c.send("10", "12", topic, "heartbeat", []int{1})
	c.expect(phoenix.EventError)
	// An undecodable binary frame or text frame closes the socket.
	writeBinary(t, c, []byte{9, 9})
	if code := c.closeStatus(); code != websocket.StatusInternalError {
		t.Errorf("malformed binary frame: close %d, want 1011", code)
	}
	c2 := dial(t, s, tok.Token)
	c2.sendRaw(`{"not":"an array"}`)
	if code := c2.closeStatus(); code != websocket.StatusInternalError {
		t.Errorf("malformed text frame: close %d, want 1011", code)
	}
}

func writeBinary(t *testing.T, c *rawClient, data []byte) {
	t.Helper()
	ctx, cancel := contextWithTestTimeout()
	defer cancel()
	if err := c.c.Write(ctx, websocket.MessageBinary, data); err != nil {
		t.Fatal(err)
	}
}

func TestStrictAndLenientJoinRef(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		opts    []Option
		acked   []string // heartbeat refs that get an ack
		dropped []string
	}{
		{"strict (default, Phoenix 1.8.3+)", nil, []string{"ok"}, []string{"null", "other"}},
		{"lenient (Phoenix <= 1.8.2)", []Option{WithLenientJoinRef()}, []string{"ok", "null", "other"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newTestServer(t, tt.opts...)
			tok := mint(t, s, "")
			c := dial(t, s, tok.Token)
			c.join(tok.PathID, "1")
			topic := topicPrefix + tok.PathID
			joinRefs := map[string]string{"ok": "1", "null": "", "other": "2"}
			for _, name := range append(append([]string(nil), tt.acked...), tt.dropped...) {
				c.send(joinRefs[name], name, topic, "heartbeat", map[string]string{"ts": name})
			}
			got := c.barrier("b")
			var acked []string
			for _, m := range got {
				if m.Event != "heartbeat_ack" || m.JoinRef != "1" || m.Ref != "" {
					t.Fatalf("unexpected frame %+v", m)
				}
				acked = append(acked, payloadMap(t, m.Payload)["ts"].(string))
			}
			if strings.Join(acked, ",") != strings.Join(tt.acked, ",") {
				t.Errorf("acked %v, want %v", acked, tt.acked)
			}
			// In strict mode a stale leave is dropped too; the channel's join_ref still works.
			c.send("2", "l", topic, phoenix.EventLeave, nil)
			if tt.opts == nil {
				c.expectNothing("b2")
				if s.Joined(tok.PathID) != 1 {
					t.Error("stale leave must be dropped in strict mode")
				}
			} else {
				if m := c.expect(phoenix.EventReply); m.JoinRef != "1" {
					t.Errorf("lenient leave reply carries join_ref %q, want the channel's", m.JoinRef)
				}
				c.expect(phoenix.EventClose)
			}
		})
	}
}

func TestRefreshForms(t *testing.T) {
	t.Parallel()
	t.Run("push form", func(t *testing.T) {
		t.Parallel()
		s := newTestServer(t, WithRefreshPushForm(), WithTokenLifetime(90*time.Second))
		tok := mint(t, s, "")
		c := dial(t, s, tok.Token)
		c.join(tok.PathID, "1")
		c.send("1", "2", topicPrefix+tok.PathID, "refresh_token", nil)
		m := c.expect("refresh_token_ack")
		p := payloadMap(t, m.Payload)
		if m.JoinRef != "1" || m.Ref != "" || p["expires_in"] != float64(90) || p["token"] != s.CurrentToken(tok.ID) {
			t.Errorf("refresh_token_ack = %+v %v", m, p)
		}
		c.expectNothing("b") // and no phx_reply
	})
	t.Run("revoked", func(t *testing.T) {
		t.Parallel()
		s := newTestServer(t)
		tok := mint(t, s, "")
		c := dial(t, s, tok.Token)
		c.join(tok.PathID, "1")
		s.Revoke(tok.ID)
		c.send("1", "2", topicPrefix+tok.PathID, "refresh_token", nil)
		if r := c.expectReply("2", "error"); string(r) != `{"reason":":token_revoked"}` {
			t.Errorf("revoked refresh: %s", r)
		}
		if s.CurrentToken(tok.ID) != tok.Token {
			t.Error("a refused refresh must not rotate the token")
		}
		c.expectNothing("b") // the live socket stays up after revocation
	})
}

func TestDuplicateJoinAndLeaveFailPendingCallers(t *testing.T) {
	t.Parallel()
	s := newTestServer(t)
	tok := mint(t, s, "")
	c := dial(t, s, tok.Token)
	c.join(tok.PathID, "1")
	topic := topicPrefix + tok.PathID

	res := goHTTP(t, http.MethodGet, s.CallURL(tok.PathID)+"/a", "", nil)
	c.expect("proxy_req")
	c.send("2", "2", topic, phoenix.EventJoin, nil)
	c.expectReply("2", "ok")
	if m := c.expect(phoenix.EventClose); m.JoinRef != "1" || m.Ref != "1" {
		t.Errorf("phx_close for the old join: %+v", m)
	}
	if got := await(t, res); got.status != http.StatusBadGateway {
		t.Errorf("caller of the replaced channel: %d, want 502", got.status)
	}
	res = goHTTP(t, http.MethodGet, s.CallURL(tok.PathID)+"/b", "", nil)
	c.expect("proxy_req")
	c.send("2", "3", topic, phoenix.EventLeave, nil)
	c.expectReply("3", "ok")
	c.expect(phoenix.EventClose)
	if got := await(t, res); got.status != http.StatusBadGateway {
		t.Errorf("caller of the left channel: %d, want 502", got.status)
	}
}

func TestHeartbeatAckTS(t *testing.T) {
	t.Parallel()
	s := newTestServer(t)
	tok := mint(t, s, "")
	c := dial(t, s, tok.Token)
	c.join(tok.PathID, "1")
	topic := topicPrefix + tok.PathID
	tests := []struct{ payload, want string }{
		{`{"ts":"abc"}`, `{"ts":"abc"}`},
		{`{"ts":{"n":1}}`, `{"ts":{"n":1}}`},
	}
	for _, tt := range tests {
		c.send("1", "h", topic, "heartbeat", json.RawMessage(tt.payload))
		if m := c.expect("heartbeat_ack"); string(m.Payload) != tt.want {
			t.Errorf("heartbeat %s → ack %s, want %s", tt.payload, m.Payload, tt.want)
		}
	}
	c.send("1", "h", topic, "heartbeat", json.RawMessage(`{"ts":null}`))
	if ts, ok := payloadMap(t, c.expect("heartbeat_ack").Payload)["ts"].(float64); !ok || ts < 1e9 {
		t.Errorf("null ts: ack ts %v, want the server's Unix time", ts)
	}
}

func TestIdleTimeoutOverNetwork(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, WithIdleTimeout(50*time.Millisecond))
	tok := mint(t, s, "")
	c := dial(t, s, tok.Token)
	if code := c.closeStatus(); code != websocket.StatusProtocolError {
		t.Errorf("idle close code %d, want 1002", code)
	}
}

func TestServeOnListenerAndClose(t *testing.T) {
	t.Parallel()
	l, err := netListen()
	if err != nil {
		t.Fatal(err)
	}
	s := Serve(l, WithTokenLifetime(time.Minute))
	defer s.Close()
	if !strings.HasPrefix(s.URL(), "http://127.0.0.1:") || s.CallURL("p") != s.URL()+"/call/p" {
		t.Errorf("URL %q CallURL %q", s.URL(), s.CallURL("p"))
	}
	tok := mint(t, s, "")
	c := dial(t, s, tok.Token)
	c.join(tok.PathID, "1")
	res := goHTTP(t, http.MethodGet, s.CallURL(tok.PathID), "", nil)
	c.expect("proxy_req")
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if _, _, err := c.c.Read(context.Background()); err != nil {
				return
			}
		}
	}()
	s.Close()
	<-done
	if got := await(t, res); got.status != http.StatusBadGateway {
		t.Errorf("caller at Close: %d, want 502", got.status)
	}
	if _, err := s.Mint("", 0); err == nil {
		t.Error("Mint after Close must fail")
	}
	if err := s.WaitJoined(context.Background(), tok.PathID, 1); err == nil {
		t.Error("WaitJoined after Close must fail")
	}
	s.Close() // idempotent
}
