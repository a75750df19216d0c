package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/verastack/telephone/telephonetest"
)

// scaleOut is the scale-out scenario: replicas telephones started from ONE service-account
// key against one devserver with a short token lifetime, under steady load, each restarted
// once. Each replica must vend its own token (a shared token breaks at the first refresh),
// reuse its stored token after the restart, and keep serving: at the end all replicas are
// joined with distinct tokens, no socket upgrade was refused in a loop, no telephone exited.
func (r *runner) scaleOut(ctx context.Context, ts targetSpec) *result {
	n := r.cfg.scaleReplicas
	backend, err := startBackend("127.0.0.1:0")
	if err != nil {
		return setupFailed(ts, err)
	}
	defer backend.Close()
	env := r.baseEnv()
	pb, err := startPlugboard(env.RequestTimeout+30*time.Second, telephonetest.WithTokenLifetime(r.cfg.scaleLifetime))
	if err != nil {
		return setupFailed(ts, err)
	}
	defer pb.Close()
	sa, err := pb.srv.NewServiceAccount("", "loadtest")
	if err != nil {
		return setupFailed(ts, err)
	}
	env.SocketURL, env.Backend = pb.srv.SocketURL(), backend.addr
	env.ServiceAccountKey, env.Replicas = sa.APIKey, n
	tgt := ts.new()
	rt, ok := tgt.(restarter)
	if !ok {
		return setupFailed(ts, fmt.Errorf("target %s cannot restart its telephones", ts.label))
	}
	if err := tgt.Start(ctx, env); err != nil {
		_ = tgt.Stop(context.Background())
		return setupFailed(ts, err)
	}
	s := &session{backend: backend, pb: pb, tgt: tgt}
	if err := waitReplicas(ctx, s, sa.PathID, n); err != nil {
		diag := tgt.Diag()
		_ = stopTarget(tgt)
		return setupFailed(ts, fmt.Errorf("%w (%s)", err, diag))
	}
	vendedAtStart := pb.vended.Load()
	lr, restartErrs := r.scaleLoad(ctx, pb.srv.CallURL(sa.PathID)+pathSmall, rt, n)
	res := newResult(scnScale, ts.label, lr)
	joinErr := waitReplicas(ctx, s, sa.PathID, n)
	tokens := pb.srv.JoinedTokens(sa.PathID)
	distinct := slices.Compact(slices.Sorted(slices.Values(tokens)))
	judgeChaos(res, lr)
	res.check("every replica restarted", restartErrs == nil, "%d restarts: %v", n, errOrNone(restartErrs))
	res.check("all joined at the end", joinErr == nil && len(distinct) == n, "%d of %d replicas joined, on %d channels (%v)", len(distinct), n, len(tokens), errOrNone(joinErr))
	res.check("distinct tokens", len(distinct) == n, "%d distinct token records among %d joined channels", len(distinct), len(tokens))
	refused := pb.refused.Load()
	res.check("no 403 loop", refused <= int64(n), "%d socket upgrades refused with 403 (at most one per replica tolerated)", refused)
	vended := pb.vended.Load()
	res.check("restarts reuse their stored token", vendedAtStart == int64(n) && vended <= int64(2*n),
		"%d tokens vended at start-up, %d in all (a restart with a valid stored token vends none)", vendedAtStart, vended)
	alive := tgt.Alive()
	res.check("no telephone exited", alive == nil, "%v", errOrNone(alive))
	res.note("%d replicas from one service-account key, token lifetime %v, %v of load, each restarted once", n, r.cfg.scaleLifetime, r.cfg.scaleDuration)
	stopped(res, stopTarget(tgt))
	return res
}

func setupFailed(ts targetSpec, err error) *result {
	res := newResult(scnScale, ts.label, nil)
	res.fail("setup", err)
	return res
}

func stopTarget(tgt target) error {
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	return tgt.Stop(ctx)
}

// scaleLoad runs steady load for the scenario's duration while restarting replica i at
// (i+1)/(n+1) of it; it returns when the load and every restart are done.
func (r *runner) scaleLoad(ctx context.Context, url string, rt restarter, n int) (*loadResult, error) {
	spec := loadSpec{
		url: url, concurrency: r.cfg.chaosConcurrency, rate: r.cfg.chaosRate, duration: r.cfg.scaleDuration,
		timeout: 30 * time.Second, keepSamples: true, expect: expectSmall,
	}
	var wg sync.WaitGroup
	var errs []error
	wg.Go(func() {
		begin := time.Now()
		for i := range n {
			at := r.cfg.scaleDuration * time.Duration(i+1) / time.Duration(n+1)
			if sleepCtx(ctx, time.Until(begin.Add(at))) != nil {
				errs = append(errs, ctx.Err())
				return
			}
			rctx, cancel := context.WithTimeout(ctx, stopTimeout)
			if err := rt.Restart(rctx, i); err != nil {
				errs = append(errs, err)
			}
			cancel()
		}
	})
	lr := runLoad(ctx, spec, nil)
	wg.Wait()
	return lr, errors.Join(errs...)
}

// waitReplicas waits until n telephones joined pathID, failing early when one stopped.
func waitReplicas(ctx context.Context, s *session, pathID string, n int) error {
	ctx, cancel := context.WithTimeout(ctx, joinTimeout)
	defer cancel()
	for {
		step, stop := context.WithTimeout(ctx, 100*time.Millisecond)
		err := s.pb.srv.WaitJoined(step, pathID, n)
		stop()
		// A replica may hold several channels (CONNECTIONS): count the replicas by token.
		if err == nil && len(slices.Compact(slices.Sorted(slices.Values(s.pb.srv.JoinedTokens(pathID))))) < n {
			err = sleepCtx(ctx, 20*time.Millisecond)
			if err == nil {
				continue
			}
		}
		switch {
		case err == nil:
			return nil
		case s.tgt.Alive() != nil:
			return fmt.Errorf("a replica stopped: %w", s.tgt.Alive())
		case ctx.Err() != nil:
			return fmt.Errorf("%d replicas did not join within %v (%d joined): %w", n, joinTimeout, s.pb.srv.Joined(pathID), err)
		}
	}
}
