//go:build unix

package testnet

import (
	"errors"
	"syscall"
	"testing"
)

func TestBoundAddrReportsBindErrors(t *testing.T) {
	if _, err := boundAddr(-1); !errors.Is(err, syscall.EBADF) {
		t.Fatalf("boundAddr(-1) = %v, want EBADF", err)
	}
}
