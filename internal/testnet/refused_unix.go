//go:build unix

package testnet

import (
	"net"
	"strconv"
	"syscall"
)

// RefusedAddr returns a loopback host:port that refuses TCP connections until release is
// called: a socket bound to the port but never listening holds it, so no other test (nor
// another copy of the suite running alongside) can listen there, and a connection attempt
// gets ECONNREFUSED. Closing a listener and reusing its port instead races with every other
// test that asks for a free port.
func RefusedAddr() (addr string, release func(), err error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err == nil {
		if addr, err = boundAddr(fd); err == nil {
			return addr, func() { syscall.Close(fd) }, nil
		}
		syscall.Close(fd)
	}
	return "", nil, err
}

// boundAddr binds fd to a free loopback port and returns it as host:port.
func boundAddr(fd int) (string, error) {
	var sa syscall.Sockaddr
	err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}})
	if err == nil {
		sa, err = syscall.Getsockname(fd)
	}
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port)), nil
}
