package telephone

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/verastack/telephone/internal/httptoken"
)

// proxyReq is the proxy_req payload (docs/PROTOCOL.md §3.3).
type proxyReq struct {
	RequestID   string            `json:"request_id"`
	Method      string            `json:"method"`
	Path        string            `json:"path"`
	Headers     map[string]string `json:"headers"` // null or absent: none
	Body        string            `json:"body"`
	QueryString string            `json:"query_string"`

	header http.Header // validated headers, canonical names
	host   string
}

// badRequest is a proxy_req that failed validation; Reason goes to the caller with a 400.
type badRequest struct{ Reason string }

func (e *badRequest) Error() string { return "invalid proxy_req: " + e.Reason }

var knownMethods = map[string]bool{
	"GET": true, "POST": true, "PUT": true, "PATCH": true, "DELETE": true, "HEAD": true, "OPTIONS": true,
}

// parseProxyReq decodes and validates a proxy_req. The returned request id is set whenever
// the payload carried a well-formed one, so that a 400 can be answered.
// The payload is decoded in one pass; only a payload that fails it is looked at again, to
// say why.
func parseProxyReq(payload json.RawMessage) (*proxyReq, error) {
	var pr proxyReq
	if err := json.Unmarshal(payload, &pr); err != nil {
		var loose struct {
			RequestID   string          `json:"request_id"`
			Method      string          `json:"method"`
			Path        string          `json:"path"`
			Headers     json.RawMessage `json:"headers"`
			Body        string          `json:"body"`
			QueryString string          `json:"query_string"`
		}
		fieldsErr := json.Unmarshal(payload, &loose)
		pr = proxyReq{RequestID: loose.RequestID}
		if !validRequestID(pr.RequestID) {
			pr.RequestID = ""
		}
		return &pr, badFields(fieldsErr, loose.Headers)
	}
	if !validRequestID(pr.RequestID) {
		pr.RequestID = ""
		return &pr, &badRequest{"request_id must be a UUID"}
	}
	return &pr, pr.validate()
}

func validRequestID(id string) bool {
	if len(id) != 36 {
		return false
	}
	_, err := uuid.Parse(id)
	return err == nil
}

func (pr *proxyReq) validate() error {
	pr.Method = strings.ToUpper(pr.Method)
	if !knownMethods[pr.Method] {
		return &badRequest{"unsupported method"}
	}
	if reason := checkTarget(pr.Path, pr.QueryString); reason != "" {
		return &badRequest{reason}
	}
	pr.QueryString = escapeQuery(pr.QueryString)
	return pr.parseHeaders()
}

// badFields says what is wrong with a payload that did not decode: fieldsErr is the error
// of decoding it with headers left raw (nil: only the headers are wrong).
func badFields(fieldsErr error, headers json.RawMessage) error {
	if fieldsErr == nil {
		var obj map[string]json.RawMessage
		if json.Unmarshal(headers, &obj) != nil {
			return &badRequest{"headers must be an object"}
		}
		return &badRequest{"header values must be strings"}
	}
	return &badRequest{"payload fields have the wrong types"}
}

func (pr *proxyReq) parseHeaders() error {
	pr.header = make(http.Header, len(pr.Headers))
	for name, value := range pr.Headers {
		if !httptoken.Valid(name) {
			return &badRequest{"invalid header name"}
		}
		if strings.ContainsAny(value, "\r\n\x00") {
			return &badRequest{"header value contains control characters"}
		}
		pr.header.Set(name, value)
	}
	pr.host = pr.header.Get("Host")
	pr.header.Del("Host")
	for _, h := range connectionTokens(pr.header) {
		pr.header.Del(h)
	}
	for h := range hopHeaders {
		pr.header.Del(h)
	}
	return nil
}

// httpRequest builds the *http.Request the handler serves, from remote (the client address).
// The path is the one Plugboard sent, taken as the decoded path (Plugboard's router decodes
// segments): it is never decoded again.
func (pr *proxyReq) httpRequest(ctx context.Context, remote string) *http.Request {
	u := &url.URL{Path: pr.Path, RawQuery: pr.QueryString}
	var body io.ReadCloser = http.NoBody
	if pr.Body != "" {
		body = io.NopCloser(strings.NewReader(pr.Body))
	}
	r := &http.Request{
		Method: pr.Method, URL: u, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: pr.header, Body: body, ContentLength: int64(len(pr.Body)),
		Host: pr.host, RemoteAddr: remote, RequestURI: u.RequestURI(),
	}
	if pr.Body != "" {
		b := pr.Body
		r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(b)), nil }
	}
	return r.WithContext(ctx)
}

// dispatch runs on the socket's reader goroutine: it validates and admits the request,
// answering rejections at once, and starts a worker for the rest. The request counts as in
// flight on the session from its arrival until its answer is queued (for the drain).
func (s *session) dispatch(payload json.RawMessage) {
	s.inflight.Add(1)
	if !s.admit(payload) {
		s.done()
	}
}

// admit answers a proxy_req that is rejected at once and reports false, or hands it to a
// worker (which calls done) and reports true.
func (s *session) admit(payload json.RawMessage) bool {
	c := s.c
	pr, err := parseProxyReq(payload)
	if pr.RequestID == "" {
		c.log.Warn("dropping proxy_req without a usable request_id", slog.Any("error", err))
		return false
	}
	log := c.log.With(slog.String("request_id", pr.RequestID))
	var br *badRequest
	if errors.As(err, &br) {
		log.Warn("invalid proxy_req", slog.String("reason", br.Reason))
		c.m.Rejected("invalid")
		s.refuse(pr, errorResponse(http.StatusBadRequest, "Bad Request: "+br.Reason))
		return false
	}
	if s.refusing.Load() || !c.acquire() {
		c.m.Rejected("shutdown")
		s.refuse(pr, errorResponse(http.StatusServiceUnavailable, "Service Unavailable: telephone is shutting down"))
		return false
	}
	ticket, rej := c.guard.admit(pr.RequestID, int64(len(pr.Body)))
	if rej != nil {
		c.release()
		if rej.res != nil {
			// Debug, not Warn: a flood must not become a log flood; metrics and Status count them.
			log.Debug("request rejected", slog.String("reason", rej.reason))
			s.refuse(pr, rej.res)
		}
		return false
	}
	// The body is in memory already; waiting here (on the socket's reader) keeps more
	// frames from being read while the budget is exhausted.
	bodyBytes := int64(len(pr.Body))
	if res := c.guard.budget.acquire(s.ctx, bodyBytes); res != nil {
		ticket.done()
		c.release()
		c.m.Rejected("memory")
		log.Debug("request rejected", slog.String("reason", "memory"))
		s.refuse(pr, res)
		return false
	}
	s.workers.Go(func() {
		defer c.release()
		defer s.done()
		defer ticket.done()
		defer c.guard.budget.release(bodyBytes)
		s.serveRequest(pr, ticket, log)
	})
	return true
}

// refuse answers a request refused before it reached a worker, and shows it to the observer
// with its answer.
func (s *session) refuse(pr *proxyReq, res *response) {
	observed := s.c.observeRequest(s, pr, time.Now())
	s.reply(pr.RequestID, res)
	if observed != nil {
		observed(res)
	}
}

// done counts one request of the session answered, signalling idle when none is left.
func (s *session) done() {
	if s.inflight.Add(-1) == 0 {
		select {
		case s.idle <- struct{}{}:
		default:
		}
	}
}

// serveRequest forwards one admitted request and sends its proxy_res exactly once: the handler's
// response, or a 504 at the deadline when the handler has not finished by then (its late
// output is discarded).
func (s *session) serveRequest(pr *proxyReq, t *ticket, log *slog.Logger) {
	c := s.c
	start := time.Now()
	observed := c.observeRequest(s, pr, start)
	ctx, cancel := context.WithTimeout(s.ctx, c.conf().requestTimeout)
	defer cancel()
	ctx, tr := c.startTrace(ctx, s, pr, start)
	var once sync.Once
	send := func(res *response) {
		sent := false
		defer func() {
			if !sent {
				res.discard() // a 504 went first: this late response is dropped
			}
		}()
		once.Do(func() {
			sent = true
			c.m.Request(pr.Method, res.status, time.Since(start))
			log.Debug("request served", slog.String("method", pr.Method), slog.String("path", pr.Path),
				slog.Int("status", res.status), slog.Duration("elapsed", time.Since(start)), slog.Int64("bytes", res.bodyLen()))
			tr.sending(ctx)
			if observed != nil {
				res.keepText() // the observer sees the body; its chunks are the socket's once sent
			}
			s.reply(pr.RequestID, res)
			tr.end(res)
			if observed != nil {
				observed(res)
			}
		})
	}
	if rej := tr.queued(ctx, t.wait(ctx)); rej != nil {
		log.Debug("request rejected", slog.String("reason", rej.reason))
		send(rej.res)
		return
	}
	w := newCollector(c.conf().maxResponseSize, c.conf().chunkSize)
	w.useBudget(ctx, c.guard.budget)
	defer w.releaseBudget() // what the response did not take over (see collector.result)
	stop := context.AfterFunc(ctx, func() {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			w.abandon()
			send(errorResponse(http.StatusGatewayTimeout, "Gateway Timeout: the backend did not answer in time"))
		}
	})
	defer stop()
	send(tr.backend(ctx, pr.header, func(ctx context.Context) *response { return c.forward(ctx, w, pr, log) }))
}

// reply encodes and sends a proxy_res; a failure means the socket is gone and Plugboard has
// already answered the caller with 502.
func (s *session) reply(id string, res *response) {
	c := s.c
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), c.conf().connectTimeout)
	defer cancel()
	if err := res.send(ctx, s.ch, id, c.conf().chunkSize); err != nil {
		c.log.Warn("proxy_res not sent", slog.String("request_id", id), slog.Any("error", err))
	}
}

// forward serves the request through the handler into w, with the request's deadline.
func (c *Client) forward(ctx context.Context, w *collector, pr *proxyReq, log *slog.Logger) *response {
	r := pr.httpRequest(context.WithValue(ctx, requestLogKey{}, log), c.setForwarded(pr.header))
	c.runHandler(w, r, log)
	if w.tooLarge() {
		c.m.Rejected("size")
	}
	return w.result(c.conf().utf8Policy, log, c.m)
}

// requestLogKey carries a request's logger (with its request_id) to the backend error handler.
type requestLogKey struct{}

// requestLog returns the logger forward stored in ctx, else fallback.
func requestLog(ctx context.Context, fallback *slog.Logger) *slog.Logger {
	if l, ok := ctx.Value(requestLogKey{}).(*slog.Logger); ok {
		return l
	}
	return fallback
}

// runHandler calls the handler, turning a panic into a 502 (http.ErrAbortHandler is how
// httputil.ReverseProxy reports a body copy failure).
func (c *Client) runHandler(w *collector, r *http.Request, log *slog.Logger) {
	defer func() {
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				log.Error("handler panicked", slog.Any("panic", p))
			}
			w.fail(http.StatusBadGateway, "Bad Gateway: the backend response was cut short")
		}
	}()
	c.handler.ServeHTTP(w, r)
}

// plugboardOrigin returns Plugboard's host:port (the RemoteAddr of forwarded requests unless
// WithClientIPHeader says otherwise) and the X-Forwarded-Proto its socket scheme implies.
func plugboardOrigin(u *url.URL) (hostPort, proto string) {
	port, proto := u.Port(), "http"
	if u.Scheme == "wss" {
		proto = "https"
	}
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[proto]
	}
	return net.JoinHostPort(u.Hostname(), port), proto
}

func errorResponse(status int, reason string) *response {
	return &response{
		status: status,
		header: http.Header{"Content-Type": {"text/plain; charset=utf-8"}},
		body:   reason,
	}
}
