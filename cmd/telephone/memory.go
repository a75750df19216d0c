package main

import (
	"context"
	"log/slog"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"
)

// Memory return (issue 13): the Go runtime keeps freed heap for reuse and gives it back to
// the OS only slowly, so after a burst of large bodies the RSS would stay high for minutes.

const (
	// softLimitHeadroom is added to MEMORY_BUDGET for the soft memory limit (GOMEMLIMIT):
	// room for everything but bodies (code, stacks, buffers, metrics).
	softLimitHeadroom = 64 << 20
	// trimEvery is how often the trimmer looks at idle heap memory.
	trimEvery = 10 * time.Second
	// trimAbove is how much free (unused, not yet returned) heap memory makes it return it.
	trimAbove = 16 << 20
)

// setSoftMemoryLimit sets the runtime's soft memory limit to the budget plus headroom unless
// the user set GOMEMLIMIT (which the runtime has applied already) or the budget is off. It
// returns the limit in force (math.MaxInt64: none).
func setSoftMemoryLimit(budget int64, userLimit string) int64 {
	if userLimit != "" || budget <= 0 {
		return debug.SetMemoryLimit(-1)
	}
	debug.SetMemoryLimit(budget + softLimitHeadroom)
	return budget + softLimitHeadroom
}

// trimmer returns free heap memory to the OS once it exceeds trimAbove; between bursts that
// brings the RSS back near its resting size instead of the burst's peak.
type trimmer struct {
	log    *slog.Logger
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func startTrimmer(log *slog.Logger, every time.Duration) *trimmer {
	ctx, cancel := context.WithCancel(context.Background())
	t := &trimmer{log: log, cancel: cancel}
	t.wg.Go(func() {
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				t.trim()
			}
		}
	})
	return t
}

// freeHeap is heap memory the runtime holds but does not use.
func freeHeap() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/free:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// trim returns free heap memory when there is enough of it; it reports whether it did.
func (t *trimmer) trim() bool {
	free := freeHeap()
	if free < trimAbove {
		return false
	}
	debug.FreeOSMemory()
	t.log.Debug("returned free memory to the OS", slog.Uint64("bytes", free))
	return true
}

// stop ends the trimmer and waits for it.
func (t *trimmer) stop() {
	t.cancel()
	t.wg.Wait()
}
