//go:build !unix

package telephone

import "net"

// alive cannot peek at a connection on this platform: a closed one shows when it is used
// (and an idempotent request is then sent again on a new one).
func alive(net.Conn) bool { return true }

// waitReadable returns at once on this platform: the read buffer is taken before the wait.
func waitReadable(net.Conn) error { return nil }
