package transport

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/coder/websocket"
)

func BenchmarkSocketURL(b *testing.B) {
	for b.Loop() {
		if _, err := SocketURL("wss://plugboard.example.com/telephone/websocket?region=eu", testToken); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRedact(b *testing.B) {
	u := "wss://plugboard.example.com/telephone/websocket?region=eu&token=" + testToken + "&vsn=2.0.0"
	for b.Loop() {
		_ = Redact(u)
	}
}

// BenchmarkRoundTrip measures one text message out and its echo back over
// loopback.
func BenchmarkRoundTrip(b *testing.B) {
	srv := newWSServer(b, nil, echo)
	c, err := Dial(b.Context(), srv.wsURL("/"), Options{Token: testToken})
	if err != nil {
		b.Fatal(err)
	}
	defer c.CloseNow()
	msg := []byte(`[null,"1","telephone:x","proxy_res",{"body":"` + strings.Repeat("x", 512) + `"}]`)
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if err := c.Write(b.Context(), false, msg); err != nil {
			b.Fatal(err)
		}
		if _, _, err := c.Read(b.Context()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWrite1KiB measures one text message written to a peer that reads and discards:
// the floor of sending one small proxy_res. Batch writes four at once through WriteBatch.
func BenchmarkWrite1KiB(b *testing.B) {
	discard := func(ctx context.Context, c *websocket.Conn) {
		for {
			if _, _, err := c.Read(ctx); err != nil {
				return
			}
		}
	}
	msg := []byte(`[null,"1","telephone:x","proxy_res",{"body":"` + strings.Repeat("x", 1000) + `"}]`)
	for _, batch := range []int{1, 4} {
		b.Run("Batch"+strconv.Itoa(batch), func(b *testing.B) {
			srv := newWSServer(b, nil, discard)
			c, err := Dial(b.Context(), srv.wsURL("/"), Options{Token: testToken})
			if err != nil {
				b.Fatal(err)
			}
			defer c.CloseNow()
			texts := make([][]byte, batch)
			for i := range texts {
				texts[i] = msg
			}
			b.SetBytes(int64(len(msg) * batch))
			b.ReportAllocs()
			for b.Loop() {
				if err := c.WriteBatch(b.Context(), texts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
