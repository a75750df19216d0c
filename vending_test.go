package telephone_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/verastack/telephone"
	"github.com/verastack/telephone/telephonetest"
	"github.com/verastack/telephone/tokenstore"
)

// vendClient builds a Client that vends with key against srv; it logs into logs.
func vendClient(t *testing.T, srv *telephonetest.Server, v telephone.TokenVending, logs *syncBuf, opts ...telephone.Option) *telephone.Client {
	t.Helper()
	opts = append([]telephone.Option{
		telephone.WithTokenVending(v),
		telephone.WithPlugboardSecret(srv.SecretKeyBase()),
		telephone.WithHandler(http.NotFoundHandler()),
		telephone.WithReconnectBackoff(10*time.Millisecond, 100*time.Millisecond),
		telephone.WithLogger(slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))),
	}, opts...)
	c, err := telephone.New(srv.SocketURL(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// runClient runs c until the test ends (Shutdown) and returns Run's result channel.
func runClient(t *testing.T, c *telephone.Client) <-chan error {
	done := make(chan error, 1)
	go func() { done <- c.Run(context.Background()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = c.Shutdown(ctx)
	})
	return done
}

// runBounded runs c until it ends on its own, or for at most waitBound: a Client that should
// have stopped but retries instead then returns nil, which fails the caller's check instead of
// hanging the package.
func runBounded(c *telephone.Client) error {
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	return c.Run(ctx)
}

func waitJoinedPath(t *testing.T, srv *telephonetest.Server, path string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.WaitJoined(ctx, path, n); err != nil {
		t.Fatalf("%d telephones did not join %s: %v", n, path, err)
	}
}

func TestVendsAStoredTokenAndReusesItAfterRestart(t *testing.T) {
	t.Parallel()
	srv := telephonetest.NewServer()
	defer srv.Close()
	sa, err := srv.NewServiceAccount("", "workers")
	if err != nil {
		t.Fatal(err)
	}
	store := tokenstore.NewMemory()
	logs := &syncBuf{}
	v := telephone.TokenVending{APIKey: sa.APIKey, InstanceID: "pod-a"}
	c := vendClient(t, srv, v, logs, telephone.WithTokenStore(store))
	done := runClient(t, c)
	waitJoinedPath(t, srv, sa.PathID, 1)
	stored, err := store.Load(context.Background())
	if err != nil || stored == "" {
		t.Fatalf("store after vending: %v", err)
	}
	first := c.Status().TokenID
	if first != tokenID(t, stored) {
		t.Fatalf("stored token %s is not the one in use %s", tokenID(t, stored), first)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Shutdown(ctx); err != nil || <-done != nil {
		t.Fatalf("shutdown: %v", err)
	}
	c2 := vendClient(t, srv, v, logs, telephone.WithTokenStore(store))
	runClient(t, c2)
	waitJoinedPath(t, srv, sa.PathID, 1)
	waitFor(t, func() bool { return c2.Status().Joined })
	if got := c2.Status().TokenID; got != first {
		t.Fatalf("restart vended again: token %s, want the stored %s", got, first)
	}
	if n := strings.Count(logs.String(), "token vended"); n != 1 {
		t.Fatalf("vended %d times, want 1", n)
	}
	if strings.Contains(logs.String(), sa.APIKey) || strings.Contains(logs.String(), stored) {
		t.Fatal("the key or the token appeared in the logs")
	}
}

func TestVendsInsteadOfFailingWhenTheTokenIsRefused(t *testing.T) {
	t.Parallel()
	srv := telephonetest.NewServer()
	defer srv.Close()
	sa, _ := srv.NewServiceAccount("", "")
	tok, _ := srv.Mint(sa.PathID, time.Hour)
	logs := &syncBuf{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(logs.String())
		}
	})
	c := vendClient(t, srv, telephone.TokenVending{APIKey: sa.APIKey, PathID: sa.PathID}, logs, telephone.WithToken(tok.Token))
	done := runClient(t, c)
	waitJoinedPath(t, srv, sa.PathID, 1)
	waitFor(t, func() bool { return c.Status().Joined })
	if got := c.Status().TokenID; got != tokenID(t, tok.Token) {
		t.Fatalf("the configured valid token was not used first: %s", got)
	}
	// Someone refreshes or revokes the configured token and the socket drops: the client
	// vends a new token instead of stopping with ErrTokenRefused.
	srv.Revoke(tok.ID)
	srv.Disconnect(tok.ID)
	// Every session joined again (with the vended token), so that no dial is under way when
	// the sockets are dropped below: one that joined after DropAll would keep Run alive.
	waitFor(t, func() bool {
		st := c.Status()
		return joinedCount(st) == telephone.DefaultConnections && st.TokenID != tokenID(t, tok.Token)
	})
	if !strings.Contains(logs.String(), "token vended") || !strings.Contains(logs.String(), "vending a new one") {
		t.Fatalf("logs:\n%s", logs.String())
	}
	// The key is revoked and the vended token refused too: a refused vended token waits for
	// the backoff, then vending fails with 401 and Run stops with an error naming the key.
	srv.RevokeServiceAccount(sa.ID)
	srv.RefuseTokens(true)
	srv.DropAll()
	var err error
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop after the key was revoked")
	}
	var ve *telephone.VendingError
	if !errors.Is(err, telephone.ErrVendingRefused) || !errors.Is(err, telephone.ErrNoToken) || !errors.As(err, &ve) ||
		ve.StatusCode != 401 || !strings.Contains(err.Error(), "PLUGBOARD_SERVICE_ACCOUNT_KEY") {
		t.Fatalf("Run = %v", err)
	}
	if strings.Contains(err.Error(), sa.APIKey) || strings.Contains(logs.String(), sa.APIKey) {
		t.Fatal("the key leaked")
	}
}

func TestVendingRefusals(t *testing.T) {
	t.Parallel()
	srv := telephonetest.NewServer()
	defer srv.Close()
	sa, _ := srv.NewServiceAccount("", "")
	other := telephonetest.NewPathID()
	for _, tc := range []struct {
		name   string
		v      telephone.TokenVending
		status int
		want   []string
	}{
		{"unknown key", telephone.TokenVending{APIKey: "sa_live_nope"}, 401, []string{"PLUGBOARD_SERVICE_ACCOUNT_KEY", "Invalid or revoked"}},
		{"other path", telephone.TokenVending{APIKey: sa.APIKey, PathID: other}, 403, []string{sa.PathID, other, "PLUGBOARD_PATH_ID"}},
		{"wrong API URL", telephone.TokenVending{APIKey: sa.APIKey, APIURL: srv.URL() + "/nothing"}, 404, []string{"PLUGBOARD_API_URL"}},
	} {
		c := vendClient(t, srv, tc.v, &syncBuf{})
		err := runBounded(c) // a refusal that were retried would end the bound with nil
		var ve *telephone.VendingError
		if !errors.As(err, &ve) || ve.StatusCode != tc.status || !errors.Is(err, telephone.ErrVendingRefused) {
			t.Errorf("%s: Run = %v", tc.name, err)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q does not mention %q", tc.name, err, w)
			}
		}
	}
}

func TestVendingRetriesServerErrors(t *testing.T) {
	t.Parallel()
	srv := telephonetest.NewServer()
	defer srv.Close()
	sa, _ := srv.NewServiceAccount("", "")
	var calls atomic.Int32
	// The API origin fails the first vends with 503, 422 and bad 201 bodies, then passes through.
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch calls.Add(1) {
		case 1:
			http.Error(w, "upstream down", http.StatusServiceUnavailable)
		case 2:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnprocessableEntity)
			_, _ = w.Write([]byte(`{"error":"Failed to generate token","details":{}}`))
		case 3:
			w.WriteHeader(http.StatusCreated)
			_, _ = w.Write([]byte(`{"token":"not a jwt"}`))
		case 4:
			w.WriteHeader(http.StatusCreated)
			_, _ = w.Write([]byte(`{}`))
		default:
			srv.Handler().ServeHTTP(w, r)
		}
	}))
	defer api.Close()
	logs := &syncBuf{}
	c := vendClient(t, srv, telephone.TokenVending{APIKey: sa.APIKey, APIURL: api.URL}, logs)
	runClient(t, c)
	waitJoinedPath(t, srv, sa.PathID, 1)
	if calls.Load() != 5 {
		t.Fatalf("%d vending calls, want 5", calls.Load())
	}
	// Each failure is logged by the session that tried, after the vending call has returned,
	// so a line may still be on its way when another session has joined.
	for _, w := range []string{"503", "422", "Failed to generate token", "invalid token", "answered 201"} {
		waitFor(t, func() bool { return strings.Contains(logs.String(), w) })
	}
}

func TestSharedTokenRefusalIsExplainedOnce(t *testing.T) {
	t.Parallel()
	srv := telephonetest.NewServer()
	defer srv.Close()
	tok, _ := srv.Mint(telephonetest.NewPathID(), time.Hour)
	store := tokenstore.NewMemory()
	// The store holds an older token of the same path, refused too.
	old, _ := srv.Mint(tok.PathID, time.Hour)
	if err := store.Save(context.Background(), old.Token, old.ExpiresAt); err != nil {
		t.Fatal(err)
	}
	srv.Revoke(tok.ID) // what another replica's refresh looks like to this one: 403
	srv.Revoke(old.ID)
	logs := &syncBuf{}
	c, err := telephone.New(srv.SocketURL(), telephone.WithToken(tok.Token), telephone.WithTokenStore(store),
		telephone.WithHandler(http.NotFoundHandler()),
		telephone.WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	if err := runBounded(c); !errors.Is(err, telephone.ErrTokenRefused) {
		t.Fatalf("Run = %v", err)
	}
	if n := strings.Count(logs.String(), "level=ERROR msg=\"Plugboard refused a token that has not expired"); n != 1 {
		t.Fatalf("%d explanations, want 1:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "PLUGBOARD_SERVICE_ACCOUNT_KEY") {
		t.Fatalf("the explanation does not say how to fix it:\n%s", logs.String())
	}
}

func TestStoredTokenForAnotherPathIsNotUsed(t *testing.T) {
	t.Parallel()
	srv := telephonetest.NewServer()
	defer srv.Close()
	sa, _ := srv.NewServiceAccount("", "")
	elsewhere, _ := srv.Mint(telephonetest.NewPathID(), time.Hour)
	store := tokenstore.NewMemory()
	_ = store.Save(context.Background(), elsewhere.Token, elsewhere.ExpiresAt)
	logs := &syncBuf{}
	c := vendClient(t, srv, telephone.TokenVending{APIKey: sa.APIKey, PathID: sa.PathID}, logs, telephone.WithTokenStore(store))
	runClient(t, c)
	waitJoinedPath(t, srv, sa.PathID, 1)
	if srv.Joined(elsewhere.PathID) != 0 || !strings.Contains(logs.String(), "another path than PLUGBOARD_PATH_ID") {
		t.Fatalf("logs:\n%s", logs.String())
	}
}

func TestWithTokenVendingValidates(t *testing.T) {
	t.Parallel()
	for _, v := range []telephone.TokenVending{
		{},
		{APIKey: "sa_live_a b"},
		{APIKey: "sa_live_a\n"},
		{APIKey: "sa_live_secret", APIURL: "ftp://x"},
		{APIKey: "sa_live_secret", APIURL: "http://"},
		{APIKey: "sa_live_secret", APIURL: "http://x/?q=1"},
		{APIKey: "sa_live_secret", APIURL: "http://user:pw@x"},
		{APIKey: "sa_live_secret", APIURL: "%zz"},
		{APIKey: "sa_live_secret", PathID: "not-a-uuid"},
		{APIKey: "sa_live_secret", PathID: "AAAAAAAA-BBBB-4CCC-8DDD-EEEEEEEEEEEE"},
	} {
		_, err := telephone.New("ws://x/telephone/websocket", telephone.WithTokenVending(v), telephone.WithHandler(http.NotFoundHandler()))
		var oe *telephone.OptionError
		if !errors.As(err, &oe) || oe.Option != "WithTokenVending" {
			t.Errorf("%+v: %v", v, err)
		}
		if v.APIKey != "" && strings.Contains(err.Error(), v.APIKey) {
			t.Errorf("the error shows the key: %v", err)
		}
	}
	// An empty WithToken (TELEPHONE_TOKEN unset) is fine when vending can supply a token.
	if _, err := telephone.New("ws://x/telephone/websocket", telephone.WithToken(""), telephone.WithHandler(http.NotFoundHandler()),
		telephone.WithTokenVending(telephone.TokenVending{APIKey: "sa_live_k"})); err != nil {
		t.Errorf("WithToken(\"\") with vending: %v", err)
	}
}

// TestTokenSharedWithARefreshingReplicaIsExplained runs what two replicas sharing one token
// do: the first refreshes it (Plugboard rotates the record), then the second starts with the
// configured token, is refused, and says why and how to fix it.
func TestTokenSharedWithARefreshingReplicaIsExplained(t *testing.T) {
	t.Parallel()
	srv := telephonetest.NewServer()
	defer srv.Close()
	// Issued an hour ago for two hours: due for refresh at once, valid for an hour more.
	shared, err := srv.MintIssuedAt(telephonetest.NewPathID(), time.Now().Add(-time.Hour), 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	first, err := telephone.New(srv.SocketURL(), telephone.WithToken(shared.Token), telephone.WithHandler(http.NotFoundHandler()))
	if err != nil {
		t.Fatal(err)
	}
	runClient(t, first)
	waitFor(t, func() bool { return !first.Status().LastRefresh.IsZero() })
	logs := &syncBuf{}
	second, _ := telephone.New(srv.SocketURL(), telephone.WithToken(shared.Token), telephone.WithHandler(http.NotFoundHandler()),
		telephone.WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	if err := runBounded(second); !errors.Is(err, telephone.ErrTokenRefused) {
		t.Fatalf("second replica: Run = %v", err)
	}
	if n := strings.Count(logs.String(), "most likely another telephone holding the same token refreshed it"); n != 1 {
		t.Fatalf("%d explanations, want 1:\n%s", n, logs.String())
	}
	// The first replica still serves, on all its connections (the last may still be joining).
	waitFor(t, func() bool { return srv.Joined(shared.PathID) == telephone.DefaultConnections })
}
