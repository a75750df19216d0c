package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/verastack/telephone/telephonetest"
)

// runner runs the configured scenarios against every target.
type runner struct {
	cfg config
	log io.Writer // progress lines; io.Discard when off
}

// joinTimeout bounds how long telephones may take to join after they start.
const joinTimeout = 30 * time.Second

// stopTimeout bounds a target's graceful stop.
const stopTimeout = 15 * time.Second

// run runs every scenario in order and returns every row.
func (r *runner) run(ctx context.Context) []*result {
	var out []*result
	for _, name := range r.cfg.scenarios {
		if ctx.Err() != nil {
			break
		}
		out = append(out, r.scenario(ctx, name)...)
	}
	return out
}

func (r *runner) scenario(ctx context.Context, name string) []*result {
	switch name {
	case scnSteady:
		return r.loadScenario(ctx, r.steadyPlan())
	case scnSlow:
		return r.loadScenario(ctx, r.slowPlan())
	case scnLarge:
		var out []*result
		for _, size := range r.cfg.largeSizes {
			out = append(out, r.loadScenario(ctx, r.largePlan(size))...)
		}
		return out
	case scnBinary:
		return r.loadScenario(ctx, r.binaryPlan())
	case scnBudget:
		return r.loadScenario(ctx, r.budgetPlan())
	case scnStalled:
		return r.loadScenario(ctx, r.stalledPlan())
	case scnSoak:
		return r.perTarget(ctx, r.soak)
	case scnBackend:
		return r.perTarget(ctx, r.backendRestart)
	case scnSockCut:
		return r.perTarget(ctx, r.socketCut)
	case scnScale:
		return r.perTarget(ctx, r.scaleOut)
	case scnRolling:
		return r.runAvailability(ctx, name, r.rollingRestart)
	case scnSigterm:
		return r.runAvailability(ctx, name, r.sigterm)
	case scnOneCut:
		return r.runAvailability(ctx, name, r.oneSocketCut)
	case scnPBRestart:
		return r.runAvailability(ctx, name, r.plugboardRestart)
	default: // scnHerd; names were validated by parseScenarios
		return r.perTarget(ctx, r.herd)
	}
}

func (r *runner) perTarget(ctx context.Context, f func(context.Context, targetSpec) *result) []*result {
	var out []*result
	for _, t := range r.cfg.targets {
		res := f(ctx, t)
		r.progress("%s / %s: %s", res.Scenario, res.Target, passWord(res.Pass))
		out = append(out, res)
	}
	return out
}

func (r *runner) progress(format string, args ...any) {
	fmt.Fprintf(r.log, "loadtest: "+format+"\n", args...)
}

// baseEnv returns the telephone settings of every scenario.
func (r *runner) baseEnv() targetEnv {
	env := defaultTargetEnv()
	env.InitialBackoff, env.MaxBackoff = r.cfg.initialBackoff, r.cfg.maxBackoff
	env.RateLimit = r.cfg.rateLimit
	return env
}

// session is one scenario's world: a backend, a devserver and the telephones under test,
// one per minted token (each its own path).
type session struct {
	backend *testBackend
	pb      *plugboard
	tgt     target
	tokens  []telephonetest.Token
}

// openWorld starts a scenario's world without telephones: a backend and a devserver with the
// configured options (--join-ref) and opts, for telephones whose request timeout is
// env.RequestTimeout. It sets env's socket URL and backend. Every scenario starts its world
// here, after the previous scenario's memory is returned.
func (r *runner) openWorld(env *targetEnv, opts ...telephonetest.Option) (*session, error) {
	runtime.GC()
	debug.FreeOSMemory() // leftovers of the previous scenario must not count
	s := &session{}
	var err error
	if s.backend, err = startBackend("127.0.0.1:0"); err != nil {
		return nil, err
	}
	if r.cfg.joinRef == joinRefLenient {
		opts = append(opts, telephonetest.WithLenientJoinRef())
	}
	if s.pb, err = startPlugboard(env.RequestTimeout+30*time.Second, opts...); err != nil {
		s.backend.Close()
		return nil, err
	}
	env.SocketURL, env.Backend = s.pb.srv.SocketURL(), s.backend.addr
	return s, nil
}

// open starts a backend, a devserver and n telephones of ts, and waits until all joined.
func (r *runner) open(ctx context.Context, ts targetSpec, n int, env targetEnv) (*session, error) {
	s, err := r.openWorld(&env)
	if err != nil {
		return nil, err
	}
	for range n {
		tok, err := s.pb.srv.Mint("", 0)
		if err != nil {
			s.closeWorld()
			return nil, err
		}
		s.tokens = append(s.tokens, tok)
		env.Tokens = append(env.Tokens, tok.Token)
	}
	s.tgt = ts.new()
	if err := s.tgt.Start(ctx, env); err != nil {
		_ = s.close()
		return nil, err
	}
	if err := s.waitJoined(ctx); err != nil {
		diag := s.tgt.Diag()
		_ = s.close()
		return nil, fmt.Errorf("%w (%s)", err, diag)
	}
	return s, nil
}

// waitJoined waits until every telephone has joined, failing early when one stops.
func (s *session) waitJoined(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, joinTimeout)
	defer cancel()
	for i, tok := range s.tokens {
		err := s.poll(ctx, func(step context.Context) error { return s.pb.srv.WaitJoined(step, tok.PathID, 1) })
		if err != nil {
			return fmt.Errorf("telephone %d did not join (within %v): %w", i, joinTimeout, err)
		}
	}
	return nil
}

// poll calls ready with a context of at most 100 ms until it returns nil; it fails early when
// a telephone stopped, and with ready's last error when ctx ends. ready must wait for its
// context before it returns an error (the devserver's WaitJoined does).
func (s *session) poll(ctx context.Context, ready func(context.Context) error) error {
	for {
		step, stop := context.WithTimeout(ctx, 100*time.Millisecond)
		err := ready(step)
		stop()
		switch {
		case err == nil:
			return nil
		case s.tgt.Alive() != nil:
			return fmt.Errorf("a telephone stopped: %w", s.tgt.Alive())
		case ctx.Err() != nil:
			return err
		}
	}
}

// callURL returns the HTTP front URL of telephone i's path.
func (s *session) callURL(i int) string { return s.pb.srv.CallURL(s.tokens[i].PathID) }

// close stops the telephones, then the devserver and the backend.
func (s *session) close() error {
	var err error
	if s.tgt != nil {
		ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
		err = s.tgt.Stop(ctx)
		cancel()
	}
	s.closeWorld()
	return err
}

func (s *session) closeWorld() {
	s.pb.Close()
	s.backend.Close()
}

// loadPlan is a scenario that is one bounded load run: against the backend directly (the
// baseline) and through each target.
type loadPlan struct {
	name     string
	path     string // backend path and query
	spec     loadSpec
	env      func(*targetEnv) // adjusts the telephone settings (nil: none)
	tunnel   int              // the status every tunnelled request must get
	alsoOK   []int            // other statuses a tunnelled request may get
	direct   int              // the status every direct request must get
	judge    func(*result, *loadResult, targetSpec)
	n        int // telephones (paths); requests go to the first
	noDirect bool
	idle     time.Duration // > 0: after the load, wait this long idle and check the RSS came back
}

func (r *runner) loadScenario(ctx context.Context, p loadPlan) []*result {
	var out []*result
	var direct *result
	if r.cfg.direct && !p.noDirect {
		direct = r.directRun(ctx, p)
		r.progress("%s / direct: %.0f req/s", p.name, direct.RPS)
		out = append(out, direct)
	}
	for _, t := range r.cfg.targets {
		res := r.targetRun(ctx, p, t)
		res.addRatio(direct)
		r.progress("%s / %s: %.0f req/s %s", p.name, t.label, res.RPS, passWord(res.Pass))
		out = append(out, res)
	}
	return out
}

func (r *runner) directRun(ctx context.Context, p loadPlan) *result {
	b, err := startBackend("127.0.0.1:0")
	if err != nil {
		res := newResult(p.name, "direct", nil)
		res.fail("setup", err)
		return res
	}
	defer b.Close()
	spec := p.spec
	spec.url = b.URL() + p.path
	lr := runLoad(ctx, spec, nil)
	res := newResult(p.name, "direct", lr)
	judgeStatuses(res, lr, p.direct)
	return res
}

func (r *runner) targetRun(ctx context.Context, p loadPlan, ts targetSpec) *result {
	env := r.baseEnv()
	if p.env != nil {
		p.env(&env)
	}
	s, err := r.open(ctx, ts, max(p.n, 1), env)
	if err != nil {
		res := newResult(p.name, ts.label, nil)
		res.fail("setup", err)
		return res
	}
	spec := p.spec
	spec.url = s.callURL(0) + p.path
	before, _ := s.tgt.Usage()
	lr := runLoad(ctx, spec, nil)
	after, uerr := s.tgt.Usage()
	res := newResult(p.name, ts.label, lr)
	if uerr == nil {
		res.addUsage(before, after, s.tgt.Scope())
	} else {
		res.note("CPU/RSS unavailable: %v", uerr)
	}
	judgeStatuses(res, lr, p.tunnel, p.alsoOK...)
	if p.judge != nil {
		p.judge(res, lr, ts)
	}
	if p.idle > 0 && sleepCtx(ctx, p.idle) == nil {
		if u, err := s.tgt.Usage(); err == nil {
			res.IdleRSS = u.RSS
			binaryBound(res, ts, "memory returned after "+p.idle.String()+" idle", u.RSS, r.cfg.idleRSS)
		}
	}
	stopped(res, s.close())
	return res
}

// stopped records whether the telephones stopped cleanly.
func stopped(res *result, err error) {
	res.check("clean stop", err == nil, "%v", errOrNone(err))
}

func errOrNone(err error) string {
	if err == nil {
		return "stopped gracefully"
	}
	return err.Error()
}

// judgeStatuses checks that every request got the wanted status (or one of alsoOK) and a
// complete body, and that at least one got the wanted status.
func judgeStatuses(res *result, lr *loadResult, want int, alsoOK ...int) {
	lost := lr.lostCount()
	res.check("no request lost", lost == 0, "%d of %d requests got no HTTP status", lost, lr.requests)
	other := lr.requests - lost - lr.statuses[want]
	name := "status " + strconv.Itoa(want)
	for _, code := range alsoOK {
		other -= lr.statuses[code]
		name += " or " + strconv.Itoa(code)
	}
	res.check(name, other == 0 && lr.statuses[want] > 0, "%d of %d requests got another status", other, lr.requests)
	res.check("bodies complete", lr.badBody == 0, "%d bodies incomplete or wrong", lr.badBody)
}

// limiterStatuses returns the statuses telephone's own rate limiter may answer: 429 unless
// the limit is off.
func (r *runner) limiterStatuses() []int {
	if r.cfg.rateLimit == rateOff {
		return nil
	}
	return []int{http.StatusTooManyRequests}
}

// noteGoodput notes the rate of 200s when the limiter answered some requests with 429.
func noteGoodput(res *result, lr *loadResult) {
	if n := lr.statuses[http.StatusTooManyRequests]; n > 0 {
		res.note("%d requests got 429 from telephone's rate limiter (--rate-limit; builds before issue 13 default to 1000 req/s, burst 2000): %.0f successful req/s",
			n, perSecond(lr.statuses[http.StatusOK], lr.elapsed))
	}
}

// expectSmall accepts a 200 with the small body, and any other status (judged elsewhere).
func expectSmall(status int, n int64) bool {
	return status != http.StatusOK || n == int64(len(smallBody))
}

func (r *runner) steadyPlan() loadPlan {
	return loadPlan{
		name: scnSteady, path: pathSmall, tunnel: http.StatusOK, direct: http.StatusOK, alsoOK: r.limiterStatuses(),
		judge: func(res *result, lr *loadResult, _ targetSpec) { noteGoodput(res, lr) },
		spec: loadSpec{
			concurrency: r.cfg.concurrency, duration: r.cfg.duration, maxRequests: r.cfg.maxRequests,
			rate: r.cfg.rate, timeout: 30 * time.Second, expect: expectSmall,
		},
	}
}

func (r *runner) slowPlan() loadPlan {
	n := r.cfg.slowCount
	return loadPlan{
		name: scnSlow, path: pathSlow + "?ms=" + strconv.FormatInt(r.cfg.slowDelay.Milliseconds(), 10),
		tunnel: http.StatusOK, direct: http.StatusOK,
		spec: loadSpec{concurrency: n, maxRequests: int64(n), timeout: r.cfg.slowDelay + time.Minute},
		env: func(e *targetEnv) {
			e.RequestTimeout = max(e.RequestTimeout, r.cfg.slowDelay+30*time.Second)
			e.MaxConcurrent = n
		},
		judge: func(res *result, lr *loadResult, ts targetSpec) {
			over := lr.latency.Quantile(0.5) - r.cfg.slowDelay
			res.note("%d requests at once, backend delay %v: median overhead %v, max latency %v", n, r.cfg.slowDelay, over.Round(time.Millisecond), lr.latency.Max().Round(time.Millisecond))
			binaryBound(res, ts, "memory bound", res.PeakRSS, r.cfg.slowRSS)
		},
	}
}

func (r *runner) largePlan(size int64) loadPlan {
	conc := r.cfg.largeConcurrency
	return loadPlan{
		name: "large-" + sizeName(size), path: pathLarge + "?size=" + strconv.FormatInt(size, 10),
		tunnel: http.StatusOK, direct: http.StatusOK,
		spec: loadSpec{
			concurrency: conc, maxRequests: r.cfg.largeRequests, timeout: 5 * time.Minute,
			expect: func(status int, n int64) bool { return status != http.StatusOK || n == size },
		},
		env: func(e *targetEnv) {
			e.MaxResponseSize = max(e.MaxResponseSize, size+int64(e.ChunkSize))
			e.RequestTimeout = max(e.RequestTimeout, 2*time.Minute)
			// Room for every response at once (a body is held once, escaped; 5/4 covers the
			// escaping and the chunk left partly filled): this scenario measures the memory of
			// a response, the budget scenario the budget. Raised only above the default.
			e.MemoryBudget = 5*size*int64(conc)/4 + 32<<20
		},
		judge: func(res *result, _ *loadResult, ts targetSpec) {
			inFlight := float64(size) * float64(conc)
			if ts.path != "" { // a telephone binary: its own peak RSS (issue 13 item 2)
				bound := int64(largeRSSFactor*inFlight) + r.cfg.largeRSSBase
				res.check("memory bound", res.PeakRSS > 0 && res.PeakRSS <= bound,
					"peak RSS %s (%.2f × size × concurrency) <= %g × %s × %d + %s = %s",
					fmtBytes(res.PeakRSS), float64(res.PeakRSS)/inFlight, largeRSSFactor, sizeName(size), conc, fmtBytes(r.cfg.largeRSSBase), fmtBytes(bound))
				return
			}
			bound := int64(r.cfg.memFactor * inFlight)
			res.check("memory bound", res.PeakRSS > 0 && res.RSSGrowth < bound,
				"peak RSS growth %s (%.1f × size × concurrency) < %g × %s × %d = %s (in-process: with the load generator's, devserver's and backend's memory)",
				fmtBytes(res.RSSGrowth), float64(res.RSSGrowth)/inFlight, r.cfg.memFactor, sizeName(size), conc, fmtBytes(bound))
		},
	}
}

// largeRSSFactor: a telephone binary carrying large responses must stay within
// largeRSSFactor × the bodies in flight + --large-rss-base (30 MiB) of peak RSS (issue 13:
// one 50 MiB response within 105 MiB).
const largeRSSFactor = 1.5

// budgetPlan sends budgetCount large responses at once: a telephone with a memory budget
// answers some with 503 instead of holding them all, and gives the memory back afterwards.
func (r *runner) budgetPlan() loadPlan {
	size := r.cfg.budgetSize
	return loadPlan{
		name: scnBudget, path: pathLarge + "?size=" + strconv.FormatInt(size, 10),
		tunnel: http.StatusOK, alsoOK: []int{http.StatusServiceUnavailable}, direct: http.StatusOK,
		spec: loadSpec{
			concurrency: r.cfg.budgetCount, maxRequests: int64(r.cfg.budgetCount), timeout: 5 * time.Minute,
			expect: func(status int, n int64) bool { return status != http.StatusOK || n == size },
		},
		env: func(e *targetEnv) {
			e.MaxResponseSize = max(e.MaxResponseSize, size+int64(e.ChunkSize))
			e.RequestTimeout = max(e.RequestTimeout, 2*time.Minute)
		},
		judge: func(res *result, lr *loadResult, ts targetSpec) {
			res.note("%d × %s at once: %d answered 200, %d answered 503", r.cfg.budgetCount, sizeName(size),
				lr.statuses[http.StatusOK], lr.statuses[http.StatusServiceUnavailable])
			binaryBound(res, ts, "memory bound", res.PeakRSS, r.cfg.budgetRSS)
		},
		idle: r.cfg.idleWait,
	}
}

// stalledPlan uploads stalledCount request bodies at once to a backend that answers after
// 3 s without reading them: the bodies count against the memory budget, so a telephone
// with one answers some with 503 instead of holding them all.
func (r *runner) stalledPlan() loadPlan {
	body := bytes.Repeat([]byte("u"), r.cfg.stalledSize)
	return loadPlan{
		name: scnStalled, path: pathSlow + "?ms=3000",
		tunnel: http.StatusOK, alsoOK: []int{http.StatusServiceUnavailable}, direct: http.StatusOK,
		spec: loadSpec{
			concurrency: r.cfg.stalledCount, maxRequests: int64(r.cfg.stalledCount), timeout: 5 * time.Minute, body: body,
			expect: func(status int, n int64) bool { return status != http.StatusOK || n == int64(len(slowBody)) },
		},
		judge: func(res *result, lr *loadResult, ts targetSpec) {
			res.note("%d uploads of %d bytes at once, not read by the backend: %d answered 200, %d answered 503",
				r.cfg.stalledCount, r.cfg.stalledSize, lr.statuses[http.StatusOK], lr.statuses[http.StatusServiceUnavailable])
			binaryBound(res, ts, "memory bound", res.PeakRSS, r.cfg.budgetRSS)
		},
	}
}

// binaryBound checks that a telephone binary's memory figure stays within bound; the
// in-process row measures the whole harness, so it only gets a note.
func binaryBound(res *result, ts targetSpec, name string, got, bound int64) {
	if ts.path == "" {
		res.note("%s not judged in-process (the figure includes load generator, devserver and backend)", name)
		return
	}
	res.check(name, got > 0 && got <= bound, "%s <= %s", fmtBytes(got), fmtBytes(bound))
}

func (r *runner) binaryPlan() loadPlan {
	return loadPlan{
		name: scnBinary, path: pathBinary, tunnel: http.StatusBadGateway, direct: http.StatusOK,
		spec: loadSpec{
			concurrency: min(r.cfg.concurrency, 8), duration: r.cfg.duration, maxRequests: r.cfg.binaryRequests,
			timeout: 30 * time.Second,
			expect:  func(status int, n int64) bool { return status != http.StatusOK || n == binarySize },
		},
		judge: func(res *result, _ *loadResult, _ targetSpec) {
			res.note("a body that is not UTF-8 cannot travel in a JSON string: 502 is the expected status through the tunnel")
		},
	}
}

// sleepCtx waits for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
