package telephone

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func testGuard(t *testing.T, opts ...Option) *guard {
	t.Helper()
	o := defaultOptions()
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			t.Fatal(err)
		}
	}
	var l live
	l.init(&o)
	return newGuard(&o, &l, discardLogger(), nil)
}

func reqID(i int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", i) }

func TestGuardConcurrencyEdges(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 3} {
		synctest.Test(t, func(t *testing.T) {
			g := testGuard(t, WithMaxConcurrentRequests(n, 100*time.Millisecond), WithRateLimit(math.Inf(1), 0))
			var tickets []*ticket
			for i := range n { // N-1 and N: slots
				tk, rej := g.admit(reqID(i), 0)
				if rej != nil || tk.wait(t.Context()) != nil {
					t.Fatalf("request %d of %d refused", i+1, n)
				}
				tickets = append(tickets, tk)
			}
			// N+1 .. 2N: queued, then refused after the bounded wait.
			var queued []*ticket
			for i := range n {
				tk, rej := g.admit(reqID(n+i), 0)
				if rej != nil {
					t.Fatalf("queued request refused at admission: %v", rej.reason)
				}
				queued = append(queued, tk)
			}
			if _, rej := g.admit(reqID(2*n), 0); rej == nil || rej.res.status != http.StatusServiceUnavailable {
				t.Fatal("request beyond the queue was admitted")
			}
			start := time.Now()
			if rej := queued[0].wait(t.Context()); rej == nil || rej.res.status != 503 {
				t.Fatal("queued request got a slot although none was free")
			}
			if waited := time.Since(start); waited != 100*time.Millisecond {
				t.Fatalf("queue wait = %v, want the configured 100ms", waited)
			}
			queued[0].done()
			// Releasing one slot lets the next queued request in.
			tickets[0].done()
			if rej := queued[1%len(queued)].wait(t.Context()); n > 1 && rej != nil {
				t.Fatal("queued request not admitted after a slot was released")
			}
			st := g.status()
			if st.RejectedBusy != 2 || st.MaxConcurrent != n {
				t.Fatalf("status = %+v", st)
			}
		})
	}
}

func TestGuardRateLimitEdgesAndReset(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		g := testGuard(t, WithRateLimit(2, 3))
		for i := range 3 { // burst: N-1, N
			tk, rej := g.admit(reqID(i), 0)
			if rej != nil {
				t.Fatalf("request %d refused within burst", i)
			}
			tk.done()
		}
		_, rej := g.admit(reqID(3), 0) // N+1
		if rej == nil || rej.res.status != http.StatusTooManyRequests || rej.res.header.Get("Retry-After") != "1" {
			t.Fatalf("over the rate: %+v", rej)
		}
		time.Sleep(500 * time.Millisecond) // one token refills at 2/s
		tk, rej := g.admit(reqID(4), 0)
		if rej != nil {
			t.Fatal("limit did not refill")
		}
		tk.done()
		if g.status().RejectedRate != 1 {
			t.Fatalf("rejected = %d", g.status().RejectedRate)
		}
	})
}

func TestGuardRequestBodyEdges(t *testing.T) {
	t.Parallel()
	g := testGuard(t, WithMaxRequestBody(10))
	for _, tt := range []struct {
		size int64
		ok   bool
	}{{9, true}, {10, true}, {11, false}} {
		tk, rej := g.admit(reqID(int(tt.size)), tt.size)
		if (rej == nil) != tt.ok {
			t.Fatalf("size %d: admitted=%v", tt.size, rej == nil)
		}
		if rej != nil && rej.res.status != http.StatusRequestEntityTooLarge {
			t.Fatalf("size %d: status %d", tt.size, rej.res.status)
		}
		if tk != nil {
			tk.done()
		}
	}
}

func TestGuardDuplicatesAndSweep(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		g := testGuard(t, WithMaxConcurrentRequests(2, 0), WithRequestTimeout(time.Second))
		stuck, rej := g.admit(reqID(1), 0)
		if rej != nil {
			t.Fatal(rej.reason)
		}
		if _, rej := g.admit(reqID(1), 0); rej == nil || rej.res != nil {
			t.Fatalf("duplicate id: %+v", rej)
		}
		if g.status().Duplicates != 1 || g.status().Tracked != 1 {
			t.Fatalf("status %+v", g.status())
		}
		// The stuck request's id is forgotten after its TTL, whatever its handler does.
		time.Sleep(g.ttl + time.Second)
		g.mu.Lock()
		g.sweep(time.Now())
		g.mu.Unlock()
		if g.status().Tracked != 0 {
			t.Fatalf("tracked = %d after TTL", g.status().Tracked)
		}
		stuck.done()
	})
}

func TestGuardFloodStaysBounded(t *testing.T) {
	t.Parallel()
	g := testGuard(t, WithMaxConcurrentRequests(8, 0), WithRateLimit(100, 100))
	var admitted []*ticket
	for i := range 10_000 {
		if tk, rej := g.admit(reqID(i), 0); rej == nil {
			admitted = append(admitted, tk)
		}
	}
	st := g.status()
	if len(admitted) > 100 || st.Tracked > 2*8 || st.Queued > 8 {
		t.Fatalf("flood not bounded: admitted %d, status %+v", len(admitted), st)
	}
	if st.RejectedRate+st.RejectedBusy+uint64(len(admitted)) != 10_000 {
		t.Fatalf("requests unaccounted for: %+v, admitted %d", st, len(admitted))
	}
	for _, tk := range admitted {
		tk.done()
	}
	if g.status().Tracked != 0 || len(g.sem) != 0 {
		t.Fatal("state left after the flood drained")
	}
}

var errRefused = &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}

type countingRT struct {
	calls atomic.Int32
	fail  func(n int32) error
}

func (c *countingRT) RoundTrip(r *http.Request) (*http.Response, error) {
	n := c.calls.Add(1)
	if err := c.fail(n); err != nil {
		return nil, err
	}
	return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader("ok")), Request: r}, nil
}

func TestBreakerOpensHalfOpensCloses(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		g := testGuard(t, WithCircuitBreaker(3, 5*time.Second))
		healthy := atomic.Bool{}
		rt := &breakerTransport{g: g, next: &countingRT{fail: func(int32) error {
			if healthy.Load() {
				return nil
			}
			return errRefused
		}}}
		req, _ := http.NewRequest("GET", "http://backend/", nil)
		for i := range 3 {
			if _, err := rt.RoundTrip(req); !errors.Is(err, errRefused) {
				t.Fatalf("failure %d: %v", i, err)
			}
		}
		if g.breakerState() != "open" {
			t.Fatalf("state after 3 failures = %s", g.breakerState())
		}
		if _, rej := g.admit(reqID(1), 0); rej == nil || rej.res.status != 503 {
			t.Fatal("open breaker admitted a request")
		}
		if _, err := rt.RoundTrip(req); !errors.Is(err, errBreakerOpen) {
			t.Fatalf("open breaker: %v", err)
		}
		time.Sleep(5*time.Second + time.Millisecond)
		if g.breakerState() != "half-open" {
			t.Fatalf("state after timeout = %s", g.breakerState())
		}
		healthy.Store(true)
		if _, err := rt.RoundTrip(req); err != nil {
			t.Fatalf("probe: %v", err)
		}
		if g.breakerState() != "closed" {
			t.Fatalf("state after a good probe = %s", g.breakerState())
		}
	})
}

func TestRetryOnlyIdempotentConnectionErrors(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		for _, tt := range []struct {
			method string
			err    error
			calls  int32
		}{
			{"GET", errRefused, 2},
			{"PUT", errRefused, 2},
			{"DELETE", errRefused, 2},
			{"POST", errRefused, 1},
			{"PATCH", errRefused, 1},
			{"GET", io.ErrUnexpectedEOF, 1}, // not a connection error: a response may have started
		} {
			g := testGuard(t, WithRetries(3, 10*time.Millisecond))
			inner := &countingRT{fail: func(n int32) error {
				if n == 1 {
					return tt.err
				}
				return nil
			}}
			rt := &retryTransport{next: inner, max: 3, backoff: 10 * time.Millisecond, g: g, log: discardLogger()}
			req, _ := http.NewRequest(tt.method, "http://backend/", strings.NewReader("body"))
			res, err := rt.RoundTrip(req)
			if got := inner.calls.Load(); got != tt.calls {
				t.Errorf("%s after %v: %d calls, want %d", tt.method, tt.err, got, tt.calls)
			}
			if tt.calls == 2 && (err != nil || res.StatusCode != 200) {
				t.Errorf("%s: retry did not succeed: %v", tt.method, err)
			}
		}
	})
}

func TestRetryStopsAtDeadline(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		g := testGuard(t)
		inner := &countingRT{fail: func(int32) error { return errRefused }}
		rt := &retryTransport{next: inner, max: 10, backoff: time.Second, g: g, log: discardLogger()}
		ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://backend/", nil)
		start := time.Now()
		if _, err := rt.RoundTrip(req); err == nil {
			t.Fatal("expected the connection error")
		}
		if waited := time.Since(start); waited > 1500*time.Millisecond {
			t.Fatalf("retries went on for %v, past the 1.5s deadline", waited)
		}
		if n := inner.calls.Load(); n < 2 || n > 10 {
			t.Fatalf("%d attempts", n)
		}
	})
}
