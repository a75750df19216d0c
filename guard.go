package telephone

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
	"golang.org/x/time/rate"

	"github.com/verastack/telephone/internal/metrics"
)

// errBreakerOpen is returned through the backend transport while the circuit is open.
var errBreakerOpen = errors.New("telephone: backend circuit open")

// guard is the protection layer: request-body size, duplicate request ids, the rate limit,
// the concurrency limit with a bounded queue, and the backend circuit breaker. Every map it
// keeps is bounded and swept by TTL.
type guard struct {
	cfg     *config
	log     *slog.Logger
	m       *metrics.Metrics
	limiter atomic.Pointer[rate.Limiter] // nil: no rate limit; Reload swaps it
	budget  *budget                      // nil: no memory budget
	sem     chan struct{}
	breaker *gobreaker.CircuitBreaker[*http.Response]
	maxIDs  int

	mu        sync.Mutex           // guards ids, queued, lastSweep
	ids       map[string]time.Time // request ids in progress → when they are forgotten anyway
	queued    int
	lastSweep time.Time

	rejectedRate, rejectedBusy, rejectedSize, rejectedBreaker, duplicates, retries atomic.Uint64
}

// rejection is an admission refusal; res is nil when nothing must be answered (a duplicate).
type rejection struct {
	reason string
	res    *response
}

func newGuard(cfg *config, log *slog.Logger, m *metrics.Metrics) *guard {
	o := cfg.load()
	g := &guard{
		cfg: cfg, log: log, m: m,
		sem:    make(chan struct{}, o.maxConcurrent),
		maxIDs: 2 * o.maxConcurrent,
		ids:    make(map[string]time.Time),
	}
	g.setRate(o)
	g.budget = newBudget(o.memoryBudget, o.queueWait)
	if o.breakerFailures > 0 {
		g.breaker = gobreaker.NewCircuitBreaker[*http.Response](gobreaker.Settings{
			Name:        "backend",
			MaxRequests: 1,
			Timeout:     o.breakerOpenFor,
			ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= o.breakerFailures },
			IsSuccessful: func(err error) bool {
				return err == nil || errors.Is(err, context.Canceled)
			},
			OnStateChange: func(_ string, from, to gobreaker.State) {
				level := slog.LevelWarn // opening, or a failed probe
				if to != gobreaker.StateOpen {
					level = slog.LevelInfo // half-open (probing) or closed again: recovering
				}
				log.Log(context.Background(), level, "backend circuit breaker changed state", slog.String("from", from.String()), slog.String("to", to.String()))
				m.BreakerState(int(to))
			},
		})
	}
	return g
}

func reject(counter *atomic.Uint64, m *metrics.Metrics, kind string, status int, reason string) *rejection {
	counter.Add(1)
	m.Rejected(kind)
	return &rejection{reason: kind, res: errorResponse(status, reason)}
}

// admit decides at once whether a request may proceed; it runs on the channel's delivery
// goroutine and never blocks. A ticket must be finished with done.
func (g *guard) admit(id string, bodyLen int64) (*ticket, *rejection) {
	if limit := g.cfg.load().maxRequestBody; bodyLen > limit {
		return nil, reject(&g.rejectedSize, g.m, "size", http.StatusRequestEntityTooLarge,
			fmt.Sprintf("Payload Too Large: request body exceeds %d bytes", limit))
	}
	if !g.breakerAllows() {
		return nil, reject(&g.rejectedBreaker, g.m, "breaker", http.StatusServiceUnavailable,
			"Service Unavailable: the backend is failing; circuit open")
	}
	if lim := g.limiter.Load(); lim != nil && !lim.Allow() {
		rej := reject(&g.rejectedRate, g.m, "rate", http.StatusTooManyRequests, "Too Many Requests: rate limit reached")
		rej.res.header.Set("Retry-After", strconv.Itoa(g.retryAfter()))
		return nil, rej
	}
	return g.track(id)
}

// ttl is how long a request id is remembered at most: the current request timeout and queue
// wait, plus a minute.
func (g *guard) ttl() time.Duration {
	o := g.cfg.load()
	return o.requestTimeout + o.queueWait + time.Minute
}

// setRate applies o's rate limit (New, Reload): a changed limit gets a new limiter with a
// full bucket (+Inf: none). Requests admitted meanwhile use the old or the new one.
func (g *guard) setRate(o *options) {
	r, b := g.rate()
	unlimited := math.IsInf(o.rateLimit, 1)
	switch {
	case unlimited && math.IsInf(r, 1), !unlimited && r == o.rateLimit && b == o.rateBurst:
		// unchanged: keep the bucket
	case unlimited:
		g.limiter.Store(nil)
	default:
		g.limiter.Store(rate.NewLimiter(rate.Limit(o.rateLimit), o.rateBurst))
	}
}

// rate returns the rate limit and burst (+Inf and 0 when there is none).
func (g *guard) rate() (float64, int) {
	lim := g.limiter.Load()
	if lim == nil {
		return math.Inf(1), 0
	}
	return float64(lim.Limit()), lim.Burst()
}

func (g *guard) retryAfter() int {
	r, _ := g.rate()
	if r <= 0 || math.IsInf(r, 1) {
		return 1
	}
	return max(1, int(math.Ceil(1/r)))
}

// track remembers the id and takes a concurrency slot, or a queue place when none is free.
func (g *guard) track(id string) (*ticket, *rejection) {
	now, ttl := time.Now(), g.ttl()
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, dup := g.ids[id]; dup {
		g.duplicates.Add(1)
		return nil, &rejection{reason: "duplicate request_id"}
	}
	if len(g.ids) >= g.maxIDs || now.Sub(g.lastSweep) > ttl/2 {
		g.sweep(now)
	}
	t := &ticket{g: g, id: id}
	select {
	case g.sem <- struct{}{}:
		t.slot = true
	default:
		if g.queued >= g.cfg.load().maxConcurrent || len(g.ids) >= g.maxIDs {
			return nil, reject(&g.rejectedBusy, g.m, "concurrency", http.StatusServiceUnavailable,
				"Service Unavailable: too many requests in progress")
		}
		g.queued++
		t.queued = true
	}
	g.ids[id] = now.Add(ttl)
	return t, nil
}

// sweep forgets ids whose TTL passed (their worker is stuck in a handler that ignores its
// context; the caller was answered with 504 long ago). Callers hold g.mu.
func (g *guard) sweep(now time.Time) {
	g.lastSweep = now
	for id, until := range g.ids {
		if now.After(until) {
			delete(g.ids, id)
		}
	}
}

// ticket is one admitted request.
type ticket struct {
	g      *guard
	id     string
	slot   bool // holds a concurrency slot
	queued bool // counted in g.queued
}

// wait takes a concurrency slot, waiting at most the configured queue wait.
func (tk *ticket) wait(ctx context.Context) *rejection {
	if tk.slot {
		return nil
	}
	g := tk.g
	start := time.Now()
	timer := time.NewTimer(g.cfg.load().queueWait)
	defer timer.Stop()
	defer tk.unqueue()
	select {
	case g.sem <- struct{}{}:
		tk.slot = true
		g.m.QueueWait(time.Since(start))
		return nil
	case <-timer.C:
	case <-ctx.Done():
	}
	g.m.QueueWait(time.Since(start))
	return reject(&g.rejectedBusy, g.m, "concurrency", http.StatusServiceUnavailable,
		"Service Unavailable: too many requests in progress")
}

func (tk *ticket) unqueue() {
	tk.g.mu.Lock()
	if tk.queued {
		tk.g.queued--
		tk.queued = false
	}
	tk.g.mu.Unlock()
}

// done releases the slot and forgets the request id.
func (tk *ticket) done() {
	tk.unqueue()
	if tk.slot {
		<-tk.g.sem
		tk.slot = false
	}
	tk.g.mu.Lock()
	delete(tk.g.ids, tk.id)
	tk.g.mu.Unlock()
}

func (g *guard) breakerAllows() bool {
	return g.breaker == nil || g.breaker.State() != gobreaker.StateOpen
}

func (g *guard) throughBreaker(fn func() (*http.Response, error)) (*http.Response, error) {
	if g.breaker == nil {
		return fn()
	}
	res, err := g.breaker.Execute(fn)
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		g.rejectedBreaker.Add(1)
		g.m.Rejected("breaker")
		return nil, fmt.Errorf("%w: %w", errBreakerOpen, err)
	}
	return res, err
}

func (g *guard) retried() {
	g.retries.Add(1)
	g.m.Retry()
}

func (g *guard) breakerState() string {
	if g.breaker == nil {
		return "disabled"
	}
	return g.breaker.State().String()
}

func (g *guard) status() LimitStatus {
	g.mu.Lock()
	queued, tracked := g.queued, len(g.ids)
	g.mu.Unlock()
	perSecond, burst := g.rate()
	return LimitStatus{
		MaxConcurrent: g.cfg.load().maxConcurrent, RateLimit: perSecond, RateBurst: burst,
		Queued: queued, Tracked: tracked,
		RejectedRate: g.rejectedRate.Load(), RejectedBusy: g.rejectedBusy.Load(),
		RejectedSize: g.rejectedSize.Load(), RejectedBreaker: g.rejectedBreaker.Load(),
		Duplicates: g.duplicates.Load(), Retries: g.retries.Load(), Breaker: g.breakerState(),
	}
}
