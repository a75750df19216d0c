package telephonetest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestSplitCallPath(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", 256)
	many := "/call/p" + strings.Repeat("/s", 48) // 50 segments
	tests := []struct {
		in, pathID, fwd string
		status          int
	}{
		{"/call/p", "p", "/", 0},
		{"/call/p/", "p", "/", 0},
		{"/call/p/a/b", "p", "/a/b", 0},
		{"/call/p/a/b/", "p", "/a/b/", 0},
		{"/call/p/a//b", "p", "/a/b", 0},
		{"/call/p/a%2Fb/c%3Fd%25", "p", "/a/b/c?d%", 0},
		{"/call/p/a+b", "p", "/a+b", 0},
		{"/call/p/%E2%9C%93", "p", "/✓", 0},
		{"/call/p/a/../b", "", "", 400},
		{"/call/p/%2e%2E", "", "", 400},
		{"/call/p/%2e.", "", "", 400},
		{"/call/p/a%00", "", "", 400},
		{"/call/p/%zz", "", "", 400},
		{"/call/p/%4", "", "", 400},
		{"/call/p/" + long, "", "", 400},
		{"/call/p/" + long[:255], "p", "/" + long[:255], 0},
		{many, "p", strings.Repeat("/s", 48), 0},
		{many + "/s", "", "", 400},
		{"/call", "", "", 404},
		{"/call/", "", "", 404},
	}
	for _, tt := range tests {
		pathID, fwd, status := splitCallPath(tt.in)
		if pathID != tt.pathID || fwd != tt.fwd || status != tt.status {
			t.Errorf("splitCallPath(%.40q) = %q %q %d, want %q %q %d", tt.in, pathID, fwd, status, tt.pathID, tt.fwd, tt.status)
		}
	}
}

func FuzzSplitCallPath(f *testing.F) {
	for _, s := range []string{"/call/p/a/b/", "/call/p/%2e%2e", "/call/p/a%2Fb", "/call//p", "/call/p/%"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		pathID, fwd, status := splitCallPath(in)
		if status != 0 {
			return
		}
		if pathID == "" || !strings.HasPrefix(fwd, "/") || strings.Contains(fwd, "\x00") {
			t.Fatalf("splitCallPath(%q) = %q %q", in, pathID, fwd)
		}
		for _, seg := range strings.Split(fwd, "/") {
			if strings.Contains(seg, "..") {
				t.Fatalf("splitCallPath(%q) let %q through", in, fwd)
			}
		}
	})
}

func TestCallRequestShape(t *testing.T) {
	t.Parallel()
	s := newTestServer(t)
	c, tok := joinedClient(t, s, "")
	tests := []struct {
		method, path, wantMethod, wantPath, wantQuery string
	}{
		{http.MethodPut, "/call/" + tok.PathID + "/items/1/?a=1&b=%20", "PUT", "/items/1/", "a=1&b=%20"},
		{http.MethodHead, "/call/" + tok.PathID + "/head", "GET", "/head", ""},
		{http.MethodOptions, "/call/" + tok.PathID, "OPTIONS", "/", ""},
		{http.MethodDelete, "/call/" + tok.PathID + "/a%2Fb", "DELETE", "/a/b", ""},
		{http.MethodPatch, "/call/" + tok.PathID + "/p", "PATCH", "/p", ""},
	}
	for _, tt := range tests {
		hdr := http.Header{"X-Multi": {"one", "two"}, "Cookie": {"a=1"}}
		res := goHTTP(t, tt.method, s.URL()+tt.path, "body", hdr)
		req := c.answer("1", "2", map[string]any{"body": "response body"})
		if req.Method != tt.wantMethod || req.Path != tt.wantPath || req.QueryString != tt.wantQuery || req.Body != "body" {
			t.Errorf("%s %s → %+v", tt.method, tt.path, req)
		}
		if req.Headers["x-multi"] != "two" || req.Headers["cookie"] != "a=1" || req.Headers["content-length"] != "4" ||
			!strings.HasPrefix(req.Headers["host"], "127.0.0.1:") {
			t.Errorf("headers %v", req.Headers)
		}
		got := await(t, res)
		wantBody := "response body"
		if tt.method == http.MethodHead {
			wantBody = ""
		}
		if got.status != 200 || got.body != wantBody || got.header.Get("Content-Type") != "text/plain; charset=utf-8" ||
			got.header.Get("Cache-Control") != "max-age=0, private, must-revalidate" {
			t.Errorf("%s: %d %v %q", tt.method, got.status, got.header, got.body)
		}
	}
}

func TestCallRefusals(t *testing.T) {
	t.Parallel()
	s := newTestServer(t)
	c, tok := joinedClient(t, s, "")
	call := s.CallURL(tok.PathID)
	tests := []struct {
		name, method, url, body string
		status                  int
	}{
		{"unrouted method", "PROPFIND", call + "/x", "", 404},
		{"unknown path id", http.MethodGet, s.CallURL(NewPathID()) + "/x", "", 404},
		{"dot segment", http.MethodGet, call + "/a/%2e%2e/b", "", 400},
		{"non-UTF-8 body", http.MethodPost, call + "/x", "\xff\xfe", 400},
		{"body too large", http.MethodPost, call + "/x", strings.Repeat("a", MaxBodySize+1), 413},
		{"unknown route", http.MethodGet, s.URL() + "/elsewhere", "", 404},
	}
	for _, tt := range tests {
		if got := await(t, goHTTP(t, tt.method, tt.url, tt.body, nil)); got.status != tt.status {
			t.Errorf("%s: %d, want %d", tt.name, got.status, tt.status)
		}
	}
	c.expectNothing("b") // none of them reached the telephone
	_, other := joinedClient(t, s, "")
	_ = other
	if got := await(t, goHTTP(t, http.MethodGet, s.CallURL(mint(t, s, "").PathID), "", nil)); got.status != 503 ||
		!strings.Contains(got.header.Get("Content-Type"), "text/html") {
		t.Errorf("no telephone: %d %v", got.status, got.header)
	}
}

func TestCallResponses(t *testing.T) {
	t.Parallel()
	s := newTestServer(t)
	c, tok := joinedClient(t, s, "")
	tests := []struct {
		name   string
		res    map[string]any
		status int
		body   string
		header map[string]string
		te     bool
	}{
		{"defaults", map[string]any{}, 200, "", map[string]string{"Content-Type": "text/plain; charset=utf-8"}, false},
		{"headers stringified and lower-cased", map[string]any{"status": 202, "headers": map[string]any{
			"X-Num": 5, "X-Null": nil, "Content-Type": "application/json", "Content-Length": "999", "Bad Name": "x", "X-Crlf": "a\r\nb",
		}, "body": "{}"}, 202, "{}", map[string]string{"X-Num": "5", "Content-Type": "application/json", "Content-Length": "2", "Bad Name": "", "X-Crlf": ""}, false},
		{"chunked", map[string]any{"chunked": true, "chunks": []string{"a", "", "bc"}, "body": "ignored"}, 200, "abc", map[string]string{"Content-Type": ""}, true},
		{"chunked with no chunks uses body", map[string]any{"chunked": true, "chunks": []string{}, "body": "b"}, 200, "b", nil, false},
		{"no content", map[string]any{"status": 204}, 204, "", nil, false},
		{"status as string", map[string]any{"status": "200"}, 500, "", nil, false},
		{"status out of range", map[string]any{"status": 42}, 500, "", nil, false},
		{"body not a string", map[string]any{"body": 1}, 500, "", nil, false},
		{"chunks not strings", map[string]any{"chunked": true, "chunks": []int{1}}, 500, "", nil, false},
		{"headers not an object", map[string]any{"headers": []string{"a"}}, 500, "", nil, false},
	}
	for _, tt := range tests {
		res := goHTTP(t, http.MethodGet, s.CallURL(tok.PathID)+"/r", "", nil)
		c.answer("1", "2", tt.res)
		got := await(t, res)
		if got.status != tt.status || (tt.status != 500 && got.body != tt.body) {
			t.Errorf("%s: %d %q, want %d %q", tt.name, got.status, got.body, tt.status, tt.body)
		}
		for k, v := range tt.header {
			if got.header.Get(k) != v {
				t.Errorf("%s: header %s = %q, want %q", tt.name, k, got.header.Get(k), v)
			}
		}
		if isChunked := len(got.te) == 1 && got.te[0] == "chunked"; isChunked != tt.te {
			t.Errorf("%s: transfer-encoding %v", tt.name, got.te)
		}
	}
}

func TestRoundRobinAndTimeout(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, WithRequestTimeout(100*time.Millisecond))
	a, tok := joinedClient(t, s, "")
	b, _ := joinedClient(t, s, tok.PathID)
	var order []string
	for i := range 4 {
		res := goHTTP(t, http.MethodGet, s.CallURL(tok.PathID)+"/rr", "", nil)
		// Exactly one of them gets it; which one is the round-robin order.
		c, name := a, "a"
		if i%2 == 1 {
			c, name = b, "b"
		}
		c.answer("1", "r", map[string]any{"body": name})
		order = append(order, await(t, res).body)
	}
	if strings.Join(order, "") != "abab" {
		t.Errorf("round-robin order %v", order)
	}
	res := goHTTP(t, http.MethodGet, s.CallURL(tok.PathID)+"/slow", "", nil)
	m := a.expect("proxy_req")
	if got := await(t, res); got.status != http.StatusGatewayTimeout {
		t.Errorf("timeout: %d, want 504", got.status)
	}
	s.mu.Lock()
	n := 0
	for _, ch := range s.paths[tok.PathID] {
		n += len(ch.pending)
	}
	s.mu.Unlock()
	if n != 0 {
		t.Errorf("%d waiting entries left after the timeout", n)
	}
	// A late proxy_res is ignored without a reply.
	var req proxyRequest
	_ = json.Unmarshal(m.Payload, &req)
	a.send("1", "late", m.Topic, "proxy_res", map[string]any{"request_id": req.RequestID})
	a.expectNothing("b")
}

func TestCallerGoneRemovesEntry(t *testing.T) {
	t.Parallel()
	s := newTestServer(t)
	c, tok := joinedClient(t, s, "")
	req := httptest.NewRequest(http.MethodGet, "/call/"+tok.PathID+"/gone", nil)
	ctx, cancel := contextWithTestTimeout()
	req = req.WithContext(ctx)
	rec := httptest.NewRecorder()
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Handler().ServeHTTP(rec, req)
	}()
	c.expect("proxy_req")
	cancel()
	<-done
	s.mu.Lock()
	n := len(s.paths[tok.PathID][0].pending)
	s.mu.Unlock()
	if n != 0 {
		t.Errorf("%d waiting entries left after the caller left", n)
	}
}
