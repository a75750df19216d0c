package telephone

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"
)

// errBudget is returned by collector.Write when the response cannot get its bytes from the
// memory budget within the queue wait.
var errBudget = errors.New("telephone: memory budget exhausted")

// Reasons answered with 503 when the budget refuses bytes.
const (
	budgetBusyReason   = "Service Unavailable: the telephone's memory budget is exhausted; try again"
	budgetTooBigReason = "Service Unavailable: the request body is larger than the telephone's memory budget"
	// A response that can never fit is the backend's, like one over the size limit: 502.
	budgetResponseTooBigReason = "Bad Gateway: the backend response is larger than the telephone's memory budget"
)

// budget bounds the body bytes in flight (request bodies and responses being built), so
// that a burst of large bodies waits or is refused instead of exhausting memory. Waiters
// are served in order (golang.org/x/sync/semaphore). A nil *budget has no limit.
type budget struct {
	size int64
	sem  *semaphore.Weighted
	wait time.Duration // the queue wait: how long a request may wait for bytes
}

func newBudget(size int64, wait time.Duration) *budget {
	if size <= 0 {
		return nil
	}
	return &budget{size: size, sem: semaphore.NewWeighted(size), wait: wait}
}

// acquire takes n bytes, waiting at most the queue wait (and while ctx lives). It returns
// the response to answer instead when it cannot.
func (b *budget) acquire(ctx context.Context, n int64) *response {
	if b == nil || n <= 0 {
		return nil
	}
	if n > b.size {
		return errorResponse(http.StatusServiceUnavailable, budgetTooBigReason)
	}
	if b.sem.TryAcquire(n) {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, b.wait)
	defer cancel()
	if b.sem.Acquire(ctx, n) != nil {
		return errorResponse(http.StatusServiceUnavailable, budgetBusyReason)
	}
	return nil
}

// release gives back n bytes taken by acquire.
func (b *budget) release(n int64) {
	if b != nil && n > 0 {
		b.sem.Release(n)
	}
}

// budgetShare is the budget a response's escaped body holds once the handler is done. The
// body's chunks may wait in the socket's outbound queue after the response was handed over,
// so the share is given back as the socket writes them (give, once per chunk), or at once
// when the body will not be written (releaseAll). The zero budgetShare holds nothing.
type budgetShare struct {
	b    *budget
	left atomic.Int64
}

// hold makes s the share of n bytes taken from b.
func (s *budgetShare) hold(b *budget, n int64) {
	s.b = b
	s.left.Store(n)
}

// give releases up to n bytes of the share.
func (s *budgetShare) give(n int64) {
	if s.b == nil || n <= 0 {
		return
	}
	for {
		left := s.left.Load()
		k := min(n, left)
		if k <= 0 {
			return
		}
		if s.left.CompareAndSwap(left, left-k) {
			s.b.release(k)
			return
		}
	}
}

// releaseAll releases what is left of the share.
func (s *budgetShare) releaseAll() { s.give(s.left.Load()) }
