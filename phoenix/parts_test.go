package phoenix

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
)

// partsConn is a fakeConn that also implements PartsWriter: every part of a message arrives
// on parts, then "" marks its end; failAt makes the write of that part fail.
type partsConn struct {
	*fakeConn
	parts  chan string
	failAt int // 1-based; 0: never
}

func (c *partsConn) WriteParts(ctx context.Context, parts [][]byte, written func(i int)) error {
	for i, p := range parts {
		if i+1 == c.failAt {
			return errors.New("broken pipe")
		}
		select {
		case c.parts <- string(p):
		case <-ctx.Done():
			return ctx.Err()
		}
		written(i)
	}
	c.parts <- ""
	return nil
}

// released records the parts a SendParts caller got back, and checks that each comes with
// its index among the parts given.
type released struct {
	mu    sync.Mutex
	parts []string
	next  int  // the index the next part should have
	bad   bool // a part came back with another index
}

func (r *released) release(i int, p []byte) {
	r.mu.Lock()
	r.parts = append(r.parts, string(p))
	r.bad = r.bad || i != r.next
	r.next++
	r.mu.Unlock()
}

func (r *released) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.bad {
		return "parts released out of order or with wrong indexes: " + strings.Join(r.parts, "|")
	}
	return strings.Join(r.parts, "|")
}

func byteParts(ss ...string) [][]byte {
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = []byte(s)
	}
	return out
}

// TestChannelSendPartsJoined: without a PartsWriter the parts go out joined in one frame and
// every caller part is released (the envelope's own parts are not); a channel that is not
// joined refuses and releases them all.
func TestChannelSendPartsJoined(t *testing.T) {
	runSocket(t, noHeartbeat, func(t *testing.T, s *Socket, srv *fakeServer) {
		var rel released
		idle := s.Channel("other:topic", nil)
		if err := idle.SendParts(t.Context(), "e", byteParts(`{"a":`, `"b"}`), rel.release); !errors.Is(err, ErrChannelClosed) {
			t.Fatalf("SendParts before joining = %v", err)
		}
		if got := rel.String(); got != `{"a":|"b"}` {
			t.Fatalf("refused parts released: %q", got)
		}
		rel = released{}
		c := joinChannel(t, s, srv, nil)
		if err := c.SendParts(t.Context(), "proxy_res", byteParts(`{"a":`, `"b`, `c"}`), rel.release); err != nil {
			t.Fatal(err)
		}
		srv.expect(`["1","2","` + topic + `","proxy_res",{"a":"bc"}]`)
		synctest.Wait()
		if got := rel.String(); got != `{"a":|"b|c"}` {
			t.Fatalf("released %q", got)
		}
	})
}

// TestSocketWritesParts: with a PartsWriter the parts go out one by one, each released once
// written, in order with plain frames queued around them; a failed write releases the rest
// and stops the socket.
func TestSocketWritesParts(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		conn := &partsConn{fakeConn: newFakeConn(), parts: make(chan string)}
		s := NewSocket(conn, noHeartbeat)
		defer s.Close(1000, "")
		srv := &fakeServer{t: t, conn: conn.fakeConn}
		c := joinChannel(t, s, srv, nil)
		if err := c.Send(t.Context(), "first", nil); err != nil { // the writer blocks in its Write
			t.Fatal(err)
		}
		synctest.Wait()
		var rel released
		if err := c.SendParts(t.Context(), "big", byteParts(`{"x":"`, `aa`, `bb"}`), rel.release); err != nil {
			t.Fatal(err)
		}
		if err := c.Send(t.Context(), "last", nil); err != nil {
			t.Fatal(err)
		}
		if m := srv.recv(); m.Event != "first" {
			t.Fatalf("first frame %q", m.Event)
		}
		var msg []string
		for p := range conn.parts {
			if p == "" {
				break
			}
			msg = append(msg, p)
			synctest.Wait() // written(i) has run: every caller part up to this one is released
			rel.mu.Lock()
			n := len(rel.parts)
			rel.mu.Unlock()
			if want := min(len(msg)-1, 3); n != want {
				t.Fatalf("after %d parts written, %d released, want %d", len(msg), n, want)
			}
		}
		if got := strings.Join(msg, ""); got != `["1","3","`+topic+`","big",{"x":"aabb"}]` || len(msg) != 5 {
			t.Fatalf("message in %d parts: %s", len(msg), got)
		}
		if got := rel.String(); got != `{"x":"|aa|bb"}` {
			t.Fatalf("released %q", got)
		}
		if m := srv.recv(); m.Event != "last" {
			t.Fatalf("frame after the parts %q", m.Event)
		}

		conn.failAt = 3
		rel = released{}
		if err := c.SendParts(t.Context(), "big", byteParts(`{"x":"`, `aa`, `bb"}`), rel.release); err != nil {
			t.Fatal(err)
		}
		<-conn.parts
		<-conn.parts
		<-s.Done()
		if got := rel.String(); got != `{"x":"|aa|bb"}` {
			t.Fatalf("after a failed write, released %q", got)
		}
		if s.Err() == nil || !strings.Contains(s.Err().Error(), "broken pipe") {
			t.Fatalf("socket error %v", s.Err())
		}
	})
}

// TestSocketCloseReleasesQueuedParts: parts queued behind a write that never ends are given
// back when the socket stops, and a SendParts after that is refused with its parts released:
// a caller that counts bytes by its parts (telephone's memory budget) gets every one back.
func TestSocketCloseReleasesQueuedParts(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		conn := newFakeConn()
		s := NewSocket(conn, noHeartbeat)
		srv := &fakeServer{t: t, conn: conn}
		c := joinChannel(t, s, srv, nil)
		if err := c.Send(t.Context(), "stuck", nil); err != nil { // nobody reads it: the writer blocks
			t.Fatal(err)
		}
		synctest.Wait()
		var rel released
		if err := c.SendParts(t.Context(), "big", byteParts(`{"x":"`, `aa`, `bb"}`), rel.release); err != nil {
			t.Fatal(err)
		}
		s.Close(1000, "")
		<-s.Done()
		if got := rel.String(); got != `{"x":"|aa|bb"}` {
			t.Fatalf("queued parts released at close: %q, want all three", got)
		}
		var late released
		if err := c.SendParts(t.Context(), "late", byteParts(`{"y":`, `1}`), late.release); err == nil {
			t.Fatal("SendParts after the socket stopped succeeded")
		}
		if got := late.String(); got != `{"y":|1}` {
			t.Fatalf("refused parts released: %q", got)
		}
	})
}
