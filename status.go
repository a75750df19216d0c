package telephone

import "time"

// Status is a snapshot of a Client's state, for health checks, metrics and logs.
type Status struct {
	Connected bool   // a WebSocket to Plugboard is up (any session's)
	Joined    bool   // a telephone channel is joined (any session's): requests can arrive
	Draining  bool   // Shutdown has begun: new requests get 503
	PathID    string // the path id from the token
	Path      string // the mount path from the join reply, e.g. "/api"

	TokenID         string    // jti of the token in use
	TokenExpiry     time.Time // exp of the token in use
	TokenRevoked    bool      // Plugboard answered a refresh with :token_revoked; refreshing stopped
	LastRefresh     time.Time // last successful token refresh
	RefreshFailures int       // consecutive failed refresh attempts

	InFlight    int       // requests being forwarded now
	LastAck     time.Time // last heartbeat_ack from Plugboard
	Reconnects  int       // reconnect attempts since Run started, all sessions together
	ConnectedAt time.Time // when the reported session (see Sessions) joined
	LastError   string    // the last error that ended a session or a request path
	LastErrorAt time.Time

	Sessions  []SessionStatus // one per WithConnections slot, in slot order
	Limits    LimitStatus     // the protection layer's counters
	WebSocket WSStatus        // proxied WebSocket connections
}

// SessionStatus reports one session slot (WithConnections): each slot holds one WebSocket to
// Plugboard at a time and reconnects on its own.
type SessionStatus struct {
	ID          int       // the slot's index, 0 to WithConnections-1; stable across reconnects
	State       string    // SessionConnecting, SessionJoined, SessionRejoining, SessionLeaving or SessionDown
	JoinedSince time.Time // when the channel joined; zero unless State is SessionJoined
	Reconnects  int       // reconnect attempts of this slot since Run started
	LastError   string    // the last error that ended or failed a session of this slot
	LastErrorAt time.Time
	InFlight    int // requests received on this session and not yet answered
}

// LimitStatus reports the protection layer: configured limits and rejection counters.
type LimitStatus struct {
	MaxConcurrent   int     // concurrent forwarded requests allowed
	RateLimit       float64 // requests per second (+Inf when off)
	RateBurst       int
	Queued          int    // requests waiting for a concurrency slot now
	Tracked         int    // request ids remembered (bounded; swept by TTL)
	RejectedRate    uint64 // 429s sent
	RejectedBusy    uint64 // 503s sent because the concurrency limit was reached
	RejectedSize    uint64 // 413s and oversize 502s sent
	RejectedBreaker uint64 // 503s sent because the circuit was open
	Duplicates      uint64 // proxy_req ignored because its request_id was already in progress
	Retries         uint64 // backend attempts repeated after a connection error
	Breaker         string // "closed", "open", "half-open" or "disabled"
}

// WSStatus reports proxied WebSocket connections and their limits (WithWebSocketLimits).
type WSStatus struct {
	Open        int           // backend WebSockets open now
	Max         int           // concurrent connections allowed (handshaking and closing ones count)
	MaxFrame    int64         // largest frame in bytes, either way
	QueueBytes  int64         // per-connection queue of frames waiting for the backend, in bytes
	IdleTimeout time.Duration // a connection without frames either way for this long is closed

	Opened     uint64 // backend WebSockets opened since New
	Rejected   uint64 // ws_connect refused by the telephone: limit reached, duplicate id, invalid path, shutting down
	Failed     uint64 // backend handshakes that failed (ws_error sent)
	Overflow   uint64 // connections closed with 1009 because a send queue overflowed
	TooLarge   uint64 // connections closed with 1009 because an inbound frame exceeded MaxFrame
	IdleClosed uint64 // connections closed with 1001 by the idle timeout
	Checks     uint64 // ws_check pre-checks answered
}

// Status returns a snapshot of the Client's state.
func (c *Client) Status() Status {
	c.mu.Lock()
	st := c.st
	c.mu.Unlock()
	c.sessions.fill(&st)
	st.Draining = c.draining()
	st.Limits = c.guard.status()
	st.WebSocket = c.ws.status()
	c.tokens.fill(&st)
	return st
}
