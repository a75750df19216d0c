package telephone

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

const testID = "d1d52dd1-649b-4664-be07-9ee9abbef75a"

func TestParseProxyReq(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		payload string
		wantID  string
		reason  string // "" means valid
	}{
		{"recorded frame", `{"body":"{\"hello\":\"world\"}","headers":{"connection":"keep-alive","content-type":"application/json","host":"127.0.0.1:4000","transfer-encoding":"chunked","x-custom":"abc"},"method":"POST","path":"/api/echo","query_string":"x=1","request_id":"` + testID + `"}`, testID, ""},
		{"lower-case method", `{"request_id":"` + testID + `","method":"get","path":"/"}`, testID, ""},
		{"not json", `[1,2]`, "", "payload fields have the wrong types"},
		{"id wrong type", `{"request_id":5,"method":"GET","path":"/"}`, "", "payload fields have the wrong types"},
		{"missing id", `{"method":"GET","path":"/"}`, "", "request_id must be a UUID"},
		{"short id", `{"request_id":"abc","method":"GET","path":"/"}`, "", "request_id must be a UUID"},
		{"bad method", `{"request_id":"` + testID + `","method":"TRACE","path":"/"}`, testID, "unsupported method"},
		{"relative path", `{"request_id":"` + testID + `","method":"GET","path":"api"}`, testID, "path must start with a single /"},
		{"scheme-relative path", `{"request_id":"` + testID + `","method":"GET","path":"//evil.example/x"}`, testID, "path must start with a single /"},
		{"CRLF in path", `{"request_id":"` + testID + `","method":"GET","path":"/a\r\nb"}`, testID, "path contains control characters"},
		{"space in query", `{"request_id":"` + testID + `","method":"GET","path":"/","query_string":"a=b c"}`, testID, "query_string contains characters not allowed in a URL"},
		{"headers not object", `{"request_id":"` + testID + `","method":"GET","path":"/","headers":["a"]}`, testID, "headers must be an object"},
		{"header number", `{"request_id":"` + testID + `","method":"GET","path":"/","headers":{"a":1}}`, testID, "header values must be strings"},
		{"header name space", `{"request_id":"` + testID + `","method":"GET","path":"/","headers":{"a b":"1"}}`, testID, "invalid header name"},
		{"header CRLF", `{"request_id":"` + testID + `","method":"GET","path":"/","headers":{"x":"1\r\nEvil: 2"}}`, testID, "header value contains control characters"},
		{"body wrong type", `{"request_id":"` + testID + `","method":"GET","path":"/","body":{}}`, testID, "payload fields have the wrong types"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pr, err := parseProxyReq(json.RawMessage(tt.payload))
			if pr.RequestID != tt.wantID {
				t.Errorf("request id = %q, want %q", pr.RequestID, tt.wantID)
			}
			var br *badRequest
			switch {
			case tt.reason == "" && err != nil:
				t.Fatalf("unexpected error %v", err)
			case tt.reason != "" && (!errors.As(err, &br) || br.Reason != tt.reason):
				t.Fatalf("error = %v, want reason %q", err, tt.reason)
			}
		})
	}
}

func TestProxyReqHeadersAndRequest(t *testing.T) {
	t.Parallel()
	pr, err := parseProxyReq(json.RawMessage(`{"request_id":"` + testID + `","method":"POST","path":"/files/my doc%2F.txt/","query_string":"q=a%20b&x=1",
		"headers":{"host":"pb.example","connection":"keep-alive, x-hop","x-hop":"1","content-length":"99","x-forwarded-for":"203.0.113.9","cookie":"a=b"},"body":"hello"}`))
	if err != nil {
		t.Fatal(err)
	}
	r := pr.httpRequest(t.Context(), "pb.example:443")
	if r.Host != "pb.example" || r.Header.Get("Host") != "" {
		t.Errorf("host = %q / header %q", r.Host, r.Header.Get("Host"))
	}
	for _, h := range []string{"Connection", "X-Hop", "Content-Length"} {
		if r.Header.Get(h) != "" {
			t.Errorf("hop-by-hop header %s forwarded", h)
		}
	}
	if r.Header.Get("Cookie") != "a=b" || r.Header.Get("X-Forwarded-For") != "203.0.113.9" {
		t.Errorf("headers = %v", r.Header)
	}
	if r.URL.Path != "/files/my doc%2F.txt/" || r.URL.EscapedPath() != "/files/my%20doc%252F.txt/" {
		t.Errorf("path %q escaped %q: the received path must be used once, not decoded again", r.URL.Path, r.URL.EscapedPath())
	}
	if r.URL.RawQuery != "q=a%20b&x=1" || r.ContentLength != 5 || r.RemoteAddr != "pb.example:443" {
		t.Errorf("query %q length %d remote %q", r.URL.RawQuery, r.ContentLength, r.RemoteAddr)
	}
	body, _ := r.GetBody()
	var b bytes.Buffer
	_, _ = b.ReadFrom(body)
	if b.String() != "hello" {
		t.Errorf("GetBody = %q", b.String())
	}
}

func TestTrustedIP(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		values []string
		hops   int
		want   string
	}{
		{nil, 1, ""},
		{[]string{"203.0.113.9"}, 1, "203.0.113.9"},
		{[]string{"10.0.0.1, 203.0.113.9"}, 1, "203.0.113.9"},
		{[]string{"10.0.0.1", " 2001:db8::1 "}, 1, "2001:db8::1"}, // repeated header lines are one list
		{[]string{"10.0.0.1, 203.0.113.9"}, 2, "10.0.0.1"},
		{[]string{"10.0.0.1, 203.0.113.9"}, 3, ""},
		{[]string{"not-an-ip"}, 1, ""},
		{[]string{"10.0.0.1,"}, 1, ""},
		{[]string{"10.0.0.1"}, 0, ""},
	} {
		if got := trustedIP(tt.values, tt.hops); got != tt.want {
			t.Errorf("trustedIP(%q, %d) = %q, want %q", tt.values, tt.hops, got, tt.want)
		}
	}
}

func FuzzParseProxyReq(f *testing.F) {
	f.Add([]byte(`{"body":"x","headers":{"a":"b"},"method":"POST","path":"/api","query_string":"x=1","request_id":"` + testID + `"}`))
	f.Add([]byte(`{"request_id":"` + testID + `","method":"GET","path":"//x"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		pr, err := parseProxyReq(json.RawMessage(data))
		if pr == nil {
			t.Fatal("nil request")
		}
		if err != nil {
			return
		}
		if !validRequestID(pr.RequestID) || !knownMethods[pr.Method] || !strings.HasPrefix(pr.Path, "/") {
			t.Fatalf("accepted invalid request %+v", pr)
		}
		r := pr.httpRequest(t.Context(), "pb:443")
		if uri := r.URL.RequestURI(); strings.ContainsAny(uri, "\r\n ") || strings.IndexFunc(uri, func(r rune) bool { return r >= utf8.RuneSelf }) >= 0 {
			t.Fatalf("request URI %q is not safe on the wire", r.URL.RequestURI())
		}
	})
}

func TestPlugboardOrigin(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ raw, host, proto string }{
		{"ws://pb.example/telephone/websocket", "pb.example:80", "http"},
		{"wss://pb.example/telephone/websocket", "pb.example:443", "https"},
		{"wss://[2001:db8::1]:8443/telephone/websocket", "[2001:db8::1]:8443", "https"},
	} {
		u, err := checkSocketURL(tt.raw)
		if err != nil {
			t.Fatal(err)
		}
		if host, proto := plugboardOrigin(u); host != tt.host || proto != tt.proto {
			t.Errorf("%s: %q %q, want %q %q", tt.raw, host, proto, tt.host, tt.proto)
		}
	}
}
