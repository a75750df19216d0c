package telephone_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/verastack/telephone"
	"github.com/verastack/telephone/telephonetest"
)

// victimSocket waits until one telephone socket has a caller (or proxied WebSocket) on it and
// returns it.
func victimSocket(t *testing.T, srv *telephonetest.Server, busy func(telephonetest.SocketInfo) bool) telephonetest.SocketInfo {
	t.Helper()
	var victim telephonetest.SocketInfo
	waitFor(t, func() bool {
		for _, s := range srv.Sockets() {
			if busy(s) {
				victim = s
				return true
			}
		}
		return false
	})
	return victim
}

// TestConnectionsServeThePath: WithConnections(3) opens three sockets with one token, each
// joined to the path; cutting one fails only the request in flight on it (502), while the other
// two keep answering (no 503), and the cut session reconnects on its own.
func TestConnectionsServeThePath(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			<-release
		}
		_, _ = w.Write([]byte("ok"))
	})
	tn := startTunnel(t, nil, telephone.WithHandler(h), telephone.WithConnections(3))
	defer close(release) // before the Cleanup's Shutdown, which waits for the held request
	tn.waitJoined(3)
	socks := tn.srv.Sockets()
	if len(socks) != 3 || socks[0].TokenID != socks[1].TokenID || socks[1].TokenID != socks[2].TokenID {
		t.Fatalf("sockets %+v, want 3 with one token", socks)
	}
	waitFor(t, func() bool { return joinedCount(tn.client.Status()) == 3 })

	held := make(chan int, 1)
	go func() {
		res, err := tn.http.Get(tn.call("/hold"))
		if err != nil {
			held <- 0
			return
		}
		res.Body.Close()
		held <- res.StatusCode
	}()
	victim := victimSocket(t, tn.srv, func(s telephonetest.SocketInfo) bool { return s.Pending == 1 })
	waitFor(t, func() bool { return inFlight(tn.client.Status()) == 1 })
	failed, err := tn.srv.DropSocket(victim.ID)
	if err != nil || failed != 1 {
		t.Fatalf("DropSocket = %d, %v", failed, err)
	}
	if got := <-held; got != http.StatusBadGateway {
		t.Errorf("request in flight on the cut socket: %d, want 502", got)
	}
	for i := range 30 {
		if res, body := tn.do(http.MethodGet, fmt.Sprintf("/after/%d", i), nil); res.StatusCode != http.StatusOK || body != "ok" {
			t.Fatalf("request %d after the cut: %d %q", i, res.StatusCode, body)
		}
	}
	tn.waitJoined(3)
	waitFor(t, func() bool { return joinedCount(tn.client.Status()) == 3 })
	st := tn.client.Status()
	reconnected := 0
	for _, s := range st.Sessions {
		reconnected += s.Reconnects
		if s.Reconnects == 1 && s.LastError == "" {
			t.Errorf("reconnected session without its error: %+v", s)
		}
	}
	if reconnected != 1 || st.Reconnects != 1 {
		t.Errorf("reconnects: %d per session, %d in all; want 1", reconnected, st.Reconnects)
	}
}

func joinedCount(st telephone.Status) int {
	n := 0
	for _, s := range st.Sessions {
		if s.State == telephone.SessionJoined {
			n++
		}
	}
	return n
}

func inFlight(st telephone.Status) int {
	n := 0
	for _, s := range st.Sessions {
		n += s.InFlight
	}
	return n
}

// TestProxiedWebSocketsBelongToTheirSession: losing one of two sockets closes (1001) only the
// proxied WebSockets that socket carried; the others keep echoing.
func TestProxiedWebSocketsBelongToTheirSession(t *testing.T) {
	t.Parallel()
	b := newWSBackend(t, nil, nil)
	tn := startTunnel(t, nil, telephone.WithBackendURL(b.URL), telephone.WithConnections(2))
	tn.waitJoined(2)
	var clients []*websocket.Conn
	for i := range 4 {
		c := dialWS(t, tn, fmt.Sprintf("/ws/%d", i), nil)
		roundTrip(t, c, websocket.MessageText, []byte("up"))
		clients = append(clients, c)
	}
	victim := victimSocket(t, tn.srv, func(s telephonetest.SocketInfo) bool { return s.WebSockets > 0 && s.WebSockets < 4 })
	if _, err := tn.srv.DropSocket(victim.ID); err != nil {
		t.Fatal(err)
	}
	for range victim.WebSockets {
		if ce := b.nextClose(t); ce.Code != websocket.StatusGoingAway {
			t.Errorf("backend saw %v, want 1001", ce)
		}
	}
	waitFor(t, func() bool { return wsStatus(tn).Open == 4-victim.WebSockets })
	closed, alive := 0, 0
	for _, c := range clients {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := c.Write(ctx, websocket.MessageText, []byte("still there?"))
		if err == nil {
			_, _, err = c.Read(ctx)
		}
		cancel()
		var ce websocket.CloseError
		switch {
		case err == nil:
			alive++
		case errors.As(err, &ce) && ce.Code == websocket.StatusGoingAway:
			closed++
		default:
			t.Errorf("client: %v", err)
		}
	}
	if closed != victim.WebSockets || alive != 4-victim.WebSockets {
		t.Errorf("%d closed with 1001 and %d alive, want %d and %d", closed, alive, victim.WebSockets, 4-victim.WebSockets)
	}
}
