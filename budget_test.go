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

	"github.com/verastack/telephone/phoenix"
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
		b := newBudget(2000, 100*time.Millisecond)
		if res := b.acquire(context.Background(), 1000); res != nil { // another body holds half
			t.Fatal(res.body)
		}
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
		b.release(2000)
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
	pollUntil(t, "the join", func() bool { return c.Status().Joined })
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
	next := func() answer {
		t.Helper()
		select {
		case a := <-answers:
			return a
		case <-time.After(time.Minute):
			t.Fatalf("no answer within a minute; %d requests reached the backend", entered.Load())
			return answer{}
		}
	}
	for range 5 { // the five that do not fit are refused while the backend still holds three
		a := next()
		if a.status != http.StatusServiceUnavailable || a.body != budgetBusyReason {
			t.Fatalf("answer %d %q, want 503 %q", a.status, a.body, budgetBusyReason)
		}
	}
	// The three admitted requests reach the backend in their own time.
	pollUntil(t, "three requests at the backend", func() bool { return entered.Load() >= 3 })
	if n := entered.Load(); n != 3 {
		t.Fatalf("%d requests reached the backend, want 3", n)
	}
	close(release)
	for range 3 {
		if a := next(); a.status != http.StatusOK || a.body != "done" {
			t.Fatalf("answer %d %q, want 200", a.status, a.body)
		}
	}
}

// gatedConn is the client end of a fake Plugboard connection that writes fragmented messages
// only while its gate is open (a socket whose peer reads slowly).
type gatedConn struct {
	memConn
	gate chan struct{}
}

func (g gatedConn) WriteParts(ctx context.Context, parts [][]byte, written func(i int)) error {
	select {
	case <-g.gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	var msg []byte
	for i, p := range parts {
		msg = append(msg, p...)
		written(i)
	}
	return g.Write(ctx, false, msg)
}

// TestBudgetHeldUntilTheBodyIsWritten: a large response's body stays charged to the memory
// budget while its chunks wait in the socket's outbound queue, and is paid back as they are
// written. (The budget was paid back when the proxy_res was queued, so 64 slow 8 MiB
// responses held twice the budget.)
func TestBudgetHeldUntilTheBodyIsWritten(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		f := newFakePlugboard(t)
		conn, err := f.dial(context.Background(), f.mint(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		gc := gatedConn{memConn: conn.(memConn), gate: make(chan struct{})}
		sock := phoenix.NewSocket(gc, phoenix.SocketOptions{})
		defer f.wg.Wait()
		defer sock.Close(1000, "")
		ch := sock.Channel("telephone:"+f.pathID, nil)
		if _, err := ch.Join(context.Background(), nil); err != nil {
			t.Fatal(err)
		}

		const size = 1 << 20
		b := newBudget(size, time.Second)
		w := newCollector(1<<30, DefaultChunkSize)
		w.useBudget(context.Background(), b)
		body := strings.Repeat("x", 600<<10) // ten pooled chunks once escaped
		if _, err := w.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
		res := w.result(UTF8Reject, discardLogger(), nil)
		w.releaseBudget() // serveRequest's defer, right after the proxy_res was queued
		if err := res.send(context.Background(), ch, "r1", DefaultChunkSize); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if b.sem.TryAcquire(int64(size - len(body) + 1)) {
			t.Fatal("the body's budget was paid back while its chunks wait to be written")
		}
		close(gc.gate)
		synctest.Wait()
		if !b.sem.TryAcquire(size) {
			t.Fatal("the budget was not paid back once the body was written")
		}
		b.release(size)
		f.mu.Lock()
		got := len(f.results)
		f.mu.Unlock()
		if got != 1 {
			t.Fatalf("%d proxy_res received, want 1", got)
		}
	})
}

// TestLateResponseGivesBackItsBudget: a response that loses to the 504 sent at the deadline is
// discarded with its budget share.
func TestLateResponseGivesBackItsBudget(t *testing.T) {
	t.Parallel()
	b := newBudget(1<<20, time.Second)
	w := newCollector(1<<30, DefaultChunkSize)
	w.useBudget(context.Background(), b)
	if _, err := w.Write([]byte(strings.Repeat("y", 200<<10))); err != nil {
		t.Fatal(err)
	}
	res := w.result(UTF8Reject, discardLogger(), nil)
	w.releaseBudget()
	if b.sem.TryAcquire(1 << 20) {
		t.Fatal("the response's share was given back before it was sent or discarded")
	}
	res.discard()
	if !b.sem.TryAcquire(1 << 20) {
		t.Fatal("discard did not give the share back")
	}
}

// TestResponseLargerThanTheBudget: a response that can never fit the whole budget is refused
// at once (502, saying why), not after waiting the queue wait for bytes that cannot come.
func TestResponseLargerThanTheBudget(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := newBudget(1000, time.Minute)
		w := newCollector(1<<20, DefaultChunkSize)
		w.useBudget(context.Background(), b)
		start := time.Now()
		if _, err := w.Write([]byte(strings.Repeat("a", 600))); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(strings.Repeat("a", 600))); err != errBudget {
			t.Fatalf("write past the whole budget: %v", err)
		}
		if waited := time.Since(start); waited != 0 {
			t.Errorf("waited %v for bytes that can never come", waited)
		}
		res := w.result(UTF8Reject, discardLogger(), nil)
		if res.status != http.StatusBadGateway || res.body != budgetResponseTooBigReason {
			t.Fatalf("result %d %q", res.status, res.body)
		}
		w.releaseBudget()
		if !b.sem.TryAcquire(1000) {
			t.Fatal("the refused response kept budget")
		}
	})
}

// pollUntil polls cond every few milliseconds until it holds, failing t after a minute.
func pollUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
