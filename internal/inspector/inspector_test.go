package inspector

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/verastack/telephone"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
	)
}

// request records one finished request and returns its entry id.
func request(in *Inspector, method, path, query, reqBody string, h http.Header, status int, respBody string) {
	done := in.ObserveRequest(&telephone.ObservedRequest{ID: "r", Method: method, Path: path, Query: query,
		Host: "pb.example", Header: h, Body: reqBody, Start: time.Now()})
	done(&telephone.ObservedResponse{Status: status, Header: http.Header{"Set-Cookie": {"sid=abc; Path=/"}, "Content-Type": {"text/plain"}},
		Body: respBody, Duration: time.Millisecond})
}

func TestRingKeepsTheLastEntries(t *testing.T) {
	t.Parallel()
	in := New(Options{MaxEntries: 3})
	for i := range 10 {
		request(in, "GET", "/"+string(rune('a'+i)), "", "", nil, 200, "ok")
	}
	if n, _ := in.Stats(); n != 3 {
		t.Fatalf("kept %d entries, want 3", n)
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.entries[0].path != "/h" || in.entries[2].path != "/j" || in.byID[1] != nil {
		t.Errorf("kept %s..%s", in.entries[0].path, in.entries[2].path)
	}
}

func TestByteCapAndBodyLimit(t *testing.T) {
	t.Parallel()
	in := New(Options{MaxBytes: 10_000, BodyLimit: 1000})
	big := strings.Repeat("x", 5000)
	for range 20 {
		request(in, "POST", "/big", "", big, nil, 200, big)
	}
	n, b := in.Stats()
	if b > 10_000 || n < 2 || n > 5 {
		t.Fatalf("kept %d entries, %d bytes (cap 10000, each ~2.3 KB)", n, b)
	}
	in.mu.Lock()
	e := in.entries[len(in.entries)-1]
	in.mu.Unlock()
	if len(e.reqBody.data) != 1000 || e.reqBody.size != 5000 || len(e.respBody.data) != 1000 {
		t.Errorf("kept %d of %d request bytes, %d response bytes", len(e.reqBody.data), e.reqBody.size, len(e.respBody.data))
	}
	if why := New(Options{Backend: &url.URL{Scheme: "http", Host: "x"}}).replayable(e); why == "" {
		t.Error("a truncated request body is replayable")
	}
}

func TestEvictedPendingEntryIsNotUpdated(t *testing.T) {
	t.Parallel()
	in := New(Options{MaxEntries: 1})
	done := in.ObserveRequest(&telephone.ObservedRequest{Method: "GET", Path: "/first", Start: time.Now()})
	request(in, "GET", "/second", "", "", nil, 200, "")
	done(&telephone.ObservedResponse{Status: 500, Body: strings.Repeat("y", 1000)})
	if n, b := in.Stats(); n != 1 || b > 1000 {
		t.Errorf("kept %d entries, %d bytes", n, b)
	}
}

func TestMasking(t *testing.T) {
	t.Parallel()
	h := http.Header{"Authorization": {"Bearer s3cret"}, "Cookie": {"a=1; b=2"}, "Set-Cookie": {"sid=xyz; Path=/; HttpOnly"},
		"X-Api-Key": {"k"}, "Accept": {"text/html"}, "X-Goog-Api-Key": {"g"}, "Private-Token": {"p"}, "X-Vault-Token": {"v"},
		"X-Amz-Security-Token": {"a"}, "X-Hub-Signature-256": {"sha256=h"},
		"Www-Authenticate": {`Bearer realm="api", error="invalid_token"`}, "Access-Control-Allow-Credentials": {"true"},
		"Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}}
	got := map[string]string{}
	for _, l := range showHeaders(h, false) {
		got[l.Name] = l.Value
	}
	want := map[string]string{"Authorization": "Bearer " + masked, "Cookie": "a=" + masked + "; b=" + masked,
		"Set-Cookie": "sid=" + masked + "; Path=/; HttpOnly", "X-Api-Key": masked, "Accept": "text/html",
		// token-like names beyond the fixed list are masked too ...
		"X-Goog-Api-Key": masked, "Private-Token": masked, "X-Vault-Token": masked, "X-Amz-Security-Token": masked,
		"X-Hub-Signature-256": masked,
		// ... but not the public headers whose names merely look like it
		"Www-Authenticate": `Bearer realm="api", error="invalid_token"`, "Access-Control-Allow-Credentials": "true",
		"Sec-Websocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s shown as %q, want %q", k, got[k], v)
		}
	}
	for _, l := range showHeaders(h, true) {
		if l.Masked || l.Value != h.Get(l.Name) {
			t.Errorf("ShowSecrets: %+v", l)
		}
	}
	for q, want := range map[string]string{
		"a=1&token=abc&access_token=x&API_KEY=k&x":  "a=1&token=" + masked + "&access_token=" + masked + "&API_KEY=" + masked + "&x",
		"my%5Fsecret=1&page=2":                      "my%5Fsecret=" + masked + "&page=2",
		"password":                                  "password",
		"private_key=1&x-api-key=2&sessionid=3&q=4": "private_key=" + masked + "&x-api-key=" + masked + "&sessionid=" + masked + "&q=4",
		"a=1;token=abc&b=2;sig=s":                   "a=1;token=" + masked + "&b=2;sig=" + masked, // ';' separates as transport.Redact splits
	} {
		if got := maskQuery(q, false); got != want {
			t.Errorf("maskQuery(%q) = %q, want %q", q, got, want)
		}
	}
	if maskQuery("token=abc", true) != "token=abc" {
		t.Error("ShowSecrets masks the query")
	}
	if maskValue("Authorization", "opaque") != masked || maskValue("Set-Cookie", "broken") != masked {
		t.Error("values without structure are not masked whole")
	}
}

func TestShowBody(t *testing.T) {
	t.Parallel()
	if b := showBody(body{data: "héllo\n", size: 6}); b.Binary || b.Text != "héllo\n" || b.Truncated {
		t.Errorf("text: %+v", b)
	}
	bin := string([]byte{0x89, 'P', 'N', 'G', 0, 1, 2})
	if b := showBody(body{data: bin, size: 9000}); !b.Binary || !strings.Contains(b.Hex, "89 50 4e 47 00 01 02") || !b.Truncated || b.Size != 9000 {
		t.Errorf("binary: %+v", b)
	}
	if !isText("ab\xe2\x82") { // cut inside "€"
		t.Error("a prefix cut inside a character counts as binary")
	}
	if isText("a\x01b") || isText("a\xffb") {
		t.Error("control characters or invalid UTF-8 count as text")
	}
	big := strings.Repeat("\x00", 1000)
	if b := showBody(body{data: big, size: 1000}); strings.Count(b.Hex, "\n") != hexHead/16 {
		t.Errorf("hex head has %d lines", strings.Count(b.Hex, "\n"))
	}
}

// sse reads Server-Sent Events from a stream.
type sse struct{ r *bufio.Reader }

func (s sse) next(t *testing.T) (name, data string) {
	t.Helper()
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			t.Fatalf("event stream: %v", err)
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case strings.HasPrefix(line, "event: "):
			name = line[len("event: "):]
		case strings.HasPrefix(line, "data: "):
			data = line[len("data: "):]
		case line == "" && name != "":
			return name, data
		}
	}
}

func TestEventStream(t *testing.T) {
	t.Parallel()
	in := New(Options{MaxEntries: 2})
	srv := httptest.NewServer(in.Handler())
	defer srv.Close()
	request(in, "GET", "/before", "", "", nil, 200, "")
	res, err := http.Get(srv.URL + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	s := sse{bufio.NewReader(res.Body)}
	if name, _ := s.next(t); name != "reset" {
		t.Fatalf("first event %q", name)
	}
	var sum summary
	name, data := s.next(t)
	if err := json.Unmarshal([]byte(data), &sum); err != nil || name != "entry" || sum.Target != "/before" {
		t.Fatalf("snapshot %s %s", name, data)
	}
	done := in.ObserveRequest(&telephone.ObservedRequest{Method: "POST", Path: "/live", Query: "token=t", Body: "abc", Start: time.Now()})
	name, data = s.next(t)
	if err := json.Unmarshal([]byte(data), &sum); err != nil || !sum.Pending || sum.Target != "/live?token="+masked || sum.ReqSize != 3 {
		t.Fatalf("live start %s %s", name, data)
	}
	done(&telephone.ObservedResponse{Status: 201, Body: "hello", Duration: 2 * time.Millisecond})
	_, data = s.next(t)
	if err := json.Unmarshal([]byte(data), &sum); err != nil || sum.Pending || sum.Status != 201 || sum.RespSize != 5 || sum.Millis != 2 {
		t.Fatalf("live end %s", data)
	}
	request(in, "GET", "/third", "", "", nil, 200, "")
	if name, data := s.next(t); name != "remove" || data != "1" {
		t.Fatalf("eviction %s %s", name, data)
	}
	in.Close()
	if _, err := io.ReadAll(res.Body); err != nil {
		t.Fatalf("the stream did not end cleanly on Close: %v", err)
	}
}

func TestSlowPageIsDropped(t *testing.T) {
	t.Parallel()
	in := New(Options{})
	ch := in.subscribe()
	for range subscriberBuffer + 10 {
		request(in, "GET", "/", "", "", nil, 200, "")
	}
	n := 0
	for range ch {
		n++
	}
	if n < subscriberBuffer || n > subscriberBuffer+1 {
		t.Errorf("a lagging page got %d events before its stream ended", n)
	}
	in.unsubscribe(ch) // already dropped: a no-op
}

func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode == http.StatusOK {
		if err := json.NewDecoder(res.Body).Decode(v); err != nil {
			t.Fatal(err)
		}
	}
	return res.StatusCode
}

func TestDetailsAndReplay(t *testing.T) {
	t.Parallel()
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Seen", r.Method+" "+r.URL.RequestURI()+" "+r.Header.Get("Authorization")+" "+r.Header.Get("X-Forwarded-Host")+
			" ["+r.Header.Get("X-Forwarded-For")+r.Header.Get("X-Real-Ip")+r.Header.Get("Forwarded")+"]")
		w.Header().Set("Set-Cookie", "new=1")
		_, _ = w.Write(append([]byte("replayed:"), b...))
	}))
	defer backend.Close()
	bu, _ := url.Parse(backend.URL + "/prefix/")
	in := New(Options{Backend: bu})
	srv := httptest.NewServer(in.Handler())
	defer srv.Close()
	request(in, "PUT", "/items/1", "token=abc&x=1", "payload", http.Header{"Authorization": {"Bearer s3cret"},
		"X-Forwarded-For": {"127.0.0.1"}, "X-Real-Ip": {"127.0.0.1"}, "Forwarded": {"for=127.0.0.1"}}, 200, "first")

	var d details
	if code := getJSON(t, srv.URL+"/entries/1", &d); code != 200 {
		t.Fatalf("details: %d", code)
	}
	if d.Method != "PUT" || d.Target != "/items/1?token="+masked+"&x=1" || d.ReqBody.Text != "payload" || d.RespBody.Text != "first" ||
		d.Host != "pb.example" || d.Replayable != "" {
		t.Errorf("details %+v", d)
	}
	if d.ReqHeader[0].Value != "Bearer "+masked || !d.ReqHeader[0].Masked {
		t.Errorf("request headers %+v", d.ReqHeader)
	}
	if code := getJSON(t, srv.URL+"/entries/99", &d); code != http.StatusNotFound {
		t.Errorf("unknown entry: %d", code)
	}

	res, err := http.Post(srv.URL+"/entries/1/replay", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusForbidden {
		t.Errorf("replay without the header: %d", res.StatusCode)
	}
	req, _ := http.NewRequest("POST", srv.URL+"/entries/1/replay", nil)
	req.Header.Set(replayHeader, "replay")
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var rr replayResult
	if err := json.NewDecoder(res.Body).Decode(&rr); err != nil {
		t.Fatal(err)
	}
	seen := ""
	for _, h := range rr.Header {
		if h.Name == "X-Seen" {
			seen = h.Value
		}
		if h.Name == "Set-Cookie" && h.Value != "new="+masked {
			t.Errorf("replay Set-Cookie shown as %q", h.Value)
		}
	}
	if rr.Replayed != backend.URL+"/prefix/items/1?token="+masked+"&x=1" {
		t.Errorf("replay URL shown as %q", rr.Replayed)
	}
	if rr.Status != 200 || rr.Body.Text != "replayed:payload" || seen != "PUT /prefix/items/1?token=abc&x=1 Bearer s3cret pb.example []" {
		t.Errorf("replay %+v (backend saw %q)", rr, seen)
	}
}

func TestReplayFailuresAreReported(t *testing.T) {
	t.Parallel()
	dead := httptest.NewServer(http.NotFoundHandler())
	bu, _ := url.Parse(dead.URL)
	dead.Close()
	in := New(Options{Backend: bu})
	request(in, "GET", "/", "", "", nil, 200, "")
	in.mu.Lock()
	req := in.replayRequest(t.Context(), in.entries[0])
	in.mu.Unlock()
	if rr := in.replay(req); rr.Error == "" {
		t.Errorf("replay to a closed port: %+v", rr)
	}
	noBackend := New(Options{})
	request(noBackend, "GET", "/", "", "", nil, 200, "")
	srv := httptest.NewServer(noBackend.Handler())
	defer srv.Close()
	req2, _ := http.NewRequest("POST", srv.URL+"/entries/1/replay", nil)
	req2.Header.Set(replayHeader, "replay")
	res, err := http.DefaultClient.Do(req2)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusConflict {
		t.Errorf("replay without a backend: %d", res.StatusCode)
	}
}

func TestWebSocketEntries(t *testing.T) {
	t.Parallel()
	in := New(Options{})
	done := in.ObserveWebSocket(&telephone.ObservedWebSocket{ID: "c", URL: "ws://127.0.0.1:1/chat?room=1&token=s3cret", Protocol: "v1",
		Header: http.Header{"Cookie": {"sid=1"}}, Start: time.Now()})
	done(&telephone.ObservedWebSocketEnd{Code: 1000, Reason: "bye", FramesIn: 2, BytesIn: 10, FramesOut: 3, BytesOut: 30})
	srv := httptest.NewServer(in.Handler())
	defer srv.Close()
	var d details
	if code := getJSON(t, srv.URL+"/entries/1", &d); code != 200 {
		t.Fatal(code)
	}
	if d.Kind != "ws" || d.Target != "/chat?room=1&token="+masked || d.WSURL != "ws://127.0.0.1:1/chat?room=1&token="+masked || d.Status != 1000 || d.ReqSize != 10 || d.RespSize != 30 ||
		d.FramesOut != 3 || d.WSReason != "bye" || d.Replayable == "" || d.ReqHeader[0].Value != "sid="+masked {
		t.Errorf("ws details %+v", d)
	}
}

func TestPageAndHostCheck(t *testing.T) {
	t.Parallel()
	in := New(Options{})
	srv := httptest.NewServer(in.Handler())
	defer srv.Close()
	if humanSize(16<<20) != "16 MiB" || humanSize(64<<10) != "64 KiB" || humanSize(1000) != "1000 bytes" {
		t.Error("humanSize")
	}
	for path, want := range map[string]string{"/": "bodies up to 64 KiB each", "/static/app.js": "EventSource", "/static/style.css": "table"} {
		res, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || !strings.Contains(string(b), want) || res.Header.Get("Content-Security-Policy") == "" {
			t.Errorf("%s: %d, %d bytes", path, res.StatusCode, len(b))
		}
	}
	req, _ := http.NewRequest("GET", srv.URL+"/", nil)
	req.Host = "attacker.example:80"
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusForbidden {
		t.Errorf("foreign Host: %d", res.StatusCode)
	}
	req.Host = "localhost"
	if res, err = http.DefaultClient.Do(req); err != nil || res.StatusCode != 200 {
		t.Errorf("localhost: %v %v", res, err)
	} else {
		res.Body.Close()
	}
}

// TestPageOpenedLaterSeesEarlierRequests: with no page open no events are built, so a page
// opened later must get every kept entry, in its latest state, from the snapshot.
func TestPageOpenedLaterSeesEarlierRequests(t *testing.T) {
	t.Parallel()
	in := New(Options{MaxEntries: 3})
	srv := httptest.NewServer(in.Handler())
	defer srv.Close()
	for _, p := range []string{"/evicted", "/a", "/b"} {
		request(in, "GET", p, "", "", nil, 200, "ok")
	}
	done := in.ObserveRequest(&telephone.ObservedRequest{Method: "POST", Path: "/pending", Query: "x=1&token=t", Start: time.Now()})

	res, err := http.Get(srv.URL + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	s := sse{bufio.NewReader(res.Body)}
	if name, _ := s.next(t); name != "reset" {
		t.Fatalf("first event %q", name)
	}
	want := []summary{{ID: 2, Target: "/a", Status: 200}, {ID: 3, Target: "/b", Status: 200},
		{ID: 4, Target: "/pending?x=1&token=" + masked, Pending: true}}
	for _, w := range want {
		name, data := s.next(t)
		var sum summary
		if err := json.Unmarshal([]byte(data), &sum); err != nil || name != "entry" ||
			sum.ID != w.ID || sum.Target != w.Target || sum.Status != w.Status || sum.Pending != w.Pending {
			t.Fatalf("snapshot: %s %s, want %+v", name, data, w)
		}
	}
	done(&telephone.ObservedResponse{Status: 204})
	name, data := s.next(t)
	var sum summary
	if err := json.Unmarshal([]byte(data), &sum); err != nil || name != "entry" || sum.ID != 4 || sum.Pending || sum.Status != 204 {
		t.Fatalf("update after the snapshot: %s %s", name, data)
	}
	in.Close()
}
