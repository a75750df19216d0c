package phoenix

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"testing"
	"testing/synctest"
	"time"
)

func TestChannelJoinPushSend(t *testing.T) {
	runSocket(t, noHeartbeat, func(t *testing.T, s *Socket, srv *fakeServer) {
		c := s.Channel(topic, nil)
		if c.Topic() != topic || c.JoinRef() != "" || c.Joined() {
			t.Fatalf("new channel: topic %q join_ref %q joined %v", c.Topic(), c.JoinRef(), c.Joined())
		}
		res := async(func() (json.RawMessage, error) { return c.Join(t.Context(), map[string]int{"v": 1}) })
		join := srv.expect(`["1","1","` + topic + `","phx_join",{"v":1}]`)
		srv.reply(join, "ok", `{"expires_in":3600,"path":"/p","status":"ok"}`)
		if r := <-res; r.err != nil || string(r.resp) != `{"expires_in":3600,"path":"/p","status":"ok"}` {
			t.Fatalf("Join = %s, %v", r.resp, r.err)
		}
		if !c.Joined() || c.JoinRef() != "1" {
			t.Fatalf("after join: joined %v join_ref %q", c.Joined(), c.JoinRef())
		}

		res = async(func() (json.RawMessage, error) {
			return c.Push(t.Context(), "refresh_token", json.RawMessage(`{}`))
		})
		push := srv.expect(`["1","2","` + topic + `","refresh_token",{}]`)
		srv.reply(push, "ok", `{"token":"t"}`)
		if r := <-res; r.err != nil || string(r.resp) != `{"token":"t"}` {
			t.Fatalf("Push = %s, %v", r.resp, r.err)
		}

		payload := []byte(`{"request_id":"r","status":201,"body":"{\"ok\":true}"}`)
		if err := c.Send(t.Context(), "proxy_res", payload); err != nil {
			t.Fatalf("Send: %v", err)
		}
		srv.expect(`["1","3","` + topic + `","proxy_res",` + string(payload) + `]`)

		if err := c.Send(t.Context(), "proxy_res", ValidJSON(payload)); err != nil {
			t.Fatalf("Send(ValidJSON): %v", err)
		}
		srv.expect(`["1","4","` + topic + `","proxy_res",` + string(payload) + `]`)
		if err := c.Send(t.Context(), "proxy_res", []byte(`{"unterminated":`)); !errors.Is(err, ErrInvalidPayload) {
			t.Fatalf("Send(invalid JSON) = %v, want ErrInvalidPayload", err)
		}
	})
}

func TestChannelJoinErrorReply(t *testing.T) {
	runSocket(t, noHeartbeat, func(t *testing.T, s *Socket, srv *fakeServer) {
		c := s.Channel("telephone:someone-else", nil)
		res := async(func() (json.RawMessage, error) { return c.Join(t.Context(), nil) })
		srv.reply(srv.recv(), "error", `{"reason":"path_id_mismatch"}`)
		r := <-res
		var re *ReplyError
		if !errors.As(r.err, &re) || re.Status != "error" || re.Reason() != "path_id_mismatch" {
			t.Fatalf("Join = %v, want ReplyError path_id_mismatch", r.err)
		}
		if c.Joined() {
			t.Fatal("joined after an error reply")
		}
		if _, err := c.Push(t.Context(), "x", nil); !errors.Is(err, ErrChannelClosed) {
			t.Fatalf("Push on unjoined channel = %v, want ErrChannelClosed", err)
		}
		if err := c.Send(t.Context(), "x", nil); !errors.Is(err, ErrChannelClosed) {
			t.Fatalf("Send on unjoined channel = %v, want ErrChannelClosed", err)
		}
	})
}

func TestChannelPushMalformedReply(t *testing.T) {
	runSocket(t, noHeartbeat, func(t *testing.T, s *Socket, srv *fakeServer) {
		c := joinChannel(t, s, srv, nil)
		res := async(func() (json.RawMessage, error) { return c.Push(t.Context(), "x", nil) })
		req := srv.recv()
		srv.send(Message{JoinRef: "1", Ref: req.Ref, Topic: topic, Event: EventReply, Payload: json.RawMessage(`{"no":"status"}`)})
		if r := <-res; !errors.Is(r.err, ErrMalformed) {
			t.Fatalf("Push = %v, want ErrMalformed", r.err)
		}
	})
}

func TestChannelPayloadErrors(t *testing.T) {
	runSocket(t, noHeartbeat, func(t *testing.T, s *Socket, srv *fakeServer) {
		c := joinChannel(t, s, srv, nil)
		if _, err := c.Push(t.Context(), "x", json.RawMessage(`{"a":`)); !errors.Is(err, ErrInvalidPayload) {
			t.Fatalf("Push(invalid raw) = %v, want ErrInvalidPayload", err)
		}
		if err := c.Send(t.Context(), "x", make(chan int)); err == nil {
			t.Fatal("Send(chan) succeeded")
		}
		if _, err := c.Join(t.Context(), []byte(`nope`)); !errors.Is(err, ErrInvalidPayload) {
			t.Fatalf("Join(invalid) = %v, want ErrInvalidPayload", err)
		}
		if !c.Joined() || c.JoinRef() != "1" {
			t.Fatal("a rejected Join changed the channel state")
		}
	})
}

func TestChannelPushTimeouts(t *testing.T) {
	runSocket(t, SocketOptions{HeartbeatInterval: -1, PushTimeout: 10 * time.Second}, func(t *testing.T, s *Socket, srv *fakeServer) {
		var rec recorder
		c := joinChannel(t, s, srv, rec.handle)

		start := time.Now()
		res := async(func() (json.RawMessage, error) { return c.Push(t.Context(), "slow", nil) })
		late := srv.recv()
		if r := <-res; r.err != ErrTimeout || time.Since(start) != 10*time.Second {
			t.Fatalf("Push = %v after %v, want ErrTimeout after the 10s PushTimeout", r.err, time.Since(start))
		}
		srv.reply(late, "ok", `{}`) // too late: dropped, never reaches the handler

		start = time.Now()
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		defer cancel()
		res = async(func() (json.RawMessage, error) { return c.Push(ctx, "slow", nil) })
		srv.recv()
		r := <-res
		if !errors.Is(r.err, ErrTimeout) || !errors.Is(r.err, context.DeadlineExceeded) || time.Since(start) != 3*time.Second {
			t.Fatalf("Push = %v after %v, want ErrTimeout at the 3s ctx deadline", r.err, time.Since(start))
		}

		ctx, cancel = context.WithCancel(t.Context())
		res = async(func() (json.RawMessage, error) { return c.Push(ctx, "slow", nil) })
		srv.recv()
		cancel()
		if r := <-res; !errors.Is(r.err, context.Canceled) || errors.Is(r.err, ErrTimeout) {
			t.Fatalf("Push = %v, want context.Canceled", r.err)
		}
		synctest.Wait()
		assertEvents(t, rec.events(), nil)
		if !c.Joined() {
			t.Fatal("push timeouts left the channel")
		}
	})
}

func TestChannelConcurrentPushesOutOfOrderReplies(t *testing.T) {
	runSocket(t, noHeartbeat, func(t *testing.T, s *Socket, srv *fakeServer) {
		c := joinChannel(t, s, srv, nil)
		a := async(func() (json.RawMessage, error) { return c.Push(t.Context(), "a", nil) })
		reqA := srv.recv()
		b := async(func() (json.RawMessage, error) { return c.Push(t.Context(), "b", nil) })
		reqB := srv.recv()
		srv.reply(reqB, "ok", `"B"`)
		srv.reply(reqA, "ok", `"A"`)
		if r := <-a; r.err != nil || string(r.resp) != `"A"` {
			t.Fatalf("push a = %s, %v", r.resp, r.err)
		}
		if r := <-b; r.err != nil || string(r.resp) != `"B"` {
			t.Fatalf("push b = %s, %v", r.resp, r.err)
		}
	})
}

func TestChannelInOrderDelivery(t *testing.T) {
	const n = 10000
	runSocket(t, noHeartbeat, func(t *testing.T, s *Socket, srv *fakeServer) {
		got := make([]int, 0, n)
		finished := make(chan struct{})
		joinChannel(t, s, srv, func(m Message) {
			if m.Event == "done" {
				close(finished)
				return
			}
			var p struct{ N int }
			if err := json.Unmarshal(m.Payload, &p); err != nil {
				t.Errorf("payload %s: %v", m.Payload, err)
			}
			got = append(got, p.N)
		})
		for i := range n {
			srv.push("1", topic, "proxy_req", `{"n":`+strconv.Itoa(i)+`}`)
		}
		srv.push("1", topic, "done", `{}`)
		<-finished
		if len(got) != n {
			t.Fatalf("delivered %d events, want %d", len(got), n)
		}
		for i, v := range got {
			if v != i {
				t.Fatalf("event %d carries n=%d: out of order", i, v)
			}
		}
	})
}

func TestChannelErrorCloseAndRejoin(t *testing.T) {
	var rec recorder
	runSocket(t, noHeartbeat, func(t *testing.T, s *Socket, srv *fakeServer) {
		c := joinChannel(t, s, srv, rec.handle)
		srv.send(Message{JoinRef: "1", Ref: "1", Topic: topic, Event: EventError, Payload: json.RawMessage(`{}`)})
		synctest.Wait()
		if c.Joined() {
			t.Fatal("still joined after phx_error")
		}
		if _, err := c.Push(t.Context(), "x", nil); !errors.Is(err, ErrChannelClosed) {
			t.Fatalf("Push after phx_error = %v, want ErrChannelClosed", err)
		}

		res := async(func() (json.RawMessage, error) { return c.Join(t.Context(), nil) })
		srv.reply(srv.expect(`["2","2","`+topic+`","phx_join",{}]`), "ok", `{}`)
		if r := <-res; r.err != nil || !c.Joined() || c.JoinRef() != "2" {
			t.Fatalf("re-join: %v joined %v join_ref %q", r.err, c.Joined(), c.JoinRef())
		}
		srv.push("1", topic, "proxy_req", `{}`) // old join: dropped
		srv.send(Message{JoinRef: "1", Ref: "1", Topic: topic, Event: EventClose, Payload: json.RawMessage(`{}`)})
		srv.push("2", topic, "proxy_req", `{}`)
		srv.push("", topic, "broadcast", `{}`)
		synctest.Wait()
		if !c.Joined() {
			t.Fatal("phx_close for the old join_ref un-joined the channel")
		}
		srv.send(Message{JoinRef: "2", Ref: "2", Topic: topic, Event: EventClose, Payload: json.RawMessage(`{}`)})
		synctest.Wait()
		if c.Joined() {
			t.Fatal("still joined after phx_close")
		}
		assertEvents(t, rec.events(), []string{"phx_error:1", "proxy_req:2", "broadcast:", "phx_close:2"})
	})
}

func TestChannelStaleJoinRefDropped(t *testing.T) {
	var rec recorder
	runSocket(t, noHeartbeat, func(t *testing.T, s *Socket, srv *fakeServer) {
		c := s.Channel(topic, rec.handle)
		srv.push("7", topic, "before_join", `{}`) // no join yet: every join_ref is stale
		joinChannel(t, s, srv, nil)
		srv.push("99", topic, "stale", `{}`)
		srv.send(Message{JoinRef: "99", Ref: "99", Topic: topic, Event: EventError, Payload: json.RawMessage(`{}`)})
		srv.push("1", topic, "current", `{}`)
		synctest.Wait()
		assertEvents(t, rec.events(), []string{"current:1"})
		if !c.Joined() {
			t.Fatal("a stale phx_error un-joined the channel")
		}
	})
}

func TestChannelLeave(t *testing.T) {
	var rec recorder
	runSocket(t, noHeartbeat, func(t *testing.T, s *Socket, srv *fakeServer) {
		c := joinChannel(t, s, srv, rec.handle)
		res := async(func() (json.RawMessage, error) { return nil, c.Leave(t.Context()) })
		leave := srv.expect(`["1","2","` + topic + `","phx_leave",{}]`)
		srv.reply(leave, "ok", `{}`)
		srv.send(Message{JoinRef: "1", Ref: "1", Topic: topic, Event: EventClose, Payload: json.RawMessage(`{}`)})
		if r := <-res; r.err != nil {
			t.Fatalf("Leave: %v", r.err)
		}
		synctest.Wait()
		if c.Joined() {
			t.Fatal("joined after Leave")
		}
		assertEvents(t, rec.events(), []string{"phx_close:1"})
		if _, err := c.Push(t.Context(), "x", nil); !errors.Is(err, ErrChannelClosed) {
			t.Fatalf("Push after Leave = %v, want ErrChannelClosed", err)
		}
		never := s.Channel("never:joined", nil)
		if err := never.Leave(t.Context()); err != nil {
			t.Fatalf("Leave of a never joined channel = %v", err)
		}
	})
}

// A reply to a request still in flight when Leave begins goes out until the
// server has answered the phx_leave: it must not be refused (that turned every
// request in flight at a drain into a 502).
// Queued counts the messages received for the handler and not yet delivered to it.
func TestChannelQueued(t *testing.T) {
	runSocket(t, noHeartbeat, func(t *testing.T, s *Socket, srv *fakeServer) {
		release := make(chan struct{})
		c := joinChannel(t, s, srv, func(Message) { <-release })
		for range 3 {
			srv.push("1", topic, "proxy_req", `{}`)
		}
		synctest.Wait() // the first is in the handler, two wait
		if n := c.Queued(); n != 2 {
			t.Fatalf("Queued = %d, want 2", n)
		}
		close(release)
		synctest.Wait()
		if n := c.Queued(); n != 0 {
			t.Fatalf("Queued after delivery = %d", n)
		}
	})
}

func TestChannelSendWhileLeaving(t *testing.T) {
	runSocket(t, noHeartbeat, func(t *testing.T, s *Socket, srv *fakeServer) {
		c := joinChannel(t, s, srv, nil)
		res := async(func() (json.RawMessage, error) { return nil, c.Leave(t.Context()) })
		leave := srv.expect(`["1","2","` + topic + `","phx_leave",{}]`)
		if !c.Joined() {
			t.Fatal("not joined while the phx_leave is unanswered")
		}
		sent := make(chan error, 1)
		go func() { sent <- c.Send(t.Context(), "proxy_res", json.RawMessage(`{"request_id":"r"}`)) }()
		srv.expect(`["1","3","` + topic + `","proxy_res",{"request_id":"r"}]`)
		if err := <-sent; err != nil {
			t.Fatalf("Send while leaving = %v", err)
		}
		srv.reply(leave, "ok", `{}`)
		if r := <-res; r.err != nil {
			t.Fatalf("Leave: %v", r.err)
		}
		if c.Joined() {
			t.Fatal("joined after the phx_leave was answered")
		}
		if err := c.Send(t.Context(), "proxy_res", nil); !errors.Is(err, ErrChannelClosed) {
			t.Fatalf("Send after Leave = %v, want ErrChannelClosed", err)
		}
	})
}

func TestChannelSameTopicSameChannel(t *testing.T) {
	runSocket(t, noHeartbeat, func(t *testing.T, s *Socket, srv *fakeServer) {
		a := s.Channel(topic, nil)
		if b := s.Channel(topic, func(Message) {}); a != b {
			t.Fatal("two Channels for one topic")
		}
		if s.Channel("other", nil) == a {
			t.Fatal("one Channel for two topics")
		}
	})
}

func TestChannelJoinTimeoutThenLateReply(t *testing.T) {
	runSocket(t, SocketOptions{HeartbeatInterval: -1, PushTimeout: time.Second}, func(t *testing.T, s *Socket, srv *fakeServer) {
		c := s.Channel(topic, nil)
		res := async(func() (json.RawMessage, error) { return c.Join(t.Context(), nil) })
		join := srv.recv()
		if r := <-res; r.err != ErrTimeout {
			t.Fatalf("Join = %v, want ErrTimeout", r.err)
		}
		srv.reply(join, "ok", `{}`)
		synctest.Wait()
		if c.Joined() {
			t.Fatal("a reply nobody waited for joined the channel")
		}
	})
}

func TestChannelHandlerMayPush(t *testing.T) {
	runSocket(t, noHeartbeat, func(t *testing.T, s *Socket, srv *fakeServer) {
		var c *Channel
		answered := make(chan result, 1)
		c = joinChannel(t, s, srv, func(m Message) {
			r, err := c.Push(t.Context(), "ws_check_ack", nil)
			answered <- result{r, err}
		})
		srv.push("1", topic, "ws_check", `{}`)
		srv.reply(srv.expect(`["1","2","`+topic+`","ws_check_ack",{}]`), "ok", `{"fine":true}`)
		if r := <-answered; r.err != nil || string(r.resp) != `{"fine":true}` {
			t.Fatalf("Push from handler = %s, %v", r.resp, r.err)
		}
	})
}
