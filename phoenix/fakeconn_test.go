package phoenix

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
)

var errFakeClosed = errors.New("fake conn closed")

type fakeFrame struct {
	binary bool
	data   []byte
}

// fakeConn is an in-memory Conn: the test acts as the server through fakeServer.
// All channels are unbuffered, so a server that does not read blocks the writer.
type fakeConn struct {
	toClient chan fakeFrame // what Read returns
	toServer chan fakeFrame // what Write sends
	readErr  chan error     // a value makes the pending Read fail
	writeErr chan error     // a value makes the pending Write fail

	closed    chan struct{}
	closeOnce sync.Once
	code      int // set once, before closed is closed
	reason    string
}

func newFakeConn() *fakeConn {
	return &fakeConn{
		toClient: make(chan fakeFrame),
		toServer: make(chan fakeFrame),
		readErr:  make(chan error),
		writeErr: make(chan error),
		closed:   make(chan struct{}),
	}
}

func (c *fakeConn) Read(ctx context.Context) (bool, []byte, error) {
	select {
	case f := <-c.toClient:
		return f.binary, f.data, nil
	case err := <-c.readErr:
		return false, nil, err
	case <-c.closed:
		return false, nil, errFakeClosed
	case <-ctx.Done():
		return false, nil, ctx.Err()
	}
}

func (c *fakeConn) Write(ctx context.Context, binary bool, data []byte) error {
	select {
	case c.toServer <- fakeFrame{binary, append([]byte(nil), data...)}:
		return nil
	case err := <-c.writeErr:
		return err
	case <-c.closed:
		return errFakeClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *fakeConn) Close(code int, reason string) error {
	c.closeOnce.Do(func() {
		c.code, c.reason = code, reason
		close(c.closed)
	})
	return nil
}

// closeCode waits until the conn is closed and returns the code and reason.
func (c *fakeConn) closeCode() (int, string) {
	<-c.closed
	return c.code, c.reason
}

// fakeServer drives the server side of a fakeConn.
type fakeServer struct {
	t    *testing.T
	conn *fakeConn
}

// recvRaw returns the next frame the client wrote.
func (s *fakeServer) recvRaw() string {
	s.t.Helper()
	f := <-s.conn.toServer
	if f.binary {
		s.t.Fatalf("client wrote a binary frame: % x", f.data)
	}
	return string(f.data)
}

// recv returns the next frame the client wrote, decoded.
func (s *fakeServer) recv() Message {
	s.t.Helper()
	raw := s.recvRaw()
	m, err := DecodeText([]byte(raw))
	if err != nil {
		s.t.Fatalf("client wrote an undecodable frame %s: %v", raw, err)
	}
	return m
}

// expect receives the next frame and checks its exact bytes.
func (s *fakeServer) expect(want string) Message {
	s.t.Helper()
	raw := s.recvRaw()
	if raw != want {
		s.t.Fatalf("client wrote\n %s\nwant\n %s", raw, want)
	}
	m, _ := DecodeText([]byte(raw))
	return m
}

func (s *fakeServer) send(m Message) {
	s.t.Helper()
	data, err := EncodeText(m)
	if err != nil {
		s.t.Fatal(err)
	}
	s.conn.toClient <- fakeFrame{data: data}
}

func (s *fakeServer) sendRaw(binary bool, data []byte) {
	s.conn.toClient <- fakeFrame{binary, data}
}

// reply answers req with a phx_reply carrying status and response.
func (s *fakeServer) reply(req Message, status, response string) {
	s.t.Helper()
	payload, _ := json.Marshal(map[string]any{"status": status, "response": json.RawMessage(response)})
	s.send(Message{JoinRef: req.JoinRef, Ref: req.Ref, Topic: req.Topic, Event: EventReply, Payload: payload})
}

// push sends a server push on topic for joinRef.
func (s *fakeServer) push(joinRef, topic, event, payload string) {
	s.t.Helper()
	s.send(Message{JoinRef: joinRef, Topic: topic, Event: event, Payload: json.RawMessage(payload)})
}

type result struct {
	resp json.RawMessage
	err  error
}

// async runs f on a new goroutine and returns where its result arrives.
func async(f func() (json.RawMessage, error)) <-chan result {
	ch := make(chan result, 1)
	go func() {
		r, err := f()
		ch <- result{r, err}
	}()
	return ch
}
