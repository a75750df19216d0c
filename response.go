package telephone

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/verastack/telephone/internal/jsonstr"
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
	body      strings.Builder // String() hands the body on without copying it
	limit     int64
	overflow  bool
	abandoned bool
	failed    *response

	budget   *budget         // nil: none
	ctx      context.Context // the request's, for waiting on the budget
	charged  int64           // bytes taken from budget
	refused  *response       // the budget's answer when it refused bytes
	presized bool            // the buffer was reserved for a declared length
}

// useBudget makes the collector take its bytes from b (presizedBudgetBytes per body byte
// when the length was declared, growingBudgetBytes otherwise) as the body grows; releaseBudget gives them back once the response was sent.
func (w *collector) useBudget(ctx context.Context, b *budget) {
	w.mu.Lock()
	w.budget, w.ctx = b, ctx
	w.mu.Unlock()
}

func (w *collector) releaseBudget() {
	w.mu.Lock()
	w.budget.release(w.charged)
	w.charged = 0
	w.mu.Unlock()
}

// charge makes sure a body of total bytes is paid for; callers hold mu.
func (w *collector) charge(total int64) error {
	switch {
	case w.refused != nil:
		return errBudget
	case w.budget == nil:
		return nil
	}
	factor := int64(growingBudgetBytes)
	if w.presized {
		factor = presizedBudgetBytes
	}
	need := factor*total - w.charged
	if need <= 0 {
		return nil
	}
	if res := w.budget.acquire(w.ctx, need); res != nil {
		w.refused = res
		return errBudget
	}
	w.charged += need
	return nil
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
	if err := w.charge(int64(w.body.Len() + len(p))); err != nil {
		return 0, err
	}
	return w.body.Write(p)
}

// presize reserves the declared Content-Length (within the limit) before the first write,
// so a large body is not copied again and again while the buffer grows.
func (w *collector) presize() {
	if n, err := strconv.ParseInt(w.header.Get("Content-Length"), 10, 64); err == nil && n > 0 && n <= w.limit {
		w.presized = true
		if w.charge(n) == nil {
			w.body.Grow(int(n))
		}
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
	case w.refused != nil:
		m.Rejected("memory")
		return w.refused
	case w.failed != nil:
		return w.failed
	}
	body := w.body.String()
	if !utf8.ValidString(body) {
		if policy == UTF8Reject {
			m.Rejected("encoding")
			log.Warn("backend body is not valid UTF-8", slog.String("content_type", w.header.Get("Content-Type")),
				slog.String("content_encoding", w.header.Get("Content-Encoding")))
			return errorResponse(http.StatusBadGateway, "Bad Gateway: the backend response body is not valid UTF-8 text, which Plugboard cannot carry")
		}
		body = strings.ToValidUTF8(body, "\uFFFD")
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
	body   string
	log    *slog.Logger
	m      *metrics.Metrics
}

// wireHeaders flattens headers to one value per name: list-valued headers are joined with
// ", ", and of several Set-Cookie headers only the first can be carried (the loss is logged).
func (r *response) wireHeaders() map[string]string {
	out := make(map[string]string, len(r.header))
	for name, values := range r.header {
		if hopHeaders[name] || len(values) == 0 {
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

// encode renders the proxy_res payload (docs/PROTOCOL.md §3.4): {request_id, status, headers,
// body} or, above chunkSize, {..., "body":"", "chunked":true, "chunks":[...]} with every chunk
// at most chunkSize bytes and every boundary on a UTF-8 character boundary. It is built in one
// buffer (the body is escaped straight into it), so a large body is copied once, not through
// encoding/json's intermediate buffers.
func (r *response) encode(requestID string, chunkSize int) ([]byte, error) {
	size, appendTo, err := r.encoder(requestID, chunkSize)
	if err != nil {
		return nil, err
	}
	return appendTo(make([]byte, 0, size)), nil
}

// encoder returns the expected size of the proxy_res payload and a function appending it to
// a buffer (the frame, with phoenix.Channel.SendAppend: the body is escaped once, into it).
func (r *response) encoder(requestID string, chunkSize int) (int, func([]byte) []byte, error) {
	headers, err := json.Marshal(r.wireHeaders())
	if err != nil {
		return 0, nil, err
	}
	size := len(r.body) + len(r.body)/8 + len(headers) + 128
	return size, func(dst []byte) []byte { return r.appendPayload(dst, requestID, headers, chunkSize) }, nil
}

func (r *response) appendPayload(dst []byte, requestID string, headers []byte, chunkSize int) []byte {
	dst = append(dst, `{"request_id":`...)
	dst = jsonstr.Append(dst, requestID, false)
	dst = append(dst, `,"status":`...)
	dst = strconv.AppendInt(dst, int64(r.status), 10)
	dst = append(dst, `,"headers":`...)
	dst = append(dst, headers...)
	if len(r.body) <= chunkSize {
		dst = append(dst, `,"body":`...)
		dst = jsonstr.Append(dst, r.body, false)
		return append(dst, '}')
	}
	dst = append(dst, `,"body":"","chunked":true,"chunks":[`...)
	for i, chunk := range splitUTF8(r.body, chunkSize) {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = jsonstr.Append(dst, chunk, false)
	}
	return append(dst, "]}"...)
}

// splitUTF8 cuts s into chunks of at most size bytes (size >= 4) without splitting a
// multi-byte character. The chunks share s's memory.
func splitUTF8(s string, size int) []string {
	chunks := make([]string, 0, len(s)/size+1)
	for len(s) > 0 {
		n := min(size, len(s))
		if n < len(s) {
			for n > 0 && !utf8.RuneStart(s[n]) {
				n--
			}
			if n == 0 {
				n = min(size, len(s))
			}
		}
		chunks = append(chunks, s[:n])
		s = s[n:]
	}
	return chunks
}
