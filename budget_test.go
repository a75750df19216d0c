package telephone

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/verastack/telephone/telephonetest"
)

func TestBudgetAcquireWaitsWithinQueueWait(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := newBudget(100, time.Second)
		ctx := context.Background()
		if res := b.acquire(ctx, 100); res != nil {
			t.Fatal("the whole budget refused")
		}
		if res := b.acquire(ctx, 101); res == nil || res.status != http.StatusServiceUnavailable || res.body != budgetTooBigReason {
			t.Fatalf("over the whole budget: %+v", res)
		}
		start := time.Now()
		if res := b.acquire(ctx, 1); res == nil || res.body != budgetBusyReason || time.Since(start) != time.Second {
			t.Fatalf("exhausted budget: %+v after %v, want 503 after the queue wait", res, time.Since(start))
		}
		got := make(chan *response, 1)
		go func() { got <- b.acquire(ctx, 60) }()
		time.Sleep(500 * time.Millisecond)
		b.release(50) // not enough yet
		synctest.Wait()
		if len(got) != 0 {
			t.Fatal("acquired 60 with 50 free")
		}
		b.release(50)
		if res := <-got; res != nil {
			t.Fatalf("acquire after release: %+v", res)
		}
		var none *budget
		if none.acquire(ctx, 1<<40) != nil {
			t.Fatal("a nil budget refused")
		}
		none.release(5)
		if newBudget(-1, time.Second) != nil {
			t.Fatal("a negative size must mean no budget")
		}
	})
}

// TestCollectorChargesTheBudget: a response is charged the bytes of its escaped body as it
// grows (held once: it is sent from there), refused
// with 503 when the budget cannot pay within the queue wait, and paid back after sending.
func TestCollectorChargesTheBudget(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := newBudget(1000, 100*time.Millisecond)
		w := newCollector(1<<20, DefaultChunkSize)
		w.useBudget(context.Background(), b)
		if _, err := w.Write([]byte(strings.Repeat("a", 300) + strings.Repeat(`"`, 300))); err != nil {
			t.Fatal(err)
		}
		if w.charged != 900 { // a quote is escaped as two bytes
			t.Fatalf("charged %d, want 900", w.charged)
		}
		if _, err := w.Write([]byte(strings.Repeat("b", 101))); err != errBudget {
			t.Fatalf("write over the budget: %v", err)
		}
		if res := w.result(UTF8Reject, discardLogger(), nil); res.status != http.StatusServiceUnavailable || res.body != budgetBusyReason {
			t.Fatalf("result %d %q", res.status, res.body)
		}
		if w.body.chunks != nil {
			t.Fatal("a refused body is still held")
		}
		w.releaseBudget()
		if res := b.acquire(context.Background(), 1000); res != nil {
			t.Fatal("the collector did not pay back")
		}
		b.release(1000)
	})
}

func TestWithMemoryBudget(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		n    int64
		want int64
		ok   bool
	}{{0, DefaultMemoryBudget, true}, {-1, -1, true}, {1 << 20, 1 << 20, true}, {1<<20 - 1, 0, false}} {
		o := defaultOptions()
		err := WithMemoryBudget(tc.n)(&o)
		if (err == nil) != tc.ok || (tc.ok && o.memoryBudget != tc.want) {
			t.Errorf("WithMemoryBudget(%d): budget %d, err %v", tc.n, o.memoryBudget, err)
		}
	}
}

// TestMemoryBudgetThroughTheTunnel sends 8 stalled 300 kB request bodies at once through a
// 1 MiB budget: three fit, the others wait the queue wait and get 503 with the reason; once
// the backend answers, the three get 200. Every request is answered. (The loops poll state
// that changes by itself; nothing depends on how long they take.)
func TestMemoryBudgetThroughTheTunnel(t *testing.T) {
	t.Parallel()
	srv := telephonetest.NewServer()
	defer srv.Close()
	release := make(chan struct{})
	var entered atomic.Int32
	backend := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered.Add(1)
		<-release
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "done")
	})
	tok, err := srv.Mint(telephonetest.NewPathID(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(srv.SocketURL(), WithToken(tok.Token), WithHandler(backend), WithMemoryBudget(1<<20),
		WithMaxConcurrentRequests(64, 200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- c.Run(context.Background()) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		<-runErr
	}()
	for !c.Status().Joined {
		time.Sleep(10 * time.Millisecond)
	}
	body := strings.Repeat("b", 300_000)
	type answer struct {
		status int
		body   string
	}
	answers := make(chan answer, 8)
	for range 8 {
		go func() {
			res, err := http.Post(srv.URL()+"/call/"+tok.PathID+"/upload", "text/plain", strings.NewReader(body))
			if err != nil {
				answers <- answer{0, err.Error()}
				return
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			answers <- answer{res.StatusCode, string(b)}
		}()
	}
	for range 5 { // the five that do not fit are refused while the backend still holds three
		a := <-answers
		if a.status != http.StatusServiceUnavailable || a.body != budgetBusyReason {
			t.Fatalf("answer %d %q, want 503 %q", a.status, a.body, budgetBusyReason)
		}
	}
	for entered.Load() < 3 { // the three admitted requests reach the backend in their own time
		time.Sleep(10 * time.Millisecond)
	}
	if n := entered.Load(); n != 3 {
		t.Fatalf("%d requests reached the backend, want 3", n)
	}
	close(release)
	for range 3 {
		if a := <-answers; a.status != http.StatusOK || a.body != "done" {
			t.Fatalf("answer %d %q, want 200", a.status, a.body)
		}
	}
}
