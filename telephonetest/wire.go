package telephonetest

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/coder/websocket"
)

// wireConn is the part of *websocket.Conn the server uses. Tests substitute an
// in-memory implementation to run socket logic inside a synctest bubble.
type wireConn interface {
	Read(ctx context.Context) (websocket.MessageType, []byte, error)
	Write(ctx context.Context, typ websocket.MessageType, p []byte) error
	Close(code websocket.StatusCode, reason string) error
	CloseNow() error
}

// hijackRecorder wraps a ResponseWriter so that the net.Conn handed out by
// Hijack is remembered: closing it directly bounds a close handshake that the
// peer never completes.
type hijackRecorder struct {
	http.ResponseWriter
	conn net.Conn
}

// Hijack implements http.Hijacker.
func (h *hijackRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := h.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("telephonetest: response writer cannot hijack")
	}
	c, rw, err := hj.Hijack()
	if err == nil {
		h.conn = c
	}
	return c, rw, err
}

// accept upgrades the request and returns the connection with the raw net.Conn
// underneath it (nil when the writer hid it).
func accept(w http.ResponseWriter, r *http.Request, opts *websocket.AcceptOptions) (*websocket.Conn, net.Conn, error) {
	hr := &hijackRecorder{ResponseWriter: w}
	c, err := websocket.Accept(hr, r, opts)
	if err != nil {
		return nil, nil, err
	}
	return c, hr.conn, nil
}

// closeWithin closes c with a close frame and waits at most grace for the
// close handshake; after that the TCP connection is cut. It returns when the
// connection is closed. The helper goroutine it starts is joined before it
// returns.
func closeWithin(c wireConn, raw net.Conn, code websocket.StatusCode, reason string, grace time.Duration) {
	if !validCloseCode(code) {
		code = websocket.StatusNormalClosure
	}
	reason = trimReason(reason)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = c.Close(code, reason)
	}()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		if raw != nil {
			_ = raw.Close()
		}
		_ = c.CloseNow()
		<-done
	}
}

// validCloseCode reports whether code may appear in a close frame (RFC 6455
// §7.4): 1000-1014 except 1004-1006, and 3000-4999.
func validCloseCode(code websocket.StatusCode) bool {
	switch {
	case code >= 1000 && code <= 1014:
		return code != 1004 && code != 1005 && code != 1006
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}
