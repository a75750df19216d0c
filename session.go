package telephone

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/verastack/telephone/phoenix"
)

// session is one WebSocket connection to Plugboard and its telephone channel: it dispatches
// the requests and WebSocket events that arrive on its channel and sends their replies on it.
// It is owned by runSession; its heartbeat goroutine is joined before runSession returns. The
// token refresh belongs to the Client, which borrows a joined session to carry it.
type session struct {
	c       *Client
	sock    *phoenix.Socket
	ch      *phoenix.Channel
	ctx     context.Context // the Client's work context: cancelled only by a hard stop
	ended   context.Context // cancelled when runSession returns
	workers *sync.WaitGroup

	slot     *slot         // where Status reports this session
	inflight atomic.Int64  // requests received on this session's channel and not yet answered
	idle     chan struct{} // signalled (buffered 1) when inflight drops to 0
	leaveReq chan leaveAt  // Shutdown asks the session to leave (buffered 1)
	refusing atomic.Bool   // the drain's wait for an idle moment ran out: new requests get 503

	leaveAsked bool // guarded by sessionSet.mu: the drain has sent on leaveReq

	mu   sync.Mutex  // guards part
	part sessionPart // this session's share of Status

	rejoin     chan struct{} // phx_error / phx_close seen for our join_ref
	dead       chan struct{} // heartbeat acks stopped
	refreshAck chan string   // refresh_token_ack pushes (older Plugboard versions)
	leaving    atomic.Bool   // we sent phx_leave: the phx_close that follows is expected
	sentBeats  atomic.Int64  // heartbeats sent
	ackedBeats atomic.Int64  // value of sentBeats when the last heartbeat_ack arrived
}

// joinReply is the telephone channel's join response (docs/PROTOCOL.md §3.1).
type joinReply struct {
	Status    string `json:"status"`
	Path      string `json:"path"`
	ExpiresIn int64  `json:"expires_in"`
}

// runSession connects, joins and serves until the socket dies, Shutdown has drained, or ctx
// ends. up is how long the channel was joined.
func (c *Client) runSession(ctx context.Context, sl *slot, workers *sync.WaitGroup) (up time.Duration, err error) {
	if c.stopping(ctx) {
		return 0, nil
	}
	conn, err := c.dialPlugboard(ctx)
	if err != nil {
		return 0, fmt.Errorf("connect: %w", err)
	}
	sock := phoenix.NewSocket(conn, phoenix.SocketOptions{
		HeartbeatInterval: c.conf().phoenixHeartbeat,
		PushTimeout:       c.conf().connectTimeout,
		Logger:            c.log,
		InlineHandlers:    true, // handle only Sends; one goroutine hop less per request
		InlineWrites:      true, // a proxy_res is written by its worker when the socket is idle
	})
	defer sock.Close(1000, "")
	ended, end := context.WithCancel(ctx)
	defer end()
	s := &session{
		c: c, sock: sock, ctx: ctx, ended: ended, workers: workers, slot: sl,
		part:       sessionPart{connected: true},
		rejoin:     make(chan struct{}, 1),
		idle:       make(chan struct{}, 1),
		leaveReq:   make(chan leaveAt, 1),
		dead:       make(chan struct{}),
		refreshAck: make(chan string, 1),
	}
	s.ch = sock.Channel("telephone:"+c.tokens.current().claims.PathID, s.handle)
	c.sessions.add(s)
	defer c.sessions.remove(s)
	defer c.ws.closeAll(s, websocketGoingAway)
	if err := s.join(ctx); err != nil {
		return 0, err
	}
	if c.draining() {
		s.leave() // joined while the drain began: it has nothing in flight yet
		return 0, nil
	}
	joinedAt := time.Now()
	err = s.serveUntilEnd(ctx)
	return time.Since(joinedAt), err
}

func (s *session) join(ctx context.Context) error {
	jctx, cancel := context.WithTimeout(ctx, s.c.conf().connectTimeout)
	defer cancel()
	raw, err := s.ch.Join(jctx, nil)
	if err != nil {
		return fmt.Errorf("join: %w", err)
	}
	if s.c.joinReplied != nil {
		s.c.joinReplied()
	}
	var jr joinReply
	if err := json.Unmarshal(raw, &jr); err != nil {
		s.c.log.Warn("unexpected join reply", slog.String("reply", string(raw)))
	}
	s.ackedBeats.Store(s.sentBeats.Load())
	now := time.Now()
	s.setPart(func(p *sessionPart) {
		p.joined, p.path, p.connectedAt, p.lastAck = true, jr.Path, now, now
	})
	s.c.sessions.setState(s.slot, SessionJoined)
	s.c.sessions.joined()
	s.c.log.Info("joined Plugboard", slog.Int("session", s.slot.id), slog.String("path", jr.Path), slog.String("topic", "telephone:"+s.c.tokens.current().claims.PathID))
	return nil
}

// serveUntilEnd waits for the session to end, re-joining the channel when Plugboard closes it.
func (s *session) serveUntilEnd(ctx context.Context) error {
	sctx, cancel := context.WithCancel(ctx)
	var bg sync.WaitGroup
	bg.Go(func() { s.heartbeatLoop(sctx) })
	defer bg.Wait()
	defer cancel()
	for {
		select {
		case <-s.sock.Done():
			return fmt.Errorf("socket: %w", s.sock.Err())
		case <-ctx.Done():
			s.sock.Close(1001, "telephone stopping")
			return nil
		case req := <-s.leaveReq:
			s.leaveWhenIdle(req)
		case <-s.c.drainedCh:
			s.leave()
			return nil
		case <-s.dead:
			s.c.m.HeartbeatMissed()
			s.sock.Close(1000, "heartbeat timeout")
			return ErrHeartbeatTimeout
		case <-s.rejoin:
			if err := s.rejoinLoop(sctx); err != nil && !s.c.stopping(ctx) {
				return err
			}
		}
	}
}

// rejoinLoop re-joins after phx_error/phx_close with the jittered backoff, while the socket lives.
func (s *session) rejoinLoop(ctx context.Context) error {
	s.setPart(func(p *sessionPart) { p.joined = false })
	s.c.sessions.setState(s.slot, SessionRejoining)
	s.c.ws.closeAll(s, websocketGoingAway)
	bo := &phoenix.Backoff{Initial: s.c.conf().backoffInitial, Max: s.c.conf().backoffMax}
	wctx, stop := s.c.untilShutdown(ctx)
	defer stop()
	for {
		if err := bo.Wait(wctx); err != nil {
			return err
		}
		err := s.join(wctx)
		if err == nil {
			return nil
		}
		s.c.setError(err)
		s.c.sessions.failed(s.slot, err)
		s.c.log.Warn("re-join failed", slog.Int("session", s.slot.id), slog.Any("error", err))
		if errors.Is(err, phoenix.ErrClosed) {
			return err
		}
	}
}

// leaveAt is Shutdown's request to leave: at a moment with nothing in flight, at the latest
// by deadline; left is closed once the session has left (or could not).
type leaveAt struct {
	deadline time.Time
	left     chan struct{}
}

// leaveWhenIdle leaves the channel at the first moment the session has nothing in flight (no
// request being served; handlers run on the socket's reader, so none waits queued for one), so
// that Plugboard's end-of-channel 502 hits no caller. Until then the session serves every
// request that reaches it. Under steady load that moment may never come: at the deadline the
// session starts answering new requests 503 at once (not forwarded, so safe to retry) while
// the forwarded ones finish, and leaves when they have. A hard stop (Shutdown's ctx ending)
// closes the socket instead. The socket stays open until drainedCh.
func (s *session) leaveWhenIdle(req leaveAt) {
	defer close(req.left)
	s.c.sessions.setState(s.slot, SessionLeaving)
	t := time.NewTimer(time.Until(req.deadline))
	defer t.Stop()
	for s.inflight.Load() > 0 {
		select {
		case <-s.idle:
		case <-t.C:
			if !s.refusing.Swap(true) {
				s.c.log.Info("no idle moment within the drain's share: refusing new requests until the forwarded ones finish",
					slog.Int("session", s.slot.id), slog.Int64("in_flight", s.inflight.Load()))
			}
		case <-s.sock.Done():
			return
		case <-s.ctx.Done():
			return // hard stop: the socket closes with 1001
		}
	}
	s.leaveChannel()
}

// leave ends the session politely after a drain: phx_leave, then close code 1000.
func (s *session) leave() {
	s.leaveChannel()
	s.sock.Close(1000, "telephone shutting down")
}

// leaveChannel sends phx_leave and waits for its reply, unless the channel is not joined.
func (s *session) leaveChannel() {
	ctx, cancel := context.WithTimeout(s.ctx, s.c.conf().connectTimeout)
	defer cancel()
	if s.ch.Joined() {
		s.c.sessions.setState(s.slot, SessionLeaving)
		s.leaving.Store(true)
		if err := s.ch.Leave(ctx); err != nil {
			s.c.log.Warn("phx_leave failed", slog.Any("error", err))
		}
		s.setPart(func(p *sessionPart) { p.joined = false })
	}
}

// handle runs on the socket's reader goroutine, in order; it must not block for long nor
// wait for a reply (it only Sends).
func (s *session) handle(m phoenix.Message) {
	switch m.Event {
	case "proxy_req":
		s.dispatch(m.Payload)
	case "heartbeat_ack":
		s.ackedBeats.Store(s.sentBeats.Load())
		now := time.Now()
		s.setPart(func(p *sessionPart) { p.lastAck = now })
	case "refresh_token_ack":
		var p struct {
			Token string `json:"token"`
		}
		if json.Unmarshal(m.Payload, &p) == nil && p.Token != "" {
			select {
			case s.refreshAck <- p.Token:
			default:
			}
		}
	case phoenix.EventError, phoenix.EventClose:
		if s.leaving.Load() {
			return
		}
		s.c.log.Warn("Plugboard ended the channel; re-joining", slog.Int("session", s.slot.id), slog.String("event", m.Event))
		select {
		case s.rejoin <- struct{}{}:
		default:
		}
	case "ws_connect", "ws_frame", "ws_close", "ws_check":
		s.c.ws.handle(s, m)
	default:
		s.c.log.Debug("ignoring unknown event", slog.String("event", m.Event))
	}
}

// heartbeatLoop sends the app-level heartbeat and declares the session dead when
// heartbeatMisses consecutive beats went unacknowledged.
func (s *session) heartbeatLoop(ctx context.Context) {
	t := time.NewTicker(s.c.conf().heartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !s.ch.Joined() {
			continue
		}
		if s.sentBeats.Load()-s.ackedBeats.Load() >= int64(s.c.conf().heartbeatMisses) {
			close(s.dead)
			return
		}
		s.sentBeats.Add(1)
		err := s.ch.Send(ctx, "heartbeat", map[string]int64{"ts": time.Now().Unix()})
		if err != nil && ctx.Err() == nil {
			s.c.log.Debug("heartbeat not sent", slog.Any("error", err))
		}
	}
}
