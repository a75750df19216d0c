package main

import (
	"context"
	"net/http"
	"sync"
	"time"
)

// soakSlack is the absolute RSS growth a soak tolerates on top of the relative bound
// (allocator and GC noise).
const soakSlack = 16 << 20

// soakRate is the soak's request rate unless --rate is given (below telephone's default
// rate limit, so that every request should succeed).
const soakRate = 500

// soak runs steady small requests for the configured duration and samples the telephone's
// resident memory; it checks that every request succeeded and that memory did not keep
// growing: the RSS at the end must stay below 1.5 × the RSS at 10 % of the run + 16 MiB.
func (r *runner) soak(ctx context.Context, ts targetSpec) *result {
	s, err := r.open(ctx, ts, 1, r.baseEnv())
	if err != nil {
		res := newResult(scnSoak, ts.label, nil)
		res.fail("setup", err)
		return res
	}
	trend := sampleRSS(s.tgt, r.cfg.soakSample)
	before, _ := s.tgt.Usage()
	spec := r.steadyPlan().spec
	spec.url = s.callURL(0) + pathSmall
	if spec.rate == 0 {
		spec.rate = soakRate
	}
	lr := runLoad(ctx, spec, nil)
	after, uerr := s.tgt.Usage()
	points := trend.stop()
	res := newResult(scnSoak, ts.label, lr)
	if uerr == nil {
		res.addUsage(before, after, s.tgt.Scope())
	}
	judgeStatuses(res, lr, http.StatusOK, r.limiterStatuses()...)
	noteGoodput(res, lr)
	judgeTrend(res, points)
	stopped(res, s.close())
	return res
}

// judgeTrend checks that the RSS at the end is within 1.5 × the RSS at 10 % of the run
// plus soakSlack.
func judgeTrend(res *result, points []int64) {
	if len(points) < 2 {
		res.check("memory steady", false, "only %d RSS samples: lower --soak-sample or raise --duration", len(points))
		return
	}
	early, last := points[len(points)/10], points[len(points)-1]
	res.note("RSS samples: %d, first %s, at 10%% %s, at 50%% %s, last %s", len(points),
		fmtBytes(points[0]), fmtBytes(early), fmtBytes(points[len(points)/2]), fmtBytes(last))
	limit := early + early/2 + soakSlack
	res.check("memory steady", last <= limit, "RSS at the end %s <= 1.5 × RSS at 10%% + 16MiB = %s", fmtBytes(last), fmtBytes(limit))
}

// rssTrend samples a target's RSS periodically until stopped.
type rssTrend struct {
	done chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex // guards points
	pts  []int64
}

func sampleRSS(t target, every time.Duration) *rssTrend {
	tr := &rssTrend{done: make(chan struct{})}
	take := func() {
		if u, err := t.Usage(); err == nil {
			tr.mu.Lock()
			tr.pts = append(tr.pts, u.RSS)
			tr.mu.Unlock()
		}
	}
	take()
	tr.wg.Go(func() {
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-tr.done:
				return
			case <-tick.C:
				take()
			}
		}
	})
	return tr
}

// stop ends sampling, takes no more samples and returns them.
func (tr *rssTrend) stop() []int64 {
	close(tr.done)
	tr.wg.Wait()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.pts
}
