package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/verastack/telephone"
	"github.com/verastack/telephone/telephonetest"
)

// The availability scenarios (several connections per telephone, drains, restarts) drive
// in-process telephone.Clients directly: they stop one telephone of several on one path and
// cut one of its sockets, which a child process cannot be told to do. They run once, not once
// per target.
const (
	scnRolling   = "rolling-restart"   // swaps between two telephones on one path, under load
	scnSigterm   = "sigterm"           // the only telephone of a path shuts down under load
	scnOneCut    = "one-socket-cut"    // one of a telephone's two sockets is cut under load
	scnPBRestart = "plugboard-restart" // every socket gets 1012 under load
)

// availScenarios are the availability scenarios: they need the in-process target. Named
// with --inprocess=false they are a usage error; under "all" they are reported as skipped.
var availScenarios = []string{scnRolling, scnSigterm, scnOneCut, scnPBRestart}

// availConnections is CONNECTIONS for every availability scenario (the default).
const availConnections = telephone.DefaultConnections

// avWorld is one availability scenario's world: a backend, a devserver, one path and the
// load on it.
type avWorld struct {
	*session // backend and devserver; no target: the scenarios start their telephones
	r        *runner
	pathID   string
	env      targetEnv
	pb503    int64        // body length of the devserver's own 503 (no telephone for the path)
	ours503  atomic.Int64 // 503s answered by a telephone (not forwarded: safe to retry)
}

func (r *runner) openAvailability() (*avWorld, error) {
	w := &avWorld{r: r, pathID: telephonetest.NewPathID(), env: r.baseEnv()}
	var err error
	if w.session, err = r.openWorld(&w.env); err != nil {
		return nil, err
	}
	if _, err := w.pb.srv.Mint(w.pathID, 0); err != nil { // the path exists from now on
		w.closeWorld()
		return nil, err
	}
	if w.pb503, err = bodyLength(w.callURL()); err != nil {
		w.closeWorld()
		return nil, err
	}
	return w, nil
}

func (w *avWorld) callURL() string { return w.pb.srv.CallURL(w.pathID) }

// bodyLength GETs url and returns the length of its body (the devserver's 503 page).
func bodyLength(url string) (int64, error) {
	res, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	n, err := io.Copy(io.Discard, res.Body)
	if res.StatusCode != http.StatusServiceUnavailable {
		return 0, fmt.Errorf("devserver without telephone answered %d, want 503", res.StatusCode)
	}
	return n, err
}

// avPhone is one in-process telephone with its own token for the world's path.
type avPhone struct {
	c    *telephone.Client
	done chan error
}

// start starts a telephone with its own token and waits until all its sessions joined.
func (w *avWorld) start(ctx context.Context) (*avPhone, error) {
	tok, err := w.pb.srv.Mint(w.pathID, 0)
	if err != nil {
		return nil, err
	}
	opts := append(clientOptions(w.env, tok.Token), telephone.WithConnections(availConnections))
	c, err := telephone.New(w.env.SocketURL, opts...)
	if err != nil {
		return nil, err
	}
	p := &avPhone{c: c, done: make(chan error, 1)}
	go func() { p.done <- c.Run(context.Background()) }() // owned by p: joined by stop
	if err := p.waitJoined(ctx, availConnections); err != nil {
		_, _ = p.stop(time.Second)
		return nil, err
	}
	return p, nil
}

// begin starts a scenario's first telephone, then the load, and lets the load warm up; when
// the telephone cannot start, it returns the failed row.
func (w *avWorld) begin(ctx context.Context, name string) (*avPhone, *chaosRun, *result) {
	p, err := w.start(ctx)
	if err != nil {
		res := newResult(name, inProcLabel, nil)
		res.fail("setup", err)
		return nil, nil, res
	}
	run := w.startLoad(ctx)
	_ = sleepCtx(ctx, w.r.cfg.warmup)
	return p, run, nil
}

// waitJoined polls the telephone's status until n sessions are joined.
func (p *avPhone) waitJoined(ctx context.Context, n int) error {
	ctx, cancel := context.WithTimeout(ctx, joinTimeout)
	defer cancel()
	for joinedSessions(p.c.Status()) < n {
		select {
		case err := <-p.done:
			p.done <- err
			return fmt.Errorf("telephone stopped before joining: %v", err)
		default:
		}
		if err := sleepCtx(ctx, 10*time.Millisecond); err != nil {
			return fmt.Errorf("%d sessions did not join within %v: %+v", n, joinTimeout, p.c.Status().Sessions)
		}
	}
	return nil
}

func joinedSessions(st telephone.Status) int {
	n := 0
	for _, s := range st.Sessions {
		if s.State == telephone.SessionJoined {
			n++
		}
	}
	return n
}

// stop shuts the telephone down with grace (as SIGTERM does with SHUTDOWN_TIMEOUT) and returns
// how long the drain took.
func (p *avPhone) stop(grace time.Duration) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	t0 := time.Now()
	err := p.c.Shutdown(ctx)
	took := time.Since(t0)
	return took, errors.Join(err, <-p.done)
}

// startLoad starts steady load on the path: availRate requests per second to /slow, whose
// backend takes availDelay, so that requests are in flight at every fault.
func (w *avWorld) startLoad(ctx context.Context) *chaosRun {
	cfg := w.r.cfg
	c := &chaosRun{begin: time.Now(), mon: newRecoveryMonitor(), stop: make(chan struct{}), done: make(chan struct{})}
	spec := loadSpec{
		url:   w.callURL() + pathSlow + "?ms=" + strconv.FormatInt(cfg.availDelay.Milliseconds(), 10),
		begin: c.begin, concurrency: cfg.availConcurrency, rate: cfg.availRate, timeout: time.Minute,
		keepSamples: true, onResult: c.mon.observe,
		expect: func(status int, n int64) bool {
			switch status {
			case http.StatusOK:
				return n == int64(len(slowBody))
			case http.StatusServiceUnavailable:
				if n != w.pb503 {
					w.ours503.Add(1)
				}
			}
			return true
		},
	}
	go func() { // owned by c; joined by finish through c.done
		c.lr = runLoad(ctx, spec, c.stop)
		close(c.done)
	}()
	return c
}

// result makes the scenario's row and the checks every availability scenario shares: no
// request lost, every 200 complete.
func (w *avWorld) result(name string, lr *loadResult) *result {
	res := newResult(name, inProcLabel, lr)
	res.check("no request lost", lr.lostCount() == 0, "%d of %d requests got no HTTP status", lr.lostCount(), lr.requests)
	res.check("bodies complete", lr.badBody == 0, "%d bodies of 200s incomplete", lr.badBody)
	res.note("CONNECTIONS=%d, %.0f req/s to a backend taking %v", availConnections, w.r.cfg.availRate, w.r.cfg.availDelay)
	return res
}

// runAvailability opens a world, runs f in it and closes it. Without the in-process target
// (--inprocess=false, only possible under "all": parseFlags refuses the scenario named) the
// row says the scenario was skipped and why.
func (r *runner) runAvailability(ctx context.Context, name string, f func(context.Context, *avWorld) *result) []*result {
	if !r.cfg.inProcess {
		res := newResult(name, inProcLabel, nil)
		res.skip("drives in-process telephone.Clients, and --inprocess=false")
		r.progress("%s / %s: %s", res.Scenario, res.Target, res.word())
		return []*result{res}
	}
	w, err := r.openAvailability()
	if err != nil {
		res := newResult(name, inProcLabel, nil)
		res.fail("setup", err)
		return []*result{res}
	}
	defer w.closeWorld()
	res := f(ctx, w)
	r.progress("%s / %s: %s", res.Scenario, res.Target, res.word())
	return []*result{res}
}

// rollingRestart swaps telephones under load, as a rolling deployment does: the next one
// joins (its own token, same path), then the current one gets SIGTERM; three swaps.
func (r *runner) rollingRestart(ctx context.Context, w *avWorld) *result {
	cur, run, failed := w.begin(ctx, scnRolling)
	if failed != nil {
		return failed
	}
	var drains []time.Duration
	var errs []error
	for range r.cfg.swaps {
		next, err := w.start(ctx)
		if err != nil {
			errs = append(errs, err)
			break
		}
		took, err := cur.stop(r.cfg.drainGrace)
		drains, errs, cur = append(drains, took.Round(time.Millisecond)), append(errs, err), next
	}
	_ = sleepCtx(ctx, r.cfg.stableWindow)
	lr := run.finish()
	_, err := cur.stop(r.cfg.drainGrace)
	res := w.result(scnRolling, lr)
	res.check("swaps done", len(drains) == r.cfg.swaps && errors.Join(append(errs, err)...) == nil,
		"%d of %d swaps; drains took %v; errors: %v", len(drains), r.cfg.swaps, drains, errors.Join(append(errs, err)...))
	w.judgeDrainStatuses(res, lr)
	bad := lr.requests - lr.statuses[http.StatusOK]
	inFlight := w.inFlightAtStop() * int64(len(drains))
	r.timed(res, "fewer failures than a stop loses", bad < inFlight,
		"%d of %d requests without a 200 (%d × 502, %d × 503 from a draining telephone past its share); a stop that fails what is in flight loses about %d over %d SIGTERMs",
		bad, lr.requests, lr.statuses[http.StatusBadGateway], w.ours503.Load(), inFlight, len(drains))
	return res
}

// timed records a condition that depends on timing (how fast Plugboard reads a phx_leave, how
// soon a dial completes): a check in full runs, a note in the short form that CI runs under the
// race detector on a shared machine.
func (r *runner) timed(res *result, name string, ok bool, format string, args ...any) {
	if r.cfg.timingChecks {
		res.check(name, ok, format, args...)
		return
	}
	res.note("%s (%v; not checked in the short form): "+format, append([]any{name, ok}, args...)...)
}

// inFlightAtStop is how many requests are in flight on the path at any moment (rate × backend
// delay): what a telephone that stopped without draining would fail at each SIGTERM.
func (w *avWorld) inFlightAtStop() int64 {
	return int64(w.r.cfg.availRate * w.r.cfg.availDelay.Seconds())
}

// judgeDrainStatuses checks that a drain answers 200, 503 or, for a request Plugboard routed
// to a channel while its phx_leave was on its way (a race no client can close: Plugboard has
// no message that stops routing short of leaving), 502; nothing else.
func (w *avWorld) judgeDrainStatuses(res *result, lr *loadResult) {
	var other int64
	for code, n := range lr.statuses {
		if code != http.StatusOK && code != http.StatusServiceUnavailable && code != http.StatusBadGateway {
			other += n
		}
	}
	res.check("only 200, 503 and 502", other == 0, "%d requests got another status (statuses %v)", other, lr.statuses)
}

// sigterm shuts the path's only telephone down under load: until the last channel has left
// every request is served; after it the devserver answers 503 itself.
func (r *runner) sigterm(ctx context.Context, w *avWorld) *result {
	p, run, failed := w.begin(ctx, scnSigterm)
	if failed != nil {
		return failed
	}
	begin := run.now()
	took, err := p.stop(r.cfg.drainGrace)
	_ = sleepCtx(ctx, r.cfg.stableWindow)
	lr := run.finish()
	res := w.result(scnSigterm, lr)
	res.check("drained", err == nil, "Shutdown took %v: %v", took.Round(time.Millisecond), err)
	w.judgeDrainStatuses(res, lr)
	n502 := lr.statuses[http.StatusBadGateway]
	r.timed(res, "fewer 502 than a stop loses", n502 < w.inFlightAtStop(),
		"%d × 502 (requests routed to a channel while its phx_leave was on its way); a stop that fails what is in flight loses about %d",
		n502, w.inFlightAtStop())
	early := 0
	for _, s := range lr.samples {
		if s.Status != http.StatusOK && s.Start < begin {
			early++
		}
	}
	res.check("nothing fails before the SIGTERM", early == 0, "%d requests started before the SIGTERM did not get a 200", early)
	res.note("%d × 200, %d × 503 from the devserver after the last channel left, %d × 503 from the draining telephone, %d × 502",
		lr.statuses[http.StatusOK], lr.statuses[http.StatusServiceUnavailable]-w.ours503.Load(), w.ours503.Load(), lr.statuses[http.StatusBadGateway])
	return res
}

// oneSocketCut cuts one of the telephone's two sockets under load: the other keeps the path
// (no 503), and only the requests in flight on the cut socket fail (502, counted by the
// devserver at the cut).
func (r *runner) oneSocketCut(ctx context.Context, w *avWorld) *result {
	p, run, setupFailed := w.begin(ctx, scnOneCut)
	if setupFailed != nil {
		return setupFailed
	}
	cutAt := time.Now()
	failed, cutErr := w.pb.srv.DropSocket(w.pb.srv.Sockets()[0].ID)
	bctx, cancel := context.WithTimeout(ctx, r.cfg.recoverBound)
	at, rejoin := w.pb.conns.waitN(bctx, w.pathID, cutAt, 1)
	cancel()
	var back time.Duration
	if rejoin == nil {
		back = at[0].Sub(cutAt)
		rejoin = p.waitJoined(ctx, availConnections)
	}
	_ = sleepCtx(ctx, r.cfg.stableWindow)
	lr := run.finish()
	_, stopErr := p.stop(r.cfg.drainGrace)
	res := w.result(scnOneCut, lr)
	res.check("cut and rejoined", cutErr == nil && rejoin == nil && stopErr == nil,
		"cut: %v; the cut session reconnected %v after the cut: %v; stop: %v", cutErr, back.Round(time.Millisecond), rejoin, stopErr)
	res.check("no 503", lr.statuses[http.StatusServiceUnavailable] == 0,
		"%d × 503: the path must keep its other channel", lr.statuses[http.StatusServiceUnavailable])
	n502 := lr.statuses[http.StatusBadGateway]
	res.check("502 only for the cut socket's requests", n502 == int64(failed) && lr.requests-lr.statuses[http.StatusOK] == n502,
		"%d × 502; %d requests were in flight on the cut socket; %d without a 200", n502, failed, lr.requests-lr.statuses[http.StatusOK])
	return res
}

// plugboardRestart closes every socket with 1012, as a restarting Plugboard node does: the
// sessions come back within a second, each after its own jittered backoff.
func (r *runner) plugboardRestart(ctx context.Context, w *avWorld) *result {
	w.env.InitialBackoff = r.cfg.restartBackoff
	p, run, failed := w.begin(ctx, scnPBRestart)
	if failed != nil {
		return failed
	}
	t0 := time.Now()
	w.pb.srv.Restart()
	bctx, cancel := context.WithTimeout(ctx, r.cfg.recoverBound)
	at, werr := w.pb.conns.waitN(bctx, w.pathID, t0, availConnections)
	cancel()
	rejoin := p.waitJoined(ctx, availConnections)
	back := time.Since(t0)
	_ = sleepCtx(ctx, r.cfg.stableWindow)
	lr := run.finish()
	_, stopErr := p.stop(r.cfg.drainGrace)
	res := newResult(scnPBRestart, inProcLabel, lr)
	judgeChaos(res, lr)
	res.check("rejoined", werr == nil && rejoin == nil && stopErr == nil, "reconnects %v; rejoin %v; stop %v", werr, rejoin, stopErr)
	if werr != nil {
		return res
	}
	first, last := at[0].Sub(t0), at[len(at)-1].Sub(t0)
	r.timed(res, "back within 1 s", back <= time.Second, "every session joined again %v after the restart (first socket %v, last %v)",
		back.Round(time.Millisecond), first.Round(time.Millisecond), last.Round(time.Millisecond))
	r.timed(res, "reconnects spread", last-first >= time.Millisecond,
		"the %d sessions reconnected %v apart (INITIAL_BACKOFF %v, full jitter)", len(at), (last - first).Round(time.Millisecond), r.cfg.restartBackoff)
	r.judgeRecovery(res, lr.samples, t0.Sub(run.begin), "after the 1012 restart")
	return res
}
