package telephone

import (
	"crypto/tls"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
)

// Option configures a Client. Options are applied in order by New, which validates the
// result and returns an *OptionError naming the first invalid option.
type Option func(*options) error

// Defaults. Every limit is on by default; the README's "Limits" section explains them.
const (
	DefaultHeartbeatInterval  = 30 * time.Second // app-level heartbeat (Plugboard drops a channel after ~60 s without one)
	DefaultHeartbeatMisses    = 2                // consecutive beats without heartbeat_ack before the session is declared dead
	DefaultPhoenixHeartbeat   = 30 * time.Second // phoenix-topic heartbeat, as the official JS client
	DefaultConnectTimeout     = 10 * time.Second // WebSocket handshake, and separately the join reply
	DefaultBackoffInitial     = time.Second
	DefaultBackoffMax         = 30 * time.Second
	DefaultStableAfter        = time.Minute
	DefaultRequestTimeout     = 30 * time.Second // answered with 504 before Plugboard's own 60 s timeout
	DefaultMaxResponseSize    = 32 << 20
	DefaultChunkSize          = 1 << 20
	DefaultMaxRequestBody     = 8_000_000 // Plugboard's own request body limit
	DefaultMaxConcurrent      = 1024
	DefaultQueueWait          = time.Second
	DefaultMemoryBudget       = 256 << 20 // body bytes in flight (requests and responses being built)
	DefaultRateBurst          = 2000      // the CLI's RATE_BURST when RATE_LIMIT is set; no rate limit by default
	DefaultBreakerFailures    = 10
	DefaultBreakerOpenFor     = 10 * time.Second
	DefaultRetries            = 2
	DefaultRetryBackoff       = 50 * time.Millisecond
	DefaultMaxWebSockets      = 1024
	DefaultConnections        = 2  // sessions (WebSockets) per Client
	MaxConnections            = 16 // the most WithConnections accepts
	DefaultMaxWebSocketFrame  = 1 << 20
	DefaultWebSocketIdle      = 5 * time.Minute
	DefaultWebSocketQueue     = 4 << 20
	DefaultWebSocketHandshake = 4 * time.Second // below Plugboard's 5 s WEBSOCKET_CONNECT_TIMEOUT_MS
	DefaultTokenSkew          = 5 * time.Minute
)

// UTF8Policy says what the Client does with a backend response body that is not valid UTF-8.
// Plugboard carries bodies as JSON strings, so such a body cannot cross unchanged.
type UTF8Policy int

const (
	// UTF8Reject answers 502 with a reason that says the body is not valid UTF-8 (default).
	UTF8Reject UTF8Policy = iota
	// UTF8Replace replaces every invalid byte sequence with U+FFFD and sends the result.
	UTF8Replace
)

type options struct {
	token           string
	emptyToken      bool // WithToken("") was given: an error unless a store can supply a token
	store           TokenStore
	handler         http.Handler
	backendURL      *url.URL
	backend         http.RoundTripper
	logger          *slog.Logger
	tlsConfig       *tls.Config
	proxy           func(*http.Request) (*url.URL, error)
	plugboardSecret string
	tokenSkew       time.Duration
	vending         *TokenVending // WithTokenVending (vending.go)
	clientIPHeader  string        // "" trusts no header: the client address is Plugboard's
	clientIPHops    int

	heartbeatInterval time.Duration
	heartbeatMisses   int
	phoenixHeartbeat  time.Duration
	connectTimeout    time.Duration
	backoffInitial    time.Duration
	backoffMax        time.Duration
	stableAfter       time.Duration
	connections       int

	requestTimeout  time.Duration
	maxResponseSize int64
	chunkSize       int
	utf8Policy      UTF8Policy
	keepEncoding    bool

	maxRequestBody  int64
	maxConcurrent   int
	queueWait       time.Duration
	memoryBudget    int64 // < 0: none
	rateLimit       float64
	rateBurst       int
	breakerFailures uint32
	breakerOpenFor  time.Duration
	retries         int
	retryBackoff    time.Duration

	maxWebSockets      int
	maxWebSocketFrame  int64
	webSocketIdle      time.Duration
	webSocketQueue     int64
	webSocketHandshake time.Duration

	metrics prometheus.Registerer

	observer       Observer             // WithObserver; nil: none
	tracerProvider trace.TracerProvider // WithTracerProvider; nil: no tracing
	tracer         trace.Tracer         // from tracerProvider
}

func defaultOptions() options {
	return options{
		tokenSkew:          DefaultTokenSkew,
		heartbeatInterval:  DefaultHeartbeatInterval,
		heartbeatMisses:    DefaultHeartbeatMisses,
		phoenixHeartbeat:   DefaultPhoenixHeartbeat,
		connectTimeout:     DefaultConnectTimeout,
		backoffInitial:     DefaultBackoffInitial,
		backoffMax:         DefaultBackoffMax,
		stableAfter:        DefaultStableAfter,
		connections:        DefaultConnections,
		requestTimeout:     DefaultRequestTimeout,
		maxResponseSize:    DefaultMaxResponseSize,
		chunkSize:          DefaultChunkSize,
		maxRequestBody:     DefaultMaxRequestBody,
		maxConcurrent:      DefaultMaxConcurrent,
		queueWait:          DefaultQueueWait,
		memoryBudget:       DefaultMemoryBudget,
		rateLimit:          math.Inf(1), // no rate limit by default, as in the original sidecar
		rateBurst:          DefaultRateBurst,
		breakerFailures:    DefaultBreakerFailures,
		breakerOpenFor:     DefaultBreakerOpenFor,
		retries:            DefaultRetries,
		retryBackoff:       DefaultRetryBackoff,
		maxWebSockets:      DefaultMaxWebSockets,
		maxWebSocketFrame:  DefaultMaxWebSocketFrame,
		webSocketIdle:      DefaultWebSocketIdle,
		webSocketQueue:     DefaultWebSocketQueue,
		webSocketHandshake: DefaultWebSocketHandshake,
	}
}

// WithToken sets the Plugboard token (a JWT). At start-up the Client uses the newest valid
// token by iat among this one and the TokenStore's, and stores this one too. An empty token
// means none is configured: together with WithTokenStore the stored token is used (so
// WithToken(os.Getenv("TELEPHONE_TOKEN")) works when the variable is unset), and Run returns
// ErrNoToken if the store has none; without a store, New returns an *OptionError.
func WithToken(token string) Option {
	return func(o *options) error {
		o.token, o.emptyToken = token, token == ""
		return nil
	}
}

// WithTokenStore sets where tokens are persisted (default: in memory). Every refreshed token is
// saved at once, so a restarted Client resumes with it.
func WithTokenStore(s TokenStore) Option {
	return func(o *options) error {
		if s == nil {
			return optErr("WithTokenStore", "store is nil")
		}
		o.store = s
		return nil
	}
}

// WithHandler serves Plugboard's requests with h inside this process (no TCP hop). It
// excludes WithBackendURL. The handler gets a request whose context carries the deadline and
// whose RemoteAddr is Plugboard's address, never one the end client chose (WithClientIPHeader).
func WithHandler(h http.Handler) Option {
	return func(o *options) error {
		if h == nil {
			return optErr("WithHandler", "handler is nil")
		}
		o.handler = h
		return nil
	}
}

// WithBackendURL forwards requests to a TCP backend through httputil.ReverseProxy, for
// example "http://127.0.0.1:8080". Redirects are passed through, never followed. The URL's
// path, if any, is prefixed to every forwarded path.
func WithBackendURL(raw string) Option {
	return func(o *options) error {
		u, err := url.Parse(raw)
		if err != nil {
			return optErr("WithBackendURL", "%v", err)
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			return optErr("WithBackendURL", "scheme must be http or https, got %q", u.Scheme)
		}
		if u.Host == "" {
			return optErr("WithBackendURL", "URL has no host")
		}
		if u.RawQuery != "" || u.Fragment != "" {
			return optErr("WithBackendURL", "URL must not have a query or fragment")
		}
		o.backendURL = u
		return nil
	}
}

// WithBackend sets the http.RoundTripper used to reach the backend URL. The default does
// each HTTP/1.1 round trip to a plain-HTTP backend on the request's own goroutine over
// kept-alive connections, and uses a tuned clone of http.DefaultTransport (proxy from the
// environment, 90 s idle timeout) for https and proxied backends.
func WithBackend(rt http.RoundTripper) Option {
	return func(o *options) error {
		if rt == nil {
			return optErr("WithBackend", "round tripper is nil")
		}
		o.backend = rt
		return nil
	}
}

// WithLogger sets the structured logger (default: discard). User-controlled strings are
// always passed as attributes, and tokens are never logged.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		if l == nil {
			return optErr("WithLogger", "logger is nil")
		}
		o.logger = l
		return nil
	}
}

// WithTLSConfig sets the TLS configuration for the wss:// connection to Plugboard (cloned).
func WithTLSConfig(c *tls.Config) Option {
	return func(o *options) error {
		if c == nil {
			return optErr("WithTLSConfig", "config is nil")
		}
		o.tlsConfig = c
		return nil
	}
}

// WithProxy sets how the Plugboard connection picks an HTTP proxy (default:
// http.ProxyFromEnvironment, which honours HTTPS_PROXY and NO_PROXY).
func WithProxy(proxy func(*http.Request) (*url.URL, error)) Option {
	return func(o *options) error {
		if proxy == nil {
			return optErr("WithProxy", "proxy func is nil")
		}
		o.proxy = proxy
		return nil
	}
}

// WithPlugboardSecret sets Plugboard's secret_key_base. The Client then verifies every token's
// HS256 signature with Plugboard's key derivation and refuses tokens that fail.
func WithPlugboardSecret(secretKeyBase string) Option {
	return func(o *options) error {
		if len(secretKeyBase) < 64 {
			return optErr("WithPlugboardSecret", "secret_key_base must be at least 64 bytes, got %d", len(secretKeyBase))
		}
		o.plugboardSecret = secretKeyBase
		return nil
	}
}

// WithClockSkew sets how far in the future a token's iat may be (default 5 minutes).
func WithClockSkew(d time.Duration) Option {
	return func(o *options) error {
		if d < 0 || d > time.Hour {
			return optErr("WithClockSkew", "skew must be between 0 and 1h, got %v", d)
		}
		o.tokenSkew = d
		return nil
	}
}

// WithHeartbeat sets the app-level heartbeat interval (default 30 s) and how many consecutive
// beats may go without a heartbeat_ack before the session is declared dead and reconnected
// (default 2).
func WithHeartbeat(interval time.Duration, misses int) Option {
	return func(o *options) error {
		if err := durationIn("WithHeartbeat", interval, 10*time.Millisecond, 10*time.Minute); err != nil {
			return err
		}
		if misses < 1 || misses > 100 {
			return optErr("WithHeartbeat", "misses must be between 1 and 100, got %d", misses)
		}
		o.heartbeatInterval, o.heartbeatMisses = interval, misses
		return nil
	}
}

// WithPhoenixHeartbeat sets the phoenix-topic heartbeat interval (default 30 s); a reply
// missing by the next beat closes the socket as dead.
func WithPhoenixHeartbeat(interval time.Duration) Option {
	return func(o *options) error {
		if err := durationIn("WithPhoenixHeartbeat", interval, 10*time.Millisecond, 10*time.Minute); err != nil {
			return err
		}
		o.phoenixHeartbeat = interval
		return nil
	}
}

// WithConnectTimeout bounds the WebSocket handshake and, separately, the wait for the join
// reply (default 10 s).
func WithConnectTimeout(d time.Duration) Option {
	return func(o *options) error {
		if err := durationIn("WithConnectTimeout", d, 10*time.Millisecond, 5*time.Minute); err != nil {
			return err
		}
		o.connectTimeout = d
		return nil
	}
}

// WithReconnectBackoff sets the reconnect policy: exponential backoff with full jitter from
// initial (default 1 s) up to max (default 30 s), reset once a connection has been up for a
// minute.
func WithReconnectBackoff(initial, max time.Duration) Option {
	return func(o *options) error {
		if err := durationIn("WithReconnectBackoff", initial, time.Millisecond, time.Hour); err != nil {
			return err
		}
		if max < initial || max > 24*time.Hour {
			return optErr("WithReconnectBackoff", "max %v must be between initial %v and 24h", max, initial)
		}
		o.backoffInitial, o.backoffMax = initial, max
		return nil
	}
}

// WithConnections sets how many sessions the Client keeps with Plugboard (default 2, at most
// MaxConnections; 1 is a single socket). Each session is its own WebSocket over its own TCP
// connection, so a load balancer can spread them over Plugboard nodes; each joins the token's
// path, and Plugboard round-robins requests over every joined channel. Each reconnects on its
// own with the jittered backoff, so losing one socket leaves the others serving. All share one
// token.
func WithConnections(n int) Option {
	return func(o *options) error {
		if n < 1 || n > MaxConnections {
			return optErr("WithConnections", "must be between 1 and %d, got %d", MaxConnections, n)
		}
		o.connections = n
		return nil
	}
}

// WithRequestTimeout sets each forwarded request's deadline (default 30 s). Past it the
// backend call is cancelled and the Client answers 504 itself. Keep it below the path's
// Plugboard timeout (60 s by default).
func WithRequestTimeout(d time.Duration) Option {
	return func(o *options) error {
		if err := durationIn("WithRequestTimeout", d, time.Millisecond, 5*time.Minute); err != nil {
			return err
		}
		o.requestTimeout = d
		return nil
	}
}

// WithMaxResponseSize caps a backend response body (default 32 MiB); a larger one is answered
// with 502. The limit is enforced while reading.
func WithMaxResponseSize(n int64) Option {
	return func(o *options) error {
		if n <= 0 {
			return optErr("WithMaxResponseSize", "size must be positive, got %d", n)
		}
		o.maxResponseSize = n
		return nil
	}
}

// WithChunkSize sets the size above which a response is sent as chunks, and the largest chunk
// (default 1 MiB). Chunk boundaries always fall on UTF-8 character boundaries.
func WithChunkSize(n int) Option {
	return func(o *options) error {
		if n < 4 {
			return optErr("WithChunkSize", "chunk size must be at least 4 bytes, got %d", n)
		}
		o.chunkSize = n
		return nil
	}
}

// WithUTF8Policy says what to do with a response body that is not valid UTF-8 (default
// UTF8Reject: a 502 whose reason says so).
func WithUTF8Policy(p UTF8Policy) Option {
	return func(o *options) error {
		if p != UTF8Reject && p != UTF8Replace {
			return optErr("WithUTF8Policy", "unknown policy %d", p)
		}
		o.utf8Policy = p
		return nil
	}
}

// WithAcceptEncodingPassthrough forwards the caller's Accept-Encoding to the backend instead of
// asking for an uncompressed body. Compressed bodies are not valid UTF-8 and cannot cross
// Plugboard, so only use it when the backend never compresses.
func WithAcceptEncodingPassthrough() Option {
	return func(o *options) error {
		o.keepEncoding = true
		return nil
	}
}

// WithMaxRequestBody caps a request body from Plugboard (default 8 000 000 bytes, Plugboard's
// own limit); a larger one is answered with 413.
func WithMaxRequestBody(n int64) Option {
	return func(o *options) error {
		if n <= 0 {
			return optErr("WithMaxRequestBody", "size must be positive, got %d", n)
		}
		o.maxRequestBody = n
		return nil
	}
}

// WithMaxConcurrentRequests caps the requests forwarded at once (default 1024). A request
// over the cap waits up to wait (default 1 s) for a slot, then gets 503.
func WithMaxConcurrentRequests(n int, wait time.Duration) Option {
	return func(o *options) error {
		if n < 1 || n > 1_000_000 {
			return optErr("WithMaxConcurrentRequests", "limit must be between 1 and 1000000, got %d", n)
		}
		if wait < 0 || wait > time.Minute {
			return optErr("WithMaxConcurrentRequests", "wait must be between 0 and 1m, got %v", wait)
		}
		o.maxConcurrent, o.queueWait = n, wait
		return nil
	}
}

// WithMemoryBudget bounds the body bytes in flight at once (default 256 MiB): request bodies
// count from the moment they are taken from the socket, responses while they are built and
// until the socket has written them (their escaped bytes: a response body is held once,
// escaped, and sent from there). A request that cannot get
// its bytes waits up to the queue wait (WithMaxConcurrentRequests), then gets 503 with a
// reason; a request body larger than the whole budget gets 503 at once, a response larger
// than it 502 (like one over WithMaxResponseSize). While a request body waits,
// the socket is not read, so Plugboard's frames queue there rather than in memory here; the
// socket's heartbeat allows for its reply being read late then (phoenix.SocketOptions).
// A negative n removes the budget; 0 keeps the default.
func WithMemoryBudget(n int64) Option {
	return func(o *options) error {
		switch {
		case n == 0:
			o.memoryBudget = DefaultMemoryBudget
		case n > 0 && n < 1<<20:
			return optErr("WithMemoryBudget", "budget must be at least 1 MiB, got %d bytes", n)
		default:
			o.memoryBudget = n
		}
		return nil
	}
}

// WithRateLimit sets a token-bucket rate limit for this Client. By default there is none
// (the concurrency limit and the memory budget still protect the process). Requests over it
// get 429 with Retry-After. math.Inf(1) disables the limit again.
func WithRateLimit(perSecond float64, burst int) Option {
	return func(o *options) error {
		if math.IsNaN(perSecond) || perSecond <= 0 {
			return optErr("WithRateLimit", "rate must be positive, got %v", perSecond)
		}
		if burst < 1 && !math.IsInf(perSecond, 1) {
			return optErr("WithRateLimit", "burst must be at least 1, got %d", burst)
		}
		o.rateLimit, o.rateBurst = perSecond, burst
		return nil
	}
}

// WithCircuitBreaker opens the backend circuit after failures consecutive backend failures
// (default 10) for openFor (default 10 s), answering 503 at once meanwhile; then one probe is
// let through (half-open). failures 0 disables the breaker.
func WithCircuitBreaker(failures uint32, openFor time.Duration) Option {
	return func(o *options) error {
		if failures > 0 {
			if err := durationIn("WithCircuitBreaker", openFor, time.Millisecond, time.Hour); err != nil {
				return err
			}
		}
		o.breakerFailures, o.breakerOpenFor = failures, openFor
		return nil
	}
}

// WithRetries sets how often an idempotent request (GET, HEAD, OPTIONS, PUT, DELETE) is retried
// after a connection error that happened before any response byte (default 2), with
// exponential full-jitter backoff starting at backoff (default 50 ms), within the request
// deadline. 0 disables retries.
func WithRetries(max int, backoff time.Duration) Option {
	return func(o *options) error {
		if max < 0 || max > 10 {
			return optErr("WithRetries", "retries must be between 0 and 10, got %d", max)
		}
		if max > 0 {
			if err := durationIn("WithRetries", backoff, time.Millisecond, time.Minute); err != nil {
				return err
			}
		}
		o.retries, o.retryBackoff = max, backoff
		return nil
	}
}

// WithWebSocketLimits sets the proxied WebSocket limits: concurrent connections (default 1024),
// largest frame in bytes (default 1 MiB), idle timeout (default 5 min) and per-connection send
// queue in bytes (default 4 MiB).
func WithWebSocketLimits(maxConns int, maxFrame int64, idle time.Duration, queueBytes int64) Option {
	return func(o *options) error {
		switch {
		case maxConns < 1:
			return optErr("WithWebSocketLimits", "max connections must be positive, got %d", maxConns)
		case maxFrame < 1:
			return optErr("WithWebSocketLimits", "max frame must be positive, got %d", maxFrame)
		case queueBytes < maxFrame:
			return optErr("WithWebSocketLimits", "queue (%d bytes) must hold at least one frame (%d bytes)", queueBytes, maxFrame)
		}
		if err := durationIn("WithWebSocketLimits", idle, time.Millisecond, 24*time.Hour); err != nil {
			return err
		}
		o.maxWebSockets, o.maxWebSocketFrame, o.webSocketIdle, o.webSocketQueue = maxConns, maxFrame, idle, queueBytes
		return nil
	}
}

// WithWebSocketHandshakeTimeout bounds the backend WebSocket handshake (default 4 s, below
// Plugboard's 5 s connect timeout).
func WithWebSocketHandshakeTimeout(d time.Duration) Option {
	return func(o *options) error {
		if err := durationIn("WithWebSocketHandshakeTimeout", d, time.Millisecond, time.Minute); err != nil {
			return err
		}
		o.webSocketHandshake = d
		return nil
	}
}

// WithMetrics registers the Client's Prometheus metrics (names prefixed telephone_) with reg.
func WithMetrics(reg prometheus.Registerer) Option {
	return func(o *options) error {
		if reg == nil {
			return optErr("WithMetrics", "registerer is nil")
		}
		o.metrics = reg
		return nil
	}
}

func durationIn(option string, d, min, max time.Duration) error {
	if d < min || d > max {
		return optErr(option, "duration must be between %v and %v, got %v", min, max, d)
	}
	return nil
}

func (o *options) validate() error {
	if o.handler != nil && o.backendURL != nil {
		return optErr("WithHandler", "cannot be combined with WithBackendURL")
	}
	if o.handler == nil && o.backendURL == nil {
		return optErr("WithBackendURL", "one of WithBackendURL or WithHandler is required")
	}
	if o.emptyToken && o.store == nil && o.vending == nil {
		return optErr("WithToken", "token is empty and no WithTokenStore or WithTokenVending can supply one")
	}
	if o.backend != nil && o.backendURL == nil {
		return optErr("WithBackend", "needs WithBackendURL")
	}
	if int64(o.chunkSize) > o.maxResponseSize {
		return optErr("WithChunkSize", "chunk size %d exceeds the maximum response size %d", o.chunkSize, o.maxResponseSize)
	}
	return nil
}
