package telephone

import (
	"context"
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
