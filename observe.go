package telephone

import (
	"net/http"
	"sync/atomic"
	"time"
)

// Observer watches the traffic a Client serves, so that an embedding program can build its
// own view of it (cmd/telephone's request inspector is one). Its methods run on the request's
// or connection's goroutine, concurrently with each other: they must be safe for concurrent
// use and return quickly. Everything they are given is theirs to keep (headers are copies,
// bodies are immutable strings); the request and response are not changed by the observer.
//
// With no observer (the default) the forwarding path pays one nil check per request.
type Observer interface {
	// ObserveRequest is called when a forwarded request has been admitted, before the backend
	// sees it, or when it was refused at admission. The function it returns (nil is allowed)
	// is called exactly once, with the response sent back to Plugboard: the backend's, or the
	// error the telephone answered (504 at the deadline, 502, 503 after waiting for a slot; for
	// a refusal its 400, 429 or 503, the backend never having seen the request).
	ObserveRequest(req *ObservedRequest) func(res *ObservedResponse)
	// ObserveWebSocket is called when a proxied WebSocket has been opened to the backend. The
	// function it returns (nil is allowed) is called exactly once, when the connection has
	// ended.
	ObserveWebSocket(ws *ObservedWebSocket) func(end *ObservedWebSocketEnd)
}

// ObservedRequest is a forwarded HTTP request as Plugboard sent it, after validation and
// the removal of hop-by-hop headers.
type ObservedRequest struct {
	ID      string      // Plugboard's request_id
	Session int         // which of the Client's sessions with Plugboard carried it (0 to WithConnections-1)
	Method  string      // upper case
	Path    string      // as Plugboard sent it: already decoded, never decoded again
	Query   string      // the raw query string, without "?"
	Host    string      // the public Host the end client used
	Header  http.Header // a copy, canonical names
	Body    string
	Start   time.Time
}

// ObservedResponse is what was sent back to Plugboard for an ObservedRequest.
type ObservedResponse struct {
	Status   int
	Header   http.Header // a copy
	Body     string
	Duration time.Duration // from ObserveRequest to the proxy_res being handed to the socket
}

// ObservedWebSocket is a proxied WebSocket connection that has opened.
type ObservedWebSocket struct {
	ID       string      // Plugboard's connection_id
	Session  int         // which of the Client's sessions carries it
	URL      string      // the backend URL dialed (ws:// or wss://; the in-process handler's for WithHandler)
	Protocol string      // the subprotocol the backend chose, if any
	Header   http.Header // the headers forwarded to the backend (a copy)
	Start    time.Time
}

// ObservedWebSocketEnd is how an ObservedWebSocket ended, and what crossed it.
type ObservedWebSocketEnd struct {
	Code      int    // the close code sent to the backend (1000 normal, 1001 going away, 1009 too big, ...)
	Reason    string // the close reason, or the ws_error reason
	Duration  time.Duration
	FramesIn  int64 // frames from the end client to the backend
	BytesIn   int64
	FramesOut int64 // frames from the backend to the end client
	BytesOut  int64
}

// WithObserver has o see every forwarded request and proxied WebSocket (see Observer).
// Default: none.
func WithObserver(o Observer) Option {
	return func(opts *options) error {
		if o == nil {
			return optErr("WithObserver", "observer is nil")
		}
		opts.observer = o
		return nil
	}
}

// observeRequest tells the observer, if any, that pr starts; the function it returns (nil
// without an observer) reports the response.
func (c *Client) observeRequest(s *session, pr *proxyReq, start time.Time) func(*response) {
	o := c.conf().observer
	if o == nil {
		return nil
	}
	done := o.ObserveRequest(&ObservedRequest{
		ID: pr.RequestID, Session: s.observedID(), Method: pr.Method, Path: pr.Path, Query: pr.QueryString,
		Host: pr.host, Header: pr.header.Clone(), Body: pr.Body, Start: start,
	})
	if done == nil {
		return nil
	}
	return func(res *response) {
		done(&ObservedResponse{Status: res.status, Header: res.header.Clone(), Body: res.body, Duration: time.Since(start)})
	}
}

// wsTraffic counts the frames and bytes of one proxied WebSocket, for the observer.
type wsTraffic struct {
	framesIn, bytesIn, framesOut, bytesOut atomic.Int64
	done                                   func(*ObservedWebSocketEnd)
	start                                  time.Time
}

// observeWebSocket tells the observer, if any, that wc has opened.
func (wc *wsConn) observeOpen(protocol string) {
	o := wc.wm.c.conf().observer
	if o == nil {
		return
	}
	t := &wsTraffic{start: time.Now()}
	// The URL never holds user information: it is built from the backend's host (ws_backend.go).
	t.done = o.ObserveWebSocket(&ObservedWebSocket{
		ID: wc.id, Session: wc.s.observedID(), URL: wc.t.url, Protocol: protocol,
		Header: wc.t.header.Clone(), Start: t.start,
	})
	if t.done != nil {
		wc.traffic.Store(t)
	}
}

// counted records one frame of n bytes (in: towards the backend) when an observer watches wc.
func (wc *wsConn) counted(in bool, n int) {
	t := wc.traffic.Load()
	if t == nil {
		return
	}
	if in {
		t.framesIn.Add(1)
		t.bytesIn.Add(int64(n))
	} else {
		t.framesOut.Add(1)
		t.bytesOut.Add(int64(n))
	}
}

// observeEnd reports how wc ended to the observer that saw it open.
func (wc *wsConn) observeEnd(e *wsEnd) {
	t := wc.traffic.Load()
	if t == nil {
		return
	}
	reason := e.reason
	if e.event == "ws_error" {
		reason = e.errMsg
	}
	t.done(&ObservedWebSocketEnd{Code: e.code, Reason: reason, Duration: time.Since(t.start),
		FramesIn: t.framesIn.Load(), BytesIn: t.bytesIn.Load(), FramesOut: t.framesOut.Load(), BytesOut: t.bytesOut.Load()})
}

// observedID is the session's number as observers and traces see it: its slot, as in the
// "session" log attribute and Status.Sessions (0 to WithConnections-1).
func (s *session) observedID() int {
	if s.slot == nil {
		return 0
	}
	return s.slot.id
}
