package telephonetest

import "sync"

// mailbox is an unbounded FIFO queue with a notification channel, like an
// Erlang process mailbox: Put never blocks, so the socket reader and HTTP
// handlers can hand work to a socket's or proxied connection's single writer
// without waiting for it. It is safe for concurrent use.
type mailbox[T any] struct {
	notify chan struct{} // receives a token whenever the queue becomes non-empty

	mu     sync.Mutex // guards items and closed
	items  []T
	closed bool
}

func newMailbox[T any]() *mailbox[T] {
	return &mailbox[T]{notify: make(chan struct{}, 1)}
}

// Put appends v; it reports false (and drops v) after close.
func (m *mailbox[T]) Put(v T) bool {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return false
	}
	m.items = append(m.items, v)
	m.mu.Unlock()
	select {
	case m.notify <- struct{}{}:
	default:
	}
	return true
}

// Ready is signalled after Put; the receiver then calls Drain.
func (m *mailbox[T]) Ready() <-chan struct{} { return m.notify }

// Drain removes and returns everything queued, oldest first.
func (m *mailbox[T]) Drain() []T {
	m.mu.Lock()
	defer m.mu.Unlock()
	items := m.items
	m.items = nil
	return items
}

// close makes later Puts no-ops and discards what is queued.
func (m *mailbox[T]) close() {
	m.mu.Lock()
	m.closed = true
	m.items = nil
	m.mu.Unlock()
}
