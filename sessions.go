package telephone

import (
	"context"
	"slices"
	"sync"
	"time"
)

// Session states, as Status.Sessions and the telephone_sessions metric report them.
const (
	SessionConnecting = "connecting" // dialing Plugboard or waiting for the first join reply
	SessionJoined     = "joined"     // the channel is joined: requests can arrive on it
	SessionRejoining  = "rejoining"  // the socket is up; Plugboard ended the channel and it re-joins
	SessionLeaving    = "leaving"    // draining: waiting for a moment with nothing in flight, then leaving
	SessionDown       = "down"       // no socket: waiting to reconnect, or stopped
)

// sessionStates lists every session state, for the metric.
var sessionStates = []string{SessionConnecting, SessionJoined, SessionRejoining, SessionLeaving, SessionDown}

// sessionPart is one session's share of Status.
type sessionPart struct {
	connected   bool
	joined      bool // join recorded the reply (path, times)
	replied     bool // the socket's reader took the join reply (set by getPart from the channel)
	path        string
	lastAck     time.Time
	connectedAt time.Time
}

func (s *session) setPart(f func(*sessionPart)) {
	s.mu.Lock()
	f(&s.part)
	s.mu.Unlock()
}

// getPart returns the session's part, replied included.
func (s *session) getPart() sessionPart {
	s.mu.Lock()
	p := s.part
	s.mu.Unlock()
	p.replied = s.ch != nil && s.ch.Joined()
	return p
}

// isJoined reports whether requests can arrive on the session: from the moment the socket's
// reader took the join reply, before join has recorded it.
func (p sessionPart) isJoined() bool { return p.joined || p.replied }

// slot is one of the Client's WithConnections places for a session: it outlives the sessions
// that fill it one after another, and carries what Status reports about them.
type slot struct {
	id int
	// Guarded by sessionSet.mu:
	state       string
	joinedSince time.Time
	reconnects  int
	lastErr     string
	lastErrAt   time.Time
}

// sessionSet is the Client's sessions with Plugboard, one per slot at most. Status, the token
// refresh and the drain go through it.
type sessionSet struct {
	mu       sync.Mutex // guards the fields below and every slot's; taken before a session's mu
	slots    []*slot
	live     []*session
	last     sessionPart   // the part of the last session that ended, for Status
	joinedCh chan struct{} // closed and replaced when a session joins
	onState  func(counts map[string]int)
}

// init creates n slots, all down; onState (may be nil) sees the count per state on every change.
func (ss *sessionSet) init(n int, onState func(map[string]int)) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.onState = onState
	for i := range n {
		ss.slots = append(ss.slots, &slot{id: i, state: SessionDown})
	}
	ss.reportLocked()
}

// setState moves sl to state; joined stamps joinedSince, any other state clears it.
func (ss *sessionSet) setState(sl *slot, state string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if sl.state == state {
		return
	}
	sl.state = state
	sl.joinedSince = time.Time{}
	if state == SessionJoined {
		sl.joinedSince = time.Now()
	}
	ss.reportLocked()
}

func (ss *sessionSet) reportLocked() {
	if ss.onState == nil {
		return
	}
	counts := make(map[string]int, len(sessionStates))
	for _, st := range sessionStates {
		counts[st] = 0
	}
	for _, sl := range ss.slots {
		counts[sl.state]++
	}
	ss.onState(counts)
}

// failed records the error that ended or failed a session of sl.
func (ss *sessionSet) failed(sl *slot, err error) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	sl.lastErr, sl.lastErrAt = err.Error(), time.Now()
}

// down marks sl down after its session ended with err (nil when the Client is stopping): state
// and error change in one step, so Status never shows a down slot without its reason.
func (ss *sessionSet) down(sl *slot, err error) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if err != nil {
		sl.lastErr, sl.lastErrAt = err.Error(), time.Now()
	}
	if sl.state != SessionDown {
		sl.state, sl.joinedSince = SessionDown, time.Time{}
		ss.reportLocked()
	}
}

// reconnecting counts a reconnect attempt of sl.
func (ss *sessionSet) reconnecting(sl *slot) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	sl.reconnects++
}

func (ss *sessionSet) add(s *session) {
	ss.mu.Lock()
	ss.live = append(ss.live, s)
	ss.mu.Unlock()
}

// remove forgets s, keeping its part (no longer connected) for Status.
func (ss *sessionSet) remove(s *session) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.live = slices.DeleteFunc(ss.live, func(x *session) bool { return x == s })
	ss.last = s.getPart()
	ss.last.connected, ss.last.joined, ss.last.replied = false, false, false
}

// joined wakes whoever waits for a joined session.
func (ss *sessionSet) joined() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.joinedCh != nil {
		close(ss.joinedCh)
		ss.joinedCh = nil
	}
}

// pick returns a joined session, or nil and a channel closed when a session joins.
func (ss *sessionSet) pick() (*session, <-chan struct{}) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for _, s := range ss.live {
		if s.getPart().isJoined() {
			return s, nil
		}
	}
	if ss.joinedCh == nil {
		ss.joinedCh = make(chan struct{})
	}
	return nil, ss.joinedCh
}

// nextToLeave returns a joined live session that the drain has not asked to leave yet, marking
// it asked, and how many such sessions there are (it included); nil when there are none.
func (ss *sessionSet) nextToLeave() (*session, int) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	var next *session
	n := 0
	for _, s := range ss.live {
		if !s.leaveAsked && s.getPart().isJoined() {
			if next == nil {
				next = s
			}
			n++
		}
	}
	if next != nil {
		next.leaveAsked = true
	}
	return next, n
}

// anyJoined reports whether some live session is joined.
func (ss *sessionSet) anyJoined() bool {
	s, _ := ss.pick()
	return s != nil
}

// waitJoined returns a joined session, waiting for one; nil when ctx ends first.
func (ss *sessionSet) waitJoined(ctx context.Context) *session {
	for {
		s, wait := ss.pick()
		if s != nil {
			return s
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return nil
		}
	}
}

// fill sets Status's per-session fields and Reconnects (their sum). Connected and Joined are
// true when any session is; Path, LastAck and ConnectedAt come from the first joined session,
// else the first connected one, else the last one that ended. Sessions has one entry per slot.
func (ss *sessionSet) fill(st *Status) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	p := ss.last
	best := -1
	for _, s := range ss.live {
		sp := s.getPart()
		rank := 0 // prefer a joined session whose join is recorded (it has the path)
		if sp.isJoined() {
			rank = 1
		}
		if sp.joined {
			rank = 2
		}
		if rank > best {
			p, best = sp, rank
		}
	}
	st.Connected, st.Joined, st.Path = p.connected, p.isJoined(), p.path
	st.LastAck, st.ConnectedAt = p.lastAck, p.connectedAt
	st.Sessions = make([]SessionStatus, len(ss.slots))
	st.Reconnects = 0
	for i, sl := range ss.slots {
		st.Sessions[i] = SessionStatus{ID: sl.id, State: sl.state, JoinedSince: sl.joinedSince,
			Reconnects: sl.reconnects, LastError: sl.lastErr, LastErrorAt: sl.lastErrAt}
		st.Reconnects += sl.reconnects
	}
	for _, s := range ss.live {
		if s.slot != nil && s.slot.id < len(st.Sessions) {
			ps := &st.Sessions[s.slot.id]
			ps.InFlight = int(s.inflight.Load())
			if (ps.State == SessionConnecting || ps.State == SessionRejoining) && s.getPart().isJoined() {
				ps.State = SessionJoined // the join reply arrived; join has not recorded it yet
			}
		}
	}
}
