package transport

import (
	"net"
	"sync"
)

// corkMax is the most a corked connection gathers before it writes anyway: a batch of
// small frames goes out in one write, a large frame is not copied.
const corkMax = 64 << 10

// corkConn is the TCP connection under a dialled WebSocket (under TLS too). While corked,
// writes are gathered in memory, up to corkMax, and go out in one write at uncork: several
// WebSocket messages then cost one system call instead of one each.
type corkConn struct {
	net.Conn
	mu     sync.Mutex // guards corked and buf; held across the underlying Write to keep order
	corked bool
	buf    []byte
}

func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.corked && len(c.buf)+len(p) <= corkMax {
		c.buf = append(c.buf, p...)
		return len(p), nil
	}
	if err := c.flushLocked(); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

func (c *corkConn) flushLocked() error {
	if len(c.buf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.buf)
	c.buf = c.buf[:0]
	return err
}

// cork starts gathering writes.
func (c *corkConn) cork() {
	c.mu.Lock()
	c.corked = true
	c.mu.Unlock()
}

// uncork writes what was gathered and stops gathering.
func (c *corkConn) uncork() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked = false
	return c.flushLocked()
}
