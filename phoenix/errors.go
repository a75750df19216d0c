package phoenix

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Sentinel errors. Match them with errors.Is; the messages are not part of the API.
var (
	// ErrMalformed is wrapped by every decode error (DecodeText, DecodeBinary,
	// DecodeBinaryPush, DecodeReply).
	ErrMalformed = errors.New("phoenix: malformed frame")

	// ErrTimeout is returned by Join, Push and Leave when no reply arrived before the
	// push timeout or the context deadline, whichever came first.
	ErrTimeout = errors.New("phoenix: timed out waiting for reply")

	// ErrHeartbeatTimeout is the Socket's Err when the reply to a phoenix heartbeat
	// had not arrived when the next heartbeat was due; the socket is then closed.
	ErrHeartbeatTimeout = errors.New("phoenix: heartbeat timeout")

	// ErrClosed is the Socket's Err after Close, and is wrapped (together with the
	// cause) by every call that fails because the socket stopped.
	ErrClosed = errors.New("phoenix: socket closed")

	// ErrChannelClosed is returned by Push and Send on a Channel that is not joined.
	ErrChannelClosed = errors.New("phoenix: channel not joined")

	// ErrInvalidPayload is returned by EncodeText and AppendText when the payload is
	// not valid JSON (sending it would make the server drop the whole connection).
	ErrInvalidPayload = errors.New("phoenix: payload is not valid JSON")
)

// malformed returns an error wrapping ErrMalformed with a short description.
func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// ReplyError is returned by Join, Push and Leave when the server replied with a
// status other than "ok". Response is the reply's raw "response" value.
type ReplyError struct {
	Status   string
	Response json.RawMessage
}

// maxErrorResponse bounds how much of a raw response Error includes.
const maxErrorResponse = 128

// Error describes the status and the reason (or, without a reason, the start of
// the raw response).
func (e *ReplyError) Error() string {
	msg := fmt.Sprintf("phoenix: reply status %q", e.Status)
	if r := e.Reason(); r != "" {
		return msg + ": " + r
	}
	if len(e.Response) == 0 {
		return msg
	}
	resp := e.Response
	if len(resp) > maxErrorResponse {
		return msg + ": " + string(resp[:maxErrorResponse]) + "..."
	}
	return msg + ": " + string(resp)
}

// Reason returns response.reason when the response is an object whose "reason" is a
// string (Phoenix and Plugboard use it, e.g. "unmatched topic"), else "".
func (e *ReplyError) Reason() string {
	var r struct {
		Reason any `json:"reason"`
	}
	if json.Unmarshal(e.Response, &r) != nil {
		return ""
	}
	s, _ := r.Reason.(string)
	return s
}
