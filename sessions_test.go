package telephone

import (
	"context"
	"net/http"
	"testing"
	"testing/synctest"
	"time"
)

// TestSessionSetStatusParts: Status's per-session fields come from the live session, and after
// it ended from its last part, no longer connected.
func TestSessionSetStatusParts(t *testing.T) {
	t.Parallel()
	var ss sessionSet
	var st Status
	ss.fill(&st)
	if st.Connected || st.Joined || st.Path != "" {
		t.Fatalf("no session: %+v", st)
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	s := &session{part: sessionPart{connected: true}}
	ss.add(s)
	s.setPart(func(p *sessionPart) {
		p.joined, p.path, p.connectedAt, p.lastAck = true, "/api", at, at.Add(time.Second)
	})
	ss.fill(&st)
	if !st.Connected || !st.Joined || st.Path != "/api" || !st.ConnectedAt.Equal(at) || !st.LastAck.Equal(at.Add(time.Second)) {
		t.Fatalf("live session: %+v", st)
	}
	ss.remove(s)
	st = Status{}
	ss.fill(&st)
	if st.Connected || st.Joined || st.Path != "/api" || !st.ConnectedAt.Equal(at) {
		t.Fatalf("after the session ended: %+v", st)
	}
}

// TestSessionSetWaitJoined: the token refresh waits for a joined session and gives up with ctx.
func TestSessionSetWaitJoined(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var ss sessionSet
		s := &session{part: sessionPart{connected: true}}
		ss.add(s)
		got := make(chan *session, 1)
		go func() { got <- ss.waitJoined(context.Background()) }()
		synctest.Wait()
		select {
		case <-got:
			t.Fatal("waitJoined returned before any session joined")
		default:
		}
		s.setPart(func(p *sessionPart) { p.joined = true })
		ss.joined()
		if g := <-got; g != s {
			t.Fatalf("waitJoined returned %p, want %p", g, s)
		}
		ctx, cancel := context.WithCancel(context.Background())
		ss.remove(s)
		go func() { got <- ss.waitJoined(ctx) }()
		synctest.Wait()
		cancel()
		if g := <-got; g != nil {
			t.Fatal("waitJoined returned a session after ctx ended")
		}
	})
}

// TestWSDetachIsPerSession: a session that ends takes only its own proxied WebSockets and
// ws_checks with it; nil takes every one.
func TestWSDetachIsPerSession(t *testing.T) {
	t.Parallel()
	c, err := New("ws://pb.example/telephone/websocket", WithHandler(http.NotFoundHandler()))
	if err != nil {
		t.Fatal(err)
	}
	s1, s2 := &session{}, &session{}
	a, b := &wsConn{s: s1, id: "a"}, &wsConn{s: s2, id: "b"}
	k1, k2 := &wsCheck{s: s1}, &wsCheck{s: s2}
	wm := c.ws
	wm.conns["a"], wm.conns["b"] = a, b
	wm.all[a], wm.all[b] = struct{}{}, struct{}{}
	wm.checks[k1], wm.checks[k2] = struct{}{}, struct{}{}
	conns, checks := wm.detach(s1)
	if len(conns) != 1 || conns[0] != a || len(checks) != 1 || checks[0] != k1 {
		t.Fatalf("detach(s1) = %v %v", conns, checks)
	}
	if wm.lookup("a") != nil || wm.lookup("b") != b {
		t.Fatal("detach(s1) must forget a's id and keep b's")
	}
	if conns, checks := wm.detach(nil); len(conns) != 2 || len(checks) != 2 || wm.lookup("b") != nil {
		t.Fatalf("detach(nil) = %v %v", conns, checks)
	}
}
