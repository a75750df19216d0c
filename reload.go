package telephone

import (
	"net/url"
	"reflect"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// live holds the settings that Reload can change while the Client runs.
type live struct {
	requestTimeout atomic.Int64 // time.Duration
	maxResponse    atomic.Int64
	maxRequestBody atomic.Int64
	backend        atomic.Pointer[url.URL]
}

func (l *live) init(o *options) {
	l.requestTimeout.Store(int64(o.requestTimeout))
	l.maxResponse.Store(o.maxResponseSize)
	l.maxRequestBody.Store(o.maxRequestBody)
	if o.backendURL != nil {
		l.backend.Store(o.backendURL)
	}
}

func (l *live) timeout() time.Duration { return time.Duration(l.requestTimeout.Load()) }

// optionFields maps the options struct's fields to the option that sets them, and says which
// ones Reload applies live.
var optionFields = []struct {
	name  string
	live  bool
	field func(*options) any
}{
	{"WithRateLimit", true, func(o *options) any { return [2]any{o.rateLimit, o.rateBurst} }},
	{"WithRequestTimeout", true, func(o *options) any { return o.requestTimeout }},
	{"WithMaxResponseSize", true, func(o *options) any { return o.maxResponseSize }},
	{"WithMaxRequestBody", true, func(o *options) any { return o.maxRequestBody }},
	{"WithBackendURL", true, func(o *options) any { return o.backendURL }},
	{"WithToken", false, func(o *options) any { return o.token }},
	{"WithChunkSize", false, func(o *options) any { return o.chunkSize }},
	{"WithMaxConcurrentRequests", false, func(o *options) any { return [2]any{o.maxConcurrent, o.queueWait} }},
	{"WithCircuitBreaker", false, func(o *options) any { return [2]any{o.breakerFailures, o.breakerOpenFor} }},
	{"WithRetries", false, func(o *options) any { return [2]any{o.retries, o.retryBackoff} }},
	{"WithHeartbeat", false, func(o *options) any { return [2]any{o.heartbeatInterval, o.heartbeatMisses} }},
	{"WithPhoenixHeartbeat", false, func(o *options) any { return o.phoenixHeartbeat }},
	{"WithConnectTimeout", false, func(o *options) any { return o.connectTimeout }},
	{"WithReconnectBackoff", false, func(o *options) any { return [2]any{o.backoffInitial, o.backoffMax} }},
	{"WithPlugboardSecret", false, func(o *options) any { return o.plugboardSecret }},
	{"WithUTF8Policy", false, func(o *options) any { return o.utf8Policy }},
	{"WithWebSocketLimits", false, func(o *options) any {
		return [4]any{o.maxWebSockets, o.maxWebSocketFrame, o.webSocketIdle, o.webSocketQueue}
	}},
}

// Reload applies opts to the running Client without dropping its connection. WithRateLimit,
// WithRequestTimeout, WithMaxResponseSize, WithMaxRequestBody and WithBackendURL (when the
// Client was built with WithBackendURL) take effect for the next request; changed is their
// names. Other options that differ from the current configuration are not applied and are
// listed in needRestart. Invalid options change nothing and return an *OptionError.
func (c *Client) Reload(opts ...Option) (changed, needRestart []string, err error) {
	c.reloadMu.Lock()
	defer c.reloadMu.Unlock()
	next := c.cur
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt(&next); err != nil {
			return nil, nil, err
		}
	}
	if err := next.validate(); err != nil {
		return nil, nil, err
	}
	for _, f := range optionFields {
		if reflect.DeepEqual(f.field(&c.cur), f.field(&next)) {
			continue
		}
		if f.live && (f.name != "WithBackendURL" || c.o.backendURL != nil) {
			changed = append(changed, f.name)
		} else {
			needRestart = append(needRestart, f.name)
		}
	}
	c.applyLive(&next)
	return changed, needRestart, nil
}

// applyLive stores the live settings of next; callers hold reloadMu.
func (c *Client) applyLive(next *options) {
	c.live.requestTimeout.Store(int64(next.requestTimeout))
	c.live.maxResponse.Store(next.maxResponseSize)
	c.live.maxRequestBody.Store(next.maxRequestBody)
	if next.backendURL != nil && c.o.backendURL != nil {
		c.live.backend.Store(next.backendURL)
	}
	c.guard.limiter.SetLimit(rate.Limit(next.rateLimit))
	c.guard.limiter.SetBurst(next.rateBurst)
	c.cur.rateLimit, c.cur.rateBurst = next.rateLimit, next.rateBurst
	c.cur.requestTimeout, c.cur.maxResponseSize, c.cur.maxRequestBody = next.requestTimeout, next.maxResponseSize, next.maxRequestBody
	if c.o.backendURL != nil {
		c.cur.backendURL = next.backendURL
	}
}
