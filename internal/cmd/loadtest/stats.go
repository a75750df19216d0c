package main

import (
	"math"
	"math/bits"
	"slices"
	"sync/atomic"
	"time"
)

// subBits is the number of sub-bucket bits of a histogram: every power of two is split into
// 2^subBits buckets, so a recorded value is known to within 1/256 (0.4 %) of itself.
const subBits = 8

// numBuckets covers every non-negative int64 (nanoseconds: more than 290 years).
const numBuckets = (64 - subBits) << subBits

// histogram is a log-linear latency histogram with bounded memory (about 112 KiB) and a
// relative error below 1/256. Record is safe for concurrent use (atomic counters); the
// readers (Count, Quantile, Min, Max, Mean) may run concurrently with Record and then see
// some recent values or not.
type histogram struct {
	counts [numBuckets]atomic.Int64
	n      atomic.Int64
	sum    atomic.Int64
	min    atomic.Int64 // math.MaxInt64 while empty
	max    atomic.Int64
}

func newHistogram() *histogram {
	h := &histogram{}
	h.min.Store(math.MaxInt64)
	return h
}

// bucketOf returns the bucket index of v (v >= 0). Values below 2^(subBits+1) have a bucket
// each; above, bucket widths double with every power of two.
func bucketOf(v int64) int {
	u := uint64(max(v, 0))
	if u < 1<<(subBits+1) {
		return int(u)
	}
	e := bits.Len64(u) - subBits - 1
	return e<<subBits + int(u>>e)
}

// bucketBounds returns the smallest and largest value that fall in bucket i.
func bucketBounds(i int) (lo, hi int64) {
	if i < 1<<(subBits+1) {
		return int64(i), int64(i)
	}
	e := i>>subBits - 1
	m := int64(i - e<<subBits)
	return m << e, (m+1)<<e - 1
}

// Record adds one duration (negative durations count as zero).
func (h *histogram) Record(d time.Duration) {
	v := max(int64(d), 0)
	h.counts[bucketOf(v)].Add(1)
	h.n.Add(1)
	h.sum.Add(v)
	for cur := h.min.Load(); v < cur && !h.min.CompareAndSwap(cur, v); cur = h.min.Load() {
	}
	for cur := h.max.Load(); v > cur && !h.max.CompareAndSwap(cur, v); cur = h.max.Load() {
	}
}

// Count returns how many values were recorded.
func (h *histogram) Count() int64 { return h.n.Load() }

// Min returns the smallest recorded value, 0 when empty.
func (h *histogram) Min() time.Duration {
	if h.Count() == 0 {
		return 0
	}
	return time.Duration(h.min.Load())
}

// Max returns the largest recorded value, 0 when empty.
func (h *histogram) Max() time.Duration { return time.Duration(h.max.Load()) }

// Mean returns the arithmetic mean, 0 when empty.
func (h *histogram) Mean() time.Duration {
	n := h.Count()
	if n == 0 {
		return 0
	}
	return time.Duration(h.sum.Load() / n)
}

// Quantile returns the q-quantile (0 <= q <= 1) by the nearest-rank method: the smallest
// recorded value v such that at least q·n values are <= v, known to within the bucket width.
// It returns the middle of that value's bucket, clamped to [Min, Max]; 0 when empty.
func (h *histogram) Quantile(q float64) time.Duration {
	n := h.Count()
	if n == 0 || math.IsNaN(q) {
		return 0
	}
	q = min(max(q, 0), 1)
	rank := max(int64(math.Ceil(q*float64(n))), 1)
	var seen int64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			lo, hi := bucketBounds(i)
			mid := lo + (hi-lo)/2
			return min(max(time.Duration(mid), h.Min()), h.Max())
		}
	}
	return h.Max()
}

// exactQuantile returns the nearest-rank q-quantile of values (sorted in place); 0 when empty.
// It is used where every value is kept (reconnect spreads, recovery times).
func exactQuantile(values []time.Duration, q float64) time.Duration {
	if len(values) == 0 || math.IsNaN(q) {
		return 0
	}
	slices.Sort(values)
	q = min(max(q, 0), 1)
	rank := max(int(math.Ceil(q*float64(len(values)))), 1)
	return values[rank-1]
}

// ratio returns a/b, or 0 when b is 0 (no baseline).
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// perSecond returns n events over d as a rate, 0 when d is not positive.
func perSecond(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}
