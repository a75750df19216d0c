package phoenix

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Conn is the message connection a Socket runs over: each Read returns one whole
// message (text or binary) and each Write sends one. transport.Conn satisfies it
// without importing phoenix. The Socket calls Read from one goroutine and Write
// from another, and may call Close concurrently with both; a pending Read or Write
// must return once its context is cancelled or Close was called.
type Conn interface {
	Read(ctx context.Context) (binary bool, data []byte, err error)
	Write(ctx context.Context, binary bool, data []byte) error
	Close(code int, reason string) error
}

// Socket defaults, used for zero fields of SocketOptions.
const (
	DefaultHeartbeatInterval = 30 * time.Second
	DefaultPushTimeout       = 10 * time.Second
	DefaultWriteTimeout      = 10 * time.Second
)

// Close codes the Socket uses when it closes the Conn itself.
const (
	// CloseHeartbeatTimeout is sent when the heartbeat times out; like the official
	// JS client the Socket uses 1000 (normal closure) and reconnects.
	CloseHeartbeatTimeout = 1000
	// CloseInternalError is used after a read or write error (the Conn is usually
	// broken already, so it is rarely seen by the peer).
	CloseInternalError = 1011
)

// outQueueSize is how many outbound frames may wait for the writer before Send,
// Push, Join and Leave block (on their context).
const outQueueSize = 64

// SocketOptions configure a Socket. The zero value gives the documented defaults.
type SocketOptions struct {
	// HeartbeatInterval is the phoenix-topic heartbeat; 0 means 30s; negative disables. A
	// reply missing at the next beat stops the socket (ErrHeartbeatTimeout), unless the
	// reader spent a quarter of the interval or more inside handlers meanwhile (the reply may
	// be unread behind them): then up to three more intervals are allowed.
	HeartbeatInterval time.Duration
	PushTimeout       time.Duration // default reply timeout when ctx has no earlier deadline; 0 (or negative) means 10s
	WriteTimeout      time.Duration // write time allowed per frame (a batch of n frames gets n times it); 0 (or negative) means 10s
	Logger            *slog.Logger  // nil discards
	// InlineHandlers calls channel handlers on the reader goroutine instead of one delivery
	// goroutine per Channel: one goroutine hop less per inbound message. Such a handler
	// must not wait for a reply (Push, Join and Leave would time out: their replies arrive
	// on the same goroutine); Send is fine. Order is the same either way.
	InlineHandlers bool
	// InlineWrites lets Send, Push, Join and Leave write their frame themselves when the
	// writer is idle and nothing is queued, sparing a goroutine hop; they may then wait
	// for the network, up to WriteTimeout. Frames still go out in the order they were
	// sent, and a frame sent while another is being written is queued as without it.
	InlineWrites bool
}

func (o SocketOptions) withDefaults() SocketOptions {
	if o.HeartbeatInterval == 0 {
		o.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if o.PushTimeout <= 0 {
		o.PushTimeout = DefaultPushTimeout
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// replyResult is what the reader hands to a waiting pusher.
type replyResult struct {
	reply Reply
	err   error
}

// Socket is one Phoenix V2 connection: it stamps refs, matches replies to pushes,
// sends the phoenix heartbeat and routes inbound messages to Channels.
//
// Goroutines: one reader (which also joins all others when the socket stops), one
// writer draining a bounded queue, one heartbeat ticker (unless disabled) and one
// delivery goroutine per Channel with a handler (none with InlineHandlers). The Socket owns the Conn and
// closes it when it stops, for whatever reason. All methods are safe for
// concurrent use.
type Socket struct {
	conn Conn
	opts SocketOptions
	log  *slog.Logger

	ctx     context.Context // passed to conn.Read/Write; cancelled when the socket stops
	cancel  context.CancelFunc
	slots   chan struct{}  // one token per frame in queue: at most outQueueSize
	wake    chan struct{}  // tells the writer that queue has frames (capacity 1)
	closing chan struct{}  // closed when the socket starts stopping
	done    chan struct{}  // closed when every goroutine has ended
	refs    atomic.Uint64  // last ref handed out
	wg      sync.WaitGroup // writer, heartbeat and delivery goroutines; joined by the reader

	// The reader's time inside handlers, for the heartbeat: a reply may sit unread while a
	// handler holds the reader (InlineHandlers applying backpressure).
	busySince atomic.Int64 // UnixNano when the reader entered the current frame's handling; 0 outside
	busyTotal atomic.Int64 // nanoseconds the reader has spent handling frames

	wmu     sync.Mutex // guards queue, writing and closed
	queue   []frame    // encoded text frames waiting for the writer, in order
	writing bool       // a goroutine (the writer or an inline sender) is writing
	closed  bool       // the socket has stopped and its queue was dropped
	texts   [][]byte   // scratch for write; used only by the goroutine writing

	mu       sync.Mutex // guards err, pending and channels
	err      error
	pending  map[string]chan replyResult // by ref; each channel has room for one result
	channels map[string]*Channel         // by topic
}

// NewSocket starts the socket's reader, writer and heartbeat goroutines over conn.
// The Socket owns conn: it closes it when it stops (Close, heartbeat timeout,
// read or write error). Stop it with Close; Done tells when it stopped by itself.
func NewSocket(conn Conn, opts SocketOptions) *Socket {
	opts = opts.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Socket{
		conn:     conn,
		opts:     opts,
		log:      opts.Logger,
		ctx:      ctx,
		cancel:   cancel,
		slots:    make(chan struct{}, outQueueSize),
		wake:     make(chan struct{}, 1),
		closing:  make(chan struct{}),
		done:     make(chan struct{}),
		pending:  make(map[string]chan replyResult),
		channels: make(map[string]*Channel),
	}
	s.wg.Add(1)
	go s.writeLoop()
	if opts.HeartbeatInterval > 0 {
		s.wg.Add(1)
		go s.heartbeatLoop()
	}
	go s.readLoop()
	return s
}

// Channel returns the Channel for topic, creating it on first use; later calls
// for the same topic return the same Channel and ignore handler. handler may be
// nil (inbound events are then dropped); otherwise it is called for every inbound
// event of the channel, in order, on one goroutine owned by the Socket.
//
// The handler must not block for long: its queue is bounded, and a full queue
// stops the socket's reader (so no replies arrive either). It must not call
// Socket.Close (Close waits for the handler to return); it may call Push, Send,
// Join and Leave.
func (s *Socket) Channel(topic string, handler func(Message)) *Channel {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.channels[topic]; ok {
		return c
	}
	c := &Channel{s: s, topic: topic, handler: handler}
	s.channels[topic] = c
	if handler != nil && s.err == nil && !s.opts.InlineHandlers {
		c.in = make(chan Message, channelQueueSize)
		s.wg.Add(1)
		go c.deliverLoop()
	}
	return c
}

// Done returns a channel closed when the socket has stopped (for any cause) and
// all its goroutines have ended.
func (s *Socket) Done() <-chan struct{} { return s.done }

// Err returns why the socket stopped, or nil while it runs: ErrClosed after Close,
// ErrHeartbeatTimeout, or the read or write error (wrapped).
func (s *Socket) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Close closes the socket with the given WebSocket close code and reason: it
// closes the Conn, fails pending pushes with ErrClosed, drops frames still queued
// for writing (Push or Leave first to be sure they went out), and stops and joins
// every goroutine, channel handlers included. It is idempotent: only the first
// call closes the Conn and returns its error; later calls wait and return nil.
func (s *Socket) Close(code int, reason string) error {
	first, err := s.stop(ErrClosed, code, reason)
	<-s.done
	if !first {
		return nil
	}
	return err
}

// stop records cause (the first cause wins), wakes every goroutine and waiter,
// and closes the Conn. It reports whether this call did it, with Conn.Close's error.
func (s *Socket) stop(cause error, code int, reason string) (first bool, err error) {
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return false, nil
	}
	s.err = cause
	s.mu.Unlock()
	if !errors.Is(cause, ErrClosed) {
		s.log.Warn("phoenix: socket stopped", "err", cause)
	}
	close(s.closing)
	err = s.conn.Close(code, reason)
	s.cancel()
	return true, err
}

// closedErr is the error for calls failing because the socket stopped: ErrClosed,
// wrapping the cause too when it was not Close.
func closedErr(cause error) error {
	if cause == nil || errors.Is(cause, ErrClosed) {
		return ErrClosed
	}
	return fmt.Errorf("%w: %w", ErrClosed, cause)
}

func (s *Socket) nextRef() string { return strconv.FormatUint(s.refs.Add(1), 10) }

// readLoop reads until the Conn fails or the socket stops, then joins the other
// goroutines and closes done.
func (s *Socket) readLoop() {
	for {
		binary, data, err := s.conn.Read(s.ctx)
		if err != nil {
			s.stop(fmt.Errorf("phoenix: read: %w", err), CloseInternalError, "read error")
			break
		}
		start := time.Now().UnixNano()
		s.busySince.Store(start)
		s.handleFrame(binary, data)
		s.busyTotal.Add(time.Now().UnixNano() - start)
		s.busySince.Store(0)
	}
	s.wg.Wait()
	s.dropQueued()
	close(s.done)
}

// dropQueued releases the frames the writer will never write (the socket stopped with them
// queued) and makes later enqueues fail: a SendParts caller gets every part back.
func (s *Socket) dropQueued() {
	s.wmu.Lock()
	s.closed = true
	queued := s.queue
	s.queue = nil
	s.wmu.Unlock()
	for i := range queued {
		queued[i].drop()
	}
}

func (s *Socket) handleFrame(binary bool, data []byte) {
	var m Message
	var err error
	if binary {
		m, _, err = DecodeBinary(data)
	} else {
		m, err = DecodeText(data)
	}
	if err != nil {
		s.log.Warn("phoenix: dropping malformed frame", "binary", binary, "bytes", len(data), "err", err)
		return
	}
	if m.Event == EventReply {
		s.handleReply(m)
		return
	}
	s.mu.Lock()
	c := s.channels[m.Topic]
	s.mu.Unlock()
	if c == nil {
		s.log.Debug("phoenix: dropping message for a topic without channel", "topic", m.Topic, "event", m.Event)
		return
	}
	c.receive(m)
}

// handleReply hands a phx_reply to the push waiting for its ref. Replies nobody
// waits for (late, after a timeout) are dropped: replies never reach handlers.
func (s *Socket) handleReply(m Message) {
	s.mu.Lock()
	ch, ok := s.pending[m.Ref]
	delete(s.pending, m.Ref)
	c := s.channels[m.Topic]
	s.mu.Unlock()
	if !ok {
		s.log.Debug("phoenix: dropping reply nobody waits for", "topic", m.Topic, "ref", m.Ref)
		return
	}
	var res replyResult
	if m.Binary {
		res.reply = Reply{Status: m.Status, Response: m.Payload}
	} else {
		res.reply, res.err = DecodeReply(m.Payload)
	}
	if c != nil {
		c.replied(m.Ref, res) // join bookkeeping, in frame order
	}
	ch <- res
}

// writeLoop writes queued frames in order: everything queued at once in one batch (one
// write deadline; one flush with a BatchWriter Conn).
func (s *Socket) writeLoop() {
	defer s.wg.Done()
	batch := make([]frame, 0, outQueueSize)
	for {
		select {
		case <-s.closing:
			return
		case <-s.wake:
		}
		for {
			s.wmu.Lock()
			if s.writing || len(s.queue) == 0 {
				s.wmu.Unlock()
				break
			}
			batch = append(batch[:0], s.queue...)
			clear(s.queue)
			s.queue = s.queue[:0]
			s.writing = true
			s.wmu.Unlock()
			for range batch {
				<-s.slots
			}
			err := s.write(batch)
			clear(batch) // drop the frames at once: a large proxy_res must not outlive its write
			s.doneWriting()
			if err != nil {
				s.stop(fmt.Errorf("phoenix: write: %w", err), CloseInternalError, "write error")
				return
			}
		}
	}
}

// doneWriting ends a write and wakes the writer for frames queued meanwhile.
func (s *Socket) doneWriting() {
	s.wmu.Lock()
	s.writing = false
	pending := len(s.queue) > 0
	s.wmu.Unlock()
	if pending {
		s.wakeWriter()
	}
}

func (s *Socket) wakeWriter() {
	select {
	case s.wake <- struct{}{}:
	default: // already woken
	}
}

// BatchWriter is a Conn that can send several text messages with one flush. The Socket's
// writer uses it when it has more than one frame queued.
type BatchWriter interface {
	WriteBatch(ctx context.Context, texts [][]byte) error
}

// PartsWriter is a Conn that can send one text message given in parts, in order, without
// joining them (as a fragmented message). It calls written(i) once parts[i] has been written
// and is no longer referenced, so that its memory can be reused at once. The Socket uses it
// for frames sent with Channel.SendParts; with another Conn it joins the parts.
type PartsWriter interface {
	WriteParts(ctx context.Context, parts [][]byte, written func(i int)) error
}

// frame is an encoded text frame: data, or (SendParts) parts written as one message, each
// handed to release once written or dropped.
type frame struct {
	data    []byte
	parts   [][]byte
	release func(i int, p []byte) // nil: nothing to release
}

// drop releases the parts of a frame that will not be written.
func (f *frame) drop() {
	for i, p := range f.parts {
		if p != nil && f.release != nil {
			f.release(i, p)
		}
		f.parts[i] = nil
	}
}

// write sends the frames in order within len(frames) × WriteTimeout in all: consecutive plain
// frames in one batch, frames in parts one by one.
func (s *Socket) write(frames []frame) error {
	ctx, cancel := context.WithTimeout(s.ctx, time.Duration(len(frames))*s.opts.WriteTimeout)
	defer cancel()
	for i := 0; i < len(frames); {
		if frames[i].parts != nil {
			if err := s.writeParts(ctx, &frames[i]); err != nil {
				for j := i + 1; j < len(frames); j++ {
					frames[j].drop()
				}
				return err
			}
			i++
			continue
		}
		n := i + 1
		for n < len(frames) && frames[n].parts == nil {
			n++
		}
		if err := s.writePlain(ctx, frames[i:n]); err != nil {
			for j := n; j < len(frames); j++ {
				frames[j].drop()
			}
			return err
		}
		i = n
	}
	return nil
}

func (s *Socket) writePlain(ctx context.Context, frames []frame) error {
	if bw, ok := s.conn.(BatchWriter); ok && len(frames) > 1 {
		s.texts = s.texts[:0]
		for _, f := range frames {
			s.texts = append(s.texts, f.data)
		}
		err := bw.WriteBatch(ctx, s.texts)
		clear(s.texts)
		return err
	}
	for _, f := range frames {
		if err := s.conn.Write(ctx, false, f.data); err != nil {
			return err
		}
	}
	return nil
}

// writeParts writes a frame given in parts as one message, releasing every part.
func (s *Socket) writeParts(ctx context.Context, f *frame) error {
	defer f.drop()
	if pw, ok := s.conn.(PartsWriter); ok {
		return pw.WriteParts(ctx, f.parts, func(i int) {
			if p := f.parts[i]; p != nil && f.release != nil {
				f.release(i, p)
			}
			f.parts[i] = nil
		})
	}
	n := 0
	for _, p := range f.parts {
		n += len(p)
	}
	data := make([]byte, 0, n)
	for _, p := range f.parts {
		data = append(data, p...)
	}
	f.drop()
	return s.conn.Write(ctx, false, data)
}

// enqueue hands an encoded frame to the writer, blocking while the queue is full; with
// InlineWrites it writes the frame itself when nothing else is being written or queued.
func (s *Socket) enqueue(ctx context.Context, data []byte) error {
	return s.enqueueFrame(ctx, frame{data: data})
}

// enqueueFrame is enqueue for any frame; a frame that is not sent is dropped (its parts released).
func (s *Socket) enqueueFrame(ctx context.Context, data frame) (err error) {
	defer func() {
		if err != nil {
			data.drop()
		}
	}()
	select {
	case <-s.closing:
		return closedErr(s.Err())
	default:
	}
	if s.opts.InlineWrites {
		s.wmu.Lock()
		if !s.writing && len(s.queue) == 0 {
			s.writing = true
			s.wmu.Unlock()
			err := s.write([]frame{data})
			s.doneWriting()
			if err != nil {
				s.stop(fmt.Errorf("phoenix: write: %w", err), CloseInternalError, "write error")
				return closedErr(s.Err())
			}
			return nil
		}
		s.wmu.Unlock()
	}
	select {
	case s.slots <- struct{}{}:
	case <-s.closing:
		return closedErr(s.Err())
	case <-ctx.Done():
		return waitErr(ctx)
	}
	s.wmu.Lock()
	if s.closed { // the writer and dropQueued are done: nobody would write or drop it
		s.wmu.Unlock()
		return closedErr(s.Err())
	}
	s.queue = append(s.queue, data)
	idle := !s.writing
	s.wmu.Unlock()
	if idle {
		s.wakeWriter()
	}
	return nil
}

func (s *Socket) register(ref string) (chan replyResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, closedErr(s.err)
	}
	ch := make(chan replyResult, 1)
	s.pending[ref] = ch
	return ch, nil
}

func (s *Socket) unregister(ref string) {
	s.mu.Lock()
	delete(s.pending, ref)
	s.mu.Unlock()
}

// roundTrip sends an encoded frame carrying ref and waits for its reply, at most
// PushTimeout or until ctx is done.
func (s *Socket) roundTrip(ctx context.Context, ref string, data []byte) (Reply, error) {
	ch, err := s.register(ref)
	if err != nil {
		return Reply{}, err
	}
	defer s.unregister(ref)
	ctx, cancel := context.WithTimeoutCause(ctx, s.opts.PushTimeout, ErrTimeout)
	defer cancel()
	if err := s.enqueue(ctx, data); err != nil {
		return Reply{}, err
	}
	select {
	case res := <-ch:
		return res.reply, res.err
	case <-s.closing:
		return Reply{}, closedErr(s.Err())
	case <-ctx.Done():
		select {
		case res := <-ch: // the reply won the race: keep state and result consistent
			return res.reply, res.err
		default:
			return Reply{}, waitErr(ctx)
		}
	}
}

// waitErr maps a done context to the error of a push: ErrTimeout for the push
// timeout, ErrTimeout wrapping context.DeadlineExceeded for the caller's deadline,
// and the context's error (context.Canceled) otherwise.
func waitErr(ctx context.Context) error {
	if errors.Is(context.Cause(ctx), ErrTimeout) {
		return ErrTimeout
	}
	if err := ctx.Err(); errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	}
	return ctx.Err()
}

// heartbeatLoop sends [null,ref,"phoenix","heartbeat",{}] every interval and stops
// the socket with ErrHeartbeatTimeout when the previous one is still unanswered.
func (s *Socket) heartbeatLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.HeartbeatInterval)
	defer t.Stop()
	var (
		waiting chan replyResult
		busyAt  time.Duration // readerBusy when the heartbeat was sent, or when last excused
		excused int           // intervals excused in a row for the heartbeat waiting
	)
	for {
		select {
		case <-s.closing:
			return
		case <-t.C:
		}
		if waiting != nil && len(waiting) == 0 {
			// A reader held in handlers for a quarter of the interval or more may not have read
			// the reply yet: the silence is excused for another interval, a few times in a row.
			// A dead connection brings no frames, so its reader is never busy.
			if busy := s.readerBusy(); busy-busyAt >= s.opts.HeartbeatInterval/4 && excused < maxExcusedBeats {
				busyAt, excused = busy, excused+1
				continue
			}
			s.stop(ErrHeartbeatTimeout, CloseHeartbeatTimeout, "heartbeat timeout")
			return
		}
		waiting, excused = s.sendHeartbeat(), 0
		busyAt = s.readerBusy()
	}
}

// maxExcusedBeats bounds how many intervals a heartbeat reply may be late while the reader is
// busy in handlers: a handler that never returns still ends in a heartbeat timeout.
const maxExcusedBeats = 3

// readerBusy is the time the reader has spent handling frames, the current one included.
func (s *Socket) readerBusy() time.Duration {
	d := s.busyTotal.Load()
	if since := s.busySince.Load(); since != 0 {
		d += time.Now().UnixNano() - since
	}
	return time.Duration(d)
}

// sendHeartbeat queues one heartbeat and returns where its reply will arrive, or
// nil when the socket is stopping.
func (s *Socket) sendHeartbeat() chan replyResult {
	ref := s.nextRef()
	ch, err := s.register(ref)
	if err != nil {
		return nil
	}
	data, _ := EncodeText(Message{Ref: ref, Topic: TopicPhoenix, Event: EventHeartbeat}) // cannot fail
	if s.enqueue(s.ctx, data) != nil {
		return nil
	}
	return ch
}
