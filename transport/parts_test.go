package transport

import (
	"strings"
	"testing"
)

// TestConnWriteParts sends one message in parts (a fragmented message): a WebSocket server
// reassembles it whole, every part is reported written in order, and a closed connection
// refuses.
func TestConnWriteParts(t *testing.T) {
	t.Parallel()
	srv := newWSServer(t, nil, echo)
	c := mustDial(t, srv.wsURL("/"), Options{Token: testToken})
	parts := [][]byte{[]byte(`["1","2","t","proxy_res",{"body":"`), nil, []byte(strings.Repeat("x", 200<<10)), []byte(`"}]`)}
	want := string(parts[0]) + string(parts[2]) + string(parts[3])
	var written []int
	if err := c.WriteParts(t.Context(), parts, func(i int) { written = append(written, i) }); err != nil {
		t.Fatal(err)
	}
	if len(written) != 4 || written[0] != 0 || written[3] != 3 {
		t.Fatalf("written %v", written)
	}
	if _, got, err := c.Read(t.Context()); err != nil || string(got) != want {
		t.Fatalf("echo of %d bytes: %d bytes, %v", len(want), len(got), err)
	}
	if err := c.Close(1000, ""); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteParts(t.Context(), parts, func(int) {}); err == nil {
		t.Fatal("WriteParts after Close succeeded")
	}
}
