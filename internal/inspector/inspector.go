// Package inspector is the CLI's live request inspector: a telephone.Observer that keeps the
// most recent requests and WebSocket connections in a bounded ring, and a web page (served by
// Handler) that lists them live over Server-Sent Events, shows one with its headers and
// bodies, filters the list and replays a request to the backend directly.
//
// Memory is bounded twice: at most MaxEntries entries, and at most MaxBytes of kept headers
// and bodies (each body is kept up to BodyLimit bytes). Secret values (Authorization, Cookie,
// Set-Cookie and similar headers, token-like query parameters) are masked in everything the
// page receives unless ShowSecrets is set; replay still sends the real values.
package inspector

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/verastack/telephone"
)

// Defaults of Options.
const (
	DefaultMaxEntries = 500
	DefaultMaxBytes   = 16 << 20
	DefaultBodyLimit  = 64 << 10
	replayTimeout     = 30 * time.Second
)

// Options configures an Inspector. Zero values mean the defaults.
type Options struct {
	MaxEntries  int   // entries kept (default 500)
	MaxBytes    int64 // bytes of headers and bodies kept across all entries (default 16 MiB)
	BodyLimit   int   // bytes kept of each body (default 64 KiB); the rest is counted, not kept
	ShowSecrets bool  // show secret header and query values instead of masking them

	// Backend is where Replay sends requests (its path is prefixed, as WithBackendURL does);
	// nil disables replay. SetBackend changes it later.
	Backend *url.URL
	// Transport sends replayed requests (default: http.DefaultTransport).
	Transport http.RoundTripper
}

// Inspector records traffic and serves the inspector page. It is safe for concurrent use.
// Close ends the page's event streams; the Inspector keeps recording after it.
type Inspector struct {
	opt     Options
	backend atomic.Pointer[url.URL] // where replays go; nil: replay is off
	client  *http.Client
	done    chan struct{} // closed by Close
	close   sync.Once

	mu      sync.Mutex // guards everything below
	entries []*entry   // oldest first
	byID    map[uint64]*entry
	bytes   int64 // kept bytes of all entries
	nextID  uint64
	subs    map[chan event]struct{}
}

// New returns an Inspector with opt.
func New(opt Options) *Inspector {
	if opt.MaxEntries <= 0 {
		opt.MaxEntries = DefaultMaxEntries
	}
	if opt.MaxBytes <= 0 {
		opt.MaxBytes = DefaultMaxBytes
	}
	if opt.BodyLimit <= 0 {
		opt.BodyLimit = DefaultBodyLimit
	}
	rt := opt.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	in := &Inspector{
		opt: opt, done: make(chan struct{}), byID: map[uint64]*entry{}, subs: map[chan event]struct{}{},
		client: &http.Client{Transport: rt, Timeout: replayTimeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
	}
	in.SetBackend(opt.Backend)
	return in
}

// SetBackend changes where replays go (after the backend was reconfigured); nil turns replay
// off.
func (in *Inspector) SetBackend(u *url.URL) {
	if u != nil {
		c := *u
		u = &c
	}
	in.backend.Store(u)
}

// Close ends every event stream of the page, so that its server can shut down.
func (in *Inspector) Close() { in.close.Do(func() { close(in.done) }) }

// entry is one request or WebSocket connection.
type entry struct {
	id      uint64
	kind    string // "http" or "ws"
	session int
	start   time.Time
	pending bool

	method, path, query, host string
	reqHeader                 http.Header
	reqBody                   body

	status     int
	duration   time.Duration
	respHeader http.Header
	respBody   body

	wsURL, wsProtocol, wsReason            string
	framesIn, bytesIn, framesOut, bytesOut int64

	cost int64 // bytes counted against MaxBytes
}

// body is a kept prefix of a body and its full size.
type body struct {
	data string
	size int
}

// keep copies at most BodyLimit bytes of s: a copy, so that a kept prefix never pins a large
// body (or the buffer it was cut from) in memory.
func (in *Inspector) keep(s string) body {
	return body{data: strings.Clone(s[:min(len(s), in.opt.BodyLimit)]), size: len(s)}
}

func headerBytes(h http.Header) int64 {
	var n int64
	for k, vs := range h {
		for _, v := range vs {
			n += int64(len(k) + len(v) + 4)
		}
	}
	return n
}

func (e *entry) computeCost() int64 {
	return 256 + int64(len(e.reqBody.data)+len(e.respBody.data)+len(e.path)+len(e.query)+len(e.wsURL)) +
		headerBytes(e.reqHeader) + headerBytes(e.respHeader)
}

// ObserveRequest implements telephone.Observer.
func (in *Inspector) ObserveRequest(r *telephone.ObservedRequest) func(*telephone.ObservedResponse) {
	e := &entry{kind: "http", session: r.Session, start: r.Start, pending: true, method: r.Method,
		path: r.Path, query: r.Query, host: r.Host, reqHeader: r.Header, reqBody: in.keep(r.Body)}
	in.add(e)
	return func(res *telephone.ObservedResponse) {
		in.update(e, func() {
			e.pending, e.status, e.duration = false, res.Status, res.Duration
			e.respHeader, e.respBody = res.Header, in.keep(res.Body)
		})
	}
}

// ObserveWebSocket implements telephone.Observer.
func (in *Inspector) ObserveWebSocket(ws *telephone.ObservedWebSocket) func(*telephone.ObservedWebSocketEnd) {
	path, query := ws.URL, ""
	if u, err := url.Parse(ws.URL); err == nil {
		path, query = u.Path, u.RawQuery
	}
	e := &entry{kind: "ws", session: ws.Session, start: ws.Start, pending: true, method: "WS", path: path,
		query: query, reqHeader: ws.Header, wsURL: ws.URL, wsProtocol: ws.Protocol, status: 101}
	in.add(e)
	return func(end *telephone.ObservedWebSocketEnd) {
		in.update(e, func() {
			e.pending, e.status, e.wsReason, e.duration = false, end.Code, end.Reason, end.Duration
			e.framesIn, e.bytesIn, e.framesOut, e.bytesOut = end.FramesIn, end.BytesIn, end.FramesOut, end.BytesOut
		})
	}
}

// add appends e, evicting the oldest entries past the bounds, and tells the page.
func (in *Inspector) add(e *entry) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.nextID++
	e.id = in.nextID
	e.cost = e.computeCost()
	in.entries = append(in.entries, e)
	in.byID[e.id] = e
	in.bytes += e.cost
	in.evictLocked()
	if len(in.subs) > 0 { // no page open: nothing to build (a page that opens gets a snapshot)
		in.broadcastLocked(in.entryEvent(e))
	}
}

// update applies f to e if it is still kept, re-accounts its bytes and tells the page.
func (in *Inspector) update(e *entry, f func()) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.byID[e.id] != e {
		return // evicted meanwhile
	}
	f()
	in.bytes -= e.cost
	e.cost = e.computeCost()
	in.bytes += e.cost
	if len(in.subs) > 0 {
		in.broadcastLocked(in.entryEvent(e))
	}
	in.evictLocked()
}

func (in *Inspector) evictLocked() {
	for len(in.entries) > 1 && (len(in.entries) > in.opt.MaxEntries || in.bytes > in.opt.MaxBytes) {
		old := in.entries[0]
		in.entries[0] = nil
		in.entries = in.entries[1:]
		delete(in.byID, old.id)
		in.bytes -= old.cost
		if len(in.subs) > 0 {
			in.broadcastLocked(event{name: "remove", data: strconv.AppendUint(nil, old.id, 10)})
		}
	}
}

// Stats reports how many entries and bytes are kept.
func (in *Inspector) Stats() (entries int, bytes int64) {
	in.mu.Lock()
	defer in.mu.Unlock()
	return len(in.entries), in.bytes
}

// summary is one row of the page's list.
type summary struct {
	ID       uint64  `json:"id"`
	Kind     string  `json:"kind"`
	Session  int     `json:"session"`
	Start    string  `json:"start"`
	Pending  bool    `json:"pending"`
	Method   string  `json:"method"`
	Target   string  `json:"target"` // path and masked query
	Status   int     `json:"status"`
	Millis   float64 `json:"ms"`
	ReqSize  int64   `json:"req_size"`
	RespSize int64   `json:"resp_size"`
}

// summaryOf is e's row; the caller holds in.mu.
func (in *Inspector) summaryOf(e *entry) summary {
	s := summary{ID: e.id, Kind: e.kind, Session: e.session, Start: e.start.Format("15:04:05.000"), Pending: e.pending,
		Method: e.method, Target: in.target(e), Status: e.status, Millis: float64(e.duration.Microseconds()) / 1000,
		ReqSize: int64(e.reqBody.size), RespSize: int64(e.respBody.size)}
	if e.kind == "ws" {
		s.ReqSize, s.RespSize = e.bytesIn, e.bytesOut
	}
	return s
}

// entryEvent is the event that shows e's row on a page; the caller holds in.mu.
func (in *Inspector) entryEvent(e *entry) event {
	b, _ := json.Marshal(in.summaryOf(e)) // strings, integers, bools and a finite float: cannot fail
	return event{name: "entry", data: b}
}

func (in *Inspector) target(e *entry) string {
	if e.query == "" {
		return e.path
	}
	return e.path + "?" + maskQuery(e.query, in.opt.ShowSecrets)
}
