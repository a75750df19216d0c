package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/verastack/telephone"
	"github.com/verastack/telephone/telephonetest"
)

// runEnv is a valid environment for `telephone run` against srv with a fresh token.
func runEnv(t *testing.T, srv *telephonetest.Server, backendURL string, extra ...string) (map[string]string, telephonetest.Token) {
	t.Helper()
	tok, err := srv.Mint("", 0)
	if err != nil {
		t.Fatal(err)
	}
	env := base(append([]string{"PLUGBOARD_URL", srv.SocketURL(), "TELEPHONE_TOKEN", tok.Token, "BACKEND_URL", backendURL}, extra...)...)
	return env, tok
}

func waitJoined(t *testing.T, srv *telephonetest.Server, pathID string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := srv.WaitJoined(ctx, pathID, 1); err != nil {
		t.Fatalf("join: %v", err)
	}
}

// logField decodes a JSON log line and returns one attribute.
func logField(t *testing.T, line, key string) any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		t.Fatalf("log line %q: %v", line, err)
	}
	return m[key]
}

// TestRunReload changes the environment and sends SIGHUP: the log level, the rate limit and
// the backend change without a reconnect; a restart-only setting is reported.
func TestRunReload(t *testing.T) {
	t.Parallel()
	srv := newPlugboard(t)
	one, two := okBackend(t, "one"), okBackend(t, "two")
	env, tok := runEnv(t, srv, one.URL, "OPS_ADDR", "127.0.0.1:0", "LOG_FORMAT", "json", "INSPECT_ADDR", "127.0.0.1:0")
	tc := newTestCLI(env, nil)
	code := tc.start("run")
	inspectURL := logField(t, tc.errOut.waitLine(t, "request inspector listening"), "url").(string)
	waitJoined(t, srv, tok.PathID)
	for i := range telephone.DefaultConnections { // every session, before counting joins below
		tc.errOut.waitLine(t, fmt.Sprintf(`"msg":"joined Plugboard","session":%d`, i))
	}
	opsLine := tc.errOut.waitLine(t, "operations server listening")
	opsURL := logField(t, opsLine, "url").(string)
	if addr := logField(t, opsLine, "addr"); "http://"+addr.(string) != opsURL || strings.HasSuffix(opsURL, ":0") {
		t.Errorf("the operations server must log the address it bound: %s", opsLine)
	}
	call := srv.CallURL(tok.PathID) + "/"
	if c, _, body := get(t, http.MethodGet, call, nil); c != 200 || body != "one" {
		t.Fatalf("before reload: %d %q", c, body)
	}
	if strings.Contains(tc.errOut.String(), `"level":"DEBUG"`) {
		t.Fatal("debug record at level info")
	}

	tc.setEnv("BACKEND_URL", two.URL)
	tc.setEnv("RATE_LIMIT", "0.001")
	tc.setEnv("RATE_BURST", "1")
	tc.setEnv("LOG_LEVEL", "debug")
	tc.setEnv("CONNECT_TIMEOUT", "20s")
	tc.sigs <- syscall.SIGHUP
	applied := logField(t, tc.errOut.waitLine(t, "configuration reloaded"), "applied")
	if got, _ := json.Marshal(applied); string(got) != `["BACKEND_URL","RATE_LIMIT","RATE_BURST","LOG_LEVEL"]` {
		t.Errorf("applied %s", got)
	}
	restart := tc.errOut.waitLine(t, "take effect only after a restart")
	if !strings.Contains(restart, `"settings":["CONNECT_TIMEOUT"]`) {
		t.Errorf("restart line %q", restart)
	}
	tc.errOut.waitLine(t, `"level":"DEBUG"`)
	if c, _, body := get(t, http.MethodGet, call, nil); c != 200 || body != "two" {
		t.Errorf("after reload: %d %q, want the new backend", c, body)
	}
	// The inspector's replay of the first request follows the backend too.
	replay, err := http.NewRequest(http.MethodPost, inspectURL+"entries/1/replay", nil)
	if err != nil {
		t.Fatal(err)
	}
	replay.Header.Set("X-Telephone-Inspector", "replay")
	if res, err := httpClient.Do(replay); err != nil {
		t.Error(err)
	} else {
		var rr struct {
			Status int
			Body   struct{ Text string }
		}
		err := json.NewDecoder(res.Body).Decode(&rr)
		res.Body.Close()
		if err != nil || rr.Status != 200 || rr.Body.Text != "two" {
			t.Errorf("replay after reload: %+v (%v), want the new backend's answer", rr, err)
		}
	}
	if c, hdr, _ := get(t, http.MethodGet, call, nil); c != http.StatusTooManyRequests || hdr.Get("Retry-After") == "" {
		t.Errorf("after reload, over the new rate: %d, want 429 with Retry-After", c)
	}
	_, _, body := get(t, http.MethodGet, opsURL+"/health", nil)
	var h healthBody
	if err := json.Unmarshal([]byte(body), &h); err != nil || !h.Connected || h.Reconnects != 0 {
		t.Errorf("health after reload %q (%v): the connection must be unchanged", body, err)
	}
	if n := strings.Count(tc.errOut.String(), "joined Plugboard"); n != telephone.DefaultConnections {
		t.Errorf("joined %d times, want once per connection (%d)", n, telephone.DefaultConnections)
	}

	tc.setEnv("BACKEND_PORT", "0")
	tc.sigs <- syscall.SIGHUP
	if line := tc.errOut.waitLine(t, "reload: invalid configuration"); !strings.Contains(line, "BACKEND_PORT") {
		t.Errorf("invalid reload line %q", line)
	}
	tc.sigs <- syscall.SIGTERM
	if c := waitCode(t, code); c != 0 {
		t.Fatalf("exit code %d; stderr:\n%s", c, tc.errOut)
	}
	tc.errOut.waitLine(t, `"msg":"telephone stopped","exit_code":0`)
}

// newTestRunner starts a runner against a new Plugboard, logging JSON into logs; it is
// finished when the test ends. env is its environment, after edit (when not nil) changed it.
func newTestRunner(t *testing.T, edit func(srv *telephonetest.Server, env map[string]string)) (r *runner, logs *lineBuf, level *slog.LevelVar, env map[string]string) {
	t.Helper()
	srv := newPlugboard(t)
	env, _ = runEnv(t, srv, "http://127.0.0.1:1")
	if edit != nil {
		edit(srv, env)
	}
	cfg, errs := load(env, nil)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	level, logs = new(slog.LevelVar), newLineBuf()
	r, code := startRunner(cfg, newLogger(logs, logConfig{Format: "json", Level: level}), level)
	if r == nil {
		t.Fatalf("startRunner: %d", code)
	}
	t.Cleanup(func() { r.finish(0) })
	return r, logs, level, env
}

// TestRunnerReload exercises reload on a runner directly.
func TestRunnerReload(t *testing.T) {
	t.Parallel()
	r, logs, level, env := newTestRunner(t, nil)
	cfg := r.cfg
	reload := func(extra ...string) {
		next := map[string]string{}
		for k, v := range env {
			next[k] = v
		}
		for i := 0; i+1 < len(extra); i += 2 {
			next[extra[i]] = extra[i+1]
		}
		r.reload(load(next, nil))
	}

	reload("RATE_LIMIT", "5", "RATE_BURST", "6", "REQUEST_TIMEOUT", "2s", "SHUTDOWN_TIMEOUT", "1s", "LOG_LEVEL", "debug")
	st := r.client.Status()
	if st.Limits.RateLimit != 5 || st.Limits.RateBurst != 6 || r.cfg.RequestTimeout.Seconds() != 2 ||
		r.cfg.ShutdownTimeout.Seconds() != 1 || level.Level() != slog.LevelDebug {
		t.Fatalf("after reload: limits %+v cfg %+v level %v", st.Limits, r.cfg, level.Level())
	}

	reload("RATE_LIMIT", "5", "RATE_BURST", "6", "REQUEST_TIMEOUT", "2s", "SHUTDOWN_TIMEOUT", "1s", "LOG_LEVEL", "debug", "CHUNK_SIZE", "64")
	logs.waitLine(t, "reload: no setting that can change live has changed")
	if r.cfg.ChunkSize != cfg.ChunkSize {
		t.Error("a restart-only setting changed in the running configuration")
	}

	// The running chunk size (1 MiB) exceeds the new response size: the client refuses it.
	reload("MAX_RESPONSE_SIZE", "100", "CHUNK_SIZE", "50", "LOG_LEVEL", "debug")
	logs.waitLine(t, "the client refused the new settings")
	if r.cfg.MaxResponseSize != cfg.MaxResponseSize || r.client.Status().Limits.RateLimit != 5 {
		t.Error("a refused reload changed something")
	}

	reload("RATE_LIMIT", "nope", "LOG_LEVEL", "debug")
	logs.waitLine(t, "reload: invalid configuration; nothing changed")
	if r.client.Status().Limits.RateLimit != 5 {
		t.Error("an invalid reload changed the rate")
	}
}

// TestRunForcedExit sends a second signal while a request is draining.
func TestRunForcedExit(t *testing.T) {
	t.Parallel()
	backend, entered := blockingBackend(t)
	srv := newPlugboard(t)
	env, tok := runEnv(t, srv, backend.URL, "LOG_FORMAT", "json")
	tc := newTestCLI(env, nil)
	code := tc.start()
	waitJoined(t, srv, tok.PathID)
	answered := make(chan int, 1)
	go func() {
		c, _, _ := get(t, http.MethodGet, srv.CallURL(tok.PathID)+"/slow", nil)
		answered <- c
	}()
	<-entered
	tc.sigs <- syscall.SIGINT
	tc.errOut.waitLine(t, "shutting down: draining")
	tc.sigs <- syscall.SIGHUP
	tc.errOut.waitLine(t, "ignoring SIGHUP during shutdown")
	tc.sigs <- syscall.SIGTERM
	if c := waitCode(t, code); c != 1 {
		t.Fatalf("forced exit code %d, want 1", c)
	}
	tc.errOut.waitLine(t, "second signal: forcing exit")
	if c := <-answered; c == 200 {
		t.Errorf("the in-flight request was answered 200 after a forced exit")
	}
}

// TestRunShutdownGraceOver lets SHUTDOWN_TIMEOUT pass with a request in flight.
func TestRunShutdownGraceOver(t *testing.T) {
	t.Parallel()
	entered := make(chan struct{})
	backend := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-r.Context().Done()
	})
	srv := newPlugboard(t)
	env, tok := runEnv(t, srv, backend.URL, "SHUTDOWN_TIMEOUT", "100ms")
	tc := newTestCLI(env, nil)
	code := tc.start("run")
	waitJoined(t, srv, tok.PathID)
	answered := make(chan int, 1)
	go func() {
		c, _, _ := get(t, http.MethodGet, srv.CallURL(tok.PathID)+"/slow", nil)
		answered <- c
	}()
	<-entered
	tc.sigs <- syscall.SIGTERM
	if c := waitCode(t, code); c != 0 {
		t.Fatalf("exit code %d, want 0", c)
	}
	tc.errOut.waitLine(t, "shutdown grace period over")
	<-answered
}

func TestRunFailures(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busy.Close() })
	srv := newPlugboard(t)
	refusing := newPlugboard(t)
	refusing.RefuseTokens(true)
	backend := okBackend(t, "x").URL
	secret := strings.Repeat("s", 32)
	tests := []struct {
		name string
		srv  *telephonetest.Server
		env  []string
		drop []string
		code int
		want string
	}{
		{"token refused", refusing, nil, nil, 1, "Plugboard refused every token"},
		{"no usable token", srv, []string{"SECRET_KEY_BASE", secret, "TOKEN_DB_PATH", "empty.db"}, []string{"TELEPHONE_TOKEN"}, 1, "no usable token"},
		{"malformed token", srv, []string{"TELEPHONE_TOKEN", "abc"}, nil, 2, "TELEPHONE_TOKEN: not a Plugboard token (malformed token"},
		{"store cannot open", srv, []string{"SECRET_KEY_BASE", secret, "TOKEN_DB_PATH", "."}, nil, 1, "cannot open the token store"},
		{"ops address busy", srv, []string{"OPS_ADDR", busy.Addr().String()}, nil, 1, "cannot start the operations server"},
		{"bad configuration", srv, []string{"BACKEND_URL", "ftp://x", "CHUNK_SIZE", "1"}, nil, 2,
			"telephone: invalid configuration:\n  BACKEND_URL: scheme must be http or https, got \"ftp\" (from environment)\n  CHUNK_SIZE: must be between 4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env, _ := runEnv(t, tt.srv, backend, tt.env...)
			for _, k := range tt.drop {
				delete(env, k)
			}
			if p := env["TOKEN_DB_PATH"]; p != "" {
				env["TOKEN_DB_PATH"] = filepath.Join(t.TempDir(), p)
			}
			tc := newTestCLI(env, nil)
			if c := waitCode(t, tc.start("run")); c != tt.code {
				t.Fatalf("exit code %d, want %d; stderr:\n%s", c, tt.code, tc.errOut)
			}
			if !strings.Contains(tc.errOut.String(), tt.want) {
				t.Errorf("stderr lacks %q:\n%s", tt.want, tc.errOut)
			}
		})
	}
}

// TestRunOriginalEnvironment runs in-process with only the original sidecar's variables,
// then restarts and resumes with the refreshed token stored in TOKEN_DB_PATH.
func TestRunOriginalEnvironment(t *testing.T) {
	t.Parallel()
	srv := newPlugboard(t)
	tok, err := srv.Mint("", 0)
	if err != nil {
		t.Fatal(err)
	}
	backend := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Method+" "+r.URL.RequestURI())
	})
	host, port, _ := net.SplitHostPort(strings.TrimPrefix(backend.URL, "http://"))
	db := filepath.Join(t.TempDir(), "telephone.db")
	env := originalEnv(srv.SocketURL(), tok.Token, host, port, db, "0")
	for round := range 2 {
		tc := newTestCLI(env, nil)
		code := tc.start()
		waitJoined(t, srv, tok.PathID)
		if c, _, body := get(t, http.MethodGet, srv.CallURL(tok.PathID)+"/a/b/?q=1", nil); c != 200 || body != "GET /a/b/?q=1" {
			t.Fatalf("round %d: %d %q", round, c, body)
		}
		tc.sigs <- syscall.SIGTERM
		if c := waitCode(t, code); c != 0 {
			t.Fatalf("round %d: exit %d; stderr:\n%s", round, c, tc.errOut)
		}
		if !strings.Contains(tc.errOut.String(), "MAX_RETRIES is accepted for compatibility only") {
			t.Errorf("round %d: no MAX_RETRIES note", round)
		}
		// The second round must work without the original token: it uses the stored one.
		env["TELEPHONE_TOKEN"] = ""
		eventually(t, "the channel to end", func() bool { return srv.Joined(tok.PathID) == 0 })
	}
}
