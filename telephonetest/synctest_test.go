package telephonetest

import (
	"context"
	"net"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/coder/websocket"
	"github.com/verastack/telephone/phoenix"
)

// fakeConn is an in-memory wireConn: channel operations are durably blocking,
// so socket logic can run inside a synctest bubble with fake time.
type fakeConn struct {
	in     chan fakeMsg // test → server
	out    chan fakeMsg // server → test
	closed chan struct{}

	mu     sync.Mutex // guards code and abrupt
	code   websocket.StatusCode
	abrupt bool
	once   sync.Once
}

type fakeMsg struct {
	typ  websocket.MessageType
	data []byte
}

func newFakeConn() *fakeConn {
	return &fakeConn{in: make(chan fakeMsg), out: make(chan fakeMsg, 1024), closed: make(chan struct{})}
}

func (f *fakeConn) Read(ctx context.Context) (websocket.MessageType, []byte, error) {
	select {
	case m := <-f.in:
		return m.typ, m.data, nil
	case <-f.closed:
		return 0, nil, net.ErrClosed
	case <-ctx.Done():
		return 0, nil, ctx.Err()
	}
}

func (f *fakeConn) Write(ctx context.Context, typ websocket.MessageType, p []byte) error {
	select {
	case <-f.closed:
		return net.ErrClosed
	default:
	}
	select {
	case f.out <- fakeMsg{typ: typ, data: append([]byte(nil), p...)}:
		return nil
	case <-f.closed:
		return net.ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (f *fakeConn) Close(code websocket.StatusCode, _ string) error {
	f.finish(code, false)
	return nil
}

func (f *fakeConn) CloseNow() error {
	f.finish(0, true)
	return nil
}

func (f *fakeConn) finish(code websocket.StatusCode, abrupt bool) {
	f.once.Do(func() {
		f.mu.Lock()
		f.code, f.abrupt = code, abrupt
		f.mu.Unlock()
		close(f.closed)
	})
}

// closeCode returns the close code and whether the conn closed at all.
func (f *fakeConn) closeCode() (websocket.StatusCode, bool) {
	select {
	case <-f.closed:
	default:
		return 0, false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.code, true
}

// send delivers one text frame to the server.
func (f *fakeConn) send(t testing.TB, frame string) {
	t.Helper()
	select {
	case f.in <- fakeMsg{typ: websocket.MessageText, data: []byte(frame)}:
	case <-f.closed:
		t.Fatalf("send %s: conn closed", frame)
	}
}

// pending returns the frames written so far without waiting.
func (f *fakeConn) pending(t testing.TB) []phoenix.Message {
	t.Helper()
	var out []phoenix.Message
	for {
		select {
		case m := <-f.out:
			msg, err := phoenix.DecodeText(m.data)
			if err != nil {
				t.Fatalf("server wrote %q: %v", m.data, err)
			}
			out = append(out, msg)
		default:
			return out
		}
	}
}

// fakeSocket runs a socket of s over a fakeConn for tok; stop closes the
// server and joins the socket.
func fakeSocket(t testing.TB, s *Server, tok Token) (fc *fakeConn, stop func()) {
	t.Helper()
	fc = newFakeConn()
	sk := s.newSocket(fc, nil, tok.ID, tok.PathID)
	if sk == nil {
		t.Fatal("newSocket refused")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sk.run()
	}()
	return fc, func() {
		s.Close()
		<-done
	}
}

func events(ms []phoenix.Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Event
	}
	return out
}

// TestSynctestHeartbeatTimeout checks the app heartbeat timeout with fake time:
// checked every timeout/2 from the join, the channel dies at the first check
// that finds more than timeout since the last heartbeat.
func TestSynctestHeartbeatTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newServer([]Option{WithHeartbeatTimeout(60 * time.Second), WithIdleTimeout(time.Hour)})
		tok := mint(t, s, "")
		fc, stop := fakeSocket(t, s, tok)
		defer stop()
		topic := topicPrefix + tok.PathID
		fc.send(t, `["1","1","`+topic+`","phx_join",{}]`)
		synctest.Wait()
		if got := events(fc.pending(t)); len(got) != 1 || got[0] != phoenix.EventReply {
			t.Fatalf("after join: %v", got)
		}
		time.Sleep(59 * time.Second)
		fc.send(t, `["1","2","`+topic+`","heartbeat",{"ts":1}]`)
		synctest.Wait()
		if got := events(fc.pending(t)); len(got) != 1 || got[0] != "heartbeat_ack" {
			t.Fatalf("after heartbeat: %v", got)
		}
		time.Sleep(61*time.Second - time.Millisecond) // the check at +90 s (31 s since the heartbeat) passes
		synctest.Wait()
		if got := fc.pending(t); len(got) != 0 || s.Joined(tok.PathID) != 1 {
			t.Fatalf("channel died early: %v", events(got))
		}
		time.Sleep(time.Millisecond) // check at +120 s: 61 s since the heartbeat
		synctest.Wait()
		got := fc.pending(t)
		if len(got) != 1 || got[0].Event != phoenix.EventError || got[0].Ref != "1" || got[0].JoinRef != "1" {
			t.Fatalf("after timeout: %+v", got)
		}
		if s.Joined(tok.PathID) != 0 {
			t.Fatal("channel still registered after heartbeat timeout")
		}
		if _, closed := fc.closeCode(); closed {
			t.Fatal("the socket must stay open after the channel's heartbeat timeout")
		}
	})
}

// TestSynctestHeartbeatWithoutAcks checks that heartbeats keep the channel
// alive while StopHeartbeatAcks suppresses the acks.
func TestSynctestHeartbeatWithoutAcks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newServer([]Option{WithHeartbeatTimeout(10 * time.Second), WithIdleTimeout(time.Hour)})
		tok := mint(t, s, "")
		fc, stop := fakeSocket(t, s, tok)
		defer stop()
		topic := topicPrefix + tok.PathID
		fc.send(t, `["1","1","`+topic+`","phx_join",{}]`)
		s.StopHeartbeatAcks(true)
		for i := range 20 {
			time.Sleep(5 * time.Second)
			fc.send(t, `["1","h`+string(rune('a'+i))+`","`+topic+`","heartbeat",{}]`)
		}
		synctest.Wait()
		if got := events(fc.pending(t)); len(got) != 1 || got[0] != phoenix.EventReply {
			t.Fatalf("frames with acks stopped: %v", got)
		}
		if s.Joined(tok.PathID) != 1 {
			t.Fatal("heartbeats without acks must keep the channel alive")
		}
		s.StopHeartbeatAcks(false)
		fc.send(t, `["1","x","`+topic+`","heartbeat",{}]`)
		synctest.Wait()
		if got := events(fc.pending(t)); len(got) != 1 || got[0] != "heartbeat_ack" {
			t.Fatalf("acks back on: %v", got)
		}
	})
}

// TestSynctestIdleTimeout checks the transport idle timeout: any inbound frame
// resets it; without one the socket closes with 1002.
func TestSynctestIdleTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newServer([]Option{WithIdleTimeout(60 * time.Second)})
		tok := mint(t, s, "")
		fc, stop := fakeSocket(t, s, tok)
		defer stop()
		time.Sleep(50 * time.Second)
		fc.send(t, `[null,"1","phoenix","heartbeat",{}]`)
		time.Sleep(59 * time.Second)
		synctest.Wait()
		if _, closed := fc.closeCode(); closed {
			t.Fatal("closed although a frame arrived 59 s ago")
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if code, closed := fc.closeCode(); !closed || code != websocket.StatusProtocolError {
			t.Fatalf("idle socket: closed=%v code=%d, want 1002", closed, code)
		}
	})
}

// TestSynctestDelayReplies checks that DelayReplies holds replies and acks for
// the configured time, keeping frame order.
func TestSynctestDelayReplies(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newServer([]Option{WithIdleTimeout(time.Hour)})
		tok := mint(t, s, "")
		fc, stop := fakeSocket(t, s, tok)
		defer stop()
		s.DelayReplies(3 * time.Second)
		fc.send(t, `[null,"1","phoenix","heartbeat",{}]`)
		time.Sleep(3*time.Second - time.Millisecond)
		synctest.Wait()
		if got := fc.pending(t); len(got) != 0 {
			t.Fatalf("reply not delayed: %v", events(got))
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if got := fc.pending(t); len(got) != 1 || got[0].Ref != "1" {
			t.Fatalf("delayed reply: %+v", got)
		}
		s.DelayReplies(0)
		fc.send(t, `[null,"2","phoenix","heartbeat",{}]`)
		synctest.Wait()
		if got := fc.pending(t); len(got) != 1 || got[0].Ref != "2" {
			t.Fatalf("undelayed reply: %+v", got)
		}
	})
}
