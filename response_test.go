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
	w := newCollector(10, DefaultChunkSize)
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
	if w.written != 10 || w.body.chunks != nil {
		t.Errorf("collector took %d bytes, holds %d chunks; want the limit, and none once refused", w.written, len(w.body.chunks))
	}
}

func TestCollectorStatusRules(t *testing.T) {
	t.Parallel()
	w := newCollector(100, DefaultChunkSize)
	w.WriteHeader(http.StatusContinue) // informational: ignored
	w.WriteHeader(http.StatusCreated)
	w.WriteHeader(http.StatusTeapot) // second call: ignored
	if res := w.result(UTF8Reject, nil, nil); res.status != http.StatusCreated {
		t.Errorf("status = %d", res.status)
	}
	w2 := newCollector(100, DefaultChunkSize)
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
		w := newCollector(100, DefaultChunkSize)
		_, _ = w.Write([]byte("ok\xff\xfeend"))
		res := w.result(tt.policy, discardLogger(), nil)
		if got := res.text(t); res.status != tt.status || got != tt.body {
			t.Errorf("policy %d: %d %q", tt.policy, res.status, got)
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
	raw := res.encode(testID, 1024)
	want := `{"request_id":"` + testID + `","status":201,"headers":{"content-type":"application/json","set-cookie":"a=1","vary":"Accept, Origin"},"body":"{\"ok\":true}"}`
	if string(raw) != want {
		t.Errorf("encode =\n%s\nwant\n%s", raw, want)
	}
	big := &response{status: 200, header: http.Header{}, body: strings.Repeat("ü<&>", 5)}
	raw = big.encode(testID, 7)
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
		raw := res.encode(testID, size)
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

// text is the body a response carries, as Plugboard reassembles it from the proxy_res.
func (r *response) text(t testing.TB) string {
	t.Helper()
	raw := r.encode(testID, DefaultChunkSize)
	var p struct {
		Body   string   `json:"body"`
		Chunks []string `json:"chunks"`
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		t.Fatalf("invalid proxy_res %s: %v", raw, err)
	}
	return p.Body + strings.Join(p.Chunks, "")
}

// FuzzCollectorPayload: whatever the body's bytes (invalid UTF-8 included), however the
// handler splits its writes and whatever the chunk size, the payload escaped as it is
// written is byte for byte the one built from the whole body (strings.ToValidUTF8, then
// escaped and cut into chunks at once), and invalid bytes are noticed.
func FuzzCollectorPayload(f *testing.F) {
	f.Add([]byte("hello"), 4, uint8(1))
	f.Add([]byte("日本語😀<&>\"\\\n\u2028 ok\xff\xfe\xe2\x82end\xe2"), 5, uint8(3))
	f.Add([]byte("\xe2\x82\xac\xf0\x9f\x98\x80é"), 4, uint8(1))
	f.Add(bytes.Repeat([]byte("a\x01\"é"), 40000), 1000, uint8(200))
	f.Add(bytes.Repeat([]byte("日本語😀\xff"), 20000), 1<<20, uint8(255)) // one write of 300 000 bytes, in steps
	f.Fuzz(func(t *testing.T, body []byte, size int, step uint8) {
		if size < 4 || size > 1<<20 || step == 0 {
			return
		}
		w := newCollector(1<<30, size)
		for p := body; len(p) > 0; {
			n := min(int(step), len(p))
			if step == 255 {
				n = len(p) // all at once
			}
			if _, err := w.Write(p[:n]); err != nil {
				t.Fatal(err)
			}
			p = p[n:]
		}
		res := w.result(UTF8Replace, discardLogger(), nil)
		want := &response{status: 200, header: http.Header{}, body: strings.ToValidUTF8(string(body), "\uFFFD")}
		wantRaw := want.encode(testID, size)
		raw := res.encode(testID, size)
		if !bytes.Equal(raw, wantRaw) {
			t.Fatalf("body %q in writes of %d, chunk size %d:\n got %s\nwant %s", body, step, size, raw, wantRaw)
		}
		if res.esc.invalid == utf8.Valid(body) || res.bodyLen() != int64(len(want.body)) {
			t.Fatalf("invalid = %v, length %d for %q", res.esc.invalid, res.bodyLen(), body)
		}
		for i, c := range res.esc.chunks {
			if i < len(res.esc.chunks)-1 && len(c) != bodyChunkSize {
				t.Fatalf("chunk %d of %d holds %d bytes", i, len(res.esc.chunks), len(c))
			}
		}
		res.esc.release()
	})
}

// encode renders (for tests and benchmarks; the client sends with response.send) the proxy_res payload (docs/PROTOCOL.md §3.4): {request_id, status, headers,
// body} or, above chunkSize, {..., "body":"", "chunked":true, "chunks":[...]} with every chunk
// at most chunkSize bytes and every boundary on a UTF-8 character boundary. It is built in one
// buffer (the body is escaped straight into it), so a large body is copied once, not through
// encoding/json's intermediate buffers.
func (r *response) encode(requestID string, chunkSize int) []byte {
	size, appendTo := r.encoder(requestID, chunkSize)
	return appendTo(make([]byte, 0, size))
}
