package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/verastack/telephone"
	"github.com/verastack/telephone/telephonetest"
	"github.com/verastack/telephone/tokenstore"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	plugboardSecret = strings.Repeat("p", 64)
	storeSecret     = strings.Repeat("s", 32)
)

// env is a concurrency-safe environment for run.
type env struct {
	mu sync.Mutex // guards m
	m  map[string]string
}

func (e *env) get(k string) string { e.mu.Lock(); defer e.mu.Unlock(); return e.m[k] }
func (e *env) set(k, v string)     { e.mu.Lock(); defer e.mu.Unlock(); e.m[k] = v }

func (e *env) load() (func(string) string, error) { return e.get, nil }

// newPlugboard starts an in-memory Plugboard for the test and mints a token for a new path.
func newPlugboard(t *testing.T, opts ...telephonetest.Option) (*telephonetest.Server, telephonetest.Token) {
	t.Helper()
	plugboard := telephonetest.NewServer(opts...)
	t.Cleanup(plugboard.Close)
	tok, err := plugboard.Mint("", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return plugboard, tok
}

func backend(t *testing.T, text string) *httptest.Server {
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, text) }))
	t.Cleanup(b.Close)
	return b
}

// TestSidecar runs the example against an in-memory Plugboard: a request reaches the backend,
// SIGHUP switches the backend without a reconnect, metrics are served, and the token is stored.
func TestSidecar(t *testing.T) {
	plugboard, tok := newPlugboard(t, telephonetest.WithSecret(plugboardSecret))
	db := filepath.Join(t.TempDir(), "telephone.db")
	e := &env{m: map[string]string{
		"PLUGBOARD_URL": plugboard.SocketURL(), "TELEPHONE_TOKEN": tok.Token, "PLUGBOARD_SECRET_KEY_BASE": plugboardSecret,
		"SECRET_KEY_BASE": storeSecret, "TOKEN_DB_PATH": db, "METRICS_ADDR": "127.0.0.1:0",
		"BACKEND_URL": backend(t, "one").URL, "REQUEST_TIMEOUT": "5s",
	}}
	ctx, stop := context.WithCancel(context.Background())
	hup := make(chan os.Signal, 1)
	metricsAddr := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, e.load, hup, slog.New(slog.DiscardHandler), func(a string) { metricsAddr <- a })
	}()
	metricsURL := "http://" + <-metricsAddr + "/metrics"
	wait, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := plugboard.WaitJoined(wait, tok.PathID, 1); err != nil {
		t.Fatal(err)
	}
	call := plugboard.CallURL(tok.PathID) + "/"
	if code, body := get(t, call); code != 200 || body != "one" {
		t.Fatalf("through the tunnel: %d %q", code, body)
	}

	e.set("BACKEND_URL", backend(t, "two").URL)
	hup <- syscall.SIGHUP
	for _, body := get(t, call); body != "two"; _, body = get(t, call) {
		if wait.Err() != nil {
			t.Fatalf("after SIGHUP the backend is still %q", body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	code, metrics := get(t, metricsURL)
	if code != 200 || !strings.Contains(metrics, `telephone_requests_total{method="GET",status="200"}`) {
		t.Errorf("metrics: %d\n%s", code, metrics)
	}
	if !strings.Contains(metrics, "telephone_reconnects_total 0\n") {
		t.Error("the reload reconnected")
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("run = %v", err)
	}

	store, err := tokenstore.OpenSQLite(db, storeSecret, tokenstore.SQLiteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if stored, err := store.Load(context.Background()); err != nil || stored != tok.Token {
		t.Errorf("stored token: %v (same as configured: %v)", err, stored == tok.Token)
	}
}

// TestSidecarRefusesForgedToken: a token signed with another secret is refused before dialing.
func TestSidecarRefusesForgedToken(t *testing.T) {
	plugboard := telephonetest.NewServer(telephonetest.WithSecret(plugboardSecret))
	defer plugboard.Close()
	other := telephonetest.NewServer(telephonetest.WithSecret(strings.Repeat("o", 64)))
	defer other.Close()
	forged, err := other.Mint("", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{m: map[string]string{
		"PLUGBOARD_URL": plugboard.SocketURL(), "TELEPHONE_TOKEN": forged.Token, "PLUGBOARD_SECRET_KEY_BASE": plugboardSecret,
		"SECRET_KEY_BASE": storeSecret, "TOKEN_DB_PATH": filepath.Join(t.TempDir(), "t.db"), "METRICS_ADDR": "127.0.0.1:0",
	}}
	err = run(context.Background(), e.load, nil, slog.New(slog.DiscardHandler), nil)
	if !errors.Is(err, telephone.ErrNoToken) {
		t.Fatalf("run = %v, want ErrNoToken", err)
	}
	if n := plugboard.Joined(forged.PathID); n != 0 {
		t.Errorf("a forged token joined (%d)", n)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// TestEnvLoader: ENV_FILE lines win over the environment and are re-read on every load; an
// unreadable file and a bad REQUEST_TIMEOUT are errors, not silent defaults.
func TestEnvLoader(t *testing.T) {
	t.Setenv("BACKEND_URL", "http://from-env")
	t.Setenv("REQUEST_TIMEOUT", "")
	file := filepath.Join(t.TempDir(), "sidecar.env")
	if err := os.WriteFile(file, []byte("BACKEND_URL=http://from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	getenv, err := envLoader(file)()
	if err != nil || getenv("BACKEND_URL") != "http://from-file" {
		t.Fatalf("file over env: %v %q", err, getenv("BACKEND_URL"))
	}
	if err := os.WriteFile(file, []byte("REQUEST_TIMEOUT=soon\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	getenv, err = envLoader(file)()
	if err != nil || getenv("BACKEND_URL") != "http://from-env" {
		t.Fatalf("re-read: %v %q", err, getenv("BACKEND_URL"))
	}
	if _, err := liveOptions(getenv); err == nil || !strings.Contains(err.Error(), "REQUEST_TIMEOUT") {
		t.Errorf("bad REQUEST_TIMEOUT: %v", err)
	}
	if _, err := envLoader(filepath.Join(t.TempDir(), "missing.env"))(); err == nil {
		t.Error("a missing ENV_FILE must be an error")
	}
}

// TestMainProgram runs main as the program runs: configured by the environment, stopped by
// SIGTERM.
func TestMainProgram(t *testing.T) {
	plugboard, tok := newPlugboard(t, telephonetest.WithSecret(plugboardSecret))
	for k, v := range map[string]string{
		"PLUGBOARD_URL": plugboard.SocketURL(), "TELEPHONE_TOKEN": tok.Token, "PLUGBOARD_SECRET_KEY_BASE": plugboardSecret,
		"SECRET_KEY_BASE": storeSecret, "TOKEN_DB_PATH": filepath.Join(t.TempDir(), "t.db"), "METRICS_ADDR": "127.0.0.1:0",
		"BACKEND_URL": backend(t, "main").URL, "REQUEST_TIMEOUT": "", "ENV_FILE": "",
	} {
		t.Setenv(k, v)
	}
	done := make(chan struct{})
	go func() { defer close(done); main() }()
	wait, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := plugboard.WaitJoined(wait, tok.PathID, 1); err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, plugboard.CallURL(tok.PathID)+"/"); code != 200 || body != "main" {
		t.Errorf("through the tunnel: %d %q", code, body)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil { // main's signal.NotifyContext takes it
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-wait.Done():
		t.Fatal("main did not return after SIGTERM")
	}
}

// TestReloadRefused: a reload with a bad value changes nothing and says why.
func TestReloadRefused(t *testing.T) {
	_, tok := newPlugboard(t) // a token New accepts (Run is never called)
	c, err := telephone.New("ws://127.0.0.1:1/telephone/websocket", telephone.WithToken(tok.Token),
		telephone.WithBackendURL("http://127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	for setting, want := range map[string]string{"REQUEST_TIMEOUT=soon": "REQUEST_TIMEOUT", "BACKEND_URL=ftp://x": "WithBackendURL"} {
		k, v, _ := strings.Cut(setting, "=")
		e := &env{m: map[string]string{k: v}}
		if err := reloadFrom(c, e.load, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v", setting, err)
		}
	}
	failing := func() (func(string) string, error) { return nil, errors.New("unreadable") }
	if err := reloadFrom(c, failing, slog.New(slog.DiscardHandler)); err == nil {
		t.Error("an unreadable configuration must be an error")
	}
}
