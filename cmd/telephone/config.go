package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/joho/godotenv"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/verastack/telephone"
	"github.com/verastack/telephone/transport"
)

// Config is the validated configuration of `telephone run`. It is built by loadConfig from
// the environment, an optional .env file and flags, in that order of increasing precedence.
type Config struct {
	PlugboardURL    string
	Token           string // TELEPHONE_TOKEN, or the lower-case `token` fallback
	PlugboardSecret string // PLUGBOARD_SECRET_KEY_BASE: verify token signatures when set
	SecretKeyBase   string // SECRET_KEY_BASE: encrypts the token store
	TokenDBPath     string // "" keeps tokens in memory
	DBTimeout       time.Duration

	ServiceAccountKey string // PLUGBOARD_SERVICE_ACCOUNT_KEY: vend a token per replica (secret)
	InstanceID        string // TELEPHONE_INSTANCE_ID; default the host name
	PathID            string // PLUGBOARD_PATH_ID: the path the key must be bound to (optional)
	APIURL            string // PLUGBOARD_API_URL; "" derives it from PLUGBOARD_URL

	BackendHost   string
	BackendPort   int
	BackendScheme string
	BackendURL    string // BACKEND_URL; replaces the three above when set

	CAFile             string   // PLUGBOARD_CA_FILE: extra trusted CAs for wss://
	ClientCert         string   // PLUGBOARD_CLIENT_CERT: client certificate (mTLS)
	ClientKey          string   // PLUGBOARD_CLIENT_KEY
	CertPins           []string // PLUGBOARD_CERT_PINS: SHA-256 pins of the server certificate
	InsecureSkipVerify bool     // PLUGBOARD_INSECURE_SKIP_VERIFY
	tlsConfig          *tls.Config

	ConnectTimeout    time.Duration
	RequestTimeout    time.Duration
	HeartbeatInterval time.Duration
	HeartbeatMisses   int
	MonitorInterval   time.Duration // CONNECTION_MONITOR_INTERVAL -> phoenix heartbeat
	Connections       int           // CONNECTIONS: sessions with Plugboard
	InitialBackoff    time.Duration
	MaxBackoff        time.Duration
	MaxRetries        int // accepted for compatibility; telephone always retries

	MaxResponseSize int64
	ChunkSize       int
	MaxRequestBody  int64
	MaxConcurrent   int
	MemoryBudget    int64 // bytes; 0: none
	QueueWait       time.Duration
	RateLimit       float64 // +Inf when off
	RateBurst       int
	BreakerFailures int           // CIRCUIT_BREAKER_FAILURES; 0 disables the breaker
	BreakerOpen     time.Duration // CIRCUIT_BREAKER_OPEN
	Retries         int           // BACKEND_RETRIES; 0 disables retries
	UTF8Policy      telephone.UTF8Policy
	ClientIPHeader  string // CLIENT_IP_HEADER: "" means the client address is Plugboard's
	ClientIPHops    int    // CLIENT_IP_HOPS

	HealthCheckPort int    // 0: off
	OpsAddr         string // overrides HealthCheckPort when set
	ShutdownTimeout time.Duration
	LogLevel        slog.Level
	LogFormat       string // text, json or auto
	AccessLog       bool   // ACCESS_LOG: one info line per request

	InspectAddr   string // INSPECT_ADDR: the request inspector's listen address; "" is off
	InspectUnmask bool   // INSPECT_UNMASK: show secret values on the inspector page

	OTLPEndpoint string      // OTEL_EXPORTER_OTLP_ENDPOINT: trace to this OTLP/HTTP collector; "" is off
	otlp         *otlpConfig // the exporter's other OTEL_EXPORTER_OTLP_* variables, when tracing is on

	EnvFile  string            // the --env file name (read only if it exists)
	Warnings []string          // settings that were accepted but deserve a log line
	raw      map[string]string // effective text of every setting (defaults included)
	source   map[string]string // where each non-default setting came from
}

// ConfigError is one invalid setting: the variable, where its value came from and what is wrong.
type ConfigError struct {
	Var    string // environment variable name, or "flags"
	Source string // "environment", the .env file name, "flag --x", or "" for defaults and cross-checks
	Reason string
}

func (e *ConfigError) Error() string {
	if e.Source == "" {
		return e.Var + ": " + e.Reason
	}
	return fmt.Sprintf("%s: %s (from %s)", e.Var, e.Reason, e.Source)
}

// defaultTokenDB is TOKEN_DB_PATH when SECRET_KEY_BASE is set and TOKEN_DB_PATH is not.
const defaultTokenDB = "telephone.db"

// Sources of a setting, as ConfigError reports them.
const (
	srcDefault = ""
	srcEnv     = "environment"
)

// configInput is everything loadConfig reads: it never touches the process itself.
type configInput struct {
	Env      map[string]string                 // the process environment
	Args     []string                          // command-line arguments after the command name
	ReadFile func(name string) ([]byte, error) // reads the .env file; fs.ErrNotExist means none
	Hostname string                            // the default of TELEPHONE_INSTANCE_ID
}

// loadConfig builds and validates the run configuration. Precedence, lowest first: defaults,
// the .env file, the environment, flags. It returns every problem it finds, not just the first.
func loadConfig(in configInput) (Config, []error) {
	fset, flagVals, envFile := newRunFlagSet()
	if err := fset.Parse(in.Args); err != nil {
		return Config{}, []error{&ConfigError{Var: "flags", Reason: err.Error()}}
	}
	if fset.NArg() > 0 {
		return Config{}, []error{&ConfigError{Var: "flags", Reason: fmt.Sprintf("unexpected argument %q", fset.Arg(0))}}
	}
	dotenv, err := readDotenv(*envFile, in.ReadFile)
	if err != nil {
		return Config{}, []error{&ConfigError{Var: "--env", Reason: err.Error()}}
	}
	vals, srcs := mergeSources(in.Env, dotenv, *envFile)
	fset.Visit(func(f *flag.Flag) {
		if s := settingByFlag(f.Name); s != nil && *flagVals[f.Name] != "" {
			vals[s.name], srcs[s.name] = *flagVals[f.Name], "flag --"+f.Name
		}
	})
	c, errs := buildConfig(vals, srcs)
	if c.OTLPEndpoint != "" {
		var otlpErrs []error
		c.otlp, otlpErrs = otlpConfigFromEnv(func(name string) (string, string) {
			return pickSource(in.Env, dotenv, *envFile, name)
		}, c.OTLPEndpoint)
		errs = append(errs, otlpErrs...)
	}
	c.EnvFile = *envFile
	c.Warnings = append(c.Warnings, misspelt(in.Env, dotenv, *envFile)...)
	if c.InstanceID == "" {
		c.InstanceID = in.Hostname
	}
	return c, errs
}

// newRunFlagSet returns the flag set of `telephone run`: --env and one flag per non-secret
// setting. Flags hold text; they are parsed like the environment variable they override.
func newRunFlagSet() (*flag.FlagSet, map[string]*string, *string) {
	fset := flag.NewFlagSet("telephone run", flag.ContinueOnError)
	fset.SetOutput(io.Discard)
	envFile := fset.String("env", ".env", "`file` with KEY=value lines, loaded if it exists")
	vals := map[string]*string{}
	for i := range settings {
		s := &settings[i]
		if s.flag != "" {
			vals[s.flag] = fset.String(s.flag, "", s.help+" (env "+s.name+")")
		}
	}
	return fset, vals, envFile
}

// readDotenv parses the .env file; a missing file (or an empty name) is no file at all.
func readDotenv(name string, read func(string) ([]byte, error)) (map[string]string, error) {
	if name == "" {
		return nil, nil
	}
	b, err := read(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	m, err := godotenv.UnmarshalBytes(b)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %s", name, dotenvProblem(b, err))
	}
	return m, nil
}

// dotenvProblem describes a .env parse error by line number and kind only: godotenv's own
// message quotes the file from the bad line on, and the file holds secrets. The bad line is
// the one after the longest prefix of whole lines that parses.
func dotenvProblem(b []byte, err error) string {
	lines := strings.SplitAfter(string(b), "\n")
	good := 0
	for n := len(lines) - 1; n > 0; n-- {
		if _, perr := godotenv.UnmarshalBytes([]byte(strings.Join(lines[:n], ""))); perr == nil {
			good = n
			break
		}
	}
	kind := "syntax error"
	switch msg := err.Error(); {
	case strings.HasPrefix(msg, "unterminated quoted value"):
		kind = "unterminated quoted value"
	case strings.HasPrefix(msg, "unexpected character"):
		kind = "unexpected character in variable name"
	}
	return fmt.Sprintf("line %d: %s", good+1, kind)
}

// mergeSources layers the environment over the .env file; an empty value counts as unset. The
// lower-case `token` variable is the original's fallback for TELEPHONE_TOKEN.
func mergeSources(env, dotenv map[string]string, envFile string) (vals, srcs map[string]string) {
	vals, srcs = map[string]string{}, map[string]string{}
	pick := func(name string) (string, string) { return pickSource(env, dotenv, envFile, name) }
	for _, s := range settings {
		if v, src := pick(s.name); v != "" {
			vals[s.name], srcs[s.name] = v, src
		}
	}
	if vals["TELEPHONE_TOKEN"] == "" {
		if v, src := pick("token"); v != "" {
			vals["TELEPHONE_TOKEN"], srcs["TELEPHONE_TOKEN"] = v, src+" (variable token)"
		}
	}
	return vals, srcs
}

// pickSource returns the value of the variable name, from the environment or else the .env
// file, and where it came from.
func pickSource(env, dotenv map[string]string, envFile, name string) (value, source string) {
	if v := env[name]; v != "" {
		return v, srcEnv
	}
	if v := dotenv[name]; v != "" {
		return v, envFile
	}
	return "", ""
}

// buildConfig applies defaults, parses every setting and runs the cross-checks.
func buildConfig(vals, srcs map[string]string) (Config, []error) {
	c := Config{raw: map[string]string{}, source: srcs}
	var errs []error
	for i := range settings {
		s := &settings[i]
		v, given := vals[s.name]
		if !given {
			v = s.def
		}
		c.raw[s.name] = v
		if err := s.set(&c, v); err != nil {
			errs = append(errs, &ConfigError{Var: s.name, Source: srcs[s.name], Reason: err.Error()})
		}
	}
	if c.TokenDBPath == "" && c.SecretKeyBase != "" {
		c.TokenDBPath = defaultTokenDB
	}
	return c, append(errs, c.crossCheck(vals)...)
}

// crossCheck validates what involves several settings. given holds the settings that were
// set explicitly (not defaulted).
func (c *Config) crossCheck(given map[string]string) []error {
	var errs []error
	bad := func(name, format string, args ...any) {
		errs = append(errs, &ConfigError{Var: name, Reason: fmt.Sprintf(format, args...)})
	}
	if given["PLUGBOARD_URL"] == "" {
		bad("PLUGBOARD_URL", "required: the Plugboard socket URL, e.g. wss://plugboard.example.com/telephone/websocket")
	}
	if c.Token == "" && c.SecretKeyBase == "" && c.ServiceAccountKey == "" {
		bad("TELEPHONE_TOKEN", "required: set TELEPHONE_TOKEN (or token), PLUGBOARD_SERVICE_ACCOUNT_KEY to vend a token, "+
			"or SECRET_KEY_BASE to resume with the token stored in TOKEN_DB_PATH")
	}
	c.Warnings = append(c.Warnings, c.vendingWarnings(given)...)
	if given["TOKEN_DB_PATH"] != "" && c.SecretKeyBase == "" {
		bad("TOKEN_DB_PATH", "needs SECRET_KEY_BASE: stored tokens are encrypted with it")
	}
	if c.MaxBackoff > 0 && c.InitialBackoff > 0 && c.MaxBackoff < c.InitialBackoff {
		bad("MAX_BACKOFF", "must not be less than INITIAL_BACKOFF (%v), got %v", c.InitialBackoff, c.MaxBackoff)
	}
	if c.ChunkSize > 0 && c.MaxResponseSize > 0 && int64(c.ChunkSize) > c.MaxResponseSize {
		bad("CHUNK_SIZE", "must not exceed MAX_RESPONSE_SIZE (%d), got %d", c.MaxResponseSize, c.ChunkSize)
	}
	if given["BACKEND_URL"] != "" && (given["BACKEND_HOST"] != "" || given["BACKEND_PORT"] != "" || given["BACKEND_SCHEME"] != "") {
		c.Warnings = append(c.Warnings, "BACKEND_URL is set: BACKEND_HOST, BACKEND_PORT and BACKEND_SCHEME are ignored")
	}
	if given["OPS_ADDR"] != "" && c.HealthCheckPort != 0 {
		c.Warnings = append(c.Warnings, "OPS_ADDR is set: HEALTH_CHECK_PORT is ignored")
	}
	if (c.ClientCert == "") != (c.ClientKey == "") {
		bad("PLUGBOARD_CLIENT_CERT", "PLUGBOARD_CLIENT_CERT and PLUGBOARD_CLIENT_KEY must be set together")
	} else if c.CAFile != "" || c.ClientCert != "" || len(c.CertPins) > 0 || c.InsecureSkipVerify {
		cfg, err := transport.BuildTLSConfig(transport.Options{CAFile: c.CAFile, CertFile: c.ClientCert,
			KeyFile: c.ClientKey, PinSHA256: c.CertPins, InsecureSkipVerify: c.InsecureSkipVerify})
		if err != nil {
			bad(tlsVar(c), "%v", err)
		}
		c.tlsConfig = cfg
	}
	if c.InsecureSkipVerify && len(c.CertPins) == 0 {
		c.Warnings = append(c.Warnings, "PLUGBOARD_INSECURE_SKIP_VERIFY is set without PLUGBOARD_CERT_PINS: the Plugboard certificate is not verified at all")
	}
	if given["CLIENT_IP_HOPS"] != "" && c.ClientIPHeader == "" {
		c.Warnings = append(c.Warnings, "CLIENT_IP_HOPS is ignored without CLIENT_IP_HEADER: the client address is Plugboard's")
	}
	if c.MaxRetries > 0 {
		c.Warnings = append(c.Warnings, "MAX_RETRIES is accepted for compatibility only: telephone always keeps reconnecting, with backoff up to MAX_BACKOFF")
	}
	return errs
}

// tlsVar names the TLS setting an error most likely concerns.
func tlsVar(c *Config) string {
	switch {
	case c.ClientCert != "" || c.ClientKey != "":
		return "PLUGBOARD_CLIENT_CERT"
	case c.CAFile != "":
		return "PLUGBOARD_CA_FILE"
	default:
		return "PLUGBOARD_CERT_PINS"
	}
}

// backendURL is the URL requests are forwarded to.
func (c *Config) backendURL() string {
	if c.BackendURL != "" {
		return c.BackendURL
	}
	u := url.URL{Scheme: c.BackendScheme, Host: net.JoinHostPort(c.BackendHost, strconv.Itoa(c.BackendPort))}
	return u.String()
}

// opsAddr is the operations server's listen address, "" when it is off. HEALTH_CHECK_PORT
// listens on all interfaces, like the original.
func (c *Config) opsAddr() string {
	if c.OpsAddr != "" {
		return c.OpsAddr
	}
	if c.HealthCheckPort > 0 {
		return ":" + strconv.Itoa(c.HealthCheckPort)
	}
	return ""
}

// memoryBudget is MEMORY_BUDGET as WithMemoryBudget takes it (negative: none).
func (c *Config) memoryBudget() int64 {
	if c.MemoryBudget == 0 {
		return -1
	}
	return c.MemoryBudget
}

// options returns the Client options for this configuration. store and reg may be nil.
func (c *Config) options(log *slog.Logger, store telephone.TokenStore, reg prometheus.Registerer) []telephone.Option {
	opts := []telephone.Option{
		telephone.WithLogger(log),
		telephone.WithConnectTimeout(c.ConnectTimeout),
		telephone.WithHeartbeat(c.HeartbeatInterval, c.HeartbeatMisses),
		telephone.WithPhoenixHeartbeat(c.MonitorInterval),
		telephone.WithReconnectBackoff(c.InitialBackoff, c.MaxBackoff),
		telephone.WithConnections(c.Connections),
		telephone.WithChunkSize(c.ChunkSize),
		telephone.WithMaxConcurrentRequests(c.MaxConcurrent, c.QueueWait),
		telephone.WithMemoryBudget(c.memoryBudget()),
		telephone.WithCircuitBreaker(uint32(c.BreakerFailures), c.BreakerOpen),
		telephone.WithRetries(c.Retries, telephone.DefaultRetryBackoff),
		telephone.WithUTF8Policy(c.UTF8Policy),
	}
	opts = append(opts, c.liveOptions()...)
	if c.Token != "" {
		opts = append(opts, telephone.WithToken(c.Token))
	}
	if c.PlugboardSecret != "" {
		opts = append(opts, telephone.WithPlugboardSecret(c.PlugboardSecret))
	}
	if c.ClientIPHeader != "" {
		opts = append(opts, telephone.WithClientIPHeader(c.ClientIPHeader, c.ClientIPHops))
	}
	if c.tlsConfig != nil {
		opts = append(opts, telephone.WithTLSConfig(c.tlsConfig))
	}
	if store != nil {
		opts = append(opts, telephone.WithTokenStore(store))
	}
	if c.ServiceAccountKey != "" {
		opts = append(opts, telephone.WithTokenVending(telephone.TokenVending{
			APIKey: c.ServiceAccountKey, APIURL: c.APIURL, PathID: c.PathID, InstanceID: c.InstanceID,
		}))
	}
	if reg != nil {
		opts = append(opts, telephone.WithMetrics(reg))
	}
	return opts
}

// liveOptions are the options Client.Reload applies without reconnecting.
func (c *Config) liveOptions() []telephone.Option {
	return []telephone.Option{
		telephone.WithBackendURL(c.backendURL()),
		telephone.WithRequestTimeout(c.RequestTimeout),
		telephone.WithMaxResponseSize(c.MaxResponseSize),
		telephone.WithMaxRequestBody(c.MaxRequestBody),
		telephone.WithRateLimit(c.RateLimit, c.RateBurst),
	}
}

// diff compares the effective settings of c and next: live lists the changed settings that
// can be applied to a running process, restart the ones that need a restart.
func (c *Config) diff(next *Config) (live, restart []string) {
	for _, s := range settings {
		if c.raw[s.name] == next.raw[s.name] {
			continue
		}
		if s.live {
			live = append(live, s.name)
		} else {
			restart = append(restart, s.name)
		}
	}
	return live, restart
}

// withLive returns a copy of c with the live settings named in names taken from next.
func (c *Config) withLive(next *Config, names []string) Config {
	out := *c
	out.raw = make(map[string]string, len(c.raw))
	for k, v := range c.raw {
		out.raw[k] = v
	}
	for _, name := range names {
		out.raw[name] = next.raw[name]
		_ = settingByName(name).set(&out, next.raw[name]) // next was validated: no error
	}
	return out
}

// parseDuration parses a Go duration within [min, max].
func parseDuration(v string, min, max time.Duration) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("not a duration (use Go syntax such as 500ms, 10s or 1m30s): %q", v)
	}
	if d < min || d > max {
		return 0, fmt.Errorf("must be between %v and %v, got %v", min, max, d)
	}
	return d, nil
}

// parseInt parses a base-10 integer within [min, max].
func parseInt(v string, min, max int64) (int64, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("not an integer: %q", v)
	}
	if n < min || n > max {
		return 0, fmt.Errorf("must be between %d and %d, got %d", min, max, n)
	}
	return n, nil
}

// parseRate parses a rate in requests per second; "off", "inf" or "unlimited" disables it.
func parseRate(v string) (float64, error) {
	switch strings.ToLower(v) {
	case "off", "inf", "unlimited":
		return math.Inf(1), nil
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("not a number of requests per second (or off): %q", v)
	}
	if f <= 0 || f > 1e9 {
		return 0, fmt.Errorf("must be above 0 and at most 1e9, got %v", f)
	}
	return f, nil
}
