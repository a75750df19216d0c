package transport

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// ErrUnauthorized reports that the server refused the WebSocket upgrade with
// HTTP 401 or 403. Plugboard answers 403 whenever it does not accept the
// token, so this is permanent for the token that was used. It is matched by
// errors.Is on the *UpgradeError that Dial returns.
var ErrUnauthorized = errors.New("transport: upgrade refused: unauthorized")

// ErrBadURL reports a Plugboard URL that cannot be dialled: it does not parse,
// has a scheme other than ws, wss, http or https, has no host, carries a
// fragment or has a malformed query. The error text never contains the token.
var ErrBadURL = errors.New("transport: invalid Plugboard URL")

// ErrTLSConfig reports TLS options that cannot be turned into a tls.Config:
// an unreadable or invalid CA bundle, client certificate or key, only one of
// CertFile and KeyFile, or a malformed certificate pin.
var ErrTLSConfig = errors.New("transport: invalid TLS options")

// ErrPinMismatch reports that the server's leaf certificate matched none of
// Options.PinSHA256. It is found with errors.Is in the error returned by Dial.
var ErrPinMismatch = errors.New("transport: server certificate does not match any pinned SHA-256")

// ErrHandshakeTimeout reports that the WebSocket handshake (TCP connect,
// proxy, TLS and HTTP upgrade) did not finish within Options.HandshakeTimeout.
// The error returned by Dial also matches context.DeadlineExceeded.
var ErrHandshakeTimeout = errors.New("transport: handshake timed out")

// ErrMessageTooBig reports that the peer sent a message larger than
// Options.ReadLimit. The connection is closed with code 1009 when it happens.
var ErrMessageTooBig = errors.New("transport: inbound message exceeds the read limit")

// UpgradeError is returned by Dial when the server answered the upgrade
// request with an HTTP status other than 101 Switching Protocols. Network
// failures (refused connection, DNS, timeouts, TLS) are never UpgradeErrors.
type UpgradeError struct {
	// StatusCode is the HTTP status the server answered with.
	StatusCode int
	// URL is the dialled URL with the token redacted.
	URL string
	// Err is the underlying error from the WebSocket library, with the token
	// redacted from its text.
	Err error

	// Location is the redirect target (token redacted) when the server
	// answered with a 3xx status. Dial does not follow redirects: the token
	// would travel to wherever the redirect points.
	Location string
	// RetryAfter is the server's Retry-After delay when it sent one in
	// delta-seconds form (typically with 429 or 503), otherwise 0.
	RetryAfter time.Duration
}

// Error describes the refusal; it contains the redacted URL, never the token.
func (e *UpgradeError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "transport: upgrade of %s refused: HTTP %d", e.URL, e.StatusCode)
	if text := http.StatusText(e.StatusCode); text != "" {
		b.WriteString(" " + text)
	}
	switch {
	case e.Permanent():
		b.WriteString(" (token refused)")
	case e.Location != "":
		fmt.Fprintf(&b, " (redirected to %s; dial that URL instead)", e.Location)
	case e.StatusCode == http.StatusNotFound:
		b.WriteString(" (no WebSocket endpoint at this path: Plugboard's telephone socket is at /telephone/websocket, e.g. wss://plugboard.example.com/telephone/websocket)")
	}
	return b.String()
}

// Unwrap returns the underlying library error.
func (e *UpgradeError) Unwrap() error { return e.Err }

// Is reports whether target is ErrUnauthorized and the status is 401 or 403.
func (e *UpgradeError) Is(target error) bool {
	return target == ErrUnauthorized && e.Permanent()
}

// Permanent reports whether retrying with the same token cannot succeed:
// true for 401 and 403.
func (e *UpgradeError) Permanent() bool {
	return e.StatusCode == http.StatusUnauthorized || e.StatusCode == http.StatusForbidden
}

// DialError is returned by Dial for every failure that is not an
// *UpgradeError and happens after the options were validated: refused
// connections, DNS failures, proxy and TLS failures, handshake timeouts and
// protocol violations in a 101 response. It is never permanent.
type DialError struct {
	// URL is the dialled URL with the token redacted.
	URL string
	// Err is the cause, with the token redacted from its text. errors.Is and
	// errors.As see through it (net.OpError, *net.DNSError,
	// context.DeadlineExceeded, ErrHandshakeTimeout, ErrPinMismatch, ...).
	Err error
}

// Error describes the failure; it contains the redacted URL, never the token.
func (e *DialError) Error() string {
	return fmt.Sprintf("transport: dial %s: %v", e.URL, e.Err)
}

// Unwrap returns the cause.
func (e *DialError) Unwrap() error { return e.Err }

// Permanent always returns false: network failures are worth retrying.
func (e *DialError) Permanent() bool { return false }

// IsPermanent reports whether err, or an error it wraps, has a
// Permanent() bool method that returns true (an *UpgradeError for 401/403).
func IsPermanent(err error) bool {
	var p interface{ Permanent() bool }
	return errors.As(err, &p) && p.Permanent()
}

// CloseError is returned (wrapped) by Conn.Read when the peer sent a close
// frame. Code is the WebSocket close code, e.g. 1000 for a normal closure or
// 1012 when the server restarts; a close frame without a code reports 1005.
type CloseError struct {
	Code   int
	Reason string
}

// Error describes the close frame.
func (e *CloseError) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("transport: peer closed the connection with code %d", e.Code)
	}
	return fmt.Sprintf("transport: peer closed the connection with code %d (%q)", e.Code, e.Reason)
}

// CloseCode returns the close code carried by err (found with errors.As on
// *CloseError), or -1 when err is nil or did not come from a close frame.
func CloseCode(err error) int {
	var ce *CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return -1
}

// scrubbedError carries an error text from which secrets were removed. Its
// cause is the deepest part of the original chain whose own text is clean,
// so that errors.Is/As keep working without exposing the secret.
type scrubbedError struct {
	msg   string
	cause error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.cause }

// scrub returns err with every occurrence of the given secrets (and their
// query-escaped forms) removed from its text. A *url.Error in the chain gets
// its URL redacted in place (it belongs to this dial only). Clean errors are
// returned unchanged.
func scrub(err error, secrets []string) error {
	if err == nil {
		return nil
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		ue.URL = Redact(ue.URL)
	}
	msg := err.Error()
	clean := scrubString(msg, secrets)
	if clean == msg {
		return err
	}
	cause := errors.Unwrap(err)
	for cause != nil && scrubString(cause.Error(), secrets) != cause.Error() {
		cause = errors.Unwrap(cause)
	}
	return &scrubbedError{msg: clean, cause: cause}
}

// scrubString replaces each non-empty secret, escaped forms first, with
// "REDACTED".
func scrubString(s string, secrets []string) string {
	for _, sec := range secrets {
		if sec == "" {
			continue
		}
		for _, form := range []string{url.QueryEscape(sec), url.PathEscape(sec), sec} {
			s = strings.ReplaceAll(s, form, redacted)
		}
	}
	return s
}
