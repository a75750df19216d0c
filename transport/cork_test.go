package transport

import (
	"net"
	"strings"
	"sync/atomic"
	"testing"
)

// countConn counts the writes that reach the network.
type countConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// TestConnWriteBatch sends small messages around one larger than corkMax: they arrive
// whole and in order, and the small ones before the large one share a system call.
func TestConnWriteBatch(t *testing.T) {
	t.Parallel()
	srv := newWSServer(t, nil, echo)
	c := mustDial(t, srv.wsURL("/"), Options{Token: testToken})
	if c.cork == nil {
		t.Fatal("Dial did not keep the socket's connection")
	}
	counter := &countConn{Conn: c.cork.Conn}
	c.cork.Conn = counter // before any read or write
	msgs := []string{`["1","2","t","a",{}]`, `["1","3","t","b",{}]`, strings.Repeat("x", corkMax+1), `["1","4","t","c",{}]`}
	texts := make([][]byte, len(msgs))
	for i, m := range msgs {
		texts[i] = []byte(m)
	}
	if err := c.WriteBatch(t.Context(), texts); err != nil {
		t.Fatal(err)
	}
	// a+b gathered, then the large frame's header is gathered with them and its body
	// written on its own, then c: at most 4 writes instead of 8 (header and body each).
	if n := counter.writes.Load(); n > 4 {
		t.Errorf("%d writes for a batch of 4 messages, want at most 4", n)
	}
	for i, want := range msgs {
		binary, got, err := c.Read(t.Context())
		if err != nil || binary || string(got) != want {
			t.Fatalf("message %d: %.40q (binary %v, %v), want %.40q", i, got, binary, err, want)
		}
	}
	if err := c.Close(1000, ""); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteBatch(t.Context(), texts[:1]); err == nil {
		t.Fatal("WriteBatch after Close succeeded")
	}
}

// TestConnWriteBatchWithoutCork falls back to one Write per message with a caller's client.
func TestConnWriteBatchWithoutCork(t *testing.T) {
	t.Parallel()
	srv := newWSServer(t, nil, echo)
	c := mustDial(t, srv.wsURL("/"), Options{Token: testToken, HTTPClient: srv.Client()})
	if c.cork != nil {
		t.Fatal("a caller's client must not be corked")
	}
	if err := c.WriteBatch(t.Context(), [][]byte{[]byte("a"), []byte("b")}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"a", "b"} {
		if _, got, err := c.Read(t.Context()); err != nil || string(got) != want {
			t.Fatalf("got %q, %v; want %q", got, err, want)
		}
	}
}
