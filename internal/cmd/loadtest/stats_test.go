package main

import (
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

func TestBucketBoundsContainValue(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	values := []int64{0, 1, 255, 256, 511, 512, 513, 1023, 1024, 1 << 20, math.MaxInt64}
	for range 10000 {
		values = append(values, r.Int64N(1<<uint(r.IntN(63))+1))
	}
	for _, v := range values {
		i := bucketOf(v)
		if i < 0 || i >= numBuckets {
			t.Fatalf("bucketOf(%d) = %d, out of range", v, i)
		}
		lo, hi := bucketBounds(i)
		if v < lo || v > hi {
			t.Fatalf("bucket %d = [%d, %d] does not contain %d", i, lo, hi, v)
		}
		if width := hi - lo; float64(width) > float64(v)/256 {
			t.Fatalf("bucket %d of %d is %d wide: more than 1/256 of the value", i, v, width)
		}
	}
}

func TestBucketsAreContiguous(t *testing.T) {
	t.Parallel()
	_, prevHi := bucketBounds(0)
	for i := 1; i < numBuckets; i++ {
		lo, hi := bucketBounds(i)
		if lo != prevHi+1 || hi < lo {
			t.Fatalf("bucket %d = [%d, %d] does not follow %d", i, lo, hi, prevHi)
		}
		prevHi = hi
	}
	if prevHi != math.MaxInt64 {
		t.Fatalf("last bucket ends at %d, want MaxInt64", prevHi)
	}
}

func TestHistogramQuantiles(t *testing.T) {
	t.Parallel()
	h := newHistogram()
	// 1..10000 ms, shuffled: the q-quantile is q·10000 ms.
	r := rand.New(rand.NewPCG(3, 4))
	for _, i := range r.Perm(10000) {
		h.Record(time.Duration(i+1) * time.Millisecond)
	}
	tests := []struct {
		q    float64
		want time.Duration
	}{
		{0, time.Millisecond},
		{0.5, 5000 * time.Millisecond},
		{0.9, 9000 * time.Millisecond},
		{0.99, 9900 * time.Millisecond},
		{0.999, 9990 * time.Millisecond},
		{1, 10000 * time.Millisecond},
		{-1, time.Millisecond},
		{2, 10000 * time.Millisecond},
	}
	for _, tc := range tests {
		got := h.Quantile(tc.q)
		if diff := math.Abs(float64(got - tc.want)); diff > float64(tc.want)/256 {
			t.Errorf("Quantile(%v) = %v, want %v ± 0.4%%", tc.q, got, tc.want)
		}
	}
	if h.Count() != 10000 || h.Min() != time.Millisecond || h.Max() != 10*time.Second {
		t.Errorf("count/min/max = %d/%v/%v", h.Count(), h.Min(), h.Max())
	}
	if want := 5000500 * time.Microsecond; h.Mean() != want {
		t.Errorf("Mean = %v, want %v", h.Mean(), want)
	}
}

func TestHistogramSmallValuesAreExact(t *testing.T) {
	t.Parallel()
	h := newHistogram()
	for _, v := range []time.Duration{3, 3, 7, 100, -5} {
		h.Record(v)
	}
	tests := []struct {
		q    float64
		want time.Duration
	}{{0.2, 0}, {0.4, 3}, {0.6, 3}, {0.8, 7}, {1, 100}}
	for _, tc := range tests {
		if got := h.Quantile(tc.q); got != tc.want {
			t.Errorf("Quantile(%v) = %v, want %v", tc.q, got, tc.want)
		}
	}
}

func TestHistogramEmpty(t *testing.T) {
	t.Parallel()
	h := newHistogram()
	if h.Quantile(0.5) != 0 || h.Min() != 0 || h.Max() != 0 || h.Mean() != 0 || h.Quantile(math.NaN()) != 0 {
		t.Fatal("an empty histogram must report zeros")
	}
}

func TestHistogramConcurrentRecord(t *testing.T) {
	t.Parallel()
	h := newHistogram()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				h.Record(time.Duration(w*1000+i) * time.Microsecond)
			}
		})
	}
	wg.Wait()
	if h.Count() != 8000 || h.Min() != 0 || h.Max() != 7999*time.Microsecond {
		t.Fatalf("count/min/max = %d/%v/%v", h.Count(), h.Min(), h.Max())
	}
}

func TestExactQuantile(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		values []time.Duration
		q      float64
		want   time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"nan", []time.Duration{1}, math.NaN(), 0},
		{"one", []time.Duration{7}, 0.5, 7},
		{"min", []time.Duration{5, 1, 3}, 0, 1},
		{"median odd", []time.Duration{5, 1, 3}, 0.5, 3},
		{"median even", []time.Duration{4, 1, 3, 2}, 0.5, 2},
		{"max", []time.Duration{5, 1, 3}, 1, 5},
		{"p90 of ten", []time.Duration{10, 9, 8, 7, 6, 5, 4, 3, 2, 1}, 0.9, 9},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := exactQuantile(tc.values, tc.q); got != tc.want {
				t.Fatalf("exactQuantile = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestRatioAndRate(t *testing.T) {
	t.Parallel()
	if ratio(1, 0) != 0 || ratio(3, 2) != 1.5 {
		t.Error("ratio")
	}
	if perSecond(10, 0) != 0 || perSecond(10, 2*time.Second) != 5 {
		t.Error("perSecond")
	}
}

func BenchmarkHistogramRecord(b *testing.B) {
	h := newHistogram()
	b.RunParallel(func(pb *testing.PB) {
		d := time.Duration(1)
		for pb.Next() {
			h.Record(d)
			d = d*31 + 7
			if d > time.Hour {
				d = 1
			}
		}
	})
}

func BenchmarkHistogramQuantile(b *testing.B) {
	h := newHistogram()
	for i := range 100000 {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	b.ResetTimer()
	for b.Loop() {
		_ = h.Quantile(0.99)
	}
}
