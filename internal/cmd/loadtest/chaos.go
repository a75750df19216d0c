package main

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// recoveryMonitor watches samples as they complete: the latest start of a failed request
// and of a successful one. Safe for concurrent use.
type recoveryMonitor struct {
	lastFail atomic.Int64 // start offset (ns) of the latest-started failed request, -1: none
	lastOK   atomic.Int64 // start offset (ns) of the latest-started 200, -1: none
}

func newRecoveryMonitor() *recoveryMonitor {
	m := &recoveryMonitor{}
	m.lastFail.Store(-1)
	m.lastOK.Store(-1)
	return m
}

func (m *recoveryMonitor) observe(s sample) {
	dst := &m.lastOK
	if !good(s) {
		dst = &m.lastFail
	}
	v := int64(s.Start)
	for cur := dst.Load(); v > cur && !dst.CompareAndSwap(cur, v); cur = dst.Load() {
	}
}

// stable reports whether, at offset now, no request started after from (or after the last
// failure) has failed for window, and at least one such request succeeded.
func (m *recoveryMonitor) stable(now, from, window time.Duration) bool {
	since := max(time.Duration(m.lastFail.Load()), from)
	return now-since >= window && time.Duration(m.lastOK.Load()) > since
}

// good reports whether a sample is a success: 200 with a complete body.
func good(s sample) bool { return s.Lost == "" && s.Status == http.StatusOK && !s.BadBody }

// stableRecovery returns how long after from the service was back for good: the start of the
// first request after the last failed one (samples sorted by Start), minus from; 0 when no
// request failed after from. ok is false when the last request failed or none followed.
func stableRecovery(samples []sample, from time.Duration) (time.Duration, bool) {
	last := -1
	for i, s := range samples {
		if !good(s) {
			last = i
		}
	}
	switch {
	case last < 0:
		return 0, len(samples) > 0
	case last == len(samples)-1:
		return 0, false
	}
	return max(samples[last+1].Start-from, 0), true
}

// faultStats counts what requests started in [from, to) got.
func faultStats(samples []sample, from, to time.Duration) (failed, total int) {
	for _, s := range samples {
		if s.Start >= from && s.Start < to {
			total++
			if !good(s) {
				failed++
			}
		}
	}
	return failed, total
}

// clearStatuses are the statuses a caller may see while the backend or the socket is down.
var clearStatuses = map[int]bool{http.StatusBadGateway: true, http.StatusServiceUnavailable: true, http.StatusGatewayTimeout: true}

// judgeChaos checks that every request got a status and that failures were only
// 502/503/504.
func judgeChaos(res *result, lr *loadResult) {
	lost := lr.lostCount()
	res.check("no request lost", lost == 0, "%d of %d requests got no HTTP status", lost, lr.requests)
	var other int64
	for code, n := range lr.statuses {
		if code != http.StatusOK && !clearStatuses[code] {
			other += n
		}
	}
	res.check("only 502/503/504 besides 200", other == 0, "%d requests got another status", other)
	res.check("bodies complete", lr.badBody == 0, "%d bodies incomplete or wrong", lr.badBody)
}

// chaosRun is a load run with a fault injected in its middle.
type chaosRun struct {
	begin time.Time
	mon   *recoveryMonitor
	stop  chan struct{}
	done  chan struct{}
	lr    *loadResult
}

// startChaosLoad starts steady requests to the telephone's /slow endpoint (with the
// configured backend delay, so that some are in flight when the fault hits) in the background.
func (r *runner) startChaosLoad(ctx context.Context, s *session) *chaosRun {
	c := &chaosRun{begin: time.Now(), mon: newRecoveryMonitor(), stop: make(chan struct{}), done: make(chan struct{})}
	spec := loadSpec{
		url:   s.callURL(0) + pathSlow + "?ms=" + strconv.FormatInt(r.cfg.chaosDelay.Milliseconds(), 10),
		begin: c.begin, concurrency: r.cfg.chaosConcurrency, rate: r.cfg.chaosRate, timeout: time.Minute,
		keepSamples: true, onResult: c.mon.observe,
		expect: func(status int, n int64) bool { return status != http.StatusOK || n == int64(len(slowBody)) },
	}
	go func() { // owned by c; joined by finish through c.done
		c.lr = runLoad(ctx, spec, c.stop)
		close(c.done)
	}()
	return c
}

func (c *chaosRun) now() time.Duration { return time.Since(c.begin) }

// awaitStable waits until the service has been failure-free for window after from, or until
// bound has passed since from. It reports whether it became stable.
func (c *chaosRun) awaitStable(ctx context.Context, from, window, bound time.Duration) bool {
	for {
		if c.mon.stable(c.now(), from, window) {
			return true
		}
		if c.now()-from > bound+window || sleepCtx(ctx, 50*time.Millisecond) != nil {
			return false
		}
	}
}

// finish stops issuing and waits for the requests in flight.
func (c *chaosRun) finish() *loadResult {
	close(c.stop)
	<-c.done
	return c.lr
}

// chaosScenario runs load against one telephone, applies fault after the warm-up and waits
// for the service to settle. fault returns when the recovery clock starts; judge adds the
// scenario's own checks to the result.
func (r *runner) chaosScenario(ctx context.Context, ts targetSpec, scn string,
	fault func(s *session, run *chaosRun) (recoverFrom time.Duration),
	judge func(res *result, s *session, lr *loadResult, from time.Duration)) *result {
	s, err := r.open(ctx, ts, 1, r.baseEnv())
	if err != nil {
		res := newResult(scn, ts.label, nil)
		res.fail("setup", err)
		return res
	}
	run := r.startChaosLoad(ctx, s)
	before, _ := s.tgt.Usage()
	_ = sleepCtx(ctx, r.cfg.warmup)
	from := fault(s, run)
	run.awaitStable(ctx, from, r.cfg.stableWindow, r.cfg.recoverBound)
	lr := run.finish()
	after, uerr := s.tgt.Usage()
	res := newResult(scn, ts.label, lr)
	if uerr == nil {
		res.addUsage(before, after, s.tgt.Scope())
	}
	judgeChaos(res, lr)
	judge(res, s, lr, from)
	stopped(res, s.close())
	return res
}

// backendRestart kills the backend under load, restarts it after the outage and measures how
// long the service takes to recover.
func (r *runner) backendRestart(ctx context.Context, ts targetSpec) *result {
	var kill time.Duration
	var rerr error
	return r.chaosScenario(ctx, ts, scnBackend, func(s *session, run *chaosRun) time.Duration {
		kill = run.now()
		s.backend.Kill()
		_ = sleepCtx(ctx, r.cfg.outage)
		restart := run.now()
		rerr = s.backend.Restart(ctx)
		return restart
	}, func(res *result, _ *session, lr *loadResult, restart time.Duration) {
		failed, total := faultStats(lr.samples, kill, restart)
		res.check("outage visible", rerr == nil && failed > 0, "%d of %d requests started during the %v outage failed (restart error: %v)", failed, total, r.cfg.outage, rerr)
		r.judgeRecovery(res, lr.samples, restart, "after the backend restarted")
	})
}

// judgeRecovery checks that the service recovered for good within the bound after from.
func (r *runner) judgeRecovery(res *result, samples []sample, from time.Duration, what string) {
	rec, ok := stableRecovery(samples, from)
	res.check("recovered", ok && rec <= r.cfg.recoverBound, "service back for good %v %s (bound %v; recovered=%v)", rec.Round(time.Millisecond), what, r.cfg.recoverBound, ok)
}

// socketCut cuts the telephone's socket under load (no close frame) and measures recovery.
func (r *runner) socketCut(ctx context.Context, ts targetSpec) *result {
	var cutAt time.Time
	return r.chaosScenario(ctx, ts, scnSockCut, func(s *session, run *chaosRun) time.Duration {
		cutAt = time.Now()
		cut := run.now()
		s.pb.srv.DropAll()
		return cut
	}, func(res *result, s *session, lr *loadResult, cut time.Duration) {
		if at, ok := s.pb.conns.firstAfter(s.tokens[0].PathID, cutAt); ok {
			res.note("telephone reconnected %v after the cut", at.Sub(cutAt).Round(time.Millisecond))
		}
		failed, total := faultStats(lr.samples, cut, lr.elapsed)
		res.note("%d of %d requests started after the cut failed (502: in flight on the cut socket, 503: no telephone joined)", failed, total)
		r.judgeRecovery(res, lr.samples, cut, "after the cut")
	})
}

// herdOutcome is what one telephone of the herd did after the restart.
type herdOutcome struct {
	reconnect time.Duration // from Restart to its first new socket
	recovered time.Duration // from Restart to its first 200 through the new session
	err       error
}

// herd restarts the devserver's sockets (close code 1012) under n telephones at once and
// measures the spread of their reconnects and the time until every path serves again.
func (r *runner) herd(ctx context.Context, ts targetSpec) *result {
	res := newResult(scnHerd, ts.label, nil)
	s, err := r.open(ctx, ts, r.cfg.herd, r.baseEnv())
	if err != nil {
		res.fail("setup", err)
		return res
	}
	client := newLoadClient(r.cfg.herd, 5*time.Second)
	defer client.CloseIdleConnections()
	bctx, cancel := context.WithTimeout(ctx, r.cfg.recoverBound)
	defer cancel()
	t0 := time.Now()
	s.pb.srv.Restart()
	outs := make([]herdOutcome, len(s.tokens))
	var wg sync.WaitGroup
	for i := range s.tokens {
		wg.Go(func() { outs[i] = s.awaitRejoin(bctx, client, i, t0) })
	}
	wg.Wait()
	r.judgeHerd(res, outs)
	stopped(res, s.close())
	return res
}

// awaitRejoin waits for telephone i's first socket after t0, then probes its path until a
// request succeeds.
func (s *session) awaitRejoin(ctx context.Context, client *http.Client, i int, t0 time.Time) herdOutcome {
	at, err := s.pb.conns.waitAfter(ctx, s.tokens[i].PathID, t0)
	if err != nil {
		return herdOutcome{err: fmt.Errorf("no reconnect: %w", err)}
	}
	out := herdOutcome{reconnect: at.Sub(t0)}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.callURL(i)+pathSmall, nil)
		if resp, err := client.Do(req); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				out.recovered = time.Since(t0)
				return out
			}
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			out.err = fmt.Errorf("no successful request: %w", err)
			return out
		}
	}
}

func (r *runner) judgeHerd(res *result, outs []herdOutcome) {
	var reconnects, recoveries []time.Duration
	var failures int
	for _, o := range outs {
		if o.err != nil {
			failures++
			continue
		}
		reconnects = append(reconnects, o.reconnect)
		recoveries = append(recoveries, o.recovered)
	}
	lo, mid, hi := exactQuantile(reconnects, 0), exactQuantile(reconnects, 0.5), exactQuantile(reconnects, 1)
	all := exactQuantile(recoveries, 1)
	res.note("reconnect after the 1012 restart: min %v, median %v, max %v (spread %v) over %d telephones",
		lo.Round(time.Millisecond), mid.Round(time.Millisecond), hi.Round(time.Millisecond), (hi - lo).Round(time.Millisecond), len(outs))
	res.note("every path served a request again %v after the restart", all.Round(time.Millisecond))
	res.check("all recovered", failures == 0 && all <= r.cfg.recoverBound, "%d of %d telephones did not serve again within %v", failures, len(outs), r.cfg.recoverBound)
	minSpread := r.cfg.initialBackoff / 4
	res.check("no thundering herd", failures < len(outs) && hi-lo >= minSpread,
		"reconnect spread %v >= INITIAL_BACKOFF/4 = %v (full jitter spreads the reconnects over [0, INITIAL_BACKOFF])", (hi - lo).Round(time.Millisecond), minSpread)
}
