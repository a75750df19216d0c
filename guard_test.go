package telephone

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/verastack/telephone/phoenix"
	"github.com/verastack/telephone/tokenstore"
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
	return newGuard(newConfig(o), discardLogger(), nil)
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
		time.Sleep(g.ttl() + time.Second)
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

// pushProxyReqs sends n proxy_req frames from the fake Plugboard as fast as the socket takes them.
func (f *fakePlugboard) pushProxyReqs(t *testing.T, n int) {
	t.Helper()
	f.mu.Lock()
	conn := f.server
	f.mu.Unlock()
	for i := range n {
		p, _ := json.Marshal(map[string]any{"request_id": reqID(i), "method": "GET", "path": "/flood",
			"headers": map[string]string{}, "body": "", "query_string": ""})
		frame, _ := phoenix.EncodeText(phoenix.Message{JoinRef: "1", Topic: "telephone:" + f.pathID, Event: "proxy_req", Payload: p})
		if err := conn.Write(context.Background(), false, frame); err != nil {
			t.Fatal(err)
		}
	}
}

func (f *fakePlugboard) statuses() map[int]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[int]int{}
	for _, raw := range f.results {
		var p struct {
			Status int `json:"status"`
		}
		_ = json.Unmarshal(raw, &p)
		out[p.Status]++
	}
	return out
}

// TestFloodStaysBounded sends 10 000 requests faster than the rate limit while the backend
// hangs: every request is answered, and goroutines and tracked state stay bounded.
func TestFloodStaysBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
			w.WriteHeader(http.StatusNoContent)
		})
		f := newFakePlugboard(t)
		c, stop := runFake(t, f, WithToken(f.mint(time.Hour)), WithHandler(h),
			WithRateLimit(500, 1000), WithMaxConcurrentRequests(50, 100*time.Millisecond))
		defer stop()
		before := runtime.NumGoroutine()
		heapBefore := heapInUse()
		f.pushProxyReqs(t, 10_000)
		synctest.Wait()
		peak := runtime.NumGoroutine() - before
		if grown := heapInUse() - heapBefore; grown > 32<<20 {
			t.Fatalf("heap grew by %d MiB during the flood", grown>>20)
		}
		st := c.Status()
		if peak > 2*50+10 || st.Limits.Tracked > 100 || st.Limits.Queued > 50 || st.InFlight > 100 {
			t.Fatalf("flood not bounded: +%d goroutines, status %+v", peak, st.Limits)
		}
		close(release)
		time.Sleep(time.Second)
		synctest.Wait()
		got := f.statuses()
		total := 0
		for _, n := range got {
			total += n
		}
		// The burst (1000) passes the rate limit; of those, 50 take slots, 50 wait in the queue
		// (and get slots when the backend recovers) and the rest are refused with 503.
		if total != 10_000 || got[http.StatusTooManyRequests] != 9_000 || got[http.StatusNoContent] != 100 || got[503] != 900 {
			t.Fatalf("answers by status = %v (total %d)", got, total)
		}
		st = c.Status()
		if st.Limits.Tracked != 0 || st.InFlight != 0 || st.Limits.RejectedRate != uint64(got[429]) ||
			st.Limits.RejectedBusy != uint64(got[503]) {
			t.Fatalf("state after the flood: %+v", st)
		}
		// The limits reset: a request after the flood (and a refill) is served.
		time.Sleep(2 * time.Second)
		f.mu.Lock()
		f.results = nil
		f.mu.Unlock()
		f.pushProxyReqs(t, 1)
		time.Sleep(10 * time.Millisecond)
		synctest.Wait()
		if got := f.statuses(); got[http.StatusNoContent] != 1 {
			t.Fatalf("after the flood: %v", got)
		}
	})
}

// TestDuplicateRequestIDAnsweredOnce checks a repeated request_id is ignored while the first is in progress.
func TestDuplicateRequestIDAnsweredOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release })
		f := newFakePlugboard(t)
		c, stop := runFake(t, f, WithToken(f.mint(time.Hour)), WithHandler(h))
		defer stop()
		f.pushProxyReqs(t, 1)
		f.pushProxyReqs(t, 1)
		synctest.Wait()
		close(release)
		synctest.Wait()
		if got := f.statuses(); fmt.Sprint(got) != "map[200:1]" || c.Status().Limits.Duplicates != 1 {
			t.Fatalf("answers %v, status %+v", got, c.Status().Limits)
		}
	})
}

// TestDeadlinePassedIsAnsweredAndForgotten checks a request stuck past its deadline gets 504
// and is forgotten once its handler returns.
func TestDeadlinePassedIsAnsweredAndForgotten(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release })
		f := newFakePlugboard(t)
		c, stop := runFake(t, f, WithToken(f.mint(time.Hour)), WithHandler(h), WithRequestTimeout(time.Second))
		defer stop()
		f.pushProxyReqs(t, 1)
		time.Sleep(1100 * time.Millisecond)
		synctest.Wait()
		if got := f.statuses(); got[http.StatusGatewayTimeout] != 1 {
			t.Fatalf("answers %v", got)
		}
		close(release)
		synctest.Wait()
		if st := c.Status(); st.Limits.Tracked != 0 || st.InFlight != 0 || len(f.statuses()) != 1 {
			t.Fatalf("after the handler returned: %+v, answers %v", st, f.statuses())
		}
	})
}

// pushTo pushes a proxy_req for path with request id reqID(id) on connection conn.
func (f *fakePlugboard) pushTo(t *testing.T, conn, id int, path string) {
	t.Helper()
	f.mu.Lock()
	c := f.servers[conn]
	f.mu.Unlock()
	p, _ := json.Marshal(map[string]any{"request_id": reqID(id), "method": "GET", "path": path})
	frame, _ := phoenix.EncodeText(phoenix.Message{JoinRef: "1", Topic: "telephone:" + f.pathID, Event: "proxy_req", Payload: p})
	if err := c.Write(context.Background(), false, frame); err != nil {
		t.Fatal(err)
	}
}

func (f *fakePlugboard) eventLog() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.events)
}

// TestShutdownDrainsThenLeaves checks the drain order with two sessions: they leave one after
// another, each only when nothing is in flight on it; until it leaves, a session serves what
// reaches it normally (not 503); then the sockets close. In-flight requests are not cancelled.
func TestShutdownDrainsThenLeaves(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		cancelled := false
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/held" {
				select {
				case <-release:
				case <-r.Context().Done():
					cancelled = true
				}
			}
			w.WriteHeader(http.StatusAccepted)
		})
		f := newFakePlugboard(t)
		store := tokenstore.NewMemory()
		configured := f.mint(time.Hour)
		c, err := New("ws://plugboard.test/telephone/websocket", WithToken(configured), WithHandler(h),
			WithTokenStore(store), WithConnections(2))
		if err != nil {
			t.Fatal(err)
		}
		c.dialFn = f.dial
		done := make(chan error, 1)
		go func() { done <- c.Run(context.Background()) }()
		synctest.Wait()
		if stored, _ := store.Load(context.Background()); stored != configured {
			t.Fatal("the configured token was not stored at start-up")
		}
		f.pushTo(t, 0, 0, "/held") // in flight on connection 0
		synctest.Wait()
		shut := make(chan error, 1)
		go func() { shut <- c.Shutdown(context.Background()) }()
		synctest.Wait()
		// Connection 1 had nothing in flight: it left at once, or is not asked yet. Connection 0
		// waits for its request either way, and the path keeps a channel.
		if ev := f.eventLog(); slices.Contains(ev, "0 phx_leave") {
			t.Fatalf("connection 0 left with a request in flight: %v", ev)
		}
		st := c.Status()
		if !st.Draining || !st.Joined || leavingSessions(st) == 0 {
			t.Fatalf("status during the drain %+v, events %v", st, f.eventLog())
		}
		f.pushTo(t, 0, 1, "/late") // reaches the channel before it left: served normally
		synctest.Wait()
		if got := f.statuses(); got[http.StatusAccepted] != 1 || len(got) != 1 {
			t.Fatalf("request during the drain: %v", got)
		}
		close(release)
		if err := <-shut; err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		f.wg.Wait()
		if got := f.statuses(); got[http.StatusAccepted] != 2 || cancelled {
			t.Fatalf("answers %v (cancelled %v)", got, cancelled)
		}
		ev := f.eventLog()
		i0, i1 := slices.Index(ev, "0 phx_leave"), slices.Index(ev, "1 phx_leave")
		if i0 < 0 || i1 < 0 || f.leaves != 2 {
			t.Fatalf("both sessions must leave: %v", ev)
		}
		if ev[len(ev)-1] != "0 phx_leave" && ev[len(ev)-1] != "1 phx_leave" || slices.Index(ev, "0 proxy_res 202") > i0 {
			t.Fatalf("a proxy_res followed its channel's phx_leave: %v", ev)
		}
		if st := c.Status(); st.Joined || st.Connected {
			t.Fatalf("status after Shutdown %+v", st)
		}
	})
}

// TestShutdownRefusesAfterItsShare: a session that is never idle within its share of the grace
// period (half of it with one session) serves normally until then, then answers new requests
// 503 at once while its forwarded request finishes, and leaves right after that request's
// answer.
func TestShutdownRefusesAfterItsShare(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/held" {
				<-release
			}
			w.WriteHeader(http.StatusAccepted)
		})
		f := newFakePlugboard(t)
		c, stop := runFake(t, f, WithToken(f.mint(time.Hour)), WithHandler(h), WithConnections(1))
		defer stop()
		f.pushTo(t, 0, 0, "/held")
		synctest.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut := make(chan error, 1)
		go func() { shut <- c.Shutdown(ctx) }()
		time.Sleep(5*time.Second - time.Millisecond)
		f.pushTo(t, 0, 1, "/before")
		synctest.Wait()
		time.Sleep(time.Millisecond)
		synctest.Wait()
		f.pushTo(t, 0, 2, "/after")
		synctest.Wait()
		if got := f.statuses(); got[http.StatusAccepted] != 1 || got[http.StatusServiceUnavailable] != 1 || f.sawLeave() {
			t.Fatalf("within and past the share: answers %v, left %v", got, f.sawLeave())
		}
		close(release)
		if err := <-shut; err != nil {
			t.Fatalf("Shutdown = %v", err)
		}
		if ev := f.eventLog(); len(ev) != 4 || ev[2] != "0 proxy_res 202" || ev[3] != "0 phx_leave" {
			t.Fatalf("events %v: want the held answer, then phx_leave", ev)
		}
	})
}

// heapInUse is the live heap after a collection.
func heapInUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}

// TestGuardTTLFollowsReload: a request id is remembered for the request timeout in force when
// it was admitted (plus queue wait and a minute), also after Reload changed the timeout.
func TestGuardTTLFollowsReload(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		c, err := New("ws://pb.example/telephone/websocket", WithHandler(http.NotFoundHandler()),
			WithRequestTimeout(time.Second), WithMaxConcurrentRequests(4, 0))
		if err != nil {
			t.Fatal(err)
		}
		if got := c.guard.ttl(); got != time.Second+time.Minute {
			t.Fatalf("ttl %v before Reload", got)
		}
		if _, _, err := c.Reload(WithRequestTimeout(3 * time.Minute)); err != nil {
			t.Fatal(err)
		}
		if got := c.guard.ttl(); got != 4*time.Minute {
			t.Fatalf("ttl %v after Reload, want 4m", got)
		}
		stuck, rej := c.guard.admit(reqID(1), 0)
		if rej != nil {
			t.Fatal(rej.reason)
		}
		defer stuck.done()
		time.Sleep(2 * time.Minute) // past the TTL the timeout of New implied
		c.guard.mu.Lock()
		c.guard.sweep(time.Now())
		c.guard.mu.Unlock()
		if c.guard.status().Tracked != 1 {
			t.Fatal("the id was forgotten after the old TTL although Reload lengthened it")
		}
		time.Sleep(2*time.Minute + time.Second)
		c.guard.mu.Lock()
		c.guard.sweep(time.Now())
		c.guard.mu.Unlock()
		if c.guard.status().Tracked != 0 {
			t.Fatal("the id is still tracked after the reloaded TTL")
		}
	})
}

// TestGuardNoRateLimitByDefault admits far more than the old default burst (2000) at one
// instant without a 429, and a rate set later by Reload's setRate starts with a full bucket.
func TestGuardNoRateLimitByDefault(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		g := testGuard(t)
		if st := g.status(); !math.IsInf(st.RateLimit, 1) || st.RateBurst != 0 {
			t.Fatalf("default rate %v burst %d, want +Inf and 0", st.RateLimit, st.RateBurst)
		}
		for i := range 5000 {
			tk, rej := g.admit(reqID(i), 0)
			if rej != nil {
				t.Fatalf("request %d refused without a rate limit: %s", i, rej.reason)
			}
			tk.done()
		}
		g.setRate(&options{rateLimit: 1, rateBurst: 2})
		for i := range 2 {
			tk, rej := g.admit(reqID(10_000+i), 0)
			if rej != nil {
				t.Fatalf("request %d within the new burst refused", i)
			}
			tk.done()
		}
		if _, rej := g.admit(reqID(10_002), 0); rej == nil || rej.res.status != http.StatusTooManyRequests {
			t.Fatalf("over the new rate: %+v", rej)
		}
		g.setRate(&options{rateLimit: math.Inf(1)})
		tk, rej := g.admit(reqID(10_003), 0)
		if rej != nil {
			t.Fatal("refused after the limit was lifted")
		}
		tk.done()
	})
}
