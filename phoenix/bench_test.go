package phoenix

import (
	"encoding/json"
	"strings"
	"testing"
)

const benchTopic = "telephone:aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"

// benchBody returns a JSON-safe body of n bytes that still needs some escaping,
// like an HTML or JSON response body would.
func benchBody(n int) string {
	const chunk = `<p class="x">hello, "world" &amp; friends</p>` + "\n"
	return strings.Repeat(chunk, n/len(chunk)+1)[:n]
}

func proxyResPayload(tb testing.TB, body string) json.RawMessage {
	p, err := json.Marshal(map[string]any{
		"request_id": "d1d52dd1-649b-4664-be07-9ee9abbef75a",
		"status":     200,
		"headers":    map[string]string{"content-type": "text/html; charset=utf-8", "x-telephone": "bench"},
		"body":       body,
	})
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

func proxyReqFrame(tb testing.TB, body string) []byte {
	p, err := json.Marshal(map[string]any{
		"request_id":   "d1d52dd1-649b-4664-be07-9ee9abbef75a",
		"method":       "POST",
		"path":         "/api/echo",
		"query_string": "x=1",
		"headers":      map[string]string{"content-type": "application/json", "host": "127.0.0.1:4000", "x-custom": "abc"},
		"body":         body,
	})
	if err != nil {
		tb.Fatal(err)
	}
	frame, err := EncodeText(Message{JoinRef: "1", Topic: benchTopic, Event: "proxy_req", Payload: p})
	if err != nil {
		tb.Fatal(err)
	}
	return frame
}

func benchEncode(b *testing.B, size int) {
	m := Message{JoinRef: "1", Ref: "5", Topic: benchTopic, Event: "proxy_res", Payload: proxyResPayload(b, benchBody(size))}
	b.ReportAllocs()
	b.SetBytes(int64(len(m.Payload)))
	for b.Loop() {
		if _, err := EncodeText(m); err != nil {
			b.Fatal(err)
		}
	}
}

func benchDecode(b *testing.B, size int) {
	frame := proxyReqFrame(b, benchBody(size))
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		if _, err := DecodeText(frame); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeProxyRes1KiB(b *testing.B) { benchEncode(b, 1<<10) }
func BenchmarkEncodeProxyRes1MiB(b *testing.B) { benchEncode(b, 1<<20) }
func BenchmarkDecodeProxyReq1KiB(b *testing.B) { benchDecode(b, 1<<10) }
func BenchmarkDecodeProxyReq1MiB(b *testing.B) { benchDecode(b, 1<<20) }
