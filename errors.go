package telephone

import (
	"errors"
	"fmt"
)

// Sentinel errors. Match them with errors.Is; the text may change.
var (
	// ErrTokenRefused means Plugboard refused every available token (HTTP 401/403 on the
	// WebSocket upgrade). Run returns an error wrapping it: retrying cannot fix it.
	ErrTokenRefused = errors.New("telephone: every available token was refused by Plugboard")
	// ErrNoToken means neither WithToken nor the TokenStore provided a usable token.
	ErrNoToken = errors.New("telephone: no usable token (set WithToken or store one in the TokenStore)")
	// ErrVendingRefused means Plugboard's token vending API refused the service-account key or
	// the path (see VendingError). Run returns an error wrapping it: retrying cannot fix it.
	ErrVendingRefused = errors.New("telephone: token vending refused")
	// ErrInvalidToken means a token failed local checks (shape, signature, expiry).
	ErrInvalidToken = errors.New("telephone: invalid token")
	// ErrTokenRevoked means Plugboard answered a refresh with :token_revoked; refreshing stops.
	ErrTokenRevoked = errors.New("telephone: token revoked by Plugboard")
	// ErrAlreadyRunning is returned by Run when the Client is already running.
	ErrAlreadyRunning = errors.New("telephone: client is already running")
	// ErrClientClosed is returned by Run when the Client has already run and been shut down
	// (a Client is not reused). A Shutdown before the first Run makes that Run return nil.
	ErrClientClosed = errors.New("telephone: client has been shut down")
	// ErrHeartbeatTimeout means Plugboard stopped acknowledging the app-level heartbeat, so
	// the session was declared dead and reconnected.
	ErrHeartbeatTimeout = errors.New("telephone: heartbeat_ack not received")
)

// OptionError reports an invalid option passed to New. Option names the With* function.
type OptionError struct {
	Option string
	Reason string
}

// Error names the option and what is wrong with it.
func (e *OptionError) Error() string {
	return fmt.Sprintf("telephone: invalid option %s: %s", e.Option, e.Reason)
}

func optErr(option, format string, args ...any) error {
	return &OptionError{Option: option, Reason: fmt.Sprintf(format, args...)}
}
