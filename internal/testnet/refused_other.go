//go:build !unix

package testnet

import "net"

// RefusedAddr returns a loopback host:port nothing listens on: a port that was free a moment
// ago (here a port cannot be held without listening).
func RefusedAddr() (addr string, release func(), err error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	addr = l.Addr().String()
	l.Close()
	return addr, func() {}, nil
}
