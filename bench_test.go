package telephone

import (
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/verastack/telephone/phoenix"
)

// proxyReqFrame is a recorded-shape proxy_req frame with a body of n bytes.
func proxyReqFrame(b *testing.B, n int) []byte {
	b.Helper()
	p, _ := json.Marshal(map[string]any{"request_id": testID, "method": "POST", "path": "/api/echo", "query_string": "x=1",
		"headers": map[string]string{"content-type": "text/plain", "host": "pb.example", "x-custom": "abc"},
		"body":    strings.Repeat("a", n)})
	frame, err := phoenix.EncodeText(phoenix.Message{JoinRef: "1", Topic: "telephone:p", Event: "proxy_req", Payload: p})
	if err != nil {
		b.Fatal(err)
	}
	return frame
}

// forwardOnce is one request's path through the client: decode the frame, validate, admit,
// serve, collect, encode the proxy_res and its frame.
func forwardOnce(b *testing.B, c *Client, frame []byte) int {
	m, err := phoenix.DecodeText(frame)
	if err != nil {
		b.Fatal(err)
	}
	pr, err := parseProxyReq(m.Payload)
	if err != nil {
		b.Fatal(err)
	}
	t, rej := c.guard.admit(pr.RequestID, int64(len(pr.Body)))
	if rej != nil {
		b.Fatal(rej.reason)
	}
	ctx := context.Background()
	if rej := t.wait(ctx); rej != nil {
		b.Fatal(rej.reason)
	}
	res := c.forward(ctx, newCollector(c.conf().maxResponseSize, c.conf().chunkSize), pr, c.log)
	t.done()
	if res.status != http.StatusOK {
		b.Fatalf("status %d", res.status)
	}
	payload := res.encode(pr.RequestID, c.conf().chunkSize)
	res.esc.release() // as response.send does once the frame is built
	// The channel sends the payload as phoenix.ValidJSON: framing is a copy, not a rescan.
	out := append(append(make([]byte, 0, len(payload)+64), `["1","2","telephone:p","proxy_res",`...), payload...)
	return len(append(out, ']'))
}

// echo reads the whole request body, then answers it with its length declared (a backend
// that answers before reading the body makes net/http close the connection after each
// request, which would measure reconnects instead of forwarding).
var echo = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
})

var protectionOff = []Option{WithRateLimit(math.Inf(1), 0), WithCircuitBreaker(0, 0), WithRetries(0, 0),
	WithMaxConcurrentRequests(1_000_000, 0)}

func benchClient(b *testing.B, opts ...Option) *Client {
	b.Helper()
	c, err := New("ws://plugboard.test/telephone/websocket", opts...)
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// BenchmarkForward measures one request through the client to an in-process handler.
func BenchmarkForward(b *testing.B) {
	for _, size := range []struct {
		name string
		n    int
	}{{"Small", 1 << 10}, {"1MiB", 1 << 20}} {
		b.Run(size.name, func(b *testing.B) {
			c := benchClient(b, WithHandler(echo), WithRateLimit(math.Inf(1), 0))
			frame := proxyReqFrame(b, size.n)
			b.SetBytes(int64(size.n))
			b.ReportAllocs()
			for b.Loop() {
				forwardOnce(b, c, frame)
			}
		})
	}
}

// BenchmarkForwardProtection compares the path through the reverse proxy to a loopback
// backend with the protection layer at its defaults (rate limit aside, which would refuse
// a benchmark's burst) and switched off.
func BenchmarkForwardProtection(b *testing.B) {
	backend := httptest.NewServer(echo)
	defer backend.Close()
	for _, mode := range []struct {
		name string
		opts []Option
	}{
		{"On", []Option{WithRateLimit(math.Inf(1), 0)}},
		{"Off", protectionOff},
	} {
		b.Run(mode.name, func(b *testing.B) {
			c := benchClient(b, append([]Option{WithBackendURL(backend.URL)}, mode.opts...)...)
			frame := proxyReqFrame(b, 1<<10)
			b.ReportAllocs()
			for b.Loop() {
				forwardOnce(b, c, frame)
			}
		})
	}
}

// BenchmarkLoopbackRoundTrip is the floor of forwarding to a TCP backend: one 1 KiB POST and
// its answer over a kept-alive loopback connection, no telephone: with the default backend
// transport (Lean) and with net/http's Transport tuned the same way (NetHTTP).
func BenchmarkLoopbackRoundTrip(b *testing.B) {
	backend := httptest.NewServer(echo)
	defer backend.Close()
	netHTTP := defaultBackendTransport()
	netHTTP.MaxIdleConnsPerHost = DefaultMaxConcurrent
	for _, tr := range []struct {
		name string
		rt   http.RoundTripper
	}{{"Lean", backendTransport(DefaultMaxConcurrent)}, {"NetHTTP", netHTTP}} {
		b.Run(tr.name, func(b *testing.B) {
			client := &http.Client{Transport: tr.rt}
			body := strings.Repeat("a", 1<<10)
			b.ReportAllocs()
			for b.Loop() {
				res, err := client.Post(backend.URL+"/api/echo", "text/plain", strings.NewReader(body))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, res.Body); err != nil {
					b.Fatal(err)
				}
				res.Body.Close()
			}
		})
	}
}

// BenchmarkParseProxyReq1KiB is the floor of taking a request: decoding and validating the
// proxy_req payload (the frame itself: phoenix's BenchmarkDecodeProxyReq1KiB).
func BenchmarkParseProxyReq1KiB(b *testing.B) {
	m, err := phoenix.DecodeText(proxyReqFrame(b, 1<<10))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseProxyReq(m.Payload); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeProxyRes1KiB is the floor of answering: the proxy_res payload of a 1 KiB
// response with a few headers.
func BenchmarkEncodeProxyRes1KiB(b *testing.B) {
	res := &response{status: 200, body: strings.Repeat("a", 1<<10),
		header: http.Header{"Content-Type": {"text/plain"}, "Date": {"Mon, 30 Nov 2026 10:00:00 GMT"}}}
	b.ReportAllocs()
	for b.Loop() {
		_ = res.encode(testID, DefaultChunkSize)
	}
}

// BenchmarkHooksOff measures what the observer and tracing hooks cost a request when neither
// is configured: every call the forwarding path makes to them, in order.
func BenchmarkHooksOff(b *testing.B) {
	c := benchClient(b, WithHandler(echo))
	s := &session{c: c}
	m, _ := phoenix.DecodeText(proxyReqFrame(b, 16))
	pr, err := parseProxyReq(m.Payload)
	if err != nil {
		b.Fatal(err)
	}
	res := &response{status: http.StatusOK}
	call := func(context.Context) *response { return res }
	ctx, start := context.Background(), time.Now()
	b.ReportAllocs()
	for b.Loop() {
		observed := c.observeRequest(s, pr, start)
		tctx, tr := c.startTrace(ctx, s, pr, start)
		_ = tr.queued(tctx, nil)
		r := tr.backend(tctx, pr.header, call)
		tr.sending(tctx)
		tr.end(r)
		if observed != nil {
			b.Fatal("observer called")
		}
	}
}

// BenchmarkLargeResponse is what one 8 MiB response of undeclared length costs: written by
// the handler in 32 KiB pieces, collected, and its proxy_res made ready for the socket (the
// chunks handed over and given back to the pool as the socket writes them).
func BenchmarkLargeResponse(b *testing.B) {
	piece := []byte(strings.Repeat("abcdefg\n", 4<<10))
	b.SetBytes(256 * int64(len(piece)))
	b.ReportAllocs()
	for b.Loop() {
		w := newCollector(1<<30, DefaultChunkSize)
		w.Header().Set("Content-Type", "text/plain")
		for range 256 {
			if _, err := w.Write(piece); err != nil {
				b.Fatal(err)
			}
		}
		res := w.result(UTF8Reject, discardLogger(), nil)
		_, _ = res.encoder(testID, DefaultChunkSize)
		for _, c := range res.esc.take() {
			putChunk(c)
		}
	}
}
