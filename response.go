package telephone

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/verastack/telephone/internal/jsonstr"
	"github.com/verastack/telephone/internal/metrics"
	"github.com/verastack/telephone/phoenix"
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
	body      escapedBody // escaped as written: held once, in pooled chunks
	written   int64       // body bytes written
	limit     int64
	overflow  bool
	abandoned bool
	failed    *response

	budget  *budget         // nil: none
	ctx     context.Context // the request's, for waiting on the budget
	charged int64           // bytes taken from budget
	refused *response       // the budget's answer when it refused bytes
}

// useBudget makes the collector take the bytes of its escaped body from b as the body grows.
// result hands what the body holds to the response, which gives it back as its chunks are
// written (budgetShare); releaseBudget gives back what was not handed over.
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
	need := total - w.charged
	if need <= 0 {
		return nil
	}
	if total > w.budget.size { // can never be paid: waiting would only delay the answer
		w.refused = errorResponse(http.StatusBadGateway, budgetResponseTooBigReason)
		return errBudget
	}
	if res := w.budget.acquire(w.ctx, need); res != nil {
		w.refused = res
		return errBudget
	}
	w.charged += need
	return nil
}

// newCollector collects a body of at most limit bytes, cut into Plugboard chunks of
// chunkSize bytes when longer (docs/PROTOCOL.md §3.4).
func newCollector(limit int64, chunkSize int) *collector {
	w := &collector{header: make(http.Header), limit: limit}
	w.body.init(chunkSize)
	return w
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
	if w.overflow || w.written+int64(len(p)) > w.limit {
		w.overflow = true
		w.body.release()
		return 0, errResponseTooLarge
	}
	if w.refused != nil {
		return 0, errBudget
	}
	w.written += int64(len(p))
	w.body.write(p)
	if err := w.charge(w.body.n); err != nil {
		w.body.release()
		return 0, err
	}
	return len(p), nil
}

// Flush implements http.Flusher; the whole response travels in one proxy_res anyway.
func (w *collector) Flush() {}

func (w *collector) abandon() {
	w.mu.Lock()
	w.abandoned = true // the body is left to the collector's owner: a response may be on its way
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
	w.body.finish()
	if w.overflow || w.refused != nil || w.failed != nil || (w.body.invalid && policy == UTF8Reject) {
		w.body.release()
	}
	switch {
	case w.overflow:
		return errorResponse(http.StatusBadGateway, "Bad Gateway: the backend response is larger than the telephone's limit")
	case w.refused != nil:
		m.Rejected("memory")
		return w.refused
	case w.failed != nil:
		return w.failed
	}
	if w.body.invalid && policy == UTF8Reject {
		m.Rejected("encoding")
		log.Warn("backend body is not valid UTF-8", slog.String("content_type", w.header.Get("Content-Type")),
			slog.String("content_encoding", w.header.Get("Content-Encoding")))
		return errorResponse(http.StatusBadGateway, "Bad Gateway: the backend response body is not valid UTF-8 text, which Plugboard cannot carry")
	}
	status := w.status
	if status == 0 {
		status = http.StatusOK
	}
	res := &response{status: status, header: w.header, esc: &w.body, log: log, m: m}
	res.share.hold(w.budget, w.charged)
	w.charged = 0
	return res
}

// response is what goes back to Plugboard in a proxy_res: a body telephone wrote itself
// (body), or the handler's, escaped already (esc).
type response struct {
	status int
	header http.Header
	body   string
	esc    *escapedBody
	share  budgetShare // the memory budget esc holds, given back as it is written
	log    *slog.Logger
	m      *metrics.Metrics
}

// keepText sets body to the text of an escaped body too (for an observer: once sent, the
// chunks are gone). It costs one decoded copy of the body, so only observed requests pay it:
// the chunks are decoded piece by piece (a piece is at most the chunk size) straight into it.
func (r *response) keepText() {
	if r.esc == nil {
		return
	}
	parts := make([]io.Reader, 0, len(r.esc.chunks)+2)
	parts = append(parts, strings.NewReader(`["`))
	for _, c := range r.esc.chunks {
		parts = append(parts, bytes.NewReader(c))
	}
	dec := json.NewDecoder(io.MultiReader(append(parts, strings.NewReader(`"]`))...))
	var text strings.Builder
	text.Grow(int(r.esc.raw))
	if _, err := dec.Token(); err != nil { // [
		return // cannot happen: the content was escaped by jsonstr
	}
	for dec.More() {
		tok, err := dec.Token()
		piece, ok := tok.(string)
		if err != nil || !ok {
			return // cannot happen, as above
		}
		text.WriteString(piece)
	}
	r.body = text.String()
}

// bodyLen is the length of the body in bytes.
func (r *response) bodyLen() int64 {
	if r.esc != nil {
		return r.esc.raw
	}
	return int64(len(r.body))
}

// send sends the proxy_res on ch: a small payload built in one frame, a large one as the
// frame's envelope, the payload's head, the body's chunks as they are (each given back to the
// pool once written) and its tail, in one message.
func (r *response) send(ctx context.Context, ch *phoenix.Channel, requestID string, chunkSize int) error {
	if r.esc == nil || len(r.esc.chunks) <= 1 {
		defer r.discard() // SendAppend copied the body into its frame
		size, appendTo := r.encoder(requestID, chunkSize)
		return ch.SendAppend(ctx, "proxy_res", size, appendTo)
	}
	chunked := r.esc.chunked()
	head, tail := r.appendHead(make([]byte, 0, 256), requestID, r.headersJSON(), chunked), appendTail(nil, chunked)
	chunks := r.esc.take()
	parts := append(append(append(make([][]byte, 0, len(chunks)+2), head), chunks...), tail)
	clear(chunks)
	share, last := &r.share, len(parts)-1
	return ch.SendParts(ctx, "proxy_res", parts, func(i int, p []byte) {
		if i == 0 || i == last {
			return // the payload's own head and tail: not the body, not charged
		}
		putChunk(p)
		share.give(int64(len(p))) // the socket wrote the chunk (or never will)
	})
}

// discard gives back what a response's body holds: its chunks and its share of the budget.
// It is for a body that is not sent, or that was copied.
func (r *response) discard() {
	r.esc.release()
	r.share.releaseAll()
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

// headersJSON is wireHeaders as a JSON object.
func (r *response) headersJSON() []byte {
	b, _ := json.Marshal(r.wireHeaders()) // a map of strings: cannot fail
	return b
}

// encoder returns the expected size of the proxy_res payload and a function appending it to
// a buffer (the frame, with phoenix.Channel.SendAppend: the body is escaped once, into it).
func (r *response) encoder(requestID string, chunkSize int) (int, func([]byte) []byte) {
	headers := r.headersJSON()
	size := len(r.body) + len(r.body)/8 + len(headers) + 128
	if r.esc != nil {
		size = int(r.esc.n) + len(headers) + 128 // n counts the separators between chunks too
	}
	return size, func(dst []byte) []byte { return r.appendPayload(dst, requestID, headers, chunkSize) }
}

// appendHead appends the payload up to the body's content (the content of the body string,
// or of the first element of chunks).
func (r *response) appendHead(dst []byte, requestID string, headers []byte, chunked bool) []byte {
	dst = append(dst, `{"request_id":`...)
	dst = jsonstr.Append(dst, requestID, false)
	dst = append(dst, `,"status":`...)
	dst = strconv.AppendInt(dst, int64(r.status), 10)
	dst = append(dst, `,"headers":`...)
	dst = append(dst, headers...)
	if chunked {
		return append(dst, `,"body":"","chunked":true,"chunks":["`...)
	}
	return append(dst, `,"body":"`...)
}

// appendTail appends the payload after the body's content.
func appendTail(dst []byte, chunked bool) []byte {
	if chunked {
		return append(dst, `"]}`...)
	}
	return append(dst, `"}`...)
}

func (r *response) appendPayload(dst []byte, requestID string, headers []byte, chunkSize int) []byte {
	if r.esc != nil {
		dst = r.appendHead(dst, requestID, headers, r.esc.chunked())
		for _, c := range r.esc.chunks {
			dst = append(dst, c...)
		}
		return appendTail(dst, r.esc.chunked())
	}
	chunked := len(r.body) > chunkSize
	dst = r.appendHead(dst, requestID, headers, chunked)
	if !chunked {
		return appendTail(jsonstr.AppendContent(dst, r.body, false), false)
	}
	for i, chunk := range splitUTF8(r.body, chunkSize) {
		if i > 0 {
			dst = append(dst, `","`...)
		}
		dst = jsonstr.AppendContent(dst, chunk, false)
	}
	return appendTail(dst, true)
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
