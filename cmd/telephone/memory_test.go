package main

import (
	"io"
	"log/slog"
	"math"
	"runtime"
	"runtime/debug"
	"sync"
	"testing"
)

// These tests change the process's soft memory limit; they restore it and do not run in
// parallel with each other.

func TestSetSoftMemoryLimit(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(before)
	if got := setSoftMemoryLimit(256<<20, ""); got != 256<<20+softLimitHeadroom || debug.SetMemoryLimit(-1) != got {
		t.Fatalf("limit %d, want the budget + headroom", got)
	}
	debug.SetMemoryLimit(math.MaxInt64)
	if got := setSoftMemoryLimit(256<<20, "1GiB"); got != math.MaxInt64 {
		t.Fatalf("a user GOMEMLIMIT was overridden: %d", got)
	}
	if got := setSoftMemoryLimit(0, ""); got != math.MaxInt64 {
		t.Fatalf("no budget set a limit: %d", got)
	}
}

var sink []byte

func TestTrimmerReturnsFreeHeap(t *testing.T) {
	tr := startTrimmer(slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer tr.stop()
	runtime.GC()
	sink = make([]byte, 64<<20)
	sink[0] = 1
	sink = nil // dead, not collected: nothing else allocates
	if !tr.trim() {
		t.Fatalf("heap held %d bytes after dropping 64 MiB, not trimmed", heapHeld())
	}
	if held := heapHeld(); held >= trimAbove {
		t.Fatalf("heap held %d bytes after trimming", held)
	}
	if tr.trim() {
		t.Fatal("trimmed again with nothing free")
	}
}

// TestTrimmerFreesPooledBuffers: buffers left in a sync.Pool after a burst (the body chunks'
// pool) survive one collection in the pool's victim cache; a trim frees them too.
func TestTrimmerFreesPooledBuffers(t *testing.T) {
	tr := startTrimmer(slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer tr.stop()
	runtime.GC()
	bufs := make([][]byte, 1024) // 64 MiB in 64 KiB chunks, all live until pooled
	for i := range bufs {
		bufs[i] = make([]byte, 64<<10)
	}
	var pool sync.Pool
	for _, b := range bufs {
		pool.Put(&b)
	}
	bufs = nil
	if !tr.trim() {
		t.Fatalf("heap held %d bytes with 64 MiB pooled, not trimmed", heapHeld())
	}
	if held := heapHeld(); held >= trimAbove {
		t.Fatalf("heap held %d bytes after trimming: the pooled buffers survived", held)
	}
}
