package telephone

import (
	"context"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/verastack/telephone/internal/plugtoken"
)

func TestVendingEndpointDefaultsToTheSocketOrigin(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ socket, api, want string }{
		{"wss://pb.example:8443/telephone/websocket?x=1", "", "https://pb.example:8443/api/token-vending/generate"},
		{"ws://127.0.0.1:4000/telephone/websocket", "", "http://127.0.0.1:4000/api/token-vending/generate"},
		{"wss://pb.example/telephone/websocket", "https://api.example/plug/", "https://api.example/plug/api/token-vending/generate"},
	} {
		c, err := New(tc.socket, WithHandler(http.NotFoundHandler()), WithTokenVending(TokenVending{APIKey: "sa_live_x", APIURL: tc.api}))
		if err != nil {
			t.Fatal(err)
		}
		if got := c.tokens.vend.endpoint; got != tc.want {
			t.Errorf("%s %q: %s, want %s", tc.socket, tc.api, got, tc.want)
		}
	}
}

func TestConcurrentDialsVendOnce(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	release := make(chan struct{})
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		calls.Add(1)
		<-release
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"token":"` + testJWT(t) + `"}`))
	}))
	defer api.Close()
	c, err := New("ws://127.0.0.1:1/telephone/websocket", WithHandler(http.NotFoundHandler()),
		WithTokenVending(TokenVending{APIKey: "sa_live_x", APIURL: api.URL}))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.tokens.init(context.Background()); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	ids := make([]string, 4)
	for i := range ids {
		wg.Go(func() {
			tok, err := c.tokens.forDial(context.Background())
			if err != nil {
				t.Error(err)
			}
			ids[i] = tok.claims.ID
		})
	}
	for calls.Load() == 0 {
		runtime.Gosched()
	}
	close(release)
	wg.Wait()
	if calls.Load() != 1 || ids[0] == "" || ids[0] != ids[3] {
		t.Fatalf("%d vends, tokens %v", calls.Load(), ids)
	}
}

// testJWT signs a valid unverified-parse token for a random path.
func testJWT(t *testing.T) string {
	t.Helper()
	now := time.Now()
	tok, err := plugtoken.Sign(plugtoken.Claims{Subject: "u", ID: "jti-1", PathID: "8f0d0b5e-1c2a-4f3b-9d4e-5a6b7c8d9e0f",
		IssuedAt: now, ExpiresAt: now.Add(time.Hour)}, []byte("k"))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
