package telephone

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestSplitUTF8(t *testing.T) {
	t.Parallel()
	inputs := []string{"", "abc", strings.Repeat("é", 10), strings.Repeat("日本語", 7), strings.Repeat("a😀", 9), "😀😀😀"}
	for _, in := range inputs {
		for size := 4; size <= 9; size++ {
			chunks := splitUTF8(in, size)
			if strings.Join(chunks, "") != in {
				t.Fatalf("size %d: chunks do not reassemble %q", size, in)
			}
			for _, c := range chunks {
				if len(c) > size || len(c) == 0 || !utf8.ValidString(c) {
					t.Fatalf("size %d: bad chunk %q of %q", size, c, in)
				}
			}
		}
	}
}

func TestCollectorLimitAndResult(t *testing.T) {
	t.Parallel()
	w := newCollector(10)
	if n, err := w.Write([]byte("0123456789")); n != 10 || err != nil {
		t.Fatalf("write at limit = %d, %v", n, err)
	}
	if _, err := w.Write([]byte("x")); !errors.Is(err, errResponseTooLarge) {
		t.Fatalf("write over limit = %v", err)
	}
	res := w.result(UTF8Reject, nil, nil)
	if res.status != http.StatusBadGateway || !strings.Contains(string(res.body), "larger than") {
		t.Errorf("oversize result = %d %q", res.status, res.body)
	}
	if w.body.Len() != 10 {
		t.Errorf("collector holds %d bytes, want at most the limit", w.body.Len())
	}
}

func TestCollectorStatusRules(t *testing.T) {
	t.Parallel()
	w := newCollector(100)
	w.WriteHeader(http.StatusContinue) // informational: ignored
	w.WriteHeader(http.StatusCreated)
	w.WriteHeader(http.StatusTeapot) // second call: ignored
	if res := w.result(UTF8Reject, nil, nil); res.status != http.StatusCreated {
		t.Errorf("status = %d", res.status)
	}
	w2 := newCollector(100)
	w2.abandon()
	if _, err := w2.Write([]byte("late")); !errors.Is(err, errAbandoned) {
		t.Errorf("write after abandon = %v", err)
	}
}

func TestCollectorUTF8Policy(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		policy UTF8Policy
		status int
		body   string
	}{
		{UTF8Reject, http.StatusBadGateway, "Bad Gateway: the backend response body is not valid UTF-8 text, which Plugboard cannot carry"},
		{UTF8Replace, http.StatusOK, "ok\uFFFDend"},
	} {
		w := newCollector(100)
		_, _ = w.Write([]byte("ok\xff\xfeend"))
		res := w.result(tt.policy, discardLogger(), nil)
		if res.status != tt.status || string(res.body) != tt.body {
			t.Errorf("policy %d: %d %q", tt.policy, res.status, res.body)
		}
	}
}

func TestResponseEncode(t *testing.T) {
	t.Parallel()
	res := &response{status: 201, header: http.Header{
		"Content-Type":   {"application/json"},
		"Content-Length": {"11"},
		"Vary":           {"Accept", "Origin"},
		"Set-Cookie":     {"a=1", "b=2"},
	}, body: `{"ok":true}`}
	raw, err := res.encode(testID, 1024)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"request_id":"` + testID + `","status":201,"headers":{"content-type":"application/json","set-cookie":"a=1","vary":"Accept, Origin"},"body":"{\"ok\":true}"}`
	if string(raw) != want {
		t.Errorf("encode =\n%s\nwant\n%s", raw, want)
	}
	big := &response{status: 200, header: http.Header{}, body: strings.Repeat("ü<&>", 5)}
	raw, err = big.encode(testID, 7)
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		Body    string   `json:"body"`
		Chunked bool     `json:"chunked"`
		Chunks  []string `json:"chunks"`
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		t.Fatal(err)
	}
	if !p.Chunked || p.Body != "" || strings.Join(p.Chunks, "") != strings.Repeat("ü<&>", 5) || !bytes.Contains(raw, []byte("<&>")) {
		t.Errorf("chunked encode = %s", raw)
	}
}

// FuzzResponseEncode checks that any valid UTF-8 body survives encode → JSON decode, plain
// or chunked, with every chunk within the size and on a character boundary.
func FuzzResponseEncode(f *testing.F) {
	f.Add("hello", 4)
	f.Add("日本語😀<&>\"\\\n\u2028", 5)
	f.Fuzz(func(t *testing.T, body string, size int) {
		if !utf8.ValidString(body) || size < 4 || size > 1<<20 {
			return
		}
		res := &response{status: 200, header: http.Header{"X-A": {"1", "2"}}, body: body}
		raw, err := res.encode(testID, size)
		if err != nil {
			t.Fatal(err)
		}
		var p struct {
			RequestID string            `json:"request_id"`
			Status    int               `json:"status"`
			Headers   map[string]string `json:"headers"`
			Body      string            `json:"body"`
			Chunked   bool              `json:"chunked"`
			Chunks    []string          `json:"chunks"`
		}
		if err := json.Unmarshal(raw, &p); err != nil {
			t.Fatalf("invalid JSON %s: %v", raw, err)
		}
		got := p.Body
		if p.Chunked {
			got = strings.Join(p.Chunks, "")
			for _, c := range p.Chunks {
				if len(c) > size || !utf8.ValidString(c) {
					t.Fatalf("bad chunk %q (size %d)", c, size)
				}
			}
		}
		if got != body || p.RequestID != testID || p.Status != 200 || p.Headers["x-a"] != "1, 2" || p.Chunked != (len(body) > size) {
			t.Fatalf("round trip of %q (size %d) = %+v", body, size, p)
		}
	})
}

// TestWireHeadersDropHopHeaders: every hop-by-hop header, and Content-Length, stays behind;
// the same list applies to requests (TestProxyReqHeadersAndRequest).
func TestWireHeadersDropHopHeaders(t *testing.T) {
	t.Parallel()
	h := http.Header{"X-Kept": {"1"}}
	for name := range hopHeaders {
		h.Set(name, "x")
	}
	got := (&response{header: h}).wireHeaders()
	if len(got) != 1 || got["x-kept"] != "1" {
		t.Fatalf("wireHeaders = %v", got)
	}
}
