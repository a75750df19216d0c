package phoenix

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"testing/synctest"
)

// batchConn is a fakeConn that also implements BatchWriter: each batch arrives on batches.
type batchConn struct {
	*fakeConn
	batches chan []string
}

func (c *batchConn) WriteBatch(ctx context.Context, texts [][]byte) error {
	b := make([]string, len(texts))
	for i, t := range texts {
		b[i] = string(t)
	}
	select {
	case c.batches <- b:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TestSocketWritesQueuedFramesInOneBatch holds the writer in a single-frame Write while more
// frames are queued: they then go out in order in one WriteBatch.
func TestSocketWritesQueuedFramesInOneBatch(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		conn := &batchConn{fakeConn: newFakeConn(), batches: make(chan []string)}
		s := NewSocket(conn, noHeartbeat)
		defer s.Close(1000, "")
		srv := &fakeServer{t: t, conn: conn.fakeConn}
		c := joinChannel(t, s, srv, nil)
		for i := range 4 {
			if err := c.Send(t.Context(), "e"+strconv.Itoa(i), nil); err != nil {
				t.Fatal(err)
			}
			synctest.Wait() // the first is alone: the writer blocks in its Write
		}
		if m := srv.recv(); m.Event != "e0" {
			t.Fatalf("first frame %q, want e0", m.Event)
		}
		b := <-conn.batches
		if len(b) != 3 {
			t.Fatalf("batch of %d frames, want 3: %q", len(b), b)
		}
		for i, raw := range b {
			m, err := DecodeText([]byte(raw))
			if err != nil || m.Event != "e"+strconv.Itoa(i+1) {
				t.Fatalf("frame %d of the batch: %s (%v)", i, raw, err)
			}
		}
	})
}

// TestSocketInlineHandlers delivers in order on the reader goroutine: a handler that Sends
// works, and nothing is delivered after Close.
func TestSocketInlineHandlers(t *testing.T) {
	var rec recorder
	opts := noHeartbeat
	opts.InlineHandlers = true
	runSocket(t, opts, func(t *testing.T, s *Socket, srv *fakeServer) {
		var c *Channel
		c = joinChannel(t, s, srv, func(m Message) {
			rec.handle(m)
			if m.Event == "ping" {
				if err := c.Send(context.Background(), "pong", nil); err != nil {
					t.Errorf("Send from an inline handler: %v", err)
				}
			}
		})
		for i := range 3 {
			srv.push("1", topic, "proxy_req", `{"n":`+strconv.Itoa(i)+`}`)
		}
		srv.push("1", topic, "ping", `{}`)
		if m := srv.recv(); m.Event != "pong" {
			t.Fatalf("got %q, want pong", m.Event)
		}
		assertEvents(t, rec.events(), []string{"proxy_req:1", "proxy_req:1", "proxy_req:1", "ping:1"})
		if s.Close(1000, "") != nil {
			t.Fatal("close failed")
		}
		if n := len(rec.events()); n != 4 {
			t.Fatalf("%d events after Close, want 4", n)
		}
	})
}

// TestSocketInlineWrites: a Send that finds the writer idle writes its frame itself (it
// returns only once the Conn took it); Sends meanwhile are queued and follow in order; a
// failed inline write stops the socket and fails that Send.
func TestSocketInlineWrites(t *testing.T) {
	opts := noHeartbeat
	opts.InlineWrites = true
	runSocket(t, opts, func(t *testing.T, s *Socket, srv *fakeServer) {
		c := joinChannel(t, s, srv, nil)
		first := make(chan error, 1)
		go func() { first <- c.Send(t.Context(), "e0", nil) }()
		synctest.Wait()
		select {
		case err := <-first:
			t.Fatalf("inline Send returned before the frame was written: %v", err)
		default:
		}
		for i := 1; i <= 2; i++ { // queued behind the inline write
			if err := c.Send(t.Context(), "e"+strconv.Itoa(i), nil); err != nil {
				t.Fatal(err)
			}
		}
		for i := range 3 {
			if m := srv.recv(); m.Event != "e"+strconv.Itoa(i) {
				t.Fatalf("frame %d is %q", i, m.Event)
			}
		}
		if err := <-first; err != nil {
			t.Fatal(err)
		}
		synctest.Wait() // the writer has finished e2 and is idle again
		res := make(chan error, 1)
		go func() { res <- c.Send(t.Context(), "doomed", nil) }()
		synctest.Wait()
		srv.conn.writeErr <- errors.New("broken pipe")
		if err := <-res; !errors.Is(err, ErrClosed) {
			t.Fatalf("Send with a failed inline write = %v, want ErrClosed", err)
		}
		<-s.Done()
	})
}

// TestChannelSendAppend builds the payload straight into the frame; an empty payload is {};
// a channel that is not joined refuses.
func TestChannelSendAppend(t *testing.T) {
	runSocket(t, noHeartbeat, func(t *testing.T, s *Socket, srv *fakeServer) {
		idle := s.Channel("other:topic", nil)
		if err := idle.SendAppend(t.Context(), "e", 0, func(dst []byte) []byte { return dst }); !errors.Is(err, ErrChannelClosed) {
			t.Fatalf("SendAppend before joining = %v", err)
		}
		c := joinChannel(t, s, srv, nil)
		if err := c.SendAppend(t.Context(), "proxy_res", 16, func(dst []byte) []byte { return append(dst, `{"a":"b"}`...) }); err != nil {
			t.Fatal(err)
		}
		srv.expect(`["1","2","` + topic + `","proxy_res",{"a":"b"}]`)
		if err := c.SendAppend(t.Context(), "e", -1, func(dst []byte) []byte { return dst }); err != nil {
			t.Fatal(err)
		}
		srv.expect(`["1","3","` + topic + `","e",{}]`)
	})
}
