package telephonetest

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/verastack/telephone/phoenix"
)

// joinedClient dials and joins a fresh token of pathID ("" = new path).
func joinedClient(t *testing.T, s *Server, pathID string) (*rawClient, Token) {
	t.Helper()
	tok := mint(t, s, pathID)
	c := dial(t, s, tok.Token)
	c.join(tok.PathID, "1")
	return c, tok
}

func TestSocketClosingFaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		inject func(s *Server, tok Token)
		code   websocket.StatusCode // -1: no close frame
	}{
		{"DropAll cuts TCP", func(s *Server, _ Token) { s.DropAll() }, -1},
		{"Restart closes with 1012", func(s *Server, _ Token) { s.Restart() }, websocket.StatusServiceRestart},
		{"Disconnect closes with 1011", func(s *Server, tok Token) { s.Disconnect(tok.ID) }, websocket.StatusInternalError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newTestServer(t)
			c, tok := joinedClient(t, s, "")
			other, otherTok := joinedClient(t, s, tok.PathID)
			res := goHTTP(t, http.MethodGet, s.CallURL(tok.PathID)+"/x", "", nil)
			victim := c
			if m := c.read(); m.Event != "proxy_req" { // round-robin: the first request goes to c
				t.Fatalf("first request went elsewhere: %+v", m)
			}
			tt.inject(s, tok)
			if code := victim.closeStatus(); code != tt.code {
				t.Errorf("close code %d, want %d", code, tt.code)
			}
			if got := await(t, res); got.status != http.StatusBadGateway {
				t.Errorf("waiting caller: %d, want 502", got.status)
			}
			if tt.name == "Disconnect closes with 1011" {
				other.expectNothing("alive") // other tokens' sockets are untouched
				waitJoinedExactly(t, s, otherTok.PathID, 1)
				// The token is not revoked: it can reconnect.
				dial(t, s, tok.Token).join(tok.PathID, "1")
			} else {
				other.closeStatus()
				waitJoinedExactly(t, s, tok.PathID, 0)
				dial(t, s, tok.Token).join(tok.PathID, "1") // tokens stay valid
			}
		})
	}
}

func TestRefuseTokens(t *testing.T) {
	t.Parallel()
	s := newTestServer(t)
	c, tok := joinedClient(t, s, "")
	s.RefuseTokens(true)
	if status, body := upgradeStatus(t, socketURLFor(s, tok.Token)); status != http.StatusForbidden || body != "" {
		t.Errorf("refused: %d %q", status, body)
	}
	c.expectNothing("still-open") // open sockets are not affected
	s.RefuseTokens(false)
	dial(t, s, tok.Token).join(tok.PathID, "1")
}

func TestDropReplies(t *testing.T) {
	t.Parallel()
	s := newTestServer(t)
	tok := mint(t, s, "")
	c := dial(t, s, tok.Token)
	s.DropReplies(true)
	c.send("1", "1", topicPrefix+tok.PathID, phoenix.EventJoin, nil)
	c.send("", "2", phoenix.TopicPhoenix, phoenix.EventHeartbeat, nil)
	c.send("1", "3", topicPrefix+tok.PathID, "refresh_token", nil)
	c.send("1", "4", topicPrefix+tok.PathID, "heartbeat", nil)
	if m := c.expect("heartbeat_ack"); m.JoinRef != "1" { // pushes still flow; the join happened
		t.Errorf("ack: %+v", m)
	}
	s.DropReplies(false)
	c.expectNothing("b") // no reply was queued for the join, the heartbeat or the refresh
	if s.Joined(tok.PathID) != 1 || s.CurrentToken(tok.ID) == tok.Token {
		t.Error("messages must still be handled while replies are dropped")
	}
}

func TestDelayRepliesOverNetwork(t *testing.T) {
	t.Parallel()
	s := newTestServer(t)
	tok := mint(t, s, "")
	c := dial(t, s, tok.Token)
	const d = 100 * time.Millisecond
	s.DelayReplies(d)
	start := time.Now()
	c.join(tok.PathID, "1")
	if el := time.Since(start); el < d { // a lower bound cannot flake
		t.Errorf("join reply after %v, want >= %v", el, d)
	}
	s.DelayReplies(-time.Second) // negative means off
	c.expectNothing("b")
}

func TestCrashChannels(t *testing.T) {
	t.Parallel()
	s := newTestServer(t)
	c, tok := joinedClient(t, s, "")
	res := goHTTP(t, http.MethodGet, s.CallURL(tok.PathID)+"/x", "", nil)
	c.expect("proxy_req")
	pc := proxiedClient(t, s, "/call/"+tok.PathID+"/ws", nil)
	c.expect("ws_connect")
	s.CrashChannels(tok.PathID)
	if m := c.expect(phoenix.EventError); m.JoinRef != "1" || m.Ref != "1" || string(m.Payload) != "{}" {
		t.Errorf("phx_error = %+v", m)
	}
	if got := await(t, res); got.status != http.StatusBadGateway {
		t.Errorf("caller: %d, want 502", got.status)
	}
	if ce := clientClosed(t, pc); ce.Code != websocket.StatusGoingAway || ce.Reason != "Telephone sidecar disconnected" {
		t.Errorf("proxied client: %v", ce)
	}
	c.expectNothing("open") // the socket stays open; no ws_close for a dead channel
	c.join(tok.PathID, "2")
	if s.Joined(tok.PathID) != 1 {
		t.Error("re-join after crash failed")
	}
}

func TestPush(t *testing.T) {
	t.Parallel()
	s := newTestServer(t)
	c, tok := joinedClient(t, s, "")
	if err := s.Push(tok.PathID, "proxy_req", map[string]any{"request_id": "not-a-uuid"}); err != nil {
		t.Fatal(err)
	}
	m := c.expect("proxy_req")
	if m.JoinRef != "1" || m.Ref != "" || string(m.Payload) != `{"request_id":"not-a-uuid"}` {
		t.Errorf("pushed %+v", m)
	}
	if err := s.Push(tok.PathID, "raw", json.RawMessage(`[1,2]`)); err != nil {
		t.Fatal(err)
	}
	if m := c.expect("raw"); string(m.Payload) != "[1,2]" {
		t.Errorf("raw payload %s", m.Payload)
	}
	if err := s.Push(NewPathID(), "x", nil); !errors.Is(err, ErrNoTelephone) {
		t.Errorf("no telephone: %v", err)
	}
	if err := s.Push(tok.PathID, "x", []byte("{")); err == nil {
		t.Error("invalid JSON must be refused")
	}
	if err := s.Push(tok.PathID, "x", func() {}); err == nil {
		t.Error("unencodable payload must be refused")
	}
	_ = c.c.CloseNow()
	s.Close()
	if err := s.Push(tok.PathID, "x", nil); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
}

func TestObservers(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, WithRecorder())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.WaitJoined(ctx, NewPathID(), 1); !errors.Is(err, context.Canceled) {
		t.Errorf("WaitJoined with a cancelled context: %v", err)
	}
	_, tok := joinedClient(t, s, "")
	joinedClient(t, s, tok.PathID)
	_, tok2 := joinedClient(t, s, "")
	waitJoined(t, s, tok.PathID, 2)
	if st := s.Stats(); len(st) != 2 || st[tok.PathID] != 2 || st[tok2.PathID] != 1 {
		t.Errorf("Stats = %v", st)
	}
	frames := s.Frames() // per client: join, its reply, the barrier and its reply
	if len(frames) != 12 || frames[0].Dir != DirIn || frames[1].Dir != DirOut || frames[0].Time.IsZero() {
		t.Fatalf("Frames = %+v", frames)
	}
	if m, err := phoenix.DecodeText([]byte(frames[1].Data)); err != nil || m.Event != phoenix.EventReply {
		t.Errorf("recorded reply %q: %v", frames[1].Data, err)
	}
	NewServer(nil).Close() // a nil Option is ignored
	if a, b := NewPathID(), NewPathID(); a == b {
		t.Error("NewPathID repeats")
	}
}

// withCloseGrace shortens how long a close handshake may take (tests only).
func withCloseGrace(d time.Duration) Option { return func(c *config) { c.closeGrace = d } }

func TestCloseGraceCutsUnresponsivePeer(t *testing.T) {
	t.Parallel()
	s := NewServer(withCloseGrace(20 * time.Millisecond))
	_, tok := joinedClient(t, s, "") // never reads: the close handshake cannot complete
	s.Restart()
	waitJoinedExactly(t, s, tok.PathID, 0)
	s.Close() // returns once the grace has cut the connection
	if n := len(s.liveSockets()); n != 0 {
		t.Errorf("%d sockets left after Close", n)
	}
}

// Cutting one of two sockets of one token fails only the callers waiting on it;
// the other socket keeps serving the path, so no caller gets 503.
func TestDropOneSocket(t *testing.T) {
	t.Parallel()
	s := newTestServer(t)
	tok := mint(t, s, "")
	a := dial(t, s, tok.Token)
	a.join(tok.PathID, "1")
	b := dial(t, s, tok.Token)
	b.join(tok.PathID, "1")
	onA := goHTTP(t, http.MethodGet, s.CallURL(tok.PathID)+"/a", "", nil)
	a.expect("proxy_req") // round-robin in join order: a, then b
	onB := goHTTP(t, http.MethodGet, s.CallURL(tok.PathID)+"/b", "", nil)
	reqB := b.expect("proxy_req")
	socks := s.Sockets()
	if len(socks) != 2 || socks[0].ID != "1" || socks[1].ID != "2" || !socks[0].Joined ||
		socks[0].Pending != 1 || socks[1].Pending != 1 || socks[0].TokenID != tok.ID || socks[0].PathID != tok.PathID {
		t.Fatalf("Sockets = %+v", socks)
	}

	status, m := getJSON(t, s.URL()+"/admin/disconnect?conn="+socks[0].ID)
	if status != http.StatusOK || m["failed_calls"] != float64(1) || m["conn"] != "1" {
		t.Fatalf("disconnect conn: %d %v", status, m)
	}
	if code := a.closeStatus(); code != -1 {
		t.Errorf("cut socket closed with %d, want no close frame", code)
	}
	if got := await(t, onA); got.status != http.StatusBadGateway {
		t.Errorf("caller on the cut socket: %d, want 502", got.status)
	}
	if n := s.Joined(tok.PathID); n != 1 {
		t.Errorf("joined after the cut: %d, want 1", n)
	}
	var reqID struct {
		RequestID string `json:"request_id"`
	}
	_ = json.Unmarshal(reqB.Payload, &reqID)
	b.send("1", "2", reqB.Topic, "proxy_res", map[string]any{"request_id": reqID.RequestID, "status": 200, "body": "b"})
	if got := await(t, onB); got.status != http.StatusOK || got.body != "b" {
		t.Errorf("caller on the other socket: %d %q", got.status, got.body)
	}
	next := goHTTP(t, http.MethodGet, s.CallURL(tok.PathID)+"/next", "", nil)
	b.answer("1", "3", map[string]any{"status": 200})
	if got := await(t, next); got.status != http.StatusOK {
		t.Errorf("after the cut: %d, want 200 from the other socket", got.status)
	}
	if _, err := s.DropSocket("1"); !errors.Is(err, ErrUnknownSocket) {
		t.Errorf("DropSocket of a dropped socket = %v, want ErrUnknownSocket", err)
	}
	if status, m := getJSON(t, s.URL()+"/admin/disconnect?conn=9"); status != http.StatusNotFound || m["error"] == "" {
		t.Errorf("unknown conn: %d %v", status, m)
	}
	req, _ := http.NewRequest(http.MethodGet, s.URL()+"/admin/sockets", nil)
	var listed []SocketInfo
	if res := doHTTP(req); res.err != nil || json.Unmarshal([]byte(res.body), &listed) != nil ||
		len(listed) != 1 || listed[0].ID != "2" || !listed[0].Joined {
		t.Errorf("/admin/sockets = %v %q", res.err, res.body)
	}
}
