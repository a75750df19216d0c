package telephone

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/verastack/telephone/internal/metrics"
)

// errResponseTooLarge is returned by collector.Write once the body limit would be exceeded.
var errResponseTooLarge = errors.New("telephone: response body exceeds the limit")

// errAbandoned is returned by collector.Write after the request was answered without it.
var errAbandoned = errors.New("telephone: request already answered")

// collector is the http.ResponseWriter handlers write to. It enforces the body limit while
// writing, so memory never exceeds the limit. It is safe for use by the handler and the
// deadline watchdog at once.
type collector struct {
	mu        sync.Mutex // guards every field
	header    http.Header
	status    int
	body      bytes.Buffer
	limit     int64
	overflow  bool
	abandoned bool
	failed    *response
}

func newCollector(limit int64) *collector {
	return &collector{header: make(http.Header), limit: limit}
}

func (w *collector) Header() http.Header { return w.header }

func (w *collector) WriteHeader(code int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.status != 0 || code < 200 || code > 999 {
		return // informational responses and repeated calls are ignored
	}
	w.status = code
}

func (w *collector) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.abandoned {
		return 0, errAbandoned
	}
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.body.Cap() == 0 {
		w.presize()
	}
	if int64(w.body.Len())+int64(len(p)) > w.limit {
		w.overflow = true
		return 0, errResponseTooLarge
	}
	return w.body.Write(p)
}

// presize reserves the declared Content-Length (within the limit) before the first write,
// so a large body is not copied again and again while the buffer grows.
func (w *collector) presize() {
	if n, err := strconv.ParseInt(w.header.Get("Content-Length"), 10, 64); err == nil && n > 0 && n <= w.limit {
		w.body.Grow(int(n))
	}
}

// Flush implements http.Flusher; the whole response travels in one proxy_res anyway.
func (w *collector) Flush() {}

func (w *collector) abandon() {
	w.mu.Lock()
	w.abandoned = true
	w.mu.Unlock()
}

func (w *collector) fail(status int, reason string) {
	w.mu.Lock()
	if w.failed == nil {
		w.failed = errorResponse(status, reason)
	}
	w.mu.Unlock()
}

func (w *collector) tooLarge() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.overflow
}

// result turns what the handler wrote into the response to send.
func (w *collector) result(policy UTF8Policy, log *slog.Logger, m *metrics.Metrics) *response {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.overflow:
		return errorResponse(http.StatusBadGateway, "Bad Gateway: the backend response is larger than the telephone's limit")
	case w.failed != nil:
		return w.failed
	}
	body := w.body.Bytes()
	if !utf8.Valid(body) {
		if policy == UTF8Reject {
			m.Rejected("encoding")
			log.Warn("backend body is not valid UTF-8", slog.String("content_type", w.header.Get("Content-Type")),
				slog.String("content_encoding", w.header.Get("Content-Encoding")))
			return errorResponse(http.StatusBadGateway, "Bad Gateway: the backend response body is not valid UTF-8 text, which Plugboard cannot carry")
		}
		body = bytes.ToValidUTF8(body, []byte("\uFFFD"))
	}
	status := w.status
	if status == 0 {
		status = http.StatusOK
	}
	return &response{status: status, header: w.header, body: body, log: log, m: m}
}

// response is what goes back to Plugboard in a proxy_res.
type response struct {
	status int
	header http.Header
	body   []byte
	log    *slog.Logger
	m      *metrics.Metrics
}

// proxyRes is the proxy_res payload (PROTOCOL.md §3.4).
type proxyRes struct {
	RequestID string            `json:"request_id"`
	Status    int               `json:"status"`
	Headers   map[string]string `json:"headers"`
	Body      string            `json:"body"`
	Chunked   bool              `json:"chunked,omitempty"`
	Chunks    []string          `json:"chunks,omitempty"`
}

// droppedHeaders no longer describe the body Plugboard writes, or are hop-by-hop.
var droppedHeaders = map[string]bool{
	"Content-Length": true, "Transfer-Encoding": true, "Connection": true, "Keep-Alive": true,
	"Proxy-Connection": true, "Te": true, "Trailer": true, "Upgrade": true,
}

// wireHeaders flattens headers to one value per name: list-valued headers are joined with
// ", ", and of several Set-Cookie headers only the first can be carried (the loss is logged).
func (r *response) wireHeaders() map[string]string {
	out := make(map[string]string, len(r.header))
	for name, values := range r.header {
		if droppedHeaders[name] || len(values) == 0 {
			continue
		}
		key := strings.ToLower(name)
		if name == "Set-Cookie" && len(values) > 1 {
			if r.log != nil {
				r.log.Warn("only the first Set-Cookie header can cross Plugboard", slog.Int("dropped", len(values)-1))
			}
			r.m.CookiesDropped(len(values) - 1)
			out[key] = values[0]
			continue
		}
		out[key] = strings.Join(values, ", ")
	}
	return out
}

// encode renders the proxy_res payload: a plain body, or chunked with every chunk at most
// chunkSize bytes and every boundary on a UTF-8 character boundary.
func (r *response) encode(requestID string, chunkSize int) ([]byte, error) {
	p := proxyRes{RequestID: requestID, Status: r.status, Headers: r.wireHeaders()}
	if len(r.body) > chunkSize {
		p.Chunked, p.Chunks = true, splitUTF8(r.body, chunkSize)
	} else {
		p.Body = string(r.body)
	}
	var buf bytes.Buffer
	buf.Grow(len(r.body) + 256)
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(p); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// splitUTF8 cuts b into chunks of at most size bytes (size >= 4) without splitting a
// multi-byte character.
func splitUTF8(b []byte, size int) []string {
	chunks := make([]string, 0, len(b)/size+1)
	for len(b) > 0 {
		n := min(size, len(b))
		if n < len(b) {
			for n > 0 && !utf8.RuneStart(b[n]) {
				n--
			}
			if n == 0 {
				n = min(size, len(b))
			}
		}
		chunks = append(chunks, string(b[:n]))
		b = b[n:]
	}
	return chunks
}
