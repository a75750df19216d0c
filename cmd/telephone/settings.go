package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/verastack/telephone"
	"github.com/verastack/telephone/internal/httptoken"
	"github.com/verastack/telephone/internal/plugtoken"
)

// setting is one configuration variable: its environment name, flag, default and parser.
// The table below is the single source of the run configuration; README.md documents it.
type setting struct {
	name string // environment variable
	flag string // command-line flag; "" for secrets, which are read from the environment only
	def  string // default text; "" means unset
	orig bool   // the original sidecar read this variable
	live bool   // SIGHUP applies a change without a restart
	help string
	// set parses v into c; v == "" resets the field to its zero value. The error is the
	// reason only; the caller adds the variable name and source.
	set func(c *Config, v string) error
}

const maxSize = 1 << 30 // largest accepted body or response size (1 GiB)

// settings lists every variable in documentation order.
var settings = []setting{
	{name: "PLUGBOARD_URL", flag: "plugboard-url", orig: true, help: "Plugboard socket URL (ws:// or wss://)", set: setPlugboardURL},
	{name: "TELEPHONE_TOKEN", orig: true, help: "initial token (JWT); the lower-case variable token is a fallback", set: setToken},
	{name: "PLUGBOARD_SECRET_KEY_BASE", help: "Plugboard's secret_key_base: verify token signatures (at least 64 bytes)",
		set: func(c *Config, v string) error { return setSecret(&c.PlugboardSecret, v, 64) }},
	{name: "SECRET_KEY_BASE", orig: true, help: "secret that encrypts the token store (at least 32 bytes)",
		set: func(c *Config, v string) error { return setSecret(&c.SecretKeyBase, v, 32) }},
	{name: "TOKEN_DB_PATH", flag: "token-db-path", orig: true, help: "token store file (default telephone.db when SECRET_KEY_BASE is set)",
		set: func(c *Config, v string) error { c.TokenDBPath = v; return nil }},
	{name: "PLUGBOARD_SERVICE_ACCOUNT_KEY", help: "service-account API key (sa_live_...): each replica vends its own token",
		set: setServiceAccountKey},
	{name: "TELEPHONE_INSTANCE_ID", flag: "instance-id", help: "this replica's name in the tokens it vends (default: the host name)",
		set: func(c *Config, v string) error { c.InstanceID = v; return nil }},
	{name: "PLUGBOARD_PATH_ID", flag: "path-id", help: "path id the service-account key must be bound to (optional)", set: setPathID},
	{name: "PLUGBOARD_API_URL", flag: "api-url", help: "Plugboard's HTTP(S) origin for token vending (default: PLUGBOARD_URL's origin, ws->http, wss->https)",
		set: setAPIURL},
	durSetting("DB_TIMEOUT", "db-timeout", 5*time.Second, true, false, "how long a token store operation waits for a lock", func(c *Config) *time.Duration { return &c.DBTimeout }, 10*time.Millisecond, 5*time.Minute),
	{name: "BACKEND_HOST", flag: "backend-host", def: "localhost", orig: true, live: true, help: "backend host", set: setBackendHost},
	intSetting("BACKEND_PORT", "backend-port", "8080", true, true, "backend port", intField(func(c *Config) *int { return &c.BackendPort }, 1, 65535)),
	{name: "BACKEND_SCHEME", flag: "backend-scheme", def: "http", orig: true, live: true, help: "backend scheme: http or https", set: setBackendScheme},
	{name: "PLUGBOARD_CA_FILE", flag: "plugboard-ca-file", help: "PEM file of CAs trusted for wss:// (in addition to the system roots)",
		set: func(c *Config, v string) error { c.CAFile = v; return nil }},
	{name: "PLUGBOARD_CLIENT_CERT", flag: "plugboard-client-cert", help: "PEM client certificate for mTLS to Plugboard (with PLUGBOARD_CLIENT_KEY)",
		set: func(c *Config, v string) error { c.ClientCert = v; return nil }},
	{name: "PLUGBOARD_CLIENT_KEY", flag: "plugboard-client-key", help: "PEM private key of PLUGBOARD_CLIENT_CERT",
		set: func(c *Config, v string) error { c.ClientKey = v; return nil }},
	{name: "PLUGBOARD_CERT_PINS", flag: "plugboard-cert-pins", help: "comma-separated hex SHA-256 pins of acceptable Plugboard certificates",
		set: func(c *Config, v string) error { c.CertPins = splitList(v); return nil }},
	{name: "PLUGBOARD_INSECURE_SKIP_VERIFY", flag: "plugboard-insecure-skip-verify", def: "false", help: "skip Plugboard certificate verification (only with pins, or for testing)", set: setInsecure},
	{name: "BACKEND_URL", flag: "backend-url", live: true, help: "backend URL, e.g. http://127.0.0.1:8080/prefix (replaces BACKEND_HOST/PORT/SCHEME)", set: setBackendURL},
	durSetting("CONNECT_TIMEOUT", "connect-timeout", telephone.DefaultConnectTimeout, true, false, "WebSocket handshake timeout, and separately the join timeout", func(c *Config) *time.Duration { return &c.ConnectTimeout }, 100*time.Millisecond, 5*time.Minute),
	durSetting("REQUEST_TIMEOUT", "request-timeout", telephone.DefaultRequestTimeout, true, true, "deadline of each forwarded request (answered 504 after it)", func(c *Config) *time.Duration { return &c.RequestTimeout }, 100*time.Millisecond, 5*time.Minute),
	durSetting("HEARTBEAT_INTERVAL", "heartbeat-interval", telephone.DefaultHeartbeatInterval, true, false, "app-level heartbeat period (Plugboard drops a channel after ~60s without one)", func(c *Config) *time.Duration { return &c.HeartbeatInterval }, 100*time.Millisecond, 10*time.Minute),
	intSetting("HEARTBEAT_MISSES", "heartbeat-misses", strconv.Itoa(telephone.DefaultHeartbeatMisses), false, false, "heartbeats without heartbeat_ack before reconnecting", intField(func(c *Config) *int { return &c.HeartbeatMisses }, 1, 100)),
	durSetting("CONNECTION_MONITOR_INTERVAL", "connection-monitor-interval", telephone.DefaultPhoenixHeartbeat, true, false, "Phoenix heartbeat period: a dead socket is detected within two of these", func(c *Config) *time.Duration { return &c.MonitorInterval }, 100*time.Millisecond, 10*time.Minute),
	intSetting("CONNECTIONS", "connections", strconv.Itoa(telephone.DefaultConnections), false, false, "sessions (WebSockets) kept with Plugboard, each joined to the path and reconnecting on its own", intField(func(c *Config) *int { return &c.Connections }, 1, telephone.MaxConnections)),
	durSetting("INITIAL_BACKOFF", "initial-backoff", telephone.DefaultBackoffInitial, true, false, "first reconnect delay", func(c *Config) *time.Duration { return &c.InitialBackoff }, 10*time.Millisecond, time.Hour),
	durSetting("MAX_BACKOFF", "max-backoff", telephone.DefaultBackoffMax, true, false, "largest reconnect delay", func(c *Config) *time.Duration { return &c.MaxBackoff }, 10*time.Millisecond, 24*time.Hour),
	intSetting("MAX_RETRIES", "max-retries", "-1", true, true, "accepted for compatibility; telephone always retries", intField(func(c *Config) *int { return &c.MaxRetries }, -1_000_000_000, 1_000_000_000)),
	intSetting("MAX_RESPONSE_SIZE", "max-response-size", strconv.Itoa(telephone.DefaultMaxResponseSize), true, true, "largest backend response body in bytes (502 above)", int64Field(func(c *Config) *int64 { return &c.MaxResponseSize }, 1, maxSize)),
	intSetting("CHUNK_SIZE", "chunk-size", strconv.Itoa(telephone.DefaultChunkSize), true, false, "response chunk size in bytes", intField(func(c *Config) *int { return &c.ChunkSize }, 4, maxSize)),
	intSetting("MAX_REQUEST_BODY_SIZE", "max-request-body-size", strconv.Itoa(telephone.DefaultMaxRequestBody), false, true, "largest request body in bytes (413 above)", int64Field(func(c *Config) *int64 { return &c.MaxRequestBody }, 1, maxSize)),
	intSetting("MEMORY_BUDGET", "memory-budget", strconv.Itoa(telephone.DefaultMemoryBudget), false, false, "body bytes in flight at once (503 after QUEUE_WAIT above); 0 disables; sets the soft GOMEMLIMIT to it + 32 MiB unless GOMEMLIMIT is set", setMemoryBudget),
	intSetting("MAX_CONCURRENT_REQUESTS", "max-concurrent-requests", strconv.Itoa(telephone.DefaultMaxConcurrent), false, false, "requests forwarded at once", intField(func(c *Config) *int { return &c.MaxConcurrent }, 1, 1_000_000)),
	durSetting("QUEUE_WAIT", "queue-wait", telephone.DefaultQueueWait, false, false, "how long a request waits for a free slot (503 after it; 0: no waiting)", func(c *Config) *time.Duration { return &c.QueueWait }, 0, time.Minute),
	{name: "RATE_LIMIT", flag: "rate-limit", def: "off", live: true, help: "requests per second (token bucket; 429 above; off disables)", set: setRateLimit},
	intSetting("RATE_BURST", "rate-burst", strconv.Itoa(telephone.DefaultRateBurst), false, true, "token bucket burst", intField(func(c *Config) *int { return &c.RateBurst }, 1, 1_000_000_000)),
	intSetting("CIRCUIT_BREAKER_FAILURES", "circuit-breaker-failures", strconv.Itoa(telephone.DefaultBreakerFailures), false, false, "consecutive backend connection failures that open the circuit (0: no breaker)", intField(func(c *Config) *int { return &c.BreakerFailures }, 0, 1_000_000)),
	durSetting("CIRCUIT_BREAKER_OPEN", "circuit-breaker-open", telephone.DefaultBreakerOpenFor, false, false, "how long the open circuit answers 503 before one probe is let through", func(c *Config) *time.Duration { return &c.BreakerOpen }, 100*time.Millisecond, time.Hour),
	intSetting("BACKEND_RETRIES", "backend-retries", strconv.Itoa(telephone.DefaultRetries), false, false, "retries of idempotent requests after a connection error (0: none)", intField(func(c *Config) *int { return &c.Retries }, 0, 10)),
	{name: "UTF8_POLICY", flag: "utf8-policy", def: "reject", help: "non-UTF-8 response bodies: reject (502) or replace (U+FFFD)", set: setUTF8Policy},
	{name: "CLIENT_IP_HEADER", flag: "client-ip-header", help: "header in which a trusted load balancer in front of Plugboard records the client address (default: none, the address is Plugboard's)", set: setClientIPHeader},
	intSetting("CLIENT_IP_HOPS", "client-ip-hops", "1", false, false, "trusted proxies appending to CLIENT_IP_HEADER: the client is this entry from the right", intField(func(c *Config) *int { return &c.ClientIPHops }, 1, 100)),
	intSetting("HEALTH_CHECK_PORT", "health-check-port", "0", true, false, "health/metrics port on all interfaces (0: off)", intField(func(c *Config) *int { return &c.HealthCheckPort }, 0, 65535)),
	{name: "OPS_ADDR", flag: "ops-addr", help: "health/metrics listen address host:port (replaces HEALTH_CHECK_PORT)", set: setOpsAddr},
	durSetting("SHUTDOWN_TIMEOUT", "shutdown-timeout", 30*time.Second, false, true, "how long SIGTERM waits for in-flight requests", func(c *Config) *time.Duration { return &c.ShutdownTimeout }, 100*time.Millisecond, time.Hour),
	{name: "LOG_LEVEL", flag: "log-level", def: "info", live: true, help: "debug, info, warn or error", set: setLogLevel},
	{name: "LOG_FORMAT", flag: "log-format", def: "auto", help: "text, json or auto (text on a terminal, else JSON); NO_COLOR turns colours off", set: setLogFormat},
	{name: "ACCESS_LOG", flag: "access-log", def: "false", help: "log one info line per request: method, path, status, duration, bytes", set: setAccessLog},
	{name: "INSPECT_ADDR", flag: "inspect", help: "serve the request inspector page on this address (a port alone binds to 127.0.0.1)", set: setInspectAddr},
	{name: "OTEL_EXPORTER_OTLP_ENDPOINT", flag: "otel-exporter-otlp-endpoint", help: "OTLP/HTTP collector URL (e.g. http://localhost:4318): trace every request with OpenTelemetry; the other OTEL_EXPORTER_OTLP_* variables configure the exporter, the SDK reads its own", set: setOTLPEndpoint},
	{name: "OTEL_EXPORTER_OTLP_PROTOCOL", flag: "otel-exporter-otlp-protocol", def: "http/protobuf", help: "OTLP protocol: only http/protobuf", set: setOTLPProtocol},
	{name: "INSPECT_UNMASK", flag: "inspect-unmask", def: "false", help: "show Authorization, cookie and token values on the inspector page instead of masking them", set: setInspectUnmask},
}

func settingByName(name string) *setting {
	for i := range settings {
		if settings[i].name == name {
			return &settings[i]
		}
	}
	return nil
}

func settingByFlag(flag string) *setting {
	for i := range settings {
		if settings[i].flag != "" && settings[i].flag == flag {
			return &settings[i]
		}
	}
	return nil
}

// intSetting and durSetting build table rows for numeric settings.
func intSetting(name, flag, def string, orig, live bool, help string, set func(*Config, string) error) setting {
	return setting{name: name, flag: flag, def: def, orig: orig, live: live, help: help, set: set}
}

func durSetting(name, flag string, def time.Duration, orig, live bool, help string, field func(*Config) *time.Duration, min, max time.Duration) setting {
	return intSetting(name, flag, def.String(), orig, live, help, durField(field, min, max))
}

// parsedField stores the value parse makes of a setting in the field get names; an empty
// value stores the zero value (the default applies later).
func parsedField[T any](get func(*Config) *T, parse func(string) (T, error)) func(*Config, string) error {
	return func(c *Config, v string) error {
		var x T
		var err error
		if v != "" {
			x, err = parse(v)
		}
		*get(c) = x
		return err
	}
}

func durField(field func(*Config) *time.Duration, min, max time.Duration) func(*Config, string) error {
	return parsedField(field, func(v string) (time.Duration, error) { return parseDuration(v, min, max) })
}

func intField(field func(*Config) *int, min, max int64) func(*Config, string) error {
	return parsedField(field, func(v string) (int, error) {
		n, err := parseInt(v, min, max)
		return int(n), err
	})
}

func int64Field(field func(*Config) *int64, min, max int64) func(*Config, string) error {
	return parsedField(field, func(v string) (int64, error) { return parseInt(v, min, max) })
}

// setMemoryBudget accepts 0 (no budget) or what WithMemoryBudget takes: 1 MiB to 1 TiB.
func setMemoryBudget(c *Config, v string) error {
	if err := int64Field(func(c *Config) *int64 { return &c.MemoryBudget }, 0, 1<<40)(c, v); err != nil {
		return err
	}
	if c.MemoryBudget > 0 && c.MemoryBudget < 1<<20 {
		return fmt.Errorf("must be 0 (no budget) or at least 1048576 (1 MiB), got %d", c.MemoryBudget)
	}
	return nil
}

func setSecret(dst *string, v string, minLen int) error {
	*dst = v // kept even when too short, so that no second error follows from its absence
	if v != "" && len(v) < minLen {
		return fmt.Errorf("must be at least %d bytes, got %d (generate one with: openssl rand -hex %d)", minLen, len(v), minLen)
	}
	return nil
}

// setToken accepts a token shaped like Plugboard's (a three-part HS256 JWT with its five
// claims); its expiry and signature are checked at start-up, where a stored token may win.
func setToken(c *Config, v string) error {
	c.Token = v
	if v == "" {
		return nil
	}
	if _, err := plugtoken.Parse(v); err != nil {
		return fmt.Errorf("not a Plugboard token (%s): copy the whole token Plugboard issued", strings.TrimPrefix(err.Error(), "plugtoken: "))
	}
	return nil
}

func setPlugboardURL(c *Config, v string) error {
	c.PlugboardURL = ""
	if v == "" {
		return nil
	}
	u, err := parseURL(v, "ws", "wss")
	switch {
	case err != nil:
		return err
	case u.Query().Has("token"):
		return fmt.Errorf("must not carry the token: set TELEPHONE_TOKEN instead")
	}
	c.PlugboardURL = v
	return nil
}

// parseURL parses v and requires one of the two schemes and a host.
func parseURL(v, scheme1, scheme2 string) (*url.URL, error) {
	u, err := url.Parse(v)
	switch {
	case err != nil:
		return nil, fmt.Errorf("not a URL: %v", unwrapURLError(err))
	case u.Scheme != scheme1 && u.Scheme != scheme2:
		return nil, fmt.Errorf("scheme must be %s or %s, got %q", scheme1, scheme2, u.Scheme)
	case u.Host == "":
		return nil, fmt.Errorf("URL has no host")
	}
	return u, nil
}

// unwrapURLError drops url.Error's repetition of the whole URL.
func unwrapURLError(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}

func setBackendHost(c *Config, v string) error {
	h := strings.TrimSuffix(strings.TrimPrefix(v, "["), "]")
	c.BackendHost = h
	if v == "" {
		return nil
	}
	if strings.ContainsAny(h, "/?#@ \t") || (strings.Contains(h, ":") && net.ParseIP(h) == nil) {
		c.BackendHost = ""
		return fmt.Errorf("must be a host name or IP address without scheme, port or path, got %q", v)
	}
	return nil
}

// setClientIPHeader accepts an HTTP header name (RFC 9110 token characters).
func setClientIPHeader(c *Config, v string) error {
	c.ClientIPHeader = ""
	if v != "" && !httptoken.Valid(v) {
		return fmt.Errorf("must be an HTTP header name such as X-Forwarded-For, got %q", v)
	}
	c.ClientIPHeader = v
	return nil
}

func setBackendScheme(c *Config, v string) error {
	c.BackendScheme = strings.ToLower(v)
	if v != "" && c.BackendScheme != "http" && c.BackendScheme != "https" {
		c.BackendScheme = ""
		return fmt.Errorf("must be http or https, got %q", v)
	}
	return nil
}

func setBackendURL(c *Config, v string) error {
	c.BackendURL = ""
	if v == "" {
		return nil
	}
	if _, err := parseHTTPURL(v); err != nil {
		return err
	}
	c.BackendURL = v
	return nil
}

// parseHTTPURL parses an http(s) URL without a query or fragment.
func parseHTTPURL(v string) (*url.URL, error) {
	u, err := parseURL(v, "http", "https")
	switch {
	case err != nil:
		return nil, err
	case u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("must not have a query or fragment")
	}
	return u, nil
}

func setRateLimit(c *Config, v string) error {
	c.RateLimit = 0
	if v == "" {
		return nil
	}
	r, err := parseRate(v)
	c.RateLimit = r
	return err
}

func setUTF8Policy(c *Config, v string) error {
	switch strings.ToLower(v) {
	case "", "reject":
		c.UTF8Policy = telephone.UTF8Reject
	case "replace":
		c.UTF8Policy = telephone.UTF8Replace
	default:
		return fmt.Errorf("must be reject or replace, got %q", v)
	}
	return nil
}

func setOpsAddr(c *Config, v string) error {
	c.OpsAddr = ""
	if v == "" {
		return nil
	}
	_, port, err := net.SplitHostPort(v)
	if err != nil {
		return fmt.Errorf("must be host:port (e.g. 127.0.0.1:9090 or :9090), got %q", v)
	}
	if _, err := parseInt(port, 0, 65535); err != nil {
		return fmt.Errorf("port %s", err)
	}
	c.OpsAddr = v
	return nil
}

func setLogLevel(c *Config, v string) error {
	switch strings.ToLower(v) {
	case "debug":
		c.LogLevel = slog.LevelDebug
	case "", "info":
		c.LogLevel = slog.LevelInfo
	case "warn", "warning":
		c.LogLevel = slog.LevelWarn
	case "error":
		c.LogLevel = slog.LevelError
	default:
		return fmt.Errorf("must be debug, info, warn or error, got %q", v)
	}
	return nil
}

func setLogFormat(c *Config, v string) error {
	switch f := strings.ToLower(v); f {
	case "", "text", "json", "auto":
		c.LogFormat = f
	default:
		return fmt.Errorf("must be text, json or auto, got %q", v)
	}
	return nil
}

func splitList(v string) []string {
	var out []string
	for _, f := range strings.Split(v, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func setInsecure(c *Config, v string) error { return setBool(&c.InsecureSkipVerify, v) }

func setAccessLog(c *Config, v string) error { return setBool(&c.AccessLog, v) }

// setBool parses true or false (and the other forms strconv.ParseBool accepts); "" is false.
func setBool(dst *bool, v string) error {
	*dst = false
	if v == "" {
		return nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return fmt.Errorf("must be true or false, got %q", v)
	}
	*dst = b
	return nil
}
