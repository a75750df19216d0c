package telephone

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"testing"
	"testing/synctest"
	"time"

	"github.com/verastack/telephone/phoenix"
	"github.com/verastack/telephone/tokenstore"
)

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

// TestShutdownDrainsThenLeaves checks the shutdown order: new requests get 503 at once,
// the in-flight one finishes (not cancelled), then phx_leave, then the socket closes.
func TestShutdownDrainsThenLeaves(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		cancelled := false
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
				cancelled = true
			}
			w.WriteHeader(http.StatusAccepted)
		})
		f := newFakePlugboard(t)
		store := tokenstore.NewMemory()
		configured := f.mint(time.Hour)
		c, err := New("ws://plugboard.test/telephone/websocket", WithToken(configured), WithHandler(h), WithTokenStore(store))
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
		f.pushProxyReqs(t, 1) // request 0: in flight
		synctest.Wait()
		shut := make(chan error, 1)
		go func() { shut <- c.Shutdown(context.Background()) }()
		synctest.Wait()
		f.mu.Lock()
		f.results = nil
		f.mu.Unlock()
		f.mu.Lock()
		conn := f.server
		f.mu.Unlock()
		p, _ := json.Marshal(map[string]any{"request_id": reqID(1), "method": "GET", "path": "/late"})
		frame, _ := phoenix.EncodeText(phoenix.Message{JoinRef: "1", Topic: "telephone:" + f.pathID, Event: "proxy_req", Payload: p})
		_ = conn.Write(context.Background(), false, frame)
		synctest.Wait()
		if got := f.statuses(); got[http.StatusServiceUnavailable] != 1 || len(got) != 1 {
			t.Fatalf("request during the drain: %v", got)
		}
		if !c.Status().Draining || !c.Status().Joined {
			t.Fatalf("status during drain %+v", c.Status())
		}
		close(release)
		if err := <-shut; err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		f.wg.Wait()
		if got := f.statuses(); got[http.StatusAccepted] != 1 || cancelled {
			t.Fatalf("in-flight request: %v (cancelled %v)", got, cancelled)
		}
		if !f.sawLeave() {
			t.Fatal("no phx_leave before closing")
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
