package telephonetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/verastack/telephone/internal/httptoken"
)

// pendingCall is one HTTP caller waiting for its proxy_res. Exactly one
// callResult is sent on res, by whoever removes the call from its channel's
// pending map.
type pendingCall struct {
	res chan callResult // buffered 1
}

type callResult struct {
	payload      json.RawMessage // the proxy_res payload
	disconnected bool            // the channel ended first
}

// proxyRequest is the proxy_req payload (docs/PROTOCOL.md §3.3).
type proxyRequest struct {
	RequestID   string            `json:"request_id"`
	Method      string            `json:"method"`
	Path        string            `json:"path"`
	Headers     map[string]string `json:"headers"`
	Body        string            `json:"body"`
	QueryString string            `json:"query_string"`
}

// routedMethods are the methods Plugboard's router sends to the proxy.
var routedMethods = map[string]bool{
	http.MethodGet: true, http.MethodPost: true, http.MethodPut: true, http.MethodPatch: true,
	http.MethodDelete: true, http.MethodOptions: true, http.MethodHead: true,
}

// serveCall is the HTTP front: /call/<path_id>/<rest> becomes a proxy_req for
// one joined telephone of the path and its proxy_res becomes the response.
func (s *Server) serveCall(w http.ResponseWriter, r *http.Request) {
	if !routedMethods[r.Method] {
		httpError(w, http.StatusNotFound, "No route for "+r.Method)
		return
	}
	pathID, fwd, ok := s.mountedPath(w, r)
	if !ok {
		return
	}
	body, status := readBody(r)
	if status != 0 {
		httpError(w, status, "Invalid request body")
		return
	}
	method := r.Method
	if method == http.MethodHead {
		method = http.MethodGet // Plug.Head
	}
	req := proxyRequest{
		RequestID: uuid.NewString(), Method: method, Path: fwd,
		Headers: requestHeaders(r), Body: body, QueryString: r.URL.RawQuery,
	}
	res, status := s.forward(r.Context(), pathID, req)
	switch status {
	case 0:
		writeProxyResponse(w, res)
	case http.StatusServiceUnavailable:
		httpError(w, status, "No telephone connected for this path")
	case http.StatusGatewayTimeout:
		httpError(w, status, "Gateway Timeout - Telephone did not respond in time")
	case http.StatusBadGateway:
		httpError(w, status, "Bad Gateway - Telephone disconnected during request")
	default:
		// the caller went away; nothing to answer
	}
}

// readBody reads the whole request body. Bodies over MaxBodySize get 413, a
// read error 400, and a body that is not valid UTF-8 400: it could not travel
// as the JSON string the protocol uses (Plugboard itself is expected to crash
// the channel on such a body; telephonetest refuses it instead).
func readBody(r *http.Request) (string, int) {
	b, err := io.ReadAll(io.LimitReader(r.Body, MaxBodySize+1))
	switch {
	case err != nil:
		return "", http.StatusBadRequest
	case len(b) > MaxBodySize:
		return "", http.StatusRequestEntityTooLarge
	case !utf8.Valid(b):
		return "", http.StatusBadRequest
	}
	return string(b), 0
}

// requestHeaders builds the proxy_req headers: lower-case names, one value
// each (the last occurrence wins), host and transfer-encoding included.
func requestHeaders(r *http.Request) map[string]string {
	h := make(map[string]string, len(r.Header)+2)
	for k, vs := range r.Header {
		if len(vs) > 0 {
			h[strings.ToLower(k)] = vs[len(vs)-1]
		}
	}
	h["host"] = r.Host
	if len(r.TransferEncoding) > 0 {
		h["transfer-encoding"] = strings.Join(r.TransferEncoding, ", ")
	}
	if _, ok := h["content-length"]; !ok && r.ContentLength > 0 {
		h["content-length"] = strconv.FormatInt(r.ContentLength, 10)
	}
	return h
}

// splitCallPath validates a raw /call/... path like Plugboard's validate_path
// plug and router: it returns the path id and the forwarded path (segments
// percent-decoded and joined with "/", "/" when empty, a trailing slash kept),
// or an HTTP status: 400 for a bad path, 404 when there is no path id.
func splitCallPath(escaped string) (pathID, fwd string, status int) {
	var segs []string
	for _, raw := range strings.Split(escaped, "/") {
		if raw == "" {
			continue
		}
		dec, err := decodeSegment(raw)
		if err != nil {
			return "", "", http.StatusBadRequest
		}
		segs = append(segs, dec)
	}
	if len(segs) > maxSegments {
		return "", "", http.StatusBadRequest
	}
	if len(segs) < 2 || segs[0] != "call" {
		return "", "", http.StatusNotFound
	}
	rest := segs[2:]
	fwd = "/" + strings.Join(rest, "/")
	if len(rest) > 0 && strings.HasSuffix(escaped, "/") {
		fwd += "/"
	}
	return segs[1], fwd, 0
}

// Limits of Plugboard's validate_path plug.
const (
	maxSegments   = 50
	maxSegmentLen = 255
)

var errBadSegment = errors.New("telephonetest: invalid path segment")

// decodeSegment percent-decodes one raw path segment, refusing what
// validate_path refuses: "..", NUL (raw or encoded) and segments over 255 bytes.
func decodeSegment(raw string) (string, error) {
	if len(raw) > maxSegmentLen {
		return "", errBadSegment
	}
	dec, err := pathUnescape(raw)
	if err != nil {
		return "", err
	}
	lower := strings.ToLower(raw)
	if strings.Contains(dec, "..") || strings.Contains(dec, "\x00") ||
		strings.Contains(lower, "%2e%2e") || strings.Contains(lower, "%00") {
		return "", errBadSegment
	}
	return dec, nil
}

// pathUnescape decodes %XX escapes only ("+" stays "+"), like URI.decode.
func pathUnescape(s string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", errBadSegment
		}
		v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			return "", errBadSegment
		}
		b.WriteByte(byte(v))
		i += 2
	}
	return b.String(), nil
}

// pathKnown reports whether a token was ever minted for pathID (Plugboard: the
// path exists and is a mount).
// mountedPath splits a /call/<path_id>/<rest> request into the path id and the forwarded
// path, answering 400 for an invalid path and 404 for a path no token was minted for.
func (s *Server) mountedPath(w http.ResponseWriter, r *http.Request) (pathID, fwd string, ok bool) {
	pathID, fwd, status := splitCallPath(r.URL.EscapedPath())
	if status != 0 {
		httpError(w, status, "Invalid path")
		return "", "", false
	}
	if !s.pathKnown(pathID) {
		httpError(w, http.StatusNotFound, "No mount matches this path")
		return "", "", false
	}
	return pathID, fwd, true
}

func (s *Server) pathKnown(pathID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rec := range s.tokens {
		if rec.pathID == pathID {
			return true
		}
	}
	return false
}

// pickLocked chooses the next joined channel of the path, round-robin in join
// order (docs/PROTOCOL.md §3.8), or nil. s.mu must be held.
func (s *Server) pickLocked(pathID string) *channel {
	list := s.paths[pathID]
	if len(list) == 0 {
		return nil
	}
	n := s.rr[pathID]
	s.rr[pathID] = n + 1
	return list[n%uint64(len(list))]
}

// forward pushes req to a telephone of the path and waits for its proxy_res.
// The status is 0 with a response, 503 with no telephone, 504 after the request
// timeout (the waiting entry is removed, unlike Plugboard), 502 when the
// channel ended first, or 499 when ctx ended (the caller left).
func (s *Server) forward(ctx context.Context, pathID string, req proxyRequest) (json.RawMessage, int) {
	s.mu.Lock()
	ch := s.pickLocked(pathID)
	if ch == nil {
		s.mu.Unlock()
		return nil, http.StatusServiceUnavailable
	}
	pc := &pendingCall{res: make(chan callResult, 1)}
	ch.pending[req.RequestID] = pc
	s.mu.Unlock()
	ch.sock.push(ch.joinRef, ch.topic, "proxy_req", req, false)
	t := time.NewTimer(s.cfg.requestTimeout)
	defer t.Stop()
	status := 0
	select {
	case r := <-pc.res:
		return r.outcome()
	case <-t.C:
		status = http.StatusGatewayTimeout
	case <-ctx.Done():
		status = statusClientGone
	}
	s.mu.Lock()
	_, mine := ch.pending[req.RequestID]
	delete(ch.pending, req.RequestID)
	s.mu.Unlock()
	if !mine { // the result was sent concurrently
		return (<-pc.res).outcome()
	}
	return nil, status
}

// statusClientGone is nginx's "client closed request"; nothing is written.
const statusClientGone = 499

func (r callResult) outcome() (json.RawMessage, int) {
	if r.disconnected {
		return nil, http.StatusBadGateway
	}
	return r.payload, 0
}

// proxyResponse is the proxy_res payload (docs/PROTOCOL.md §3.4), decoded loosely so
// that a wrong type can be reported instead of failing the whole decode.
type proxyResponse struct {
	Status  json.RawMessage            `json:"status"`
	Headers map[string]json.RawMessage `json:"headers"`
	Body    json.RawMessage            `json:"body"`
	Chunked json.RawMessage            `json:"chunked"`
	Chunks  json.RawMessage            `json:"chunks"`
}

// writeProxyResponse turns a proxy_res into the HTTP response. A proxy_res of
// the wrong shape (status not an integer in 200-999, headers not an object,
// body or chunks not strings) is answered 500, as a crash of Plugboard's
// controller would be.
func writeProxyResponse(w http.ResponseWriter, raw json.RawMessage) {
	var res proxyResponse
	if err := json.Unmarshal(raw, &res); err != nil {
		httpError(w, http.StatusInternalServerError, "Invalid proxy_res from telephone")
		return
	}
	status, ok := responseStatus(res.Status)
	body, okBody := optionalString(res.Body)
	var chunks []string
	chunked := string(res.Chunked) == "true"
	if chunked && !isNull(res.Chunks) {
		ok = ok && json.Unmarshal(res.Chunks, &chunks) == nil
	}
	if !ok || !okBody {
		httpError(w, http.StatusInternalServerError, "Invalid proxy_res from telephone")
		return
	}
	h := w.Header()
	h.Set("Cache-Control", "max-age=0, private, must-revalidate") // Plug's default
	for name, v := range res.Headers {
		setResponseHeader(h, name, headerValue(v))
	}
	if chunked && len(chunks) > 0 {
		writeChunked(w, status, chunks)
		return
	}
	if h.Get("Content-Type") == "" {
		h.Set("Content-Type", "text/plain; charset=utf-8") // Phoenix's text/2
	}
	if bodyAllowed(status) {
		h.Set("Content-Length", strconv.Itoa(len(body)))
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

// writeChunked writes each chunk as one HTTP/1.1 chunk, flushing after each.
func writeChunked(w http.ResponseWriter, status int, chunks []string) {
	if w.Header().Get("Content-Type") == "" {
		w.Header()["Content-Type"] = nil // send_chunked adds none; stop net/http sniffing
	}
	w.WriteHeader(status)
	rc := http.NewResponseController(w)
	for _, c := range chunks {
		if c == "" {
			continue
		}
		if _, err := io.WriteString(w, c); err != nil {
			return // like Plugboard: the rest is dropped
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

func responseStatus(raw json.RawMessage) (int, bool) {
	if isNull(raw) {
		return http.StatusOK, true
	}
	n, err := strconv.Atoi(string(raw))
	if err != nil || n < 200 || n > 999 {
		return 0, false
	}
	return n, true
}

func optionalString(raw json.RawMessage) (string, bool) {
	if isNull(raw) {
		return "", true
	}
	var s string
	err := json.Unmarshal(raw, &s)
	return s, err == nil
}

func isNull(raw json.RawMessage) bool { return len(raw) == 0 || string(raw) == "null" }

// headerValue stringifies a header value: strings as they are, null as "",
// anything else as its JSON text.
func headerValue(raw json.RawMessage) string {
	if isNull(raw) {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	return string(raw)
}

// setResponseHeader sets one telephone header (names are case-insensitive;
// Plugboard lower-cases them). Invalid names and values are dropped, and so are
// the framing headers net/http computes itself (content-length,
// transfer-encoding, connection): copied verbatim they could contradict the body.
func setResponseHeader(h http.Header, name, value string) {
	lower := strings.ToLower(name)
	switch lower {
	case "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade":
		return
	}
	if !httptoken.Valid(lower) || strings.ContainsAny(value, "\r\n\x00") {
		return
	}
	h.Set(lower, value)
}

func bodyAllowed(status int) bool {
	return status != http.StatusNoContent && status != http.StatusNotModified
}

// httpError writes a small HTML error page, as Plugboard renders its errors.
func httpError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	title := fmt.Sprintf("%d %s", status, http.StatusText(status))
	fmt.Fprintf(w, "<!DOCTYPE html><html><head><title>%s</title></head><body><h1>%s</h1><p>%s</p></body></html>\n",
		title, title, html.EscapeString(msg))
}
