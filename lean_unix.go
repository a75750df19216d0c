//go:build unix

package telephone

import (
	"net"
	"syscall"
)

// peek looks at c without consuming or waiting: readable reports that a byte (or EOF, or an
// error) is there to read.
func peek(fd uintptr) (readable bool) {
	var buf [1]byte
	_, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return err != syscall.EAGAIN && err != syscall.EWOULDBLOCK
}

// alive reports whether an idle connection is still usable: nothing to read (the backend
// neither closed it nor sent anything unasked). One non-blocking peek, no wait.
func alive(c net.Conn) bool {
	rc, err := sysConn(c)
	if rc == nil {
		return err == nil // not a socket: nothing to peek at (a socket whose fd is gone is not usable)
	}
	readable := true
	err = rc.Read(func(fd uintptr) bool {
		readable = peek(fd)
		return true
	})
	return err == nil && !readable
}

// waitReadable waits until c has something to read (or is closed), without holding a read
// buffer meanwhile: a backend that takes seconds to answer costs no buffer until it does.
func waitReadable(c net.Conn) error {
	rc, err := sysConn(c)
	if rc == nil {
		return nil
	}
	if err != nil {
		return err
	}
	return rc.Read(peek)
}

func sysConn(c net.Conn) (syscall.RawConn, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil, nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	return rc, nil
}
