package main

import (
	"errors"
	"log/slog"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/verastack/telephone"
	"github.com/verastack/telephone/internal/plugtoken"
)

const testURL = "ws://plugboard:4000/telephone/websocket"

// Well-formed tokens (expired long ago: configuration does not check expiry).
var (
	testToken  = shapedToken("configured")
	lowerToken = shapedToken("lower")
	fileToken  = shapedToken("file")
)

// shapedToken returns a token shaped like Plugboard's with jti id.
func shapedToken(id string) string {
	tok, err := plugtoken.Sign(plugtoken.Claims{Subject: "user", ID: id, PathID: "path",
		IssuedAt: time.Unix(1_000_000_000, 0), ExpiresAt: time.Unix(1_000_003_600, 0)}, []byte("key"))
	if err != nil {
		panic(err)
	}
	return tok
}

var secret64 = strings.Repeat("k", 64)

// base is a minimal valid environment.
func base(extra ...string) map[string]string {
	env := map[string]string{"PLUGBOARD_URL": testURL, "TELEPHONE_TOKEN": testToken}
	for i := 0; i+1 < len(extra); i += 2 {
		env[extra[i]] = extra[i+1]
	}
	return env
}

func load(env map[string]string, files map[string]string, args ...string) (Config, []error) {
	return loadConfig(configInput{Env: env, Args: args, ReadFile: fakeFiles(files)})
}

func errStrings(errs []error) []string {
	out := make([]string, 0, len(errs))
	for _, e := range errs {
		out = append(out, e.Error())
	}
	return out
}

func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	c, errs := load(base(), nil)
	if len(errs) > 0 {
		t.Fatalf("errors: %v", errs)
	}
	want := Config{
		PlugboardURL: testURL, Token: testToken, DBTimeout: 5 * time.Second,
		BackendHost: "localhost", BackendPort: 8080, BackendScheme: "http",
		ConnectTimeout: telephone.DefaultConnectTimeout, RequestTimeout: telephone.DefaultRequestTimeout,
		HeartbeatInterval: telephone.DefaultHeartbeatInterval, HeartbeatMisses: telephone.DefaultHeartbeatMisses,
		MonitorInterval: telephone.DefaultPhoenixHeartbeat, Connections: telephone.DefaultConnections, InitialBackoff: telephone.DefaultBackoffInitial,
		MaxBackoff: telephone.DefaultBackoffMax, MaxRetries: -1,
		MaxResponseSize: telephone.DefaultMaxResponseSize, ChunkSize: telephone.DefaultChunkSize,
		MaxRequestBody: telephone.DefaultMaxRequestBody, MaxConcurrent: telephone.DefaultMaxConcurrent, MemoryBudget: telephone.DefaultMemoryBudget,
		QueueWait: telephone.DefaultQueueWait, RateLimit: math.Inf(1), RateBurst: telephone.DefaultRateBurst,
		BreakerFailures: telephone.DefaultBreakerFailures, BreakerOpen: telephone.DefaultBreakerOpenFor, Retries: telephone.DefaultRetries,
		UTF8Policy: telephone.UTF8Reject, ClientIPHops: 1, ShutdownTimeout: 30 * time.Second, LogLevel: slog.LevelInfo, LogFormat: "auto",
		EnvFile: ".env",
	}
	c.raw, c.source = nil, nil
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("defaults:\n got %+v\nwant %+v", c, want)
	}
	if got := c.backendURL(); got != "http://localhost:8080" {
		t.Errorf("backendURL = %q", got)
	}
	if got := c.opsAddr(); got != "" {
		t.Errorf("opsAddr = %q, want off", got)
	}
}

// TestConfigOriginalEnvironment parses the original sidecar's documented values (docs/PROTOCOL.md §7.1).
func TestConfigOriginalEnvironment(t *testing.T) {
	t.Parallel()
	env := originalEnv("ws://plugboard:4000/telephone/websocket", testToken, "localhost", "8080", "/data/telephone.db", "8081")
	c, errs := load(env, nil)
	if len(errs) > 0 {
		t.Fatalf("errors: %v", errs)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"CONNECT_TIMEOUT", c.ConnectTimeout, 10 * time.Second},
		{"REQUEST_TIMEOUT", c.RequestTimeout, 30 * time.Second},
		{"HEARTBEAT_INTERVAL", c.HeartbeatInterval, 30 * time.Second},
		{"CONNECTION_MONITOR_INTERVAL", c.MonitorInterval, 5 * time.Second},
		{"INITIAL_BACKOFF", c.InitialBackoff, time.Second},
		{"MAX_BACKOFF", c.MaxBackoff, 30 * time.Second},
		{"MAX_RETRIES", c.MaxRetries, 100},
		{"TOKEN_DB_PATH", c.TokenDBPath, "/data/telephone.db"},
		{"MAX_RESPONSE_SIZE", c.MaxResponseSize, int64(104857600)},
		{"CHUNK_SIZE", c.ChunkSize, 1048576},
		{"DB_TIMEOUT", c.DBTimeout, 10 * time.Second},
		{"opsAddr", c.opsAddr(), ":8081"},
		{"backendURL", c.backendURL(), "http://localhost:8080"},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
	if len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "MAX_RETRIES") {
		t.Errorf("warnings = %q, want the MAX_RETRIES note", c.Warnings)
	}
}

// originalEnv is the full environment of the original sidecar with realistic values.
func originalEnv(plugboardURL, token, host, port, dbPath, healthPort string) map[string]string {
	return map[string]string{
		"TELEPHONE_TOKEN":             token,
		"PLUGBOARD_URL":               plugboardURL,
		"BACKEND_HOST":                host,
		"BACKEND_PORT":                port,
		"BACKEND_SCHEME":              "http",
		"CONNECT_TIMEOUT":             "10s",
		"REQUEST_TIMEOUT":             "30s",
		"HEARTBEAT_INTERVAL":          "30s",
		"CONNECTION_MONITOR_INTERVAL": "5s",
		"INITIAL_BACKOFF":             "1s",
		"MAX_BACKOFF":                 "30s",
		"MAX_RETRIES":                 "100",
		"SECRET_KEY_BASE":             "4f1c0d5e2b7a9c8e3d6f1a0b5c4e7d2f9a8b3c6e1d0f5a4b7c2e9d8f3a6b1c0e",
		"TOKEN_DB_PATH":               dbPath,
		"MAX_RESPONSE_SIZE":           "104857600",
		"CHUNK_SIZE":                  "1048576",
		"DB_TIMEOUT":                  "10s",
		"HEALTH_CHECK_PORT":           healthPort,
	}
}

func TestConfigNewSettings(t *testing.T) {
	t.Parallel()
	env := base("PLUGBOARD_SECRET_KEY_BASE", secret64, "SECRET_KEY_BASE", strings.Repeat("s", 32),
		"BACKEND_URL", "https://api.internal:8443/v1", "HEARTBEAT_MISSES", "3",
		"MAX_CONCURRENT_REQUESTS", "10", "QUEUE_WAIT", "0", "RATE_LIMIT", "off", "RATE_BURST", "5",
		"MAX_REQUEST_BODY_SIZE", "1000", "UTF8_POLICY", "Replace", "OPS_ADDR", "127.0.0.1:9090",
		"HEALTH_CHECK_PORT", "8081", "SHUTDOWN_TIMEOUT", "5s", "LOG_LEVEL", "WARNING", "LOG_FORMAT", "JSON",
		"BACKEND_HOST", "ignored", "CIRCUIT_BREAKER_FAILURES", "0", "CIRCUIT_BREAKER_OPEN", "2s", "BACKEND_RETRIES", "0",
		"CLIENT_IP_HEADER", "X-Forwarded-For", "CLIENT_IP_HOPS", "2")
	c, errs := load(env, nil)
	if len(errs) > 0 {
		t.Fatalf("errors: %v", errs)
	}
	if c.PlugboardSecret != secret64 || c.TokenDBPath != "telephone.db" || c.backendURL() != "https://api.internal:8443/v1" ||
		c.HeartbeatMisses != 3 || c.MaxConcurrent != 10 || c.QueueWait != 0 || !math.IsInf(c.RateLimit, 1) ||
		c.RateBurst != 5 || c.MaxRequestBody != 1000 || c.UTF8Policy != telephone.UTF8Replace ||
		c.opsAddr() != "127.0.0.1:9090" || c.ShutdownTimeout != 5*time.Second || c.LogLevel != slog.LevelWarn ||
		c.LogFormat != "json" || c.BreakerFailures != 0 || c.BreakerOpen != 2*time.Second || c.Retries != 0 ||
		c.ClientIPHeader != "X-Forwarded-For" || c.ClientIPHops != 2 {
		t.Fatalf("unexpected config %+v", c)
	}
	wantWarn := []string{
		"BACKEND_URL is set: BACKEND_HOST, BACKEND_PORT and BACKEND_SCHEME are ignored",
		"OPS_ADDR is set: HEALTH_CHECK_PORT is ignored",
	}
	if !reflect.DeepEqual(c.Warnings, wantWarn) {
		t.Errorf("warnings = %q, want %q", c.Warnings, wantWarn)
	}
	if _, err := telephone.New(c.PlugboardURL, c.options(slog.Default(), nil, newRegistry())...); err != nil {
		t.Errorf("New refused the options: %v", err)
	}
}

func TestConfigValues(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want func(c Config) bool
	}{
		{"token fallback", map[string]string{"PLUGBOARD_URL": testURL, "token": lowerToken}, nil,
			func(c Config) bool { return c.Token == lowerToken }},
		{"TELEPHONE_TOKEN beats token", base("token", lowerToken), nil, func(c Config) bool { return c.Token == testToken }},
		{"secret alone is a token source", map[string]string{"PLUGBOARD_URL": testURL, "SECRET_KEY_BASE": secret64}, nil,
			func(c Config) bool { return c.Token == "" && c.TokenDBPath == "telephone.db" }},
		{"empty value is unset", base("BACKEND_PORT", ""), nil, func(c Config) bool { return c.BackendPort == 8080 }},
		{"IPv6 backend", base("BACKEND_HOST", "[::1]", "BACKEND_SCHEME", "HTTPS"), nil,
			func(c Config) bool { return c.backendURL() == "https://[::1]:8080" }},
		{"health port", base("HEALTH_CHECK_PORT", "8081"), nil, func(c Config) bool { return c.opsAddr() == ":8081" }},
		{"rate", base("RATE_LIMIT", "2.5"), nil, func(c Config) bool { return c.RateLimit == 2.5 }},
		{"connections", base("CONNECTIONS", "4"), nil, func(c Config) bool { return c.Connections == 4 }},
		{"connections flag", base("CONNECTIONS", "4"), []string{"--connections", "1"}, func(c Config) bool { return c.Connections == 1 }},
		{"inspect port alone is loopback", base("INSPECT_ADDR", "4040"), nil, func(c Config) bool { return c.InspectAddr == "127.0.0.1:4040" }},
		{"inspect :port is loopback", base(), []string{"--inspect", ":4041"}, func(c Config) bool { return c.InspectAddr == "127.0.0.1:4041" }},
		{"inspect host as given", base("INSPECT_ADDR", "[::]:4042", "INSPECT_UNMASK", "true"), nil,
			func(c Config) bool { return c.InspectAddr == "[::]:4042" && c.InspectUnmask }},
		{"inspect off by default", base(), nil, func(c Config) bool { return c.InspectAddr == "" && !c.InspectUnmask }},
		{"tracing off by default", base(), nil, func(c Config) bool { return c.OTLPEndpoint == "" }},
		{"tracing endpoint", base("OTEL_EXPORTER_OTLP_ENDPOINT", "https://otel.example:4318", "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"), nil,
			func(c Config) bool { return c.OTLPEndpoint == "https://otel.example:4318" }},
		{"tracing exporter variables", base("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318", "OTEL_EXPORTER_OTLP_TIMEOUT", "500", "OTEL_EXPORTER_OTLP_HEADERS", "k=v"), nil,
			func(c Config) bool {
				return c.otlp != nil && c.otlp.url == "http://c:4318/v1/traces" && c.otlp.timeout == 500*time.Millisecond && len(c.otlp.headers) == 1
			}},
		{"exporter variables unread without tracing", base("OTEL_EXPORTER_OTLP_TIMEOUT", "soon"), nil, func(c Config) bool { return c.otlp == nil }},
		{"levels", base("LOG_LEVEL", "debug"), []string{"--log-level", "error"}, func(c Config) bool { return c.LogLevel == slog.LevelError }},
		{"flag =form", base(), []string{"--backend-port=9000", "--env", ""}, func(c Config) bool { return c.BackendPort == 9000 && c.EnvFile == "" }},
		{"empty flag keeps env", base("BACKEND_PORT", "9001"), []string{"--backend-port="}, func(c Config) bool { return c.BackendPort == 9001 }},
		{"text format", base("LOG_FORMAT", "text"), nil, func(c Config) bool { return c.LogFormat == "text" }},
		{"hops without header", base("CLIENT_IP_HOPS", "2"), nil, func(c Config) bool {
			return c.ClientIPHeader == "" && len(c.Warnings) == 1 && strings.HasPrefix(c.Warnings[0], "CLIENT_IP_HOPS is ignored")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, errs := load(tt.env, nil, tt.args...)
			if len(errs) > 0 {
				t.Fatalf("errors: %v", errs)
			}
			if !tt.want(c) {
				t.Fatalf("unexpected config %+v", c)
			}
		})
	}
}

// TestConfigErrors checks every validation message, one line per problem, all collected.
func TestConfigErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		env   map[string]string
		files map[string]string
		args  []string
		want  []string
	}{
		{"nothing set", map[string]string{}, nil, nil, []string{
			"PLUGBOARD_URL: required: the Plugboard socket URL, e.g. wss://plugboard.example.com/telephone/websocket",
			"TELEPHONE_TOKEN: required: set TELEPHONE_TOKEN (or token), PLUGBOARD_SERVICE_ACCOUNT_KEY to vend a token, or SECRET_KEY_BASE to resume with the token stored in TOKEN_DB_PATH",
		}},
		{"unknown flag", base(), nil, []string{"--nope"}, []string{"flags: flag provided but not defined: -nope"}},
		{"flag without value", base(), nil, []string{"--backend-port"}, []string{"flags: flag needs an argument: -backend-port"}},
		{"argument", base(), nil, []string{"now"}, []string{`flags: unexpected argument "now"`}},
		{"bad .env", base(), map[string]string{".env": `A="open`}, nil, []string{"--env: parse .env: line 1: unterminated quoted value"}},
		{"url parse", base("PLUGBOARD_URL", "ws://[::1"), nil, nil, []string{`PLUGBOARD_URL: not a URL: missing ']' in host (from environment)`}},
		{"url scheme", base("PLUGBOARD_URL", "http://plugboard:4000/telephone/websocket"), nil, nil,
			[]string{`PLUGBOARD_URL: scheme must be ws or wss, got "http" (from environment)`}},
		{"url host", base("PLUGBOARD_URL", "ws:///telephone/websocket"), nil, nil, []string{"PLUGBOARD_URL: URL has no host (from environment)"}},
		{"url token", base("PLUGBOARD_URL", "wss://p/telephone/websocket?token=x"), nil, nil,
			[]string{"PLUGBOARD_URL: must not carry the token: set TELEPHONE_TOKEN instead (from environment)"}},
		{"plugboard secret", base("PLUGBOARD_SECRET_KEY_BASE", "short"), nil, nil,
			[]string{"PLUGBOARD_SECRET_KEY_BASE: must be at least 64 bytes, got 5 (generate one with: openssl rand -hex 64) (from environment)"}},
		{"secret", base("SECRET_KEY_BASE", "short"), nil, nil,
			[]string{"SECRET_KEY_BASE: must be at least 32 bytes, got 5 (generate one with: openssl rand -hex 32) (from environment)"}},
		{"db path needs secret", base("TOKEN_DB_PATH", "x.db"), nil, nil, []string{"TOKEN_DB_PATH: needs SECRET_KEY_BASE: stored tokens are encrypted with it"}},
		{"db timeout", base("DB_TIMEOUT", "10"), nil, nil,
			[]string{`DB_TIMEOUT: not a duration (use Go syntax such as 500ms, 10s or 1m30s): "10" (from environment)`}},
		{"db timeout range", base("DB_TIMEOUT", "1ms"), nil, nil, []string{"DB_TIMEOUT: must be between 10ms and 5m0s, got 1ms (from environment)"}},
		{"backend host", base("BACKEND_HOST", "http://x"), nil, nil,
			[]string{`BACKEND_HOST: must be a host name or IP address without scheme, port or path, got "http://x" (from environment)`}},
		{"backend host port", base("BACKEND_HOST", "x:80"), nil, nil,
			[]string{`BACKEND_HOST: must be a host name or IP address without scheme, port or path, got "x:80" (from environment)`}},
		{"backend port text", base("BACKEND_PORT", "http"), nil, nil, []string{`BACKEND_PORT: not an integer: "http" (from environment)`}},
		{"backend port 0", base("BACKEND_PORT", "0"), nil, nil, []string{"BACKEND_PORT: must be between 1 and 65535, got 0 (from environment)"}},
		{"backend port high", base("BACKEND_PORT", "65536"), nil, nil, []string{"BACKEND_PORT: must be between 1 and 65535, got 65536 (from environment)"}},
		{"backend scheme", base("BACKEND_SCHEME", "ftp"), nil, nil, []string{`BACKEND_SCHEME: must be http or https, got "ftp" (from environment)`}},
		{"backend url parse", base("BACKEND_URL", "http://[x"), nil, nil, []string{"BACKEND_URL: not a URL: missing ']' in host (from environment)"}},
		{"backend url scheme", base("BACKEND_URL", "ws://x"), nil, nil, []string{`BACKEND_URL: scheme must be http or https, got "ws" (from environment)`}},
		{"backend url host", base("BACKEND_URL", "http:///x"), nil, nil, []string{"BACKEND_URL: URL has no host (from environment)"}},
		{"backend url query", base("BACKEND_URL", "http://x/?a=1"), nil, nil, []string{"BACKEND_URL: must not have a query or fragment (from environment)"}},
		{"connect timeout", base("CONNECT_TIMEOUT", "0"), nil, nil, []string{"CONNECT_TIMEOUT: must be between 100ms and 5m0s, got 0s (from environment)"}},
		{"request timeout", base("REQUEST_TIMEOUT", "10m"), nil, nil, []string{"REQUEST_TIMEOUT: must be between 100ms and 5m0s, got 10m0s (from environment)"}},
		{"heartbeat zero", base("HEARTBEAT_INTERVAL", "0s"), nil, nil, []string{"HEARTBEAT_INTERVAL: must be between 100ms and 10m0s, got 0s (from environment)"}},
		{"heartbeat negative", base("HEARTBEAT_INTERVAL", "-1s"), nil, nil, []string{"HEARTBEAT_INTERVAL: must be between 100ms and 10m0s, got -1s (from environment)"}},
		{"heartbeat misses", base("HEARTBEAT_MISSES", "0"), nil, nil, []string{"HEARTBEAT_MISSES: must be between 1 and 100, got 0 (from environment)"}},
		{"monitor", base("CONNECTION_MONITOR_INTERVAL", "1h"), nil, nil, []string{"CONNECTION_MONITOR_INTERVAL: must be between 100ms and 10m0s, got 1h0m0s (from environment)"}},
		{"connections zero", base("CONNECTIONS", "0"), nil, nil, []string{"CONNECTIONS: must be between 1 and 16, got 0 (from environment)"}},
		{"connections high", base(), nil, []string{"--connections", "17"}, []string{"CONNECTIONS: must be between 1 and 16, got 17 (from flag --connections)"}},
		{"connections text", base("CONNECTIONS", "two"), nil, nil, []string{`CONNECTIONS: not an integer: "two" (from environment)`}},
		{"initial backoff", base("INITIAL_BACKOFF", "1ms"), nil, nil, []string{"INITIAL_BACKOFF: must be between 10ms and 1h0m0s, got 1ms (from environment)"}},
		{"max backoff", base("MAX_BACKOFF", "48h"), nil, nil, []string{"MAX_BACKOFF: must be between 10ms and 24h0m0s, got 48h0m0s (from environment)"}},
		{"backoff order", base("INITIAL_BACKOFF", "1m", "MAX_BACKOFF", "30s"), nil, nil, []string{"MAX_BACKOFF: must not be less than INITIAL_BACKOFF (1m0s), got 30s"}},
		{"max retries", base("MAX_RETRIES", "forever"), nil, nil, []string{`MAX_RETRIES: not an integer: "forever" (from environment)`}},
		{"response size", base("MAX_RESPONSE_SIZE", "0"), nil, nil, []string{"MAX_RESPONSE_SIZE: must be between 1 and 1073741824, got 0 (from environment)"}},
		{"response size negative", base("MAX_RESPONSE_SIZE", "-5"), nil, nil, []string{"MAX_RESPONSE_SIZE: must be between 1 and 1073741824, got -5 (from environment)"}},
		{"chunk size", base("CHUNK_SIZE", "3"), nil, nil, []string{"CHUNK_SIZE: must be between 4 and 1073741824, got 3 (from environment)"}},
		{"memory budget below 1 MiB", base("MEMORY_BUDGET", "1000"), nil, nil, []string{"MEMORY_BUDGET: must be 0 (no budget) or at least 1048576 (1 MiB), got 1000 (from environment)"}},
		{"chunk above response", base("CHUNK_SIZE", "2000", "MAX_RESPONSE_SIZE", "1000"), nil, nil, []string{"CHUNK_SIZE: must not exceed MAX_RESPONSE_SIZE (1000), got 2000"}},
		{"request body", base("MAX_REQUEST_BODY_SIZE", "2GB"), nil, nil, []string{`MAX_REQUEST_BODY_SIZE: not an integer: "2GB" (from environment)`}},
		{"concurrency", base("MAX_CONCURRENT_REQUESTS", "0"), nil, nil, []string{"MAX_CONCURRENT_REQUESTS: must be between 1 and 1000000, got 0 (from environment)"}},
		{"queue wait", base("QUEUE_WAIT", "-1s"), nil, nil, []string{"QUEUE_WAIT: must be between 0s and 1m0s, got -1s (from environment)"}},
		{"rate text", base("RATE_LIMIT", "fast"), nil, nil, []string{`RATE_LIMIT: not a number of requests per second (or off): "fast" (from environment)`}},
		{"rate NaN", base("RATE_LIMIT", "NaN"), nil, nil, []string{`RATE_LIMIT: not a number of requests per second (or off): "NaN" (from environment)`}},
		{"rate zero", base("RATE_LIMIT", "0"), nil, nil, []string{"RATE_LIMIT: must be above 0 and at most 1e9, got 0 (from environment)"}},
		{"burst", base("RATE_BURST", "0"), nil, nil, []string{"RATE_BURST: must be between 1 and 1000000000, got 0 (from environment)"}},
		{"breaker failures", base("CIRCUIT_BREAKER_FAILURES", "-1"), nil, nil, []string{"CIRCUIT_BREAKER_FAILURES: must be between 0 and 1000000, got -1 (from environment)"}},
		{"breaker open", base("CIRCUIT_BREAKER_OPEN", "0s"), nil, nil, []string{"CIRCUIT_BREAKER_OPEN: must be between 100ms and 1h0m0s, got 0s (from environment)"}},
		{"retries", base("BACKEND_RETRIES", "11"), nil, nil, []string{"BACKEND_RETRIES: must be between 0 and 10, got 11 (from environment)"}},
		{"utf8", base("UTF8_POLICY", "ignore"), nil, nil, []string{`UTF8_POLICY: must be reject or replace, got "ignore" (from environment)`}},
		{"client ip header", base(), nil, []string{"--client-ip-header", "X-Forwarded-For:"}, []string{`CLIENT_IP_HEADER: must be an HTTP header name such as X-Forwarded-For, got "X-Forwarded-For:" (from flag --client-ip-header)`}},
		{"client ip hops", base("CLIENT_IP_HEADER", "X-Real-Ip", "CLIENT_IP_HOPS", "0"), nil, nil, []string{"CLIENT_IP_HOPS: must be between 1 and 100, got 0 (from environment)"}},
		{"health port", base("HEALTH_CHECK_PORT", "70000"), nil, nil, []string{"HEALTH_CHECK_PORT: must be between 0 and 65535, got 70000 (from environment)"}},
		{"ops addr", base("OPS_ADDR", "9090"), nil, nil, []string{`OPS_ADDR: must be host:port (e.g. 127.0.0.1:9090 or :9090), got "9090" (from environment)`}},
		{"ops port", base("OPS_ADDR", ":http"), nil, nil, []string{`OPS_ADDR: port not an integer: "http" (from environment)`}},
		{"otlp endpoint", base("OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4318"), nil, nil, []string{`OTEL_EXPORTER_OTLP_ENDPOINT: must be an http:// or https:// URL such as http://localhost:4318, got "localhost:4318" (from environment)`}},
		{"otlp protocol", base("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"), nil, nil, []string{`OTEL_EXPORTER_OTLP_PROTOCOL: only http/protobuf is supported (an OTLP/HTTP collector, usually port 4318), got "grpc" (from environment)`}},
		{"otlp exporter", base("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "5s"), map[string]string{".env": "OTEL_EXPORTER_OTLP_COMPRESSION=br\n"}, nil,
			[]string{`OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: must be a whole number of milliseconds from 1 to 3600000, got "5s" (from environment)`,
				`OTEL_EXPORTER_OTLP_COMPRESSION: must be gzip or none, got "br" (from .env)`}},
		{"inspect addr", base("INSPECT_ADDR", "localhost"), nil, nil, []string{`INSPECT_ADDR: must be host:port, :port or a port (e.g. 127.0.0.1:4040 or 4040), got "localhost" (from environment)`}},
		{"inspect port", base(), nil, []string{"--inspect", ":99999"}, []string{`INSPECT_ADDR: port must be between 0 and 65535, got 99999 (from flag --inspect)`}},
		{"shutdown", base("SHUTDOWN_TIMEOUT", "2h"), nil, nil, []string{"SHUTDOWN_TIMEOUT: must be between 100ms and 1h0m0s, got 2h0m0s (from environment)"}},
		{"log level", base(), nil, []string{"--log-level", "loud"}, []string{`LOG_LEVEL: must be debug, info, warn or error, got "loud" (from flag --log-level)`}},
		{"log format", base("LOG_FORMAT", "xml"), nil, nil, []string{`LOG_FORMAT: must be text, json or auto, got "xml" (from environment)`}},
		{"from .env", map[string]string{"PLUGBOARD_URL": testURL}, map[string]string{"my.env": "token=x\nBACKEND_PORT=0\n"}, []string{"--env", "my.env"},
			[]string{"TELEPHONE_TOKEN: not a Plugboard token (malformed token: token has 1 dot-separated parts, not 3): copy the whole token Plugboard issued (from my.env (variable token))",
				"BACKEND_PORT: must be between 1 and 65535, got 0 (from my.env)"}},
		{"token without claims", base("TELEPHONE_TOKEN", "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.e30.sig"), nil, nil,
			[]string{"TELEPHONE_TOKEN: not a Plugboard token (malformed token: claim sub is missing): copy the whole token Plugboard issued (from environment)"}},
		{"several at once", map[string]string{"PLUGBOARD_URL": "http://x", "BACKEND_PORT": "x", "CHUNK_SIZE": "1"}, nil, nil, []string{
			`PLUGBOARD_URL: scheme must be ws or wss, got "http" (from environment)`,
			`BACKEND_PORT: not an integer: "x" (from environment)`,
			"CHUNK_SIZE: must be between 4 and 1073741824, got 1 (from environment)",
			"TELEPHONE_TOKEN: required: set TELEPHONE_TOKEN (or token), PLUGBOARD_SERVICE_ACCOUNT_KEY to vend a token, or SECRET_KEY_BASE to resume with the token stored in TOKEN_DB_PATH",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, errs := load(tt.env, tt.files, tt.args...)
			if got := errStrings(errs); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("errors:\n got %q\nwant %q", got, tt.want)
			}
			for _, err := range errs {
				var ce *ConfigError
				if !errors.As(err, &ce) {
					t.Errorf("%v is not a *ConfigError", err)
				}
			}
		})
	}
}

func TestConfigReadError(t *testing.T) {
	t.Parallel()
	boom := errors.New("permission denied")
	_, errs := loadConfig(configInput{Env: base(), ReadFile: func(string) ([]byte, error) { return nil, boom }})
	if got := errStrings(errs); len(got) != 1 || got[0] != "--env: read .env: permission denied" {
		t.Fatalf("errors %q", got)
	}
}

// TestConfigPrecedence checks file < environment < flags, per variable.
func TestConfigPrecedence(t *testing.T) {
	t.Parallel()
	files := map[string]string{"app.env": `
# comment
PLUGBOARD_URL=ws://from-file:4000/telephone/websocket
TELEPHONE_TOKEN="` + fileToken + `"
BACKEND_PORT=1111
REQUEST_TIMEOUT=5s
RATE_BURST=9
export LOG_LEVEL=debug
`}
	env := map[string]string{"BACKEND_PORT": "2222", "REQUEST_TIMEOUT": "6s", "token": lowerToken}
	c, errs := load(env, files, "--env", "app.env", "--backend-port", "3333")
	if len(errs) > 0 {
		t.Fatalf("errors: %v", errs)
	}
	if c.PlugboardURL != "ws://from-file:4000/telephone/websocket" || c.Token != fileToken ||
		c.BackendPort != 3333 || c.RequestTimeout != 6*time.Second || c.RateBurst != 9 || c.LogLevel != slog.LevelDebug {
		t.Fatalf("precedence broken: %+v", c)
	}
	if c.source["BACKEND_PORT"] != "flag --backend-port" || c.source["REQUEST_TIMEOUT"] != "environment" || c.source["RATE_BURST"] != "app.env" {
		t.Errorf("sources %v", c.source)
	}
	// A missing .env file is no file; the default name is .env.
	if _, errs := load(base(), nil, "--env", "missing.env"); len(errs) > 0 {
		t.Errorf("missing .env: %v", errs)
	}
	c, _ = load(map[string]string{}, map[string]string{".env": "PLUGBOARD_URL=" + testURL + "\ntoken=t\n"})
	if c.Token != "t" || c.PlugboardURL != testURL {
		t.Errorf("default .env not read: %+v", c)
	}
}

// TestConfigEveryFlag checks that every non-secret setting has a flag that overrides the
// environment, and that secrets have none.
func TestConfigEveryFlag(t *testing.T) {
	t.Parallel()
	for _, s := range settings {
		secret := strings.Contains(s.name, "SECRET") || strings.Contains(s.name, "TOKEN") && s.name != "TOKEN_DB_PATH" ||
			strings.HasSuffix(s.name, "_KEY") && s.name != "PLUGBOARD_CLIENT_KEY"
		if secret != (s.flag == "") {
			t.Errorf("%s: flag %q (secrets must have none, others one)", s.name, s.flag)
		}
		if s.flag == "" || s.def == "" {
			continue
		}
		env := base(s.name, "not valid at all")
		c, errs := load(env, nil, "--"+s.flag, s.def)
		if len(errs) > 0 {
			t.Errorf("%s: the flag did not override the environment: %v", s.name, errs)
		}
		if c.raw[s.name] != s.def {
			t.Errorf("%s: raw %q, want %q", s.name, c.raw[s.name], s.def)
		}
	}
}

func TestConfigDiff(t *testing.T) {
	t.Parallel()
	old, _ := load(base(), nil)
	next, errs := load(base("RATE_LIMIT", "5", "LOG_LEVEL", "debug", "CONNECT_TIMEOUT", "20s", "BACKEND_URL", "http://b:1"), nil)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	live, restart := old.diff(&next)
	if !reflect.DeepEqual(live, []string{"BACKEND_URL", "RATE_LIMIT", "LOG_LEVEL"}) || !reflect.DeepEqual(restart, []string{"CONNECT_TIMEOUT"}) {
		t.Fatalf("diff: live %v restart %v", live, restart)
	}
	merged := old.withLive(&next, live)
	if merged.RateLimit != 5 || merged.LogLevel != slog.LevelDebug || merged.backendURL() != "http://b:1" ||
		merged.ConnectTimeout != old.ConnectTimeout {
		t.Fatalf("withLive: %+v", merged)
	}
	if !math.IsInf(old.RateLimit, 1) || old.raw["RATE_LIMIT"] == "5" {
		t.Fatal("withLive changed the original")
	}
	back := merged.withLive(&old, []string{"BACKEND_URL"})
	if back.backendURL() != "http://localhost:8080" {
		t.Fatalf("unsetting BACKEND_URL: %q", back.backendURL())
	}
}

// FuzzLoadConfig feeds arbitrary values and arguments to the configuration loader: it must
// never panic, and every problem must be a *ConfigError.
func FuzzLoadConfig(f *testing.F) {
	f.Add("BACKEND_PORT", "8080", "--rate-limit", "5", "A=b")
	f.Add("PLUGBOARD_URL", "ws://[::1", "--ops-addr", ":x", `A="x`)
	f.Add("RATE_LIMIT", "1e400", "--nope", "", "")
	f.Fuzz(func(t *testing.T, name, value, flagName, flagValue, dotenv string) {
		env := base(name, value)
		c, errs := load(env, map[string]string{".env": dotenv}, flagName, flagValue)
		for _, err := range errs {
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Reason == "" {
				t.Fatalf("bad error %v", err)
			}
		}
		if len(errs) == 0 && c.PlugboardURL == "" {
			t.Fatal("valid configuration without a Plugboard URL")
		}
	})
}
