package telephone

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"sync"
	"time"

	"github.com/verastack/telephone/internal/metrics"
	"github.com/verastack/telephone/phoenix"
)

// buildHandler returns the handler that serves forwarded requests: the user's, or a reverse
// proxy to the backend URL over the configured RoundTripper, guarded by retries and the
// circuit breaker.
func (c *Client) buildHandler() http.Handler {
	if c.conf().handler != nil {
		return c.conf().handler
	}
	rt := c.conf().backend
	if rt == nil {
		rt = backendTransport(c.conf().maxConcurrent)
	}
	rt = &retryTransport{next: rt, max: c.conf().retries, backoff: c.conf().retryBackoff, g: c.guard, log: c.log}
	rt = &breakerTransport{next: rt, g: c.guard, m: c.m}
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			o := c.conf()
			target := o.backendURL
			pr.SetURL(target)
			pr.Out.Host = target.Host
			// Rewrite starts without X-Forwarded-*: put back the ones telephone set (clientip.go).
			for _, h := range []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
				copyHeader(pr.Out.Header, pr.In.Header, h)
			}
			if !o.keepEncoding {
				pr.Out.Header.Set("Accept-Encoding", "identity")
			}
		},
		Transport:    rt,
		BufferPool:   copyBuffers,
		ErrorHandler: c.backendError,
		ErrorLog:     slog.NewLogLogger(c.log.Handler(), slog.LevelDebug),
	}
}

func copyHeader(dst, src http.Header, name string) {
	if v := src.Values(name); len(v) > 0 {
		dst[http.CanonicalHeaderKey(name)] = append([]string(nil), v...)
	}
}

// copyBuffers lends ReverseProxy its 32 KiB body copy buffers, instead of one new buffer
// per request.
var copyBuffers = &bufferPool{}

type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if buf, ok := b.p.Get().(*[]byte); ok {
		return *buf
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) { b.p.Put(&buf) }

// backendTransport is the default backend RoundTripper: leanTransport for plain HTTP, over
// defaultBackendTransport for the rest, both keeping as many idle connections as requests may
// run at once (maxConcurrent), so that a burst at the limit does not close and reopen
// connections.
func backendTransport(maxConcurrent int) http.RoundTripper {
	t := defaultBackendTransport()
	t.MaxIdleConns = max(t.MaxIdleConns, maxConcurrent)
	t.MaxIdleConnsPerHost = max(t.MaxIdleConnsPerHost, maxConcurrent)
	return newLeanTransport(t.MaxIdleConnsPerHost, t)
}

// defaultBackendTransport is http.DefaultTransport's settings with more idle connections per
// host (the proxy talks to one host) and no transparent compression.
func defaultBackendTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 512
	t.MaxIdleConnsPerHost = 256
	t.DisableCompression = true
	t.ResponseHeaderTimeout = 0
	return t
}

// backendError maps a backend failure to a short, safe status and reason; the detail goes
// only to the log.
func (c *Client) backendError(w http.ResponseWriter, r *http.Request, err error) {
	status, reason := http.StatusBadGateway, "Bad Gateway: the backend is unavailable"
	switch {
	case errors.Is(err, errBreakerOpen):
		status, reason = http.StatusServiceUnavailable, "Service Unavailable: the backend is failing; circuit open"
	case errors.Is(err, context.DeadlineExceeded) || r.Context().Err() == context.DeadlineExceeded:
		status, reason = http.StatusGatewayTimeout, "Gateway Timeout: the backend did not answer in time"
	case errors.Is(err, errResponseTooLarge):
		status, reason = http.StatusBadGateway, "Bad Gateway: the backend response is larger than the telephone's limit"
	}
	var ne net.Error
	requestLog(r.Context(), c.log).Warn("backend request failed", slog.String("method", r.Method), slog.String("path", r.URL.Path),
		slog.Int("status", status), slog.Any("error", err),
		slog.Bool("timeout", errors.As(err, &ne) && ne.Timeout()))
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(reason))
}

// isConnError reports whether err happened before any byte of a response: dialing, or the
// connection refused/reset before the request could be written.
func isConnError(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return false
}

// rewindBody gives r a fresh copy of its body for sending it again; false when it cannot.
func rewindBody(r *http.Request) bool {
	if r.Body == nil || r.Body == http.NoBody {
		return true
	}
	if r.GetBody == nil {
		return false
	}
	body, err := r.GetBody()
	if err != nil {
		return false
	}
	r.Body = body
	return true
}

// idempotent methods may be retried after a connection error (the project's retry policy;
// the lean transport's resend on a stale connection follows net/http's narrower rule).
var idempotent = map[string]bool{"GET": true, "HEAD": true, "OPTIONS": true, "PUT": true, "DELETE": true}

// retryTransport retries idempotent requests after connection errors that happened before
// any response byte, with jittered backoff, within the request's deadline and never while
// the circuit is open.
type retryTransport struct {
	next    http.RoundTripper
	max     int
	backoff time.Duration
	g       *guard
	log     *slog.Logger
}

func (rt *retryTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	res, err := rt.next.RoundTrip(r)
	if !idempotent[r.Method] {
		return res, err
	}
	bo := phoenix.Backoff{Initial: rt.backoff, Max: rt.backoff << rt.max}
	for attempt := 0; attempt < rt.max && err != nil && isConnError(err); attempt++ {
		if !rt.g.breakerAllows() {
			return nil, err
		}
		if !rewindBody(r) {
			return nil, err
		}
		if werr := bo.Wait(r.Context()); werr != nil {
			return nil, err
		}
		rt.g.retried()
		rt.log.Debug("retrying backend request", slog.Int("attempt", attempt+1), slog.Any("error", err))
		res, err = rt.next.RoundTrip(r)
	}
	return res, err
}

// breakerTransport counts backend results in the circuit breaker and fails fast while it is open.
// It also records the backend latency.
type breakerTransport struct {
	next http.RoundTripper
	g    *guard
	m    *metrics.Metrics
}

func (bt *breakerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	start := time.Now()
	defer func() { bt.m.Backend(time.Since(start)) }()
	return bt.g.throughBreaker(func() (*http.Response, error) { return bt.next.RoundTrip(r) })
}
