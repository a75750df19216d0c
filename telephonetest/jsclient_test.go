package telephonetest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// requireTool finds an executable; without it the test is skipped, except on
// CI (CI=true) where a missing tool is a failure.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is required on CI (CI=true): %v", name, err)
	}
	t.Skipf("skipping the Phoenix JS conformance test: %s not found (%v)", name, err)
	return ""
}

// ensureNodeModules runs `npm ci` in dir when node_modules is missing.
func ensureNodeModules(t *testing.T, dir string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "phoenix", "package.json")); err == nil {
		return
	}
	npm := requireTool(t, "npm")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in %s: %v\n%s", dir, err, out)
	}
}

// jsClient is the running node process and its JSON-lines output.
type jsClient struct {
	t      *testing.T
	stdin  io.WriteCloser
	lines  chan map[string]any
	stderr *lockedBuffer
}

type lockedBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// next returns the next line with the given event, failing on an error line,
// on end of output or after the test timeout.
func (j *jsClient) next(event string) map[string]any {
	j.t.Helper()
	timer := time.NewTimer(testTimeout)
	defer timer.Stop()
	for {
		select {
		case m, ok := <-j.lines:
			if !ok {
				j.t.Fatalf("node exited before %q; stderr:\n%s", event, j.stderr)
			}
			if m["event"] == "error" {
				j.t.Fatalf("node client failed: %v; stderr:\n%s", m["why"], j.stderr)
			}
			if m["event"] == event {
				return m
			}
		case <-timer.C:
			j.t.Fatalf("no %q from node; stderr:\n%s", event, j.stderr)
		}
	}
}

func (j *jsClient) command(cmd string) {
	j.t.Helper()
	if _, err := io.WriteString(j.stdin, `{"cmd":"`+cmd+`"}`+"\n"); err != nil {
		j.t.Fatalf("write command %s: %v", cmd, err)
	}
}

// startJSClient starts client.mjs; the process is killed and every goroutine
// joined at the end of the test.
func startJSClient(t *testing.T, s *Server, tok Token) *jsClient {
	node := requireTool(t, "node")
	dir := filepath.Join("testdata", "jsclient")
	ensureNodeModules(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	endpoint := strings.TrimSuffix(s.SocketURL(), "/websocket")
	cmd := exec.CommandContext(ctx, node, "client.mjs", endpoint, tok.Token, tok.PathID)
	cmd.Dir = dir
	cmd.WaitDelay = 5 * time.Second
	j := &jsClient{t: t, lines: make(chan map[string]any, 64), stderr: &lockedBuffer{}}
	cmd.Stderr = j.stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	j.stdin = stdin
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start node: %v", err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { scanJSONLines(t, stdout, j.lines) })
	t.Cleanup(func() {
		cancel() // kills node if still running
		_ = cmd.Wait()
		wg.Wait()
	})
	return j
}

// scanJSONLines decodes stdout lines until EOF, then closes lines.
func scanJSONLines(t *testing.T, r io.Reader, lines chan<- map[string]any) {
	defer close(lines)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Logf("node: %s", sc.Text())
			continue
		}
		select {
		case lines <- m:
		default: // nobody reads any more; keep draining so node never blocks
		}
	}
}

// TestPhoenixJSClientConformance runs the official Phoenix JavaScript client
// (npm phoenix 1.7.21 over ws) against the server: join, a proxied HTTP
// request, a token refresh with rotation, and leave.
func TestPhoenixJSClientConformance(t *testing.T) {
	s := newTestServer(t)
	tok := mint(t, s, "")
	js := startJSClient(t, s, tok)

	open := js.next("open")
	if u, _ := open["url"].(string); !strings.Contains(u, "vsn=2.0.0") {
		t.Errorf("phoenix.js socket URL %q lacks vsn=2.0.0", u)
	}
	joined := js.next("joined")
	resp, _ := joined["resp"].(map[string]any)
	if resp["status"] != "ok" || resp["path"] != "/"+tok.PathID || resp["expires_in"] != float64(3600) {
		t.Errorf("join response = %v", resp)
	}
	waitJoined(t, s, tok.PathID, 1)

	res := goHTTP(t, http.MethodPost, s.CallURL(tok.PathID)+"/api/js?x=1", "hello", http.Header{"X-Test": {"yes"}})
	preq, _ := js.next("proxy_req")["req"].(map[string]any)
	hdrs, _ := preq["headers"].(map[string]any)
	if preq["method"] != "POST" || preq["path"] != "/api/js" || preq["query_string"] != "x=1" ||
		preq["body"] != "hello" || hdrs["x-test"] != "yes" {
		t.Errorf("proxy_req seen by phoenix.js = %v", preq)
	}
	r := await(t, res)
	if r.status != http.StatusCreated || r.header.Get("Content-Type") != "application/json" ||
		r.header.Get("X-Phoenix-JS") != "1.7" {
		t.Errorf("HTTP response = %d %v", r.status, r.header)
	}
	var echoed map[string]string
	if err := json.Unmarshal([]byte(r.body), &echoed); err != nil || echoed["method"] != "POST" ||
		echoed["path"] != "/api/js" || echoed["query"] != "x=1" || echoed["body"] != "hello" {
		t.Errorf("HTTP body = %q (%v)", r.body, err)
	}

	js.command("refresh")
	refreshed := js.next("refreshed")
	newTok, _ := refreshed["token"].(string)
	if newTok == "" || newTok == tok.Token || refreshed["expires_in"] != float64(3600) {
		t.Fatalf("refresh reply = %v", refreshed)
	}
	if got := s.CurrentToken(tok.ID); got != newTok {
		t.Errorf("CurrentToken = %q, want the refreshed token", got)
	}
	if _, status, err := dialRaw(t, socketURLFor(s, tok.Token)); err == nil || status != http.StatusForbidden {
		t.Errorf("old token after refresh: status %d err %v, want 403", status, err)
	}
	c := dial(t, s, newTok)
	c.join(tok.PathID, "1")
	_ = c.c.CloseNow()

	js.command("leave")
	js.next("left")
	js.next("closed")
	waitJoinedExactly(t, s, tok.PathID, 0)
}

// waitJoinedExactly waits until exactly n telephones are joined to the path.
func waitJoinedExactly(t testing.TB, s *Server, pathID string, n int) {
	t.Helper()
	deadline := time.NewTimer(testTimeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		joined, changed := len(s.paths[pathID]), s.changed
		s.mu.Unlock()
		if joined == n {
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("joined = %d, want %d", joined, n)
		}
	}
}
