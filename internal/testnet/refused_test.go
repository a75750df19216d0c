package testnet

import (
	"errors"
	"net"
	"syscall"
	"testing"
)

func TestRefusedAddrRefusesUntilClosed(t *testing.T) {
	addr, closeAddr, err := RefusedAddr()
	if err != nil {
		t.Fatal(err)
	}
	defer closeAddr()
	for range 3 {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			t.Fatalf("dial %s succeeded, want refused", addr)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("dial %s: %v, want ECONNREFUSED", addr, err)
		}
	}
	// The port is held: nobody can listen on it while the address is in use.
	if l, err := net.Listen("tcp", addr); err == nil {
		l.Close()
		t.Fatalf("listening on %s succeeded while it is held", addr)
	}
}
