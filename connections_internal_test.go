package telephone

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// cut closes the server ends of the connections with the given dial indexes.
func (f *fakePlugboard) cut(idx ...int) {
	f.mu.Lock()
	conns := make([]memConn, 0, len(idx))
	for _, i := range idx {
		conns = append(conns, f.servers[i])
	}
	f.mu.Unlock()
	for _, c := range conns {
		_ = c.Close(1012, "")
	}
}

func (f *fakePlugboard) dialTimes() []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.dials)
}

// inState counts the sessions in state.
func inState(st Status, state string) int {
	n := 0
	for _, s := range st.Sessions {
		if s.State == state {
			n++
		}
	}
	return n
}

func joinedSessions(st Status) int { return inState(st, SessionJoined) }

// TestSessionsReconnectOnTheirOwn: when every socket is lost at once (a Plugboard restart),
// each session redials after its own jittered backoff: no two in lockstep, all within the first
// backoff ceiling, each counted on its own slot.
func TestSessionsReconnectOnTheirOwn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakePlugboard(t)
		c, stop := runFake(t, f, WithToken(f.mint(time.Hour)), WithConnections(4),
			WithReconnectBackoff(time.Second, 30*time.Second))
		defer stop()
		st := c.Status()
		if len(st.Sessions) != 4 || joinedSessions(st) != 4 || len(f.dialTimes()) != 4 {
			t.Fatalf("start: %d dials, sessions %+v", len(f.dialTimes()), st.Sessions)
		}
		lost := time.Now()
		f.cut(0, 1, 2, 3)
		synctest.Wait()
		if st := c.Status(); st.Joined || st.Connected {
			t.Fatalf("still joined after every socket was cut: %+v", st)
		}
		time.Sleep(time.Second) // the first backoff ceiling
		synctest.Wait()
		redials := f.dialTimes()[4:]
		if len(redials) != 4 {
			t.Fatalf("%d redials within the first backoff ceiling, want 4", len(redials))
		}
		at := map[time.Duration]bool{}
		for _, d := range redials {
			at[d.Sub(lost)] = true
		}
		if len(at) != 4 {
			t.Errorf("sessions redialed in lockstep: %v after the cut", redials)
		}
		st = c.Status()
		if joinedSessions(st) != 4 || st.Reconnects != 4 {
			t.Fatalf("after the redials: reconnects %d, sessions %+v", st.Reconnects, st.Sessions)
		}
		for _, s := range st.Sessions {
			if s.Reconnects != 1 || !strings.Contains(s.LastError, "socket") || s.JoinedSince.Before(lost) {
				t.Errorf("session %d: %+v", s.ID, s)
			}
		}
	})
}

// TestRefusedDialKeepsHealthySessions: a 403 on one session's redial does not stop Run while
// another session is joined; the refused slot keeps trying and rejoins once the token is
// accepted again. Only one token is used by every dial.
func TestRefusedDialKeepsHealthySessions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakePlugboard(t)
		tok := f.mint(time.Hour)
		c, stop := runFake(t, f, WithToken(tok), WithConnections(2), WithReconnectBackoff(time.Second, 4*time.Second))
		defer stop()
		f.mu.Lock()
		f.refuse = map[string]bool{tok: true}
		f.mu.Unlock()
		f.cut(0)
		time.Sleep(20 * time.Second) // several refused redials
		synctest.Wait()
		st := c.Status()
		if !st.Joined || joinedSessions(st) != 1 || len(f.dialTimes()) < 4 {
			t.Fatalf("after refused redials: %d dials, %+v", len(f.dialTimes()), st.Sessions)
		}
		down := st.Sessions[0]
		if down.State == SessionJoined {
			down = st.Sessions[1]
		}
		if !strings.Contains(down.LastError, "refused") || down.Reconnects < 2 {
			t.Errorf("refused session: %+v", down)
		}
		f.mu.Lock()
		f.refuse = nil
		f.mu.Unlock()
		time.Sleep(5 * time.Second) // past the backoff cap
		synctest.Wait()
		if st := c.Status(); joinedSessions(st) != 2 {
			t.Fatalf("refused session did not rejoin: %+v", st.Sessions)
		}
		if c.tokens.current().raw != tok {
			t.Error("the Client switched tokens")
		}
	})
}

func leavingSessions(st Status) int { return inState(st, SessionLeaving) }

// TestJoinedFromTheJoinReply: a request can arrive as soon as the socket's reader has taken the
// join reply, before the session's join has recorded it; Status (and so /ready) says joined from
// that moment, not only once the join goroutine runs again (a readiness probe on a loaded machine
// read 503 after requests had crossed).
func TestJoinedFromTheJoinReply(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakePlugboard(t)
		c, err := New("ws://plugboard.test/telephone/websocket", WithHandler(http.NotFoundHandler()),
			WithPlugboardSecret(testSecret), WithToken(f.mint(time.Hour)), WithConnections(1))
		if err != nil {
			t.Fatal(err)
		}
		c.dialFn = f.dial
		hold := make(chan struct{})
		c.joinReplied = func() { <-hold }
		done := make(chan error, 1)
		go func() { done <- c.Run(context.Background()) }()
		synctest.Wait()
		f.pushTo(t, 0, 1, "/early")
		synctest.Wait()
		if got := f.statuses(); got[http.StatusNotFound] != 1 {
			t.Fatalf("the request that arrived after the join reply: %v", got)
		}
		if st := c.Status(); !st.Joined || !st.Connected || joinedSessions(st) != 1 {
			t.Errorf("a request crossed but Status says not joined: %+v", st)
		}
		close(hold)
		synctest.Wait()
		if st := c.Status(); !st.Joined || st.Path != "/api" || joinedSessions(st) != 1 {
			t.Errorf("after the join was recorded: %+v", st)
		}
		if err := c.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
		if err := <-done; err != nil {
			t.Error(err)
		}
		f.wg.Wait()
	})
}
