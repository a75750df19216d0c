package tokenstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestMemoryRoundTripAndExpiry(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		m := NewMemory()
		if tok, err := m.Load(ctx); tok != "" || err != nil {
			t.Fatalf("empty Load = %q, %v", tok, err)
		}
		if err := m.Save(ctx, "first", time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		// Save order wins, even over a later expiry.
		if err := m.Save(ctx, "second", time.Now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if tok, err := m.Load(ctx); tok != "second" || err != nil {
			t.Fatalf("Load = %q, %v; want second", tok, err)
		}
		time.Sleep(time.Minute - time.Nanosecond) // fake time inside the bubble
		if tok, _ := m.Load(ctx); tok != "second" {
			t.Fatalf("Load just before expiry = %q, want second", tok)
		}
		time.Sleep(time.Nanosecond)
		if tok, err := m.Load(ctx); tok != "" || err != nil {
			t.Fatalf("Load at expiry = %q, %v; want empty", tok, err)
		}
	})
}

func TestMemoryRefusals(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	var zero Memory // the zero value is usable
	tests := []struct {
		name  string
		ctx   context.Context
		token string
		exp   time.Time
		want  error
	}{
		{"empty token", ctx, "", time.Now().Add(time.Hour), ErrEmptyToken},
		{"expired", ctx, "t", time.Now().Add(-time.Second), ErrExpired},
		{"zero expiry", ctx, "t", time.Time{}, ErrExpired},
		{"cancelled", cancelled, "t", time.Now().Add(time.Hour), context.Canceled},
	}
	for _, tc := range tests {
		if err := zero.Save(tc.ctx, tc.token, tc.exp); !errors.Is(err, tc.want) {
			t.Errorf("%s: Save = %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, err := zero.Load(cancelled); !errors.Is(err, context.Canceled) {
		t.Errorf("Load with cancelled ctx = %v", err)
	}
	if tok, _ := zero.Load(ctx); tok != "" {
		t.Errorf("refused saves stored %q", tok)
	}
}

func TestMemoryConcurrent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := NewMemory()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				if err := m.Save(ctx, fmt.Sprintf("g%d-%d", g, i), time.Now().Add(time.Hour)); err != nil {
					t.Error(err)
					return
				}
				if tok, err := m.Load(ctx); tok == "" || err != nil {
					t.Errorf("Load = %q, %v", tok, err)
					return
				}
			}
		})
	}
	wg.Wait()
}
