package telephone_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/verastack/telephone"
	"github.com/verastack/telephone/telephonetest"
	"github.com/verastack/telephone/tokenstore"
	"github.com/verastack/telephone/transport"
)

// TestRefreshRotatesTokenAcrossReconnectAndRestart runs against telephonetest: after a
// refresh the old token is refused for new sockets, the client reconnects with the new one,
// the SQLite store holds it, and a restarted client picks it up.
func TestRefreshRotatesTokenAcrossReconnectAndRestart(t *testing.T) {
	t.Parallel()
	srv := telephonetest.NewServer()
	defer srv.Close()
	path := telephonetest.NewPathID()
	// Issued an hour ago for two hours: past its half-life, so refreshed a second after the
	// join, and valid for an hour however slow the machine is.
	tok, err := srv.MintIssuedAt(path, time.Now().Add(-time.Hour), 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dbPath := filepath.Join(t.TempDir(), "telephone.db")
	store, err := tokenstore.OpenSQLite(dbPath, strings.Repeat("s", 64), tokenstore.SQLiteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	logs := &syncBuf{}
	newClient := func() *telephone.Client {
		c, err := telephone.New(srv.SocketURL(), telephone.WithToken(tok.Token), telephone.WithTokenStore(store),
			telephone.WithPlugboardSecret(srv.SecretKeyBase()), telephone.WithHandler(http.NotFoundHandler()),
			telephone.WithReconnectBackoff(10*time.Millisecond, 100*time.Millisecond),
			telephone.WithLogger(slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := newClient()
	done := make(chan error, 1)
	go func() { done <- c.Run(context.Background()) }()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("status %+v\nclient log:\n%s", c.Status(), logs.String())
		}
	})
	waitForWithin(t, 30*time.Second, func() bool { return !c.Status().LastRefresh.IsZero() })
	rotated := srv.CurrentToken(tok.ID)
	if rotated == tok.Token {
		t.Fatal("server did not rotate the token")
	}
	if stored, err := store.Load(context.Background()); err != nil || stored != rotated {
		t.Fatalf("store holds %d-byte token, err %v; want the rotated one", len(stored), err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	if conn, err := transport.Dial(ctx, srv.SocketURL(), transport.Options{Token: tok.Token}); !errors.Is(err, transport.ErrUnauthorized) {
		if conn != nil {
			conn.CloseNow()
		}
		t.Fatalf("old token after refresh: %v, want 403", err)
	}
	srv.DropAll()
	waitFor(t, func() bool { return c.Status().Reconnects > 0 && srv.Joined(path) == telephone.DefaultConnections })
	if err := c.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	// Restart with the same configuration (the old, refused token configured): the stored
	// refreshed token is newer and is used.
	c2 := newClient()
	go func() { done <- c2.Run(context.Background()) }()
	if err := srv.WaitJoined(ctx, path, 1); err != nil {
		t.Fatalf("restarted client did not join: %v", err)
	}
	if err := c2.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("restarted Run: %v", err)
	}
	for _, secret := range []string{tok.Token, rotated} {
		if strings.Contains(logs.String(), secret) {
			t.Fatal("a token appeared in the logs")
		}
	}
}

func TestRefusedTokenIsNotLogged(t *testing.T) {
	t.Parallel()
	srv := telephonetest.NewServer()
	defer srv.Close()
	tok, _ := srv.Mint(telephonetest.NewPathID(), time.Hour)
	srv.RefuseTokens(true)
	logs := &syncBuf{}
	c, _ := telephone.New(srv.SocketURL(), telephone.WithToken(tok.Token), telephone.WithHandler(http.NotFoundHandler()),
		telephone.WithLogger(slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	err := c.Run(context.Background())
	if !errors.Is(err, telephone.ErrTokenRefused) || strings.Contains(err.Error(), tok.Token) {
		t.Fatalf("Run = %v", err)
	}
	if strings.Contains(logs.String(), tok.Token) || !strings.Contains(logs.String(), "REDACTED") {
		t.Fatalf("logs leak the token or lack the redacted URL:\n%s", logs.String())
	}
}

// TestEmptyTokenWithStore is the README's pattern: WithToken(os.Getenv(...)) with the variable
// unset next to a store. New accepts it and Run uses the stored token; with an empty store Run
// returns ErrNoToken; without a store New refuses the empty token.
func TestEmptyTokenWithStore(t *testing.T) {
	t.Parallel()
	srv := telephonetest.NewServer()
	defer srv.Close()
	tok, _ := srv.Mint(telephonetest.NewPathID(), time.Hour)
	store := tokenstore.NewMemory()
	if err := store.Save(context.Background(), tok.Token, tok.ExpiresAt); err != nil {
		t.Fatal(err)
	}
	c, err := telephone.New(srv.SocketURL(), telephone.WithToken(""), telephone.WithTokenStore(store),
		telephone.WithHandler(http.NotFoundHandler()))
	if err != nil {
		t.Fatalf("New with an empty token and a store: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(context.Background()) }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.WaitJoined(ctx, tok.PathID, 1); err != nil {
		t.Fatalf("the stored token did not join: %v", err)
	}
	if err := c.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}

	empty, err := telephone.New(srv.SocketURL(), telephone.WithToken(""), telephone.WithTokenStore(tokenstore.NewMemory()),
		telephone.WithHandler(http.NotFoundHandler()))
	if err != nil {
		t.Fatal(err)
	}
	if err := empty.Run(context.Background()); !errors.Is(err, telephone.ErrNoToken) {
		t.Fatalf("Run with an empty store = %v, want ErrNoToken", err)
	}
	_, err = telephone.New(srv.SocketURL(), telephone.WithToken(""), telephone.WithHandler(http.NotFoundHandler()))
	var oe *telephone.OptionError
	if !errors.As(err, &oe) || oe.Option != "WithToken" || !strings.Contains(oe.Reason, "WithTokenStore") {
		t.Fatalf("New with an empty token and no store = %v", err)
	}
}
