package telephone

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/verastack/telephone/internal/inproc"
)

// wsEnd says how a connection ends: the close sent to the backend and what Plugboard hears.
type wsEnd struct {
	code   int    // close code for the backend
	reason string // close reason for the backend (and ws_closed)
	event  string // "ws_closed", "ws_error" or "" (Plugboard is not told)
	errMsg string // the ws_error reason
	gone   bool   // the backend connection is already closed: no close handshake
	drop   bool   // discard the frames still queued
}

func closedEnd(code int, reason string) *wsEnd {
	return &wsEnd{code: code, reason: reason, event: "ws_closed"}
}

// backendEnd classifies the error that ended the backend reader.
func backendEnd(err error) *wsEnd {
	var ce websocket.CloseError
	switch {
	case errors.Is(err, websocket.ErrMessageTooBig):
		e := closedEnd(1009, "Frame too large")
		e.gone = true
		return e
	case errors.As(err, &ce):
		e := closedEnd(plugboardCode(int(ce.Code)), ce.Reason)
		e.gone = true
		return e
	}
	return &wsEnd{event: "ws_error", errMsg: wsBackendError, gone: true}
}

type wsFrame struct {
	typ  websocket.MessageType
	data []byte
}

// wsConn is one proxied WebSocket. Its goroutine (run) dials, announces, writes queued frames
// in order and closes; a reader goroutine, started and joined by run, forwards backend
// messages in order.
type wsConn struct {
	wm   *wsManager
	lim  wsLimits // copied when the connection is admitted
	s    *session
	id   string
	t    *wsTarget
	log  *slog.Logger
	base time.Time
	raw  *rawConn // the backend connection under the WebSocket, to cut it

	soft     context.Context    // done once the connection must end: stops the dial and the writer loop
	stop     context.CancelFunc // cancels soft
	hard     context.Context    // done when the connection is cut: bounds reads, writes and sends
	cutHard  context.CancelFunc // cancels hard
	done     chan struct{}      // closed when run has returned and joined its reader
	wake     chan struct{}      // capacity 1: frames were queued
	active   atomic.Int64       // time.Since(base) at the last frame either way
	readDone chan error         // capacity 1: the reader's final error
	rerr     error              // the reader's final error once received; run's goroutine only
	rgot     bool               // rerr is set; run's goroutine only

	mu     sync.Mutex // guards queue, queued, ending, cutter, pipe
	queue  []wsFrame
	queued int64 // bytes queued or being written
	ending *wsEnd
	cutter *time.Timer    // cuts the connection when a close takes longer than the grace period
	pipe   *inproc.Server // in-process handler only

	traffic atomic.Pointer[wsTraffic] // set while an Observer watches the connection
}

// wsLimits are one connection's limits, copied from the configuration when it is admitted.
type wsLimits struct {
	grace    time.Duration // bounds each close handshake and each wait for an in-process handler
	idle     time.Duration // closes a connection without frames either way
	queue    int64         // bytes queued for the backend
	maxFrame int64         // largest frame either way
}

func newWSConn(wm *wsManager, s *session, id string, t *wsTarget, log *slog.Logger) *wsConn {
	wc := &wsConn{wm: wm, lim: wm.limits(), s: s, id: id, t: t, log: log, base: time.Now(), raw: &rawConn{},
		done: make(chan struct{}), wake: make(chan struct{}, 1), readDone: make(chan error, 1)}
	wc.soft, wc.stop = context.WithCancel(context.Background())
	wc.hard, wc.cutHard = context.WithCancel(context.Background())
	return wc
}

func (wc *wsConn) touch() { wc.active.Store(int64(time.Since(wc.base))) }

// idleFor is how long no frame went either way.
func (wc *wsConn) idleFor() time.Duration {
	return time.Since(wc.base) - time.Duration(wc.active.Load())
}

// end records why the connection ends (the first reason wins), stops the writer loop and
// arms the cut. It never blocks.
func (wc *wsConn) end(e *wsEnd) bool {
	wc.mu.Lock()
	if wc.ending != nil {
		wc.mu.Unlock()
		return false
	}
	wc.ending = e
	if e.drop {
		wc.queue, wc.queued = nil, 0
	}
	wc.armCutLocked()
	wc.mu.Unlock()
	wc.stop()
	return true
}

func (wc *wsConn) armCutLocked() {
	if wc.cutter == nil {
		wc.cutter = time.AfterFunc(wc.lim.grace, wc.cut)
	}
}

// cut aborts every read, write and send of the connection and closes the raw connection.
func (wc *wsConn) cut() {
	wc.cutHard()
	wc.raw.close()
}

func (wc *wsConn) finalEnd() *wsEnd {
	wc.mu.Lock()
	defer wc.mu.Unlock()
	return wc.ending
}

func (wc *wsConn) enqueue(typ websocket.MessageType, data []byte) {
	wc.touch()
	wc.mu.Lock()
	if wc.ending != nil {
		wc.mu.Unlock()
		return
	}
	if wc.queued+int64(len(data)) > wc.lim.queue {
		wc.mu.Unlock()
		wc.wm.count(func(st *WSStatus) { st.Overflow++ })
		wc.wm.m.WebSocketOverflow()
		wc.log.Warn("WebSocket send queue overflowed; closing", slog.Int64("limit", wc.lim.queue))
		e := closedEnd(1009, "Send queue overflow")
		e.drop = true
		wc.end(e)
		return
	}
	wc.queue = append(wc.queue, wsFrame{typ: typ, data: data})
	wc.queued += int64(len(data))
	wc.mu.Unlock()
	select {
	case wc.wake <- struct{}{}:
	default:
	}
}

func (wc *wsConn) tooLarge() {
	if wc.end(closedEnd(1009, "Frame too large")) {
		wc.wm.count(func(st *WSStatus) { st.TooLarge++ })
		wc.wm.m.Rejected("websocket_frame")
		wc.log.Warn("WebSocket frame over the size limit; closing", slog.Int64("limit", wc.lim.maxFrame))
	}
}

func (wc *wsConn) invalidFrame() {
	if wc.end(&wsEnd{code: 1011, reason: "Invalid frame data", event: "ws_error", errMsg: wsInvalidFrame}) {
		wc.log.Warn("invalid ws_frame (opcode or base64 data); closing")
	}
}

// next pops the oldest queued frame.
func (wc *wsConn) next() (wsFrame, bool) {
	wc.mu.Lock()
	defer wc.mu.Unlock()
	if len(wc.queue) == 0 {
		return wsFrame{}, false
	}
	f := wc.queue[0]
	wc.queue[0] = wsFrame{}
	wc.queue = wc.queue[1:]
	return f, true
}

func (wc *wsConn) written(n int) {
	wc.mu.Lock()
	wc.queued = max(wc.queued-int64(n), 0)
	wc.mu.Unlock()
}

// run is the connection's goroutine.
func (wc *wsConn) run() {
	opened := false
	defer close(wc.done)
	defer func() { // after forget: a connection counted closed has freed its place under the limit
		if opened {
			wc.wm.count(func(st *WSStatus) { st.Open-- })
			wc.wm.m.WebSockets(-1)
		}
	}()
	defer wc.wm.forget(wc)
	defer wc.cleanup()
	ws, reason := wc.open()
	if ws == nil {
		if reason != "" {
			wc.wm.count(func(st *WSStatus) { st.Failed++ })
			wc.wm.send(wc.s, "ws_error", wsErrorMsg{ConnectionID: wc.id, Reason: reason})
		}
		return
	}
	opened = true
	wc.wm.count(func(st *WSStatus) { st.Open++; st.Opened++ })
	wc.wm.m.WebSockets(1)
	wc.log.Debug("backend WebSocket open", slog.String("protocol", ws.Subprotocol()))
	wc.observeOpen(ws.Subprotocol())
	if err := wc.s.ch.Send(wc.hard, "ws_connected", wsConnectedMsg{ConnectionID: wc.id, Protocol: ws.Subprotocol()}); err != nil {
		wc.end(&wsEnd{code: websocketGoingAway, reason: "Telephone disconnected"})
	}
	var reader sync.WaitGroup
	reader.Go(func() { wc.read(ws) })
	e := wc.pump(ws)
	if e.gone {
		_ = ws.CloseNow()
	} else {
		_ = ws.Close(websocket.StatusCode(e.code), e.reason)
	}
	wc.cut()
	reader.Wait()
	wc.notify(e)
	wc.observeEnd(e)
}

// open dials the backend WebSocket; reason is empty when nobody needs to hear of a failure
// (the connection was closed or abandoned meanwhile).
func (wc *wsConn) open() (*websocket.Conn, string) {
	ws, pipe, reason := wc.wm.dialBackend(wc.soft, wc.t, wc.raw, wc.lim, wc.log)
	wc.mu.Lock()
	wc.pipe = pipe
	ending := wc.ending
	wc.mu.Unlock()
	if ws != nil && ending != nil {
		_ = ws.CloseNow() // closed while the handshake ran
		return nil, ""
	}
	return ws, reason
}

// cleanup cuts what is left and joins the in-process handler, if any.
func (wc *wsConn) cleanup() {
	wc.mu.Lock()
	if wc.cutter != nil {
		wc.cutter.Stop()
	}
	pipe := wc.pipe
	wc.mu.Unlock()
	wc.stop()
	wc.cut()
	if pipe != nil && !pipe.Stop(wc.lim.grace) {
		wc.log.Warn("in-process WebSocket handler did not return after its connection closed")
	}
}

// notify tells Plugboard how the backend side ended, after the reader has stopped, so that
// nothing follows it.
func (wc *wsConn) notify(e *wsEnd) {
	switch e.event {
	case "ws_closed":
		wc.log.Debug("backend WebSocket closed", slog.Int("code", e.code), slog.String("reason", e.reason))
		wc.wm.send(wc.s, "ws_closed", wsClosedMsg{ConnectionID: wc.id, Code: e.code, Reason: e.reason})
	case "ws_error":
		wc.log.Debug("backend WebSocket failed", slog.String("reason", e.errMsg))
		wc.wm.send(wc.s, "ws_error", wsErrorMsg{ConnectionID: wc.id, Reason: e.errMsg})
	}
}

// pump writes queued frames to the backend in order until the connection ends, then writes
// what is still queued (unless dropped; bounded by the cut) and returns the end.
func (wc *wsConn) pump(ws *websocket.Conn) *wsEnd {
	idle := time.NewTimer(wc.lim.idle)
	defer idle.Stop()
	for {
		select {
		case <-wc.wake:
			wc.flush(ws)
		case err := <-wc.readerDone():
			wc.rerr, wc.rgot = err, true
			wc.end(backendEnd(err))
		case <-wc.s.sock.Done():
			wc.end(&wsEnd{code: websocketGoingAway, reason: "Telephone disconnected"})
		case <-idle.C:
			if left := wc.lim.idle - wc.idleFor(); left > 0 {
				idle.Reset(left)
				continue
			}
			wc.idleTimeout()
		case <-wc.soft.Done():
			if e := wc.finalEnd(); !e.gone {
				wc.flush(ws)
			}
			return wc.finalEnd()
		}
	}
}

// readerDone is the channel of the reader's final error, or nil once it was received.
func (wc *wsConn) readerDone() <-chan error {
	if wc.rgot {
		return nil
	}
	return wc.readDone
}

func (wc *wsConn) idleTimeout() {
	if wc.end(closedEnd(websocketGoingAway, "Idle timeout")) {
		wc.wm.count(func(st *WSStatus) { st.IdleClosed++ })
		wc.log.Info("WebSocket idle; closing", slog.Duration("idle", wc.lim.idle))
	}
}

// flush writes the queued frames. After a failed write it waits for the reader's verdict
// (a close frame, or the error that broke the connection), cutting the connection after the
// grace period if none comes.
func (wc *wsConn) flush(ws *websocket.Conn) {
	for {
		f, ok := wc.next()
		if !ok {
			return
		}
		err := ws.Write(wc.hard, f.typ, f.data)
		wc.written(len(f.data))
		if err != nil {
			wc.mu.Lock()
			wc.armCutLocked()
			wc.mu.Unlock()
			if !wc.rgot {
				wc.rerr, wc.rgot = <-wc.readDone, true
			}
			wc.end(backendEnd(wc.rerr))
			return
		}
		wc.counted(true, len(f.data)) // sent to the backend, not only queued
	}
}

// read forwards backend messages to Plugboard in order until the connection fails or is
// closed. A full Plugboard socket blocks it, which stops reading from the backend.
func (wc *wsConn) read(ws *websocket.Conn) {
	for {
		typ, data, err := ws.Read(wc.hard)
		if err != nil {
			wc.readDone <- err
			return
		}
		wc.touch()
		if wc.finalEnd() != nil {
			continue // Plugboard has been or will be told the connection is over
		}
		op := "binary"
		if typ == websocket.MessageText {
			op = "text"
		}
		if data == nil {
			data = []byte{} // "data":"" rather than null
		}
		wc.counted(false, len(data))
		if err := wc.s.ch.Send(wc.hard, "ws_frame", wsFrameMsg{ConnectionID: wc.id, Opcode: op, Data: data}); err != nil {
			wc.log.Debug("ws_frame not sent", slog.Any("error", err))
		}
	}
}
