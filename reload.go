package telephone

import (
	"reflect"
	"sync/atomic"
)

// config is the Client's configuration: one immutable options snapshot that Reload replaces as
// a whole. A reader loads the snapshot once per operation and never changes it.
type config struct{ p atomic.Pointer[options] }

func newConfig(o options) *config {
	cf := &config{}
	cf.p.Store(&o)
	return cf
}

func (cf *config) load() *options { return cf.p.Load() }

// conf is the Client's current configuration snapshot.
func (c *Client) conf() *options { return c.cfg.load() }

// reloadRule ties an exported option to the options fields it sets and says whether Reload
// applies it to the running Client. byIdentity compares the fields by identity (the same
// pointer, logger, store, handler…) rather than by content; a func value cannot be compared,
// so passing such an option to Reload always counts as a change.
type reloadRule struct {
	name       string
	live       bool
	byIdentity bool
	fields     func(*options) []any // pointers to the fields
}

// reloadRules covers every exported With* option; TestReloadAccountsForEveryOption checks it.
var reloadRules = []reloadRule{
	{"WithRateLimit", true, false, func(o *options) []any { return []any{&o.rateLimit, &o.rateBurst} }},
	{"WithRequestTimeout", true, false, func(o *options) []any { return []any{&o.requestTimeout} }},
	{"WithMaxResponseSize", true, false, func(o *options) []any { return []any{&o.maxResponseSize} }},
	{"WithMaxRequestBody", true, false, func(o *options) []any { return []any{&o.maxRequestBody} }},
	{"WithBackendURL", true, false, func(o *options) []any { return []any{&o.backendURL} }},
	{"WithWebSocketHandshakeTimeout", true, false, func(o *options) []any { return []any{&o.webSocketHandshake} }},
	{"WithClockSkew", true, false, func(o *options) []any { return []any{&o.tokenSkew} }},
	{"WithAcceptEncodingPassthrough", true, false, func(o *options) []any { return []any{&o.keepEncoding} }},
	{"WithToken", false, false, func(o *options) []any { return []any{&o.token, &o.emptyToken} }},
	{"WithTokenVending", false, false, func(o *options) []any { return []any{&o.vending} }},
	{"WithTokenStore", false, true, func(o *options) []any { return []any{&o.store} }},
	{"WithHandler", false, true, func(o *options) []any { return []any{&o.handler} }},
	{"WithBackend", false, true, func(o *options) []any { return []any{&o.backend} }},
	{"WithLogger", false, true, func(o *options) []any { return []any{&o.logger} }},
	{"WithTLSConfig", false, true, func(o *options) []any { return []any{&o.tlsConfig} }},
	{"WithProxy", false, true, func(o *options) []any { return []any{&o.proxy} }},
	{"WithMetrics", false, true, func(o *options) []any { return []any{&o.metrics} }},
	{"WithObserver", false, true, func(o *options) []any { return []any{&o.observer} }},
	{"WithTracerProvider", false, true, func(o *options) []any { return []any{&o.tracerProvider, &o.tracer} }},
	{"WithChunkSize", false, false, func(o *options) []any { return []any{&o.chunkSize} }},
	{"WithMaxConcurrentRequests", false, false, func(o *options) []any { return []any{&o.maxConcurrent, &o.queueWait} }},
	{"WithMemoryBudget", false, false, func(o *options) []any { return []any{&o.memoryBudget} }},
	{"WithCircuitBreaker", false, false, func(o *options) []any { return []any{&o.breakerFailures, &o.breakerOpenFor} }},
	{"WithRetries", false, false, func(o *options) []any { return []any{&o.retries, &o.retryBackoff} }},
	{"WithHeartbeat", false, false, func(o *options) []any { return []any{&o.heartbeatInterval, &o.heartbeatMisses} }},
	{"WithPhoenixHeartbeat", false, false, func(o *options) []any { return []any{&o.phoenixHeartbeat} }},
	{"WithConnections", false, false, func(o *options) []any { return []any{&o.connections} }},
	{"WithConnectTimeout", false, false, func(o *options) []any { return []any{&o.connectTimeout} }},
	{"WithReconnectBackoff", false, false, func(o *options) []any { return []any{&o.backoffInitial, &o.backoffMax} }},
	{"WithPlugboardSecret", false, false, func(o *options) []any { return []any{&o.plugboardSecret} }},
	{"WithUTF8Policy", false, false, func(o *options) []any { return []any{&o.utf8Policy} }},
	{"WithClientIPHeader", false, false, func(o *options) []any { return []any{&o.clientIPHeader, &o.clientIPHops} }},
	{"WithWebSocketLimits", false, false, func(o *options) []any {
		return []any{&o.maxWebSockets, &o.maxWebSocketFrame, &o.webSocketIdle, &o.webSocketQueue}
	}},
}

// Reload applies opts to the running Client without dropping its connection. WithRateLimit,
// WithRequestTimeout, WithMaxResponseSize, WithMaxRequestBody, WithClockSkew,
// WithAcceptEncodingPassthrough and WithBackendURL (when the Client was built with
// WithBackendURL) take effect for the next request, token or connection;
// WithWebSocketHandshakeTimeout for the next proxied WebSocket. changed is their names. Every
// other option that differs from the current configuration is not applied and is listed in
// needRestart. Invalid options change nothing and return an *OptionError.
func (c *Client) Reload(opts ...Option) (changed, needRestart []string, err error) {
	c.reloadMu.Lock()
	defer c.reloadMu.Unlock()
	cur := c.conf()
	next := *cur
	touched, err := applyOptions(&next, opts)
	if err != nil {
		return nil, nil, err
	}
	if err := next.validate(); err != nil {
		return nil, nil, err
	}
	for i := range reloadRules {
		r := &reloadRules[i]
		if !r.differs(cur, &next, touched[r.name]) {
			continue
		}
		if r.live && (r.name != "WithBackendURL" || cur.backendURL != nil) {
			changed = append(changed, r.name)
		} else {
			needRestart = append(needRestart, r.name)
			r.copy(&next, cur) // keep what runs
		}
	}
	c.cfg.p.Store(&next)
	c.guard.setRate(&next)
	return changed, needRestart, nil
}

// applyOptions applies opts to o in order and returns the names of the rules whose fields
// they set (seen by applying each option to a zero options as well: options are pure setters).
func applyOptions(o *options, opts []Option) (map[string]bool, error) {
	touched := map[string]bool{}
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt(o); err != nil {
			return nil, err
		}
		var probe options
		_ = opt(&probe)
		for i := range reloadRules {
			for _, p := range reloadRules[i].fields(&probe) {
				if !reflect.ValueOf(p).Elem().IsZero() {
					touched[reloadRules[i].name] = true
				}
			}
		}
	}
	return touched, nil
}

// differs reports whether the rule's fields differ between a and b; touched says whether
// the Reload passed this option.
func (r *reloadRule) differs(a, b *options, touched bool) bool {
	fa, fb := r.fields(a), r.fields(b)
	for i := range fa {
		x, y := reflect.ValueOf(fa[i]).Elem().Interface(), reflect.ValueOf(fb[i]).Elem().Interface()
		if !r.byIdentity {
			if !reflect.DeepEqual(x, y) {
				return true
			}
			continue
		}
		if x == nil || y == nil || !reflect.TypeOf(x).Comparable() || !reflect.TypeOf(y).Comparable() {
			if touched || (x == nil) != (y == nil) {
				return true
			}
			continue
		}
		if x != y {
			return true
		}
	}
	return false
}

// copy sets the rule's fields of dst to those of src.
func (r *reloadRule) copy(dst, src *options) {
	fd, fs := r.fields(dst), r.fields(src)
	for i := range fd {
		reflect.ValueOf(fd[i]).Elem().Set(reflect.ValueOf(fs[i]).Elem())
	}
}
