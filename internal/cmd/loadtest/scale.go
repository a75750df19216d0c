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
	env := r.baseEnv()
	s, err := r.openWorld(&env, telephonetest.WithTokenLifetime(r.cfg.scaleLifetime))
	if err != nil {
		return setupFailed(ts, err)
	}
	sa, err := s.pb.srv.NewServiceAccount("", "loadtest")
	if err != nil {
		s.closeWorld()
		return setupFailed(ts, err)
	}
	env.ServiceAccountKey, env.Replicas = sa.APIKey, n
	s.tgt = ts.new()
	rt, ok := s.tgt.(restarter)
	if !ok {
		s.closeWorld()
		return setupFailed(ts, fmt.Errorf("target %s cannot restart its telephones", ts.label))
	}
	if err := s.tgt.Start(ctx, env); err != nil {
		_ = s.close()
		return setupFailed(ts, err)
	}
	if err := s.waitReplicas(ctx, sa.PathID, n); err != nil {
		diag := s.tgt.Diag()
		_ = s.close()
		return setupFailed(ts, fmt.Errorf("%w (%s)", err, diag))
	}
	vendedAtStart := s.pb.vended.Load()
	lr, restartErrs := r.scaleLoad(ctx, s.pb.srv.CallURL(sa.PathID)+pathSmall, rt, n)
	res := newResult(scnScale, ts.label, lr)
	joinErr := s.waitReplicas(ctx, sa.PathID, n)
	channels, replicas := s.joined(sa.PathID)
	judgeChaos(res, lr)
	res.check("every replica restarted", restartErrs == nil, "%d restarts: %v", n, errOrNone(restartErrs))
	res.check("all joined at the end", joinErr == nil, "%d channels joined, %d replicas wanted (%v)", channels, n, errOrNone(joinErr))
	res.check("distinct tokens", replicas == n, "%d distinct token records among %d joined channels, want one per replica (%d)", replicas, channels, n)
	refused := s.pb.refused.Load()
	res.check("no 403 loop", refused <= int64(n), "%d socket upgrades refused with 403 (at most one per replica tolerated)", refused)
	// Each replica vends one token at start-up; its restart finds that token (refreshed and
	// stored) still valid and must not vend again: a restart that vends is the regression.
	vended := s.pb.vended.Load()
	res.check("restarts reuse their stored token", vendedAtStart == int64(n) && vended == vendedAtStart,
		"%d tokens vended at start-up (want %d, one per replica), %d in all (a restart with a valid stored token vends none)", vendedAtStart, n, vended)
	alive := s.tgt.Alive()
	res.check("no telephone exited", alive == nil, "%v", errOrNone(alive))
	res.note("%d replicas from one service-account key, token lifetime %v, %v of load, each restarted once", n, r.cfg.scaleLifetime, r.cfg.scaleDuration)
	stopped(res, s.close())
	return res
}

func setupFailed(ts targetSpec, err error) *result {
	res := newResult(scnScale, ts.label, nil)
	res.fail("setup", err)
	return res
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

// waitReplicas waits until n telephones joined pathID (a replica may hold several channels,
// CONNECTIONS: they are counted by token), failing early when one stopped.
func (s *session) waitReplicas(ctx context.Context, pathID string, n int) error {
	ctx, cancel := context.WithTimeout(ctx, joinTimeout)
	defer cancel()
	err := s.poll(ctx, func(step context.Context) error {
		if err := s.pb.srv.WaitJoined(step, pathID, n); err != nil {
			return err
		}
		if _, replicas := s.joined(pathID); replicas < n {
			<-step.Done()
			return fmt.Errorf("%d of %d replicas joined", replicas, n)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%d replicas did not join (within %v; %d channels joined): %w", n, joinTimeout, s.pb.srv.Joined(pathID), err)
	}
	return nil
}

// joined returns how many channels are joined to pathID and how many distinct token records
// they hold: one per replica, whatever its CONNECTIONS.
func (s *session) joined(pathID string) (channels, replicas int) {
	tokens := s.pb.srv.JoinedTokens(pathID)
	return len(tokens), len(slices.Compact(slices.Sorted(slices.Values(tokens))))
}
