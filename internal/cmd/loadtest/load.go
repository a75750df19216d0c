package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/time/rate"
)

// loadSpec describes one load run: concurrency workers send GET url back to back until the
// duration has passed, maxRequests were sent, or stop is closed, whichever comes first.
// Requests in flight when issuing stops are waited for; none is cancelled.
type loadSpec struct {
	url         string
	body        []byte    // nil: GET; else POST with this body
	begin       time.Time // the reference of sample offsets; zero: when runLoad starts
	concurrency int
	duration    time.Duration // 0: no time bound (then maxRequests or stop must end the run)
	maxRequests int64         // 0: no count bound
	timeout     time.Duration // caller-side deadline of one request; past it the request is lost
	rate        float64       // requests per second over all workers; 0: as fast as they can
	keepSamples bool          // keep every sample (chaos scenarios: recovery analysis)
	// expect checks a response (status and body length); a response that fails it counts as a
	// bad body. nil accepts every response.
	expect func(status int, n int64) bool
	// onResult, when set, sees every sample as it completes (concurrently, from the workers).
	onResult func(sample)
}

// sample is one request: when it started and ended (offsets from the start of the run), its
// status (0 when lost) and, when lost, why.
type sample struct {
	Start, End time.Duration
	Status     int
	Lost       string // "" or lostTimeout, lostRefused, lostReset, lostOther
	BadBody    bool
}

// Kinds of lost requests: no HTTP status reached the caller.
const (
	lostTimeout = "timeout"
	lostRefused = "refused"
	lostReset   = "reset"
	lostOther   = "error"
)

// loadResult is what a run measured. Its maps are owned by the caller once run returns.
type loadResult struct {
	latency  *histogram // every request that got a status
	requests int64
	statuses map[int]int64
	lost     map[string]int64
	badBody  int64
	bytes    int64
	elapsed  time.Duration
	samples  []sample // sorted by Start; only with keepSamples
}

// lostCount returns the number of requests that got no HTTP status.
func (r *loadResult) lostCount() int64 {
	var n int64
	for _, v := range r.lost {
		n += v
	}
	return n
}

// loadRun is the shared state of the workers of one run.
type loadRun struct {
	spec    loadSpec
	client  *http.Client
	pace    *rate.Limiter // nil: no pacing
	begin   time.Time
	issued  atomic.Int64
	bytes   atomic.Int64
	badBody atomic.Int64
	hist    *histogram

	mu       sync.Mutex // guards statuses, lost and samples
	statuses map[int]int64
	lost     map[string]int64
	samples  []sample
}

// newLoadClient returns an HTTP client for concurrency workers that never follows redirects
// and asks for identity bodies. The caller closes its idle connections.
func newLoadClient(concurrency int, timeout time.Duration) *http.Client {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        concurrency,
		MaxIdleConnsPerHost: concurrency,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
	}
	return &http.Client{
		Transport:     tr,
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// runLoad runs spec and returns what it measured. ctx cancels requests in flight (they count
// as lost); stop (may be nil) ends issuing gracefully.
func runLoad(ctx context.Context, spec loadSpec, stop <-chan struct{}) *loadResult {
	spec.concurrency = max(spec.concurrency, 1)
	lr := &loadRun{
		spec:     spec,
		client:   newLoadClient(spec.concurrency, spec.timeout),
		hist:     newHistogram(),
		statuses: make(map[int]int64),
		lost:     make(map[string]int64),
	}
	defer lr.client.CloseIdleConnections()
	if spec.rate > 0 {
		lr.pace = rate.NewLimiter(rate.Limit(spec.rate), 1)
	}
	issueCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if spec.duration > 0 {
		t := time.AfterFunc(spec.duration, cancel)
		defer t.Stop()
	}
	var watch sync.WaitGroup
	if stop != nil {
		watch.Go(func() {
			select {
			case <-stop:
				cancel()
			case <-issueCtx.Done():
			}
		})
	}
	lr.begin = spec.begin
	if lr.begin.IsZero() {
		lr.begin = time.Now()
	}
	var wg sync.WaitGroup
	for range spec.concurrency {
		wg.Go(func() { lr.worker(ctx, issueCtx) })
	}
	wg.Wait()
	elapsed := time.Since(lr.begin)
	cancel()
	watch.Wait()
	return lr.result(elapsed)
}

// worker sends requests until issueCtx ends or the count bound is reached. Requests run
// under ctx, so that the end of issuing does not cancel them.
func (lr *loadRun) worker(ctx, issueCtx context.Context) {
	for issueCtx.Err() == nil {
		if limit := lr.spec.maxRequests; limit > 0 && lr.issued.Add(1) > limit {
			return
		}
		if lr.pace != nil && lr.pace.Wait(issueCtx) != nil {
			return
		}
		lr.record(lr.one(ctx))
	}
}

// one sends one request and reads its body.
func (lr *loadRun) one(ctx context.Context) sample {
	s := sample{Start: time.Since(lr.begin)}
	method, body := http.MethodGet, io.Reader(nil)
	if lr.spec.body != nil {
		method, body = http.MethodPost, bytes.NewReader(lr.spec.body)
	}
	req, err := http.NewRequestWithContext(ctx, method, lr.spec.url, body)
	if err != nil {
		s.Lost, s.End = lostOther, time.Since(lr.begin)
		return s
	}
	resp, err := lr.client.Do(req)
	if err != nil {
		s.Lost, s.End = classify(err), time.Since(lr.begin)
		return s
	}
	n, err := io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	s.End = time.Since(lr.begin)
	s.Status = resp.StatusCode
	lr.bytes.Add(n)
	if err != nil || (lr.spec.expect != nil && !lr.spec.expect(resp.StatusCode, n)) {
		s.BadBody = true
	}
	return s
}

func (lr *loadRun) record(s sample) {
	if s.Lost == "" {
		lr.hist.Record(s.End - s.Start)
	}
	if s.BadBody {
		lr.badBody.Add(1)
	}
	lr.mu.Lock()
	if s.Lost != "" {
		lr.lost[s.Lost]++
	} else {
		lr.statuses[s.Status]++
	}
	if lr.spec.keepSamples {
		lr.samples = append(lr.samples, s)
	}
	lr.mu.Unlock()
	if lr.spec.onResult != nil {
		lr.spec.onResult(s)
	}
}

func (lr *loadRun) result(elapsed time.Duration) *loadResult {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	sort.Slice(lr.samples, func(i, j int) bool { return lr.samples[i].Start < lr.samples[j].Start })
	r := &loadResult{
		latency: lr.hist, statuses: lr.statuses, lost: lr.lost, samples: lr.samples,
		badBody: lr.badBody.Load(), bytes: lr.bytes.Load(), elapsed: elapsed,
	}
	for _, n := range lr.statuses {
		r.requests += n
	}
	r.requests += r.lostCount()
	return r
}

// classify names why a request got no status.
func classify(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return lostTimeout
	case errors.Is(err, syscall.ECONNREFUSED):
		return lostRefused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return lostReset
	default:
		return lostOther
	}
}

// statusKey is the JSON/table key of a status code.
func statusKey(code int) string { return strconv.Itoa(code) }
