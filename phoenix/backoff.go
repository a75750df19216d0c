package phoenix

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff defaults, used for zero fields.
const (
	DefaultBackoffInitial     = 500 * time.Millisecond
	DefaultBackoffMax         = 30 * time.Second
	DefaultBackoffStableAfter = 60 * time.Second
)

// Backoff is the reconnect/rejoin policy: exponential growth with full jitter and
// a cap. The n-th wait (counting from 0) is uniformly random in
// [0, min(Max, Initial·2ⁿ)), so that many clients dropped at once (a server drain)
// do not come back in lock-step. The zero value is ready to use with the defaults.
// A Backoff is not safe for concurrent use: give each retry loop its own.
type Backoff struct {
	Initial     time.Duration  // first ceiling; 0 means 500ms
	Max         time.Duration  // cap; 0 means 30s
	StableAfter time.Duration  // a connection up at least this long resets the attempts; 0 means 60s
	Rand        func() float64 // returns values in [0,1); nil uses math/rand/v2 (out-of-range values are clamped)

	attempt int // waits handed out since the last reset
}

// Next returns the next wait and counts one attempt.
func (b *Backoff) Next() time.Duration {
	ceiling := b.ceiling()
	b.attempt++
	r := rand.Float64
	if b.Rand != nil {
		r = b.Rand
	}
	f := r()
	if !(f > 0) { // also catches NaN
		return 0
	}
	d := time.Duration(f * float64(ceiling))
	if d >= ceiling {
		d = ceiling - 1
	}
	return d
}

// ceiling is min(Max, Initial·2^attempt), computed without overflow.
func (b *Backoff) ceiling() time.Duration {
	initial, limit := b.Initial, b.Max
	if initial <= 0 {
		initial = DefaultBackoffInitial
	}
	if limit <= 0 {
		limit = DefaultBackoffMax
	}
	c := initial
	for i := 0; i < b.attempt && c < limit; i++ {
		if c > limit/2 {
			return limit
		}
		c *= 2
	}
	return min(c, limit)
}

// Wait sleeps for Next() or until ctx is done, whichever comes first, and then
// returns nil or ctx.Err().
func (b *Backoff) Wait(ctx context.Context) error {
	t := time.NewTimer(b.Next())
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Reset forgets all attempts: the next wait uses the Initial ceiling again.
func (b *Backoff) Reset() { b.attempt = 0 }

// ConnectionLost records that a connection which had been up for upFor ended:
// if it was up at least StableAfter, the attempts are reset.
func (b *Backoff) ConnectionLost(upFor time.Duration) {
	stable := b.StableAfter
	if stable <= 0 {
		stable = DefaultBackoffStableAfter
	}
	if upFor >= stable {
		b.Reset()
	}
}

// Attempts returns the number of waits handed out since the last reset.
func (b *Backoff) Attempts() int { return b.attempt }
