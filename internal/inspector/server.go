package inspector

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

//go:embed page.html static
var assets embed.FS

var page = template.Must(template.New("page.html").Funcs(template.FuncMap{"size": humanSize}).ParseFS(assets, "page.html"))

// humanSize formats a byte count for the page.
func humanSize(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + " MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + " KiB"
	}
	return strconv.FormatInt(n, 10) + " bytes"
}

// replayHeader must accompany a replay: a cross-site form cannot set it, and a cross-site
// script that tries needs a CORS preflight, which the inspector never grants.
const replayHeader = "X-Telephone-Inspector"

// Handler serves the page (/), its scripts and styles (/static/), the event stream (/events),
// one entry's details (/entries/{id}) and replays (POST /entries/{id}/replay). Requests whose
// Host is not a loopback name or the address the page was reached on are refused (DNS
// rebinding).
func (in *Inspector) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(assets, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /{$}", in.servePage)
	mux.HandleFunc("GET /events", in.serveEvents)
	mux.HandleFunc("GET /entries/{id}", in.serveEntry)
	mux.HandleFunc("POST /entries/{id}/replay", in.serveReplay)
	return in.checkHost(mux)
}

// checkHost refuses requests that name a host other than the server's own address or a
// loopback name, so that a web page elsewhere cannot reach the inspector by DNS rebinding.
func (in *Inspector) checkHost(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.Host)
		if err != nil {
			host = r.Host
		}
		local, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
		if !allowedHost(host, local) {
			http.Error(w, "inspector: unexpected Host", http.StatusForbidden)
			return
		}
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("X-Frame-Options", "DENY")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'")
		w.Header().Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

func allowedHost(host string, local net.Addr) bool {
	host = strings.Trim(host, "[]")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	if ip := net.ParseIP(host); ip != nil {
		if ip.IsLoopback() {
			return true
		}
		if ta, ok := local.(*net.TCPAddr); ok && ta.IP.Equal(ip) {
			return true
		}
	}
	return false
}

func (in *Inspector) servePage(w http.ResponseWriter, _ *http.Request) {
	var buf bytes.Buffer
	err := page.Execute(&buf, map[string]any{
		"MaxEntries": in.opt.MaxEntries, "MaxBytes": in.opt.MaxBytes, "BodyLimit": int64(in.opt.BodyLimit),
		"Masked": !in.opt.ShowSecrets,
	})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(buf.Bytes())
}

// event is one Server-Sent Event.
type event struct {
	name string
	data []byte
}

// subscriberBuffer is how many events a slow page may lag behind before its stream is ended
// (the browser reconnects and gets a fresh snapshot).
const subscriberBuffer = 1024

// broadcastLocked queues ev for every page; a page that lags too far is dropped.
func (in *Inspector) broadcastLocked(ev event) {
	for ch := range in.subs {
		select {
		case ch <- ev:
		default:
			delete(in.subs, ch)
			close(ch)
		}
	}
}

// subscribe returns a channel of events that starts with a reset and every kept entry.
func (in *Inspector) subscribe() chan event {
	in.mu.Lock()
	defer in.mu.Unlock()
	ch := make(chan event, subscriberBuffer+len(in.entries)+1)
	ch <- event{name: "reset", data: []byte("{}")}
	for _, e := range in.entries {
		ch <- in.entryEvent(e)
	}
	in.subs[ch] = struct{}{}
	return ch
}

func (in *Inspector) unsubscribe(ch chan event) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if _, ok := in.subs[ch]; ok {
		delete(in.subs, ch)
		close(ch)
	}
}

// eventWriteTimeout bounds each write to a page's event stream.
const eventWriteTimeout = 10 * time.Second

// serveEvents streams the list to one page until it goes away or the Inspector is closed.
func (in *Inspector) serveEvents(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	ch := in.subscribe()
	defer in.unsubscribe(ch)
	for {
		select {
		case <-r.Context().Done():
			return
		case <-in.done:
			return
		case ev, ok := <-ch:
			if !ok {
				return
			}
			_ = rc.SetWriteDeadline(time.Now().Add(eventWriteTimeout))
			if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev.name, ev.data); err != nil {
				return
			}
			if len(ch) == 0 {
				if err := rc.Flush(); err != nil {
					return
				}
			}
		}
	}
}

// details is one entry as the details pane shows it.
type details struct {
	summary
	Host       string       `json:"host,omitempty"`
	ReqHeader  []headerLine `json:"req_headers"`
	ReqBody    *shownBody   `json:"req_body,omitempty"`
	RespHeader []headerLine `json:"resp_headers"`
	RespBody   *shownBody   `json:"resp_body,omitempty"`
	WSURL      string       `json:"ws_url,omitempty"`
	WSProtocol string       `json:"ws_protocol,omitempty"`
	WSReason   string       `json:"ws_reason,omitempty"`
	FramesIn   int64        `json:"frames_in"`
	FramesOut  int64        `json:"frames_out"`
	Replayable string       `json:"replay,omitempty"` // "" when it can be replayed, else why not
}

func (in *Inspector) lookup(r *http.Request) *entry {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		return nil
	}
	return in.byID[id]
}

func (in *Inspector) serveEntry(w http.ResponseWriter, r *http.Request) {
	in.mu.Lock()
	e := in.lookup(r)
	if e == nil {
		in.mu.Unlock()
		http.Error(w, "no such entry (it may have been evicted)", http.StatusNotFound)
		return
	}
	d := details{summary: in.summaryOf(e)}
	show := in.opt.ShowSecrets
	d.Host, d.ReqHeader, d.RespHeader = e.host, showHeaders(e.reqHeader, show), showHeaders(e.respHeader, show)
	d.WSURL, d.WSProtocol, d.WSReason = maskURL(e.wsURL, show), e.wsProtocol, e.wsReason
	d.FramesIn, d.FramesOut = e.framesIn, e.framesOut
	if e.kind == "http" {
		rb := showBody(e.reqBody)
		d.ReqBody = &rb
		if !e.pending {
			sb := showBody(e.respBody)
			d.RespBody = &sb
		}
	}
	d.Replayable = in.replayable(e)
	in.mu.Unlock()
	writeJSON(w, http.StatusOK, d)
}

// replayable says why e cannot be replayed, or "".
func (in *Inspector) replayable(e *entry) string {
	switch {
	case in.backend.Load() == nil:
		return "replay is off: no backend URL"
	case e.kind != "http":
		return "WebSocket connections cannot be replayed"
	case len(e.reqBody.data) < e.reqBody.size:
		return fmt.Sprintf("the request body (%d bytes) was larger than the %d bytes kept", e.reqBody.size, in.opt.BodyLimit)
	}
	return ""
}

// replayResult is the backend's answer to a replay.
type replayResult struct {
	Status   int          `json:"status"`
	Millis   float64      `json:"ms"`
	Header   []headerLine `json:"headers"`
	Body     shownBody    `json:"body"`
	Error    string       `json:"error,omitempty"`
	Replayed string       `json:"url"`
}

func (in *Inspector) serveReplay(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get(replayHeader) != "replay" {
		http.Error(w, "replay needs the "+replayHeader+": replay header", http.StatusForbidden)
		return
	}
	in.mu.Lock()
	e := in.lookup(r)
	var why string
	var req *http.Request
	if e != nil {
		if why = in.replayable(e); why == "" {
			if req = in.replayRequest(r.Context(), e); req == nil {
				why = "replay is off: no backend URL" // turned off since replayable looked
			}
		}
	}
	in.mu.Unlock()
	switch {
	case e == nil:
		http.Error(w, "no such entry (it may have been evicted)", http.StatusNotFound)
		return
	case why != "":
		http.Error(w, why, http.StatusConflict)
		return
	}
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(replayTimeout + eventWriteTimeout))
	writeJSON(w, http.StatusOK, in.replay(req))
}

// replayRequest rebuilds e's request for the backend much as the telephone sends it: the end
// client's own forwarding headers dropped (telephone does not pass them on), X-Forwarded-Host
// set. It is replayed from this host, not from Plugboard's, so the other forwarding headers
// telephone adds are left out. It returns nil when replay is off.
func (in *Inspector) replayRequest(ctx context.Context, e *entry) *http.Request {
	b := in.backend.Load()
	if b == nil {
		return nil
	}
	u := *b
	u.Path = strings.TrimSuffix(u.Path, "/") + e.path
	u.RawPath = ""
	u.RawQuery = e.query
	req, _ := http.NewRequestWithContext(ctx, e.method, u.String(), strings.NewReader(e.reqBody.data))
	if e.reqBody.size == 0 {
		req.Body = http.NoBody
	}
	req.Header = e.reqHeader.Clone()
	if req.Header == nil {
		req.Header = http.Header{}
	}
	for _, h := range []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Real-Ip"} {
		req.Header.Del(h)
	}
	if e.host != "" {
		req.Header.Set("X-Forwarded-Host", e.host)
	}
	req.Header.Set("Accept-Encoding", "identity")
	return req
}

func (in *Inspector) replay(req *http.Request) replayResult {
	shown := *req.URL
	shown.RawQuery = maskQuery(shown.RawQuery, in.opt.ShowSecrets)
	out := replayResult{Replayed: shown.Redacted()}
	start := time.Now()
	res, err := in.client.Do(req)
	if err != nil {
		out.Error = err.Error()
		return out
	}
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, int64(in.opt.BodyLimit)))
	rest, _ := io.Copy(io.Discard, io.LimitReader(res.Body, 1<<30))
	out.Millis = float64(time.Since(start).Microseconds()) / 1000
	if err != nil {
		out.Error = err.Error()
	}
	out.Status = res.StatusCode
	out.Header = showHeaders(res.Header, in.opt.ShowSecrets)
	out.Body = showBody(body{data: string(data), size: len(data) + int(rest)})
	return out
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
