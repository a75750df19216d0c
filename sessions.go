package telephone

import (
	"context"
	"slices"
	"sync"
	"time"
)

// sessionPart is one session's share of Status.
type sessionPart struct {
	connected   bool
	joined      bool
	path        string
	lastAck     time.Time
	connectedAt time.Time
}

func (s *session) setPart(f func(*sessionPart)) {
	s.mu.Lock()
	f(&s.part)
	s.mu.Unlock()
}

func (s *session) getPart() sessionPart {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.part
}

// sessionSet is the Client's sessions with Plugboard. Today runSession keeps at most one; Status
// and the token refresh go through this set so that several can be added.
type sessionSet struct {
	mu       sync.Mutex // guards the fields below; taken before a session's mu
	live     []*session
	last     sessionPart   // the part of the last session that ended, for Status
	joinedCh chan struct{} // closed and replaced when a session joins
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
	ss.last.connected, ss.last.joined = false, false
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
		if s.getPart().joined {
			return s, nil
		}
	}
	if ss.joinedCh == nil {
		ss.joinedCh = make(chan struct{})
	}
	return nil, ss.joinedCh
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

// fill sets Status's per-session fields: from the first live session, else from the last one
// that ended.
func (ss *sessionSet) fill(st *Status) {
	ss.mu.Lock()
	p := ss.last
	if len(ss.live) > 0 {
		p = ss.live[0].getPart()
	}
	ss.mu.Unlock()
	st.Connected, st.Joined, st.Path = p.connected, p.joined, p.path
	st.LastAck, st.ConnectedAt = p.lastAck, p.connectedAt
}
