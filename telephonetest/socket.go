package telephonetest

import (
	"context"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/verastack/telephone/phoenix"
)

// v2Version matches the vsn values Phoenix accepts for its V2 serializer
// ("~> 2.0.0": 2.0.x without a pre-release part).
var v2Version = regexp.MustCompile(`^2\.0\.(0|[1-9][0-9]*)(\+[0-9A-Za-z.-]+)?$`)

// writeTimeout bounds one frame write to a telephone or proxied client.
const writeTimeout = 10 * time.Second

// serveSocket is the telephone socket endpoint. Like Phoenix it refuses before
// upgrading: 400 for a non-GET request, 403 with an empty body when the token
// or vsn is refused (docs/PROTOCOL.md §1). A missing vsn, or one matching ~> 1.0.0,
// selects the V1 JSON serializer (serializer_v1.go). The Origin header is not
// checked.
func (s *Server) serveSocket(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	q := r.URL.Query()
	vsn := "1.0.0" // Phoenix's default
	if v, ok := q["vsn"]; ok {
		vsn = v[0]
	}
	v1 := v1Version.MatchString(vsn)
	switch {
	case !v1 && !v2Version.MatchString(vsn):
		s.cfg.logger.Warn("telephonetest: refused socket: unsupported vsn (~> 2.0.0 or ~> 1.0.0)", "vsn", vsn)
		w.WriteHeader(http.StatusForbidden)
		return
	case s.refuse.Load():
		s.cfg.logger.Info("telephonetest: refused socket: RefuseTokens is on")
		w.WriteHeader(http.StatusForbidden)
		return
	}
	rec, err := s.authenticate(q.Get("token"))
	if err != nil {
		s.cfg.logger.Info("telephonetest: refused socket", "reason", err.Error())
		w.WriteHeader(http.StatusForbidden)
		return
	}
	if v1 { // logged before the upgrade answers, so the line is there once the dial returns
		s.cfg.logger.Info("telephonetest: socket uses the V1 JSON serializer (no vsn=2.0.0 in the URL)", "vsn", vsn)
	}
	c, raw, err := accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return // Accept answered the request
	}
	c.SetReadLimit(-1)
	s.mu.Lock()
	tokenID, pathID := rec.id, rec.pathID
	s.mu.Unlock()
	sk := s.newSocket(c, raw, tokenID, pathID)
	if sk == nil {
		_ = c.Close(websocket.StatusGoingAway, "server shutting down")
		return
	}
	sk.v1 = v1 // before run: read by the socket's goroutines only
	sk.run()
}

// socket is one telephone WebSocket connection: the equivalent of a Phoenix
// socket process. Its reader goroutine handles inbound frames in order; its
// writer goroutine (the run loop) is the connection's only writer and also
// enforces the idle timeout.
type socket struct {
	srv      *Server
	seq      uint64 // connect order: 1, 2, ...
	id       string // seq as text (Sockets, DropSocket)
	conn     wireConn
	raw      net.Conn // may be nil (tests)
	tokenID  string
	pathID   string
	v1       bool // V1 JSON serializer (object frames) instead of V2
	out      *mailbox[outFrame]
	activity chan struct{} // a frame was received (buffered 1)
	stop     chan struct{} // closed by shutdown
	wg       sync.WaitGroup

	// Guarded by srv.mu:
	closed      bool
	closeCode   websocket.StatusCode
	closeReason string
	abrupt      bool                // cut the TCP connection without a close frame
	channels    map[string]*channel // topic → live channel
}

// outFrame is one frame waiting for the writer.
type outFrame struct {
	data      []byte
	notBefore time.Time // DelayReplies
}

// newSocket registers a socket; it returns nil after Close.
func (s *Server) newSocket(c wireConn, raw net.Conn, tokenID, pathID string) *socket {
	sk := &socket{
		srv: s, conn: c, raw: raw, tokenID: tokenID, pathID: pathID,
		out:      newMailbox[outFrame](),
		activity: make(chan struct{}, 1),
		stop:     make(chan struct{}),
		channels: make(map[string]*channel),
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.socketSeq++
	sk.seq, sk.id = s.socketSeq, strconv.FormatUint(s.socketSeq, 10)
	s.sockets[sk] = struct{}{}
	return sk
}

// run serves the socket until it closes, then ends its channels, closes the
// connection and joins every goroutine of the socket.
func (sk *socket) run() {
	sk.wg.Go(sk.readLoop)
	sk.writeLoop()
	sk.srv.mu.Lock()
	chans := sk.channelsLocked()
	for _, ch := range chans {
		sk.srv.unregisterLocked(ch) // not routed to from the moment the socket is gone from Sockets
	}
	code, reason, abrupt := sk.closeCode, sk.closeReason, sk.abrupt
	delete(sk.srv.sockets, sk)
	sk.srv.mu.Unlock()
	for _, ch := range chans {
		sk.srv.endChannel(ch, endSilent)
	}
	sk.out.close()
	if abrupt {
		if sk.raw != nil {
			_ = sk.raw.Close()
		}
		_ = sk.conn.CloseNow()
	} else {
		closeWithin(sk.conn, sk.raw, code, reason, sk.srv.cfg.closeGrace)
	}
	sk.wg.Wait()
}

// channelsLocked returns the socket's live channels. srv.mu must be held.
func (sk *socket) channelsLocked() []*channel {
	chans := make([]*channel, 0, len(sk.channels))
	for _, ch := range sk.channels {
		chans = append(chans, ch)
	}
	return chans
}

// shutdown asks the socket to close with code and reason, or by cutting the
// TCP connection when abrupt. Only the first call counts.
func (sk *socket) shutdown(code websocket.StatusCode, reason string, abrupt bool) {
	sk.srv.mu.Lock()
	if sk.closed {
		sk.srv.mu.Unlock()
		return
	}
	sk.closed = true
	sk.closeCode, sk.closeReason, sk.abrupt = code, reason, abrupt
	sk.srv.mu.Unlock()
	close(sk.stop)
}

// readLoop reads and handles frames in order until the connection fails.
func (sk *socket) readLoop() {
	for {
		typ, data, err := sk.conn.Read(context.Background())
		if err != nil {
			// The peer closed or the connection broke: nothing more can be sent.
			sk.shutdown(websocket.StatusNormalClosure, "", true)
			return
		}
		select {
		case sk.activity <- struct{}{}:
		default:
		}
		sk.srv.record(DirIn, typ == websocket.MessageBinary, data)
		var m phoenix.Message
		switch {
		case sk.v1:
			m, err = decodeV1(data) // V1 decodes binary frames as JSON text too
		case typ == websocket.MessageBinary:
			m, err = phoenix.DecodeBinaryPush(data)
		default:
			m, err = phoenix.DecodeText(data)
		}
		if err != nil {
			// The serializer raises inside the socket process: the connection dies.
			sk.srv.cfg.logger.Warn("telephonetest: malformed frame, closing socket", "err", err)
			sk.shutdown(websocket.StatusInternalError, "", false)
			return
		}
		sk.dispatch(m)
	}
}

// writeLoop writes queued frames until shutdown and closes idle sockets.
func (sk *socket) writeLoop() {
	idle := time.NewTimer(sk.srv.cfg.idleTimeout)
	defer idle.Stop()
	for {
		select {
		case <-sk.stop:
			return
		case <-sk.activity:
			idle.Reset(sk.srv.cfg.idleTimeout)
		case <-idle.C:
			sk.srv.cfg.logger.Info("telephonetest: idle socket closed", "token_id", sk.tokenID)
			sk.shutdown(websocket.StatusProtocolError, "", false)
		case <-sk.out.Ready():
			for _, f := range sk.out.Drain() {
				if !sk.write(f) {
					sk.shutdown(websocket.StatusNormalClosure, "", true)
					break
				}
			}
		}
	}
}

// write writes one frame, first waiting until f.notBefore. It reports false
// when the socket is stopping or the write failed.
func (sk *socket) write(f outFrame) bool {
	if d := time.Until(f.notBefore); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-sk.stop:
			t.Stop()
			return false
		case <-t.C:
		}
	}
	select {
	case <-sk.stop:
		return false
	default:
	}
	// Recorded before the write so that a peer that has read the frame always
	// finds it in Frames.
	sk.srv.record(DirOut, false, f.data)
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	return sk.conn.Write(ctx, websocket.MessageText, f.data) == nil
}

// send queues one text frame. Replies and heartbeat acks are delayed by
// DelayReplies when delayed is set.
func (sk *socket) send(m phoenix.Message, delayed bool) {
	encode := phoenix.EncodeText
	if sk.v1 {
		encode = encodeV1
	}
	data, err := encode(m)
	if err != nil {
		sk.srv.cfg.logger.Error("telephonetest: cannot encode frame", "event", m.Event, "err", err)
		return
	}
	f := outFrame{data: data}
	if d := time.Duration(sk.srv.replyDelay.Load()); delayed && d > 0 {
		f.notBefore = time.Now().Add(d)
	}
	sk.out.Put(f)
}
