package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"unicode/utf8"

	"github.com/coder/websocket"
)

// maxCloseReason is the longest close reason a close frame can carry
// (125-byte control payload minus the 2-byte code).
const maxCloseReason = 123

// Conn is an open WebSocket to Plugboard. It has the message-connection
// shape the phoenix package expects (Read, Write, Close with basic types)
// without importing it.
//
// One goroutine may Read at a time; Write and Close may be called
// concurrently with each other and with Read. A Read or Write whose context
// is already done returns the context's error without touching the
// connection; otherwise, as in the underlying github.com/coder/websocket,
// any failed Read or Write, including one whose context ends while it waits,
// closes the connection. The owner must call Close (or CloseNow) once it is
// done, even after an error.
type Conn struct {
	ws    *websocket.Conn
	url   string // redacted socket URL
	limit int64  // read limit in force, -1 when disabled
	cork  *corkConn
}

// RedactedURL returns the URL this connection was dialled with, token
// redacted, for logs.
func (c *Conn) RedactedURL() string { return c.url }

// Read blocks until the next text or binary message arrives and returns it;
// binary reports the message type. Ping, pong and close frames are handled
// internally.
//
// When the peer sent a close frame, the error wraps a *CloseError carrying
// its code and reason (use CloseCode, e.g. 1012 when the server restarts).
// A message larger than the read limit gives an error wrapping
// ErrMessageTooBig, after which the connection is closed with code 1009.
func (c *Conn) Read(ctx context.Context) (binary bool, data []byte, err error) {
	if err := ctx.Err(); err != nil {
		return false, nil, fmt.Errorf("transport: read: %w", err)
	}
	typ, data, err := c.ws.Read(ctx)
	if err != nil {
		return false, nil, c.readError(err)
	}
	return typ == websocket.MessageBinary, data, nil
}

// readError maps the library's read errors to this package's.
func (c *Conn) readError(err error) error {
	var ce websocket.CloseError
	switch {
	case errors.As(err, &ce):
		return fmt.Errorf("transport: read: %w", &CloseError{Code: int(ce.Code), Reason: ce.Reason})
	case errors.Is(err, websocket.ErrMessageTooBig):
		return fmt.Errorf("transport: read: %w (limit %d bytes): %w", ErrMessageTooBig, c.limit, err)
	default:
		return fmt.Errorf("transport: read: %w", err)
	}
}

// Write sends data as one binary (binary true) or text message. It is safe
// to call from several goroutines; messages are not interleaved.
func (c *Conn) Write(ctx context.Context, binary bool, data []byte) error {
	typ := websocket.MessageText
	if binary {
		typ = websocket.MessageBinary
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("transport: write: %w", err)
	}
	if err := c.ws.Write(ctx, typ, data); err != nil {
		return fmt.Errorf("transport: write: %w", err)
	}
	return nil
}

// WriteBatch sends texts as text messages, in order, gathering them into as few
// system calls as it can. Like Write, it is safe to call concurrently; a failure
// or the end of ctx closes the connection.
func (c *Conn) WriteBatch(ctx context.Context, texts [][]byte) error {
	if c.cork == nil {
		for _, t := range texts {
			if err := c.Write(ctx, false, t); err != nil {
				return err
			}
		}
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("transport: write: %w", err)
	}
	// The library bounds each message write by ctx; the final flush is bounded here.
	stop := context.AfterFunc(ctx, func() { _ = c.ws.CloseNow() })
	defer stop()
	c.cork.cork()
	for _, t := range texts {
		if err := c.ws.Write(ctx, websocket.MessageText, t); err != nil {
			_ = c.cork.uncork()
			return fmt.Errorf("transport: write: %w", err)
		}
	}
	if err := c.cork.uncork(); err != nil {
		_ = c.ws.CloseNow()
		return fmt.Errorf("transport: write: %w", err)
	}
	return nil
}

// WriteParts sends parts, in order, as one text message without joining them: each non-empty
// part is one frame of a fragmented message (RFC 6455 §5.4; servers reassemble it, and
// Cowboy applies its max_frame_size to the whole message). It calls written(i) once parts[i]
// has gone to the connection, so that the caller can reuse its memory at once. Like Write,
// it is safe to call concurrently (messages are not interleaved); a failure or the end of
// ctx closes the connection, since a message cut short cannot be taken back.
func (c *Conn) WriteParts(ctx context.Context, parts [][]byte, written func(i int)) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("transport: write: %w", err)
	}
	w, err := c.ws.Writer(ctx, websocket.MessageText)
	if err != nil {
		return fmt.Errorf("transport: write: %w", err)
	}
	for i, p := range parts {
		if len(p) > 0 {
			if _, err := w.Write(p); err != nil {
				_ = c.ws.CloseNow()
				return fmt.Errorf("transport: write: %w", err)
			}
		}
		written(i)
	}
	if err := w.Close(); err != nil {
		_ = c.ws.CloseNow()
		return fmt.Errorf("transport: write: %w", err)
	}
	return nil
}

// Close sends a close frame with code and reason, waits for the peer's
// close frame and releases the connection. A reason longer than 123 bytes is
// truncated.
//
// Against a dead peer Close does not hang: the library bounds the write of
// the close frame and the wait for the answer to 5 s each. A code that cannot
// be sent in a close frame (such as 1005, 1006 or 1015, or anything outside
// 1000-1014 and 3000-4999) skips the handshake and drops the connection at
// once, like CloseNow.
//
// Close is idempotent: calling it again, or after the peer closed the
// connection, returns nil.
func (c *Conn) Close(code int, reason string) error {
	if !sendableCloseCode(code) {
		return c.CloseNow()
	}
	return closeResult(c.ws.Close(websocket.StatusCode(code), truncateReason(reason)))
}

// CloseNow releases the connection without a close handshake. It is
// idempotent and returns nil when the connection was already closed.
func (c *Conn) CloseNow() error {
	return closeResult(c.ws.CloseNow())
}

// closeResult treats "already closed" as success.
func closeResult(err error) error {
	if err == nil || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return fmt.Errorf("transport: close: %w", err)
}

// sendableCloseCode reports whether code may appear in a close frame
// (RFC 6455 §7.4).
func sendableCloseCode(code int) bool {
	switch {
	case code == 1004 || code == 1005 || code == 1006 || code == 1015:
		return false
	case code >= 1000 && code <= 1014:
		return true
	default:
		return code >= 3000 && code <= 4999
	}
}

// truncateReason shortens reason to at most maxCloseReason bytes without
// splitting a UTF-8 sequence.
func truncateReason(reason string) string {
	if len(reason) <= maxCloseReason {
		return reason
	}
	cut := maxCloseReason
	for cut > 0 && !utf8.RuneStart(reason[cut]) {
		cut--
	}
	return reason[:cut]
}
