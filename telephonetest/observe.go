package telephonetest

import (
	"context"
	"time"
)

// Frame is one recorded WebSocket frame of a telephone socket (WithRecorder).
type Frame struct {
	Time   time.Time
	Dir    string // DirIn ("C→S", telephone to server) or DirOut ("S→C")
	Data   string // the frame's bytes (text frames: the JSON)
	Binary bool   // a binary frame
}

// Directions of a recorded Frame.
const (
	DirIn  = "C→S"
	DirOut = "S→C"
)

// record stores a frame when WithRecorder is on.
func (s *Server) record(dir string, binary bool, data []byte) {
	if !s.cfg.record {
		return
	}
	f := Frame{Time: time.Now(), Dir: dir, Data: string(data), Binary: binary}
	s.recMu.Lock()
	s.frames = append(s.frames, f)
	s.recMu.Unlock()
}

// Frames returns a copy of the frames recorded so far, in the order they were
// read or written (WithRecorder; nil without it).
func (s *Server) Frames() []Frame {
	s.recMu.Lock()
	defer s.recMu.Unlock()
	return append([]Frame(nil), s.frames...)
}

// Joined returns how many telephones have currently joined the path.
func (s *Server) Joined(pathID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.paths[pathID])
}

// WaitJoined waits until at least n telephones have joined the path. It
// returns ctx.Err() if ctx ends first, or ErrClosed when the server closes.
func (s *Server) WaitJoined(ctx context.Context, pathID string, n int) error {
	for {
		s.mu.Lock()
		joined, changed, closed := len(s.paths[pathID]), s.changed, s.closed
		s.mu.Unlock()
		switch {
		case joined >= n:
			return nil
		case closed:
			return ErrClosed
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		case <-s.quit:
		}
	}
}

// Stats returns the number of joined telephones per path id (paths with none
// are absent).
func (s *Server) Stats() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.paths))
	for p, list := range s.paths {
		out[p] = len(list)
	}
	return out
}

// JoinedTokens returns the token record ids of the telephones joined to pathID, in join
// order: distinct ids mean distinct tokens (a refresh keeps a record's id).
func (s *Server) JoinedTokens(pathID string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.paths[pathID]))
	for _, ch := range s.paths[pathID] {
		out = append(out, ch.sock.tokenID)
	}
	return out
}
