package phoenix

import (
	"context"
	"errors"
	"math"
	"testing"
	"testing/synctest"
	"time"
)

func TestBackoffCeilingsGrowAndCap(t *testing.T) {
	t.Parallel()
	b := Backoff{Initial: 100 * time.Millisecond, Max: time.Second, Rand: func() float64 { return 0.999999999 }}
	wantCeil := []time.Duration{100, 200, 400, 800, 1000, 1000, 1000}
	for i, c := range wantCeil {
		c *= time.Millisecond
		d := b.Next()
		if d >= c || d < c-c/1000 {
			t.Fatalf("wait %d = %v, want just under %v", i, d, c)
		}
	}
	if b.Attempts() != len(wantCeil) {
		t.Fatalf("Attempts = %d, want %d", b.Attempts(), len(wantCeil))
	}
}

func TestBackoffDefaultsAndJitter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		rand float64
		want time.Duration
	}{
		{"zero", 0, 0},
		{"half", 0.5, DefaultBackoffInitial / 2},
		{"negative clamps to zero", -3, 0},
		{"NaN clamps to zero", math.NaN(), 0},
		{"above one clamps below ceiling", 7, DefaultBackoffInitial - 1},
	}
	for _, tt := range tests {
		b := Backoff{Rand: func() float64 { return tt.rand }}
		if got := b.Next(); got != tt.want {
			t.Errorf("%s: Next = %v, want %v", tt.name, got, tt.want)
		}
	}
	var b Backoff // math/rand/v2
	for range 100 {
		if d := b.Next(); d < 0 || d >= DefaultBackoffMax {
			t.Fatalf("Next = %v, outside [0, %v)", d, DefaultBackoffMax)
		}
	}
}

func TestBackoffNoOverflow(t *testing.T) {
	t.Parallel()
	b := Backoff{Initial: time.Hour, Max: math.MaxInt64, Rand: func() float64 { return 0.5 }}
	for range 200 {
		if d := b.Next(); d < 0 {
			t.Fatalf("negative wait %v after %d attempts", d, b.Attempts())
		}
	}
	if c := b.ceiling(); c != math.MaxInt64 {
		t.Fatalf("ceiling = %v, want the cap", c)
	}
}

func TestBackoffResetAndConnectionLost(t *testing.T) {
	t.Parallel()
	b := Backoff{StableAfter: time.Minute}
	b.Next()
	b.Next()
	b.ConnectionLost(59 * time.Second)
	if b.Attempts() != 2 {
		t.Fatalf("short connection reset the attempts: %d", b.Attempts())
	}
	b.ConnectionLost(time.Minute)
	if b.Attempts() != 0 {
		t.Fatalf("stable connection did not reset: %d", b.Attempts())
	}
	b.Next()
	b.Reset()
	if b.Attempts() != 0 {
		t.Fatal("Reset did not reset")
	}
	var d Backoff // default StableAfter is 60s
	d.Next()
	d.ConnectionLost(DefaultBackoffStableAfter - 1)
	d.ConnectionLost(0)
	if d.Attempts() != 1 {
		t.Fatal("default StableAfter reset too early")
	}
	d.ConnectionLost(DefaultBackoffStableAfter)
	if d.Attempts() != 0 {
		t.Fatal("default StableAfter did not reset")
	}
}

func TestBackoffWait(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := Backoff{Initial: time.Second, Max: 8 * time.Second, Rand: func() float64 { return 0.5 }}
		start := time.Now()
		for range 5 {
			if err := b.Wait(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		// 0.5 × (1+2+4+8+8) s
		if got, want := time.Since(start), 11500*time.Millisecond; got != want {
			t.Fatalf("waited %v, want %v", got, want)
		}
	})
}

func TestBackoffWaitCancelled(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := Backoff{Initial: time.Hour, Max: time.Hour, Rand: func() float64 { return 0.5 }}
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		start := time.Now()
		if err := b.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Wait = %v, want DeadlineExceeded", err)
		}
		if got := time.Since(start); got != time.Minute {
			t.Fatalf("Wait returned after %v, want 1m", got)
		}
	})
}
