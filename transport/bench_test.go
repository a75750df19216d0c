package transport

import (
	"strings"
	"testing"
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
