package telephone

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"slices"
	"testing"
	"testing/synctest"
	"time"
)

// TestBreakerStateLogLevels checks that opening the circuit is a warning and recovering
// (half-open, closed) is information.
func TestBreakerStateLogLevels(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var buf bytes.Buffer
		o := defaultOptions()
		if err := WithCircuitBreaker(1, time.Second)(&o); err != nil {
			t.Fatal(err)
		}
		g := newGuard(newConfig(o), slog.New(slog.NewJSONHandler(&buf, nil)), nil)
		fail := true
		rt := &breakerTransport{g: g, next: &countingRT{fail: func(int32) error {
			if fail {
				return errRefused
			}
			return nil
		}}}
		req, _ := http.NewRequest("GET", "http://backend/", nil)
		_, _ = rt.RoundTrip(req) // opens
		time.Sleep(time.Second + time.Millisecond)
		_ = g.breakerState() // half-open
		fail = false
		if _, err := rt.RoundTrip(req); err != nil { // closes
			t.Fatal(err)
		}
		var got []string
		dec := json.NewDecoder(&buf)
		for dec.More() {
			var rec struct{ Level, From, To string }
			if err := dec.Decode(&rec); err != nil {
				t.Fatal(err)
			}
			got = append(got, rec.Level+" "+rec.To)
		}
		want := []string{"WARN open", "INFO half-open", "INFO closed"}
		if !slices.Equal(got, want) {
			t.Fatalf("breaker log levels %q, want %q", got, want)
		}
	})
}
