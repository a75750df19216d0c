package main

import (
	"context"
	"log/slog"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"
)

// Memory return (issue 13): the Go runtime keeps freed heap for reuse and gives it back to
// the OS only slowly, so after a burst of large bodies the RSS would stay high for minutes.

const (
	// softLimitHeadroom is added to MEMORY_BUDGET for the soft memory limit (GOMEMLIMIT):
	// room for everything but bodies (code, stacks, buffers, metrics), and for garbage the
	// collector has not reclaimed yet, within the budget + 64 MiB the loadtest holds it to.
	softLimitHeadroom = 32 << 20
	// trimEvery is how often the trimmer looks at idle heap memory.
	trimEvery = 10 * time.Second
	// trimAbove is how much heap the runtime may hold (objects, live or not yet collected,
	// plus free memory not yet returned) before the trimmer collects and returns it.
	trimAbove = 32 << 20
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

// trimmer collects and returns heap memory to the OS when the heap held exceeds trimAbove:
// after a burst of large bodies nothing else may allocate enough to trigger a collection,
// so the dead bodies would stay resident. Under steady small load the heap stays below. A
// trim collects twice: buffers in a sync.Pool (the body chunks' pool) survive one collection
// in the pool's victim cache, so one collection would leave a burst's chunks resident until
// the next tick.
type trimmer struct {
	log    *slog.Logger
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func startTrimmer(log *slog.Logger) *trimmer {
	ctx, cancel := context.WithCancel(context.Background())
	t := &trimmer{log: log, cancel: cancel}
	t.wg.Go(func() {
		tick := time.NewTicker(trimEvery)
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

// heapHeld is the heap memory the runtime holds: objects (live, or dead and not yet
// collected) and free memory not returned to the OS.
func heapHeld() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/free:bytes"}}
	metrics.Read(s)
	var n uint64
	for _, v := range s {
		if v.Value.Kind() == metrics.KindUint64 {
			n += v.Value.Uint64()
		}
	}
	return n
}

// trim collects and returns heap memory when the runtime holds more than trimAbove; it
// reports whether it did.
func (t *trimmer) trim() bool {
	held := heapHeld()
	if held < trimAbove {
		return false
	}
	runtime.GC()         // what sync.Pools hold (the body chunks) moves to their victim caches...
	debug.FreeOSMemory() // ...and is freed by this collection, which returns the memory
	t.log.Debug("returned heap memory to the OS", slog.Uint64("held_before", held), slog.Uint64("held_after", heapHeld()))
	return true
}

// stop ends the trimmer and waits for it.
func (t *trimmer) stop() {
	t.cancel()
	t.wg.Wait()
}
