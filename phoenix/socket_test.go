package phoenix

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

const topic = "telephone:aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"

// noHeartbeat keeps heartbeat frames out of tests about other things.
var noHeartbeat = SocketOptions{HeartbeatInterval: -1}

// runSocket runs f inside a synctest bubble with a Socket over a fake conn, and
// closes the socket afterwards (the bubble then fails on any leaked goroutine).
func runSocket(t *testing.T, opts SocketOptions, f func(t *testing.T, s *Socket, srv *fakeServer)) {
	t.Helper()
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		conn := newFakeConn()
		s := NewSocket(conn, opts)
		defer s.Close(1000, "test done")
		f(t, s, &fakeServer{t: t, conn: conn})
	})
}

// recorder is a channel handler that records what it is given.
type recorder struct {
	mu   sync.Mutex
	msgs []Message
}

func (r *recorder) handle(m Message) {
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
}

// events returns "event:join_ref" for every message received so far.
func (r *recorder) events() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, m := range r.msgs {
		out = append(out, m.Event+":"+m.JoinRef)
	}
	return out
}

func joinChannel(t *testing.T, s *Socket, srv *fakeServer, handler func(Message)) *Channel {
	t.Helper()
	c := s.Channel(topic, handler)
	res := async(func() (json.RawMessage, error) { return c.Join(t.Context(), nil) })
	srv.reply(srv.recv(), "ok", `{}`)
	if r := <-res; r.err != nil {
		t.Fatalf("Join: %v", r.err)
	}
	return c
}

func assertEvents(t *testing.T, got, want []string) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("handler got %v, want %v", got, want)
	}
}

func TestSocketHeartbeatKeepsAlive(t *testing.T) {
	runSocket(t, SocketOptions{}, func(t *testing.T, s *Socket, srv *fakeServer) {
		start := time.Now()
		for i := 1; i <= 5; i++ {
			m := srv.expect(`[null,"` + strconv.Itoa(i) + `","phoenix","heartbeat",{}]`)
			if got, want := time.Since(start), time.Duration(i)*DefaultHeartbeatInterval; got != want {
				t.Fatalf("heartbeat %d sent at %v, want %v", i, got, want)
			}
			srv.reply(m, "ok", `{}`)
		}
		if s.Err() != nil {
			t.Fatalf("socket died: %v", s.Err())
		}
	})
}

func TestSocketHeartbeatTimeoutClosesSilentSocket(t *testing.T) {
	runSocket(t, SocketOptions{HeartbeatInterval: 5 * time.Second}, func(t *testing.T, s *Socket, srv *fakeServer) {
		start := time.Now()
		srv.reply(srv.recv(), "ok", `{}`) // first beat answered
		srv.recv()                        // second beat never answered
		<-s.Done()
		if got, want := time.Since(start), 15*time.Second; got != want {
			t.Fatalf("socket declared dead after %v, want %v", got, want)
		}
		if !errors.Is(s.Err(), ErrHeartbeatTimeout) {
			t.Fatalf("Err = %v, want ErrHeartbeatTimeout", s.Err())
		}
		if code, _ := srv.conn.closeCode(); code != CloseHeartbeatTimeout {
			t.Fatalf("close code %d, want %d", code, CloseHeartbeatTimeout)
		}
	})
}

// TestSocketHeartbeatExcusesABusyReader: a heartbeat reply queued behind a frame whose handler
// holds the reader for longer than an interval is read late, and the socket lives; a handler
// that never returns still ends in a heartbeat timeout, three intervals later than an idle
// reader would.
func TestSocketHeartbeatExcusesABusyReader(t *testing.T) {
	opts := SocketOptions{HeartbeatInterval: 5 * time.Second, InlineHandlers: true}
	t.Run("held for a while", func(t *testing.T) {
		runSocket(t, opts, func(t *testing.T, s *Socket, srv *fakeServer) {
			joinChannel(t, s, srv, func(m Message) {
				if m.Event == "slow" {
					time.Sleep(8 * time.Second) // backpressure on the reader
				}
			})
			beat := srv.recv() // at 5 s
			srv.push("1", topic, "slow", `{}`)
			srv.reply(beat, "ok", `{}`) // read at 13 s, after the 10 s check
			next := srv.recv()          // the heartbeat at 15 s: the socket lived
			if next.Event != EventHeartbeat || s.Err() != nil {
				t.Fatalf("after a busy reader: %+v, socket error %v", next, s.Err())
			}
			srv.reply(next, "ok", `{}`)
		})
	})
	t.Run("held for good", func(t *testing.T) {
		runSocket(t, opts, func(t *testing.T, s *Socket, srv *fakeServer) {
			release := make(chan struct{})
			joinChannel(t, s, srv, func(m Message) {
				if m.Event == "stuck" {
					<-release
				}
			})
			start := time.Now()
			srv.recv() // the heartbeat at 5 s, never answered
			srv.push("1", topic, "stuck", `{}`)
			<-s.closing
			if got, want := time.Since(start), 25*time.Second; got != want || !errors.Is(s.Err(), ErrHeartbeatTimeout) {
				t.Fatalf("stopped after %v with %v, want %v and ErrHeartbeatTimeout", got, s.Err(), want)
			}
			close(release)
		})
	})
}

func TestSocketHeartbeatDisabled(t *testing.T) {
	runSocket(t, noHeartbeat, func(t *testing.T, s *Socket, srv *fakeServer) {
		time.Sleep(time.Hour) // fake time: nothing is sent, nothing dies
		synctest.Wait()
		select {
		case f := <-srv.conn.toServer:
			t.Fatalf("unexpected frame %s", f.data)
		default:
		}
		if s.Err() != nil {
			t.Fatalf("socket died: %v", s.Err())
		}
	})
}

func TestSocketCloseIdempotentAndJoins(t *testing.T) {
	runSocket(t, noHeartbeat, func(t *testing.T, s *Socket, srv *fakeServer) {
		started, release := make(chan struct{}), make(chan struct{})
		c := joinChannel(t, s, srv, func(Message) {
			close(started)
			<-release
		})
		srv.push("1", topic, "busy", `{}`)
		<-started // the handler is now blocked
		closed := make(chan error, 1)
		go func() { closed <- s.Close(4000, "bye") }()
		synctest.Wait()
		select {
		case <-closed:
			t.Fatal("Close returned while a handler was still running")
		default:
		}
		close(release)
		if err := <-closed; err != nil {
			t.Fatalf("Close: %v", err)
		}
		select {
		case <-s.Done():
		default:
			t.Fatal("Done not closed after Close")
		}
		if code, reason := srv.conn.closeCode(); code != 4000 || reason != "bye" {
			t.Fatalf("conn closed with %d %q", code, reason)
		}
		if err := s.Close(1000, "again"); err != nil || s.Err() != ErrClosed {
			t.Fatalf("second Close = %v, Err = %v", err, s.Err())
		}
		if c.Joined() {
			t.Fatal("channel still joined on a closed socket")
		}
		if _, err := c.Push(t.Context(), "x", nil); !errors.Is(err, ErrClosed) {
			t.Fatalf("Push after Close = %v, want ErrClosed", err)
		}
		if err := c.Send(t.Context(), "x", nil); !errors.Is(err, ErrClosed) {
			t.Fatalf("Send after Close = %v, want ErrClosed", err)
		}
		if _, err := c.Join(t.Context(), nil); !errors.Is(err, ErrClosed) {
			t.Fatalf("Join after Close = %v, want ErrClosed", err)
		}
		late := s.Channel("late:topic", func(Message) {})
		if _, err := late.Join(t.Context(), nil); !errors.Is(err, ErrClosed) {
			t.Fatalf("Join of a new channel after Close = %v, want ErrClosed", err)
		}
	})
}

func TestSocketReadErrorFailsPendingPush(t *testing.T) {
	runSocket(t, noHeartbeat, func(t *testing.T, s *Socket, srv *fakeServer) {
		c := joinChannel(t, s, srv, nil)
		res := async(func() (json.RawMessage, error) { return c.Push(t.Context(), "refresh_token", nil) })
		srv.recv()
		boom := errors.New("connection reset")
		srv.conn.readErr <- boom
		r := <-res
		if !errors.Is(r.err, ErrClosed) || !errors.Is(r.err, boom) {
			t.Fatalf("pending Push = %v, want ErrClosed wrapping the read error", r.err)
		}
		<-s.Done()
		if !errors.Is(s.Err(), boom) {
			t.Fatalf("Err = %v, want the read error", s.Err())
		}
		if code, _ := srv.conn.closeCode(); code != CloseInternalError {
			t.Fatalf("close code %d, want %d", code, CloseInternalError)
		}
		if err := s.Close(1000, ""); err != nil {
			t.Fatalf("Close after death: %v", err)
		}
	})
}

func TestSocketHeartbeatTimeoutFailsPendingPush(t *testing.T) {
	runSocket(t, SocketOptions{HeartbeatInterval: time.Second, PushTimeout: time.Hour}, func(t *testing.T, s *Socket, srv *fakeServer) {
		c := s.Channel(topic, nil)
		res := async(func() (json.RawMessage, error) { return c.Join(t.Context(), nil) })
		srv.recv() // join, never answered
		srv.recv() // heartbeat, never answered
		r := <-res
		if !errors.Is(r.err, ErrClosed) || !errors.Is(r.err, ErrHeartbeatTimeout) {
			t.Fatalf("Join = %v, want ErrClosed wrapping ErrHeartbeatTimeout", r.err)
		}
	})
}

func TestSocketWriteErrorStopsSocket(t *testing.T) {
	runSocket(t, noHeartbeat, func(t *testing.T, s *Socket, srv *fakeServer) {
		c := s.Channel(topic, nil)
		res := async(func() (json.RawMessage, error) { return c.Join(t.Context(), nil) })
		boom := errors.New("broken pipe")
		srv.conn.writeErr <- boom
		if r := <-res; !errors.Is(r.err, ErrClosed) || !errors.Is(r.err, boom) {
			t.Fatalf("Join = %v, want ErrClosed wrapping the write error", r.err)
		}
		<-s.Done()
		if !errors.Is(s.Err(), boom) {
			t.Fatalf("Err = %v", s.Err())
		}
	})
}

func TestSocketWriteTimeoutAndFullQueue(t *testing.T) {
	runSocket(t, SocketOptions{HeartbeatInterval: -1, WriteTimeout: time.Minute}, func(t *testing.T, s *Socket, srv *fakeServer) {
		c := joinChannel(t, s, srv, nil)
		// The server stops reading: one frame sits in Write, outQueueSize in the queue.
		for i := range outQueueSize + 1 {
			if err := c.Send(t.Context(), "ws_frame", nil); err != nil {
				t.Fatalf("Send %d: %v", i, err)
			}
			if i == 0 {
				synctest.Wait() // the writer took the first frame alone and is stuck in Write
			}
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		err := c.Send(ctx, "ws_frame", nil)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Send on a full queue = %v, want DeadlineExceeded", err)
		}
		<-s.Done() // the stuck write times out
		if !errors.Is(s.Err(), context.DeadlineExceeded) {
			t.Fatalf("Err = %v, want a write timeout", s.Err())
		}
	})
}

func TestSocketDropsMalformedAndUnknownFrames(t *testing.T) {
	var rec recorder
	runSocket(t, noHeartbeat, func(t *testing.T, s *Socket, srv *fakeServer) {
		joinChannel(t, s, srv, rec.handle)
		srv.sendRaw(false, []byte(`not json`))
		srv.sendRaw(false, []byte(`["1",null,5,"e",{}]`))
		srv.sendRaw(true, []byte{9, 9, 9})
		srv.push("1", "other:topic", "nobody_listens", `{}`)
		srv.reply(Message{Ref: "999", Topic: topic}, "ok", `{}`) // nobody waits for it
		srv.push("1", topic, "proxy_req", `{"n":1}`)
		synctest.Wait()
		assertEvents(t, rec.events(), []string{"proxy_req:1"})
		if s.Err() != nil {
			t.Fatalf("socket died: %v", s.Err())
		}
	})
}

func TestSocketBinaryInbound(t *testing.T) {
	var rec recorder
	runSocket(t, noHeartbeat, func(t *testing.T, s *Socket, srv *fakeServer) {
		c := joinChannel(t, s, srv, rec.handle)
		data, _ := encodeBinaryServerPush(Message{JoinRef: "1", Topic: topic, Event: "blob", Payload: []byte{1, 2, 3}})
		srv.sendRaw(true, data)
		data, _ = encodeBinaryBroadcast(Message{Topic: topic, Event: "cast", Payload: []byte{4}})
		srv.sendRaw(true, data)
		res := async(func() (json.RawMessage, error) { return c.Push(t.Context(), "get", nil) })
		req := srv.recv()
		data, _ = encodeBinaryReply(Message{JoinRef: req.JoinRef, Ref: req.Ref, Topic: topic, Status: "ok", Payload: []byte("raw")})
		srv.sendRaw(true, data)
		if r := <-res; r.err != nil || string(r.resp) != "raw" {
			t.Fatalf("Push = %q, %v", r.resp, r.err)
		}
		synctest.Wait()
		assertEvents(t, rec.events(), []string{"blob:1", "cast:"})
		if m := rec.msgs[0]; !m.Binary || string(m.Payload) != "\x01\x02\x03" {
			t.Fatalf("binary push delivered as %+v", m)
		}
	})
}
