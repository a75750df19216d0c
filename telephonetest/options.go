package telephonetest

import (
	"io"
	"log/slog"
	"time"
)

// Defaults of the server's configuration. They match Plugboard's own defaults
// (docs/PROTOCOL.md) unless stated otherwise.
const (
	DefaultTokenLifetime    = 3600 * time.Second // TELEPHONE_TOKEN_EXPIRY
	DefaultHeartbeatTimeout = 60 * time.Second   // TELEPHONE_HEARTBEAT_TIMEOUT_MS
	DefaultRequestTimeout   = 60 * time.Second   // paths.request_timeout_ms
	DefaultWSConnectTimeout = 5 * time.Second    // WEBSOCKET_CONNECT_TIMEOUT_MS
	DefaultWSCheckTimeout   = 5 * time.Second    // WEBSOCKET_CHECK_TIMEOUT_MS
	DefaultIdleTimeout      = 60 * time.Second   // Phoenix transport timeout
	// MaxBodySize is the largest request body the HTTP front reads (Plug's
	// default read limit); larger bodies are answered 413.
	MaxBodySize = 8_000_000
)

// Option configures a Server. Options are applied in order by NewServer and
// Serve; a later option overrides an earlier one.
type Option func(*config)

// config is the validated configuration of a Server. It is never modified after
// NewServer or Serve returns.
type config struct {
	secret           string
	tokenLifetime    time.Duration
	heartbeatTimeout time.Duration
	requestTimeout   time.Duration
	wsConnectTimeout time.Duration
	wsCheckTimeout   time.Duration
	idleTimeout      time.Duration
	closeGrace       time.Duration
	refreshPush      bool
	lenientJoinRef   bool
	wsCheck          bool
	record           bool
	logger           *slog.Logger
}

func defaultConfig() config {
	return config{
		tokenLifetime:    DefaultTokenLifetime,
		heartbeatTimeout: DefaultHeartbeatTimeout,
		requestTimeout:   DefaultRequestTimeout,
		wsConnectTimeout: DefaultWSConnectTimeout,
		wsCheckTimeout:   DefaultWSCheckTimeout,
		idleTimeout:      DefaultIdleTimeout,
		closeGrace:       time.Second,
		logger:           slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

// setDuration stores d in dst when d is positive; a zero or negative duration
// keeps the default.
func setDuration(dst *time.Duration, d time.Duration) {
	if d > 0 {
		*dst = d
	}
}

// WithSecret sets the server's secret_key_base, from which the HS256 token
// signing key is derived exactly as Plugboard does (plugtoken.DeriveKey). The
// default is a random 64-byte secret; an empty string keeps the default.
// Plugboard requires at least 64 bytes; telephonetest accepts any non-empty
// secret so that tests can use short ones.
func WithSecret(secretKeyBase string) Option {
	return func(c *config) {
		if secretKeyBase != "" {
			c.secret = secretKeyBase
		}
	}
}

// WithTokenLifetime sets the lifetime of minted and refreshed tokens, which is
// also the expires_in value of the join and refresh replies. The default is
// 3600 s; it is reported in whole seconds. A non-positive d keeps the default.
func WithTokenLifetime(d time.Duration) Option {
	return func(c *config) { setDuration(&c.tokenLifetime, d) }
}

// WithHeartbeatTimeout sets the application-level heartbeat timeout of the
// telephone channel (docs/PROTOCOL.md §3.6): a joined channel that receives no
// "heartbeat" event for longer than d dies with phx_error. It is checked every
// d/2 from the join, so the channel dies between d and 1.5·d after the last
// heartbeat. The default is 60 s; a non-positive d keeps the default.
func WithHeartbeatTimeout(d time.Duration) Option {
	return func(c *config) { setDuration(&c.heartbeatTimeout, d) }
}

// WithRequestTimeout sets how long an HTTP caller of /call/<path_id>/... waits
// for the telephone's proxy_res before it gets 504. The default is 60 s; a
// non-positive d keeps the default.
func WithRequestTimeout(d time.Duration) Option {
	return func(c *config) { setDuration(&c.requestTimeout, d) }
}

// WithWSConnectTimeout sets how long a proxied WebSocket waits for the
// telephone's ws_connected before the client is closed with 1014 and the
// telephone receives ws_close {code:1014, reason:"Connect timeout"}. The default
// is 5 s; a non-positive d keeps the default.
func WithWSConnectTimeout(d time.Duration) Option {
	return func(c *config) { setDuration(&c.wsConnectTimeout, d) }
}

// WithWSCheckTimeout sets how long the ws_check pre-check (see WithWSCheck)
// waits for ws_check_result before the client's upgrade is answered 504. The
// default is 5 s; a non-positive d keeps the default.
func WithWSCheckTimeout(d time.Duration) Option {
	return func(c *config) { setDuration(&c.wsCheckTimeout, d) }
}

// WithIdleTimeout sets the Phoenix transport idle timeout: a telephone socket
// that receives no frame for d is closed with close code 1002, as observed with
// Bandit. Only inbound frames reset it (under Bandit server pushes reset it too).
// The default is 60 s; a non-positive d keeps the default.
func WithIdleTimeout(d time.Duration) Option {
	return func(c *config) { setDuration(&c.idleTimeout, d) }
}

// WithRefreshPushForm makes refresh_token behave like older Plugboard servers:
// on success the new token is pushed as a refresh_token_ack event and no
// phx_reply is sent (docs/PROTOCOL.md §3.7). Errors are still replies.
func WithRefreshPushForm() Option {
	return func(c *config) { c.refreshPush = true }
}

// WithLenientJoinRef makes the socket behave like Phoenix 1.8.2 and older: a
// message on a joined topic reaches the channel whatever its join_ref. By
// default the server is strict like Phoenix 1.8.3+ and silently drops a message
// whose join_ref (null included) differs from the channel's current join_ref
// (docs/PROTOCOL.md §2.7).
func WithLenientJoinRef() Option {
	return func(c *config) { c.lenientJoinRef = true }
}

// WithWSCheck enables the ws_check pre-check of newer Plugboard versions: before
// a proxied WebSocket is upgraded, the telephone receives ws_check and must
// answer ws_check_result (docs/PROTOCOL.md §5.1). Without it, the channel
// has no ws_check_result handler and that event crashes the channel, as on the
// newest channel version seen.
func WithWSCheck() Option {
	return func(c *config) { c.wsCheck = true }
}

// WithRecorder records every frame of every telephone socket (not of proxied
// WebSocket clients); Server.Frames returns them.
func WithRecorder() Option {
	return func(c *config) { c.record = true }
}

// WithLogger sets the logger. A nil logger keeps the default, which discards
// everything.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l != nil {
			c.logger = l
		}
	}
}
