package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// testTimeout bounds every wait in these tests.
const testTimeout = 60 * time.Second

// binPath is the telephone binary built once by TestMain for the cross-process tests, without
// VCS stamping and with the version and commit given as ldflags (as make build does).
var binPath string

// The version and commit TestMain stamps into the binary.
const (
	testBuildVersion = "v0.0.0-test"
	testBuildCommit  = "0123456789abcdef0123456789abcdef01234567"
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "telephone-cli-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "telephone")
	build := exec.Command("go", "build", "-buildvcs=false",
		"-ldflags", "-X main.version="+testBuildVersion+" -X main.commit="+testBuildCommit, "-o", binPath, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the telephone binary:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	// The cleanup runs instead of goleak's own os.Exit: it must exit with the code it is given,
	// or a leak found after the tests passed would not fail the package.
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		os.RemoveAll(dir)
		os.Exit(code)
	}))
}

// lineBuf is an io.Writer that tests can wait on for a line; safe for concurrent use.
type lineBuf struct {
	mu      sync.Mutex // guards buf and changed
	buf     bytes.Buffer
	changed chan struct{} // closed and replaced on every Write
	writes  int           // number of Write calls
}

// Writes returns the number of Write calls so far.
func (b *lineBuf) Writes() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.writes
}

func newLineBuf() *lineBuf { return &lineBuf{changed: make(chan struct{})} }

func (b *lineBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	close(b.changed)
	b.changed = make(chan struct{})
	b.writes++
	return b.buf.Write(p)
}

func (b *lineBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitLine waits for a complete line containing substr and returns it.
func (b *lineBuf) waitLine(t *testing.T, substr string) string {
	t.Helper()
	deadline := time.NewTimer(testTimeout)
	defer deadline.Stop()
	for {
		b.mu.Lock()
		text, changed := b.buf.String(), b.changed
		b.mu.Unlock()
		for _, line := range strings.SplitAfter(text, "\n") {
			if strings.HasSuffix(line, "\n") && strings.Contains(line, substr) {
				return strings.TrimSuffix(line, "\n")
			}
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("no line containing %q within %v; output:\n%s", substr, testTimeout, text)
		}
	}
}

// field returns the value of key=value in a READY line.
func field(t *testing.T, line, key string) string {
	t.Helper()
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return v
		}
	}
	t.Fatalf("no %s= in %q", key, line)
	return ""
}

// httpClient does not keep connections, so no transport goroutine outlives a test.
var httpClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: testTimeout}

// get performs a request and returns the status and the body.
func get(t *testing.T, method, url string, body io.Reader) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	res, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, res.Header, string(b)
}

// freePort returns a TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// testCLI is an in-process cli with its own environment, files, output and signals.
type testCLI struct {
	cli
	out, errOut *lineBuf
	sigs        chan os.Signal
	mu          sync.Mutex // guards env
	env         map[string]string
}

func newTestCLI(env map[string]string, files map[string]string) *testCLI {
	tc := &testCLI{out: newLineBuf(), errOut: newLineBuf(), sigs: make(chan os.Signal, 4), env: env}
	tc.cli = cli{
		stdout:   tc.out,
		stderr:   tc.errOut,
		environ:  tc.environ,
		readFile: fakeFiles(files),
		signals:  tc.sigs,
	}
	return tc
}

func (tc *testCLI) environ() map[string]string {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	m := make(map[string]string, len(tc.env))
	for k, v := range tc.env {
		m[k] = v
	}
	return m
}

func (tc *testCLI) setEnv(k, v string) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	tc.env[k] = v
}

// start runs args in a goroutine; the returned channel yields the exit code.
func (tc *testCLI) start(args ...string) <-chan int {
	code := make(chan int, 1)
	go func() { code <- tc.main(args) }()
	return code
}

// waitCode waits for the exit code of a started command.
func waitCode(t *testing.T, code <-chan int) int {
	t.Helper()
	select {
	case c := <-code:
		return c
	case <-time.After(testTimeout):
		t.Fatalf("command did not exit within %v", testTimeout)
		return -1
	}
}

// fakeFiles returns a ReadFile over a map; a missing name is fs.ErrNotExist.
func fakeFiles(files map[string]string) func(string) ([]byte, error) {
	return func(name string) ([]byte, error) {
		if s, ok := files[name]; ok {
			return []byte(s), nil
		}
		return nil, fmt.Errorf("open %s: %w", name, fs.ErrNotExist)
	}
}

// proc is a started binary.
type proc struct {
	cmd         *exec.Cmd
	out, errOut *lineBuf
	done        chan struct{} // closed when the process has exited
	err         error         // cmd.Wait's result; read after done
}

// startBinary starts the built binary with exactly env; it is killed when the test ends.
func startBinary(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(binPath, args...), out: newLineBuf(), errOut: newLineBuf(), done: make(chan struct{})}
	p.cmd.Env = env
	p.cmd.Dir = t.TempDir()
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.errOut
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

// signal sends sig to the process.
func (p *proc) signal(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(t *testing.T) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	select {
	case <-p.done:
	case <-ctx.Done():
		t.Fatalf("process did not exit; stderr:\n%s", p.errOut)
	}
	if p.err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	t.Fatalf("wait: %v", p.err)
	return -1
}

func TestCommands(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args     []string
		code     int
		stdout   string
		stderr   string
		noStdout bool
	}{
		{args: []string{"version"}, code: 0, stdout: "telephone "},
		{args: []string{"--version"}, code: 0, stdout: "telephone "},
		{args: []string{"-v"}, code: 0, stdout: "telephone "},
		{args: []string{"help"}, code: 0, stdout: "telephone token-check"},
		{args: []string{"--help"}, code: 0, stdout: "telephone devserver"},
		{args: []string{"-h"}, code: 0, stdout: "telephone demo"},
		{args: []string{"frobnicate"}, code: 2, stderr: `unknown command "frobnicate"`, noStdout: true},
		{args: []string{"run", "-h"}, code: 0, stdout: "PLUGBOARD_URL"},
		{args: []string{"run", "--help"}, code: 0, stdout: "--backend-port"},
		{args: []string{"demo", "-h"}, code: 0, stdout: "-addr"},
		{args: []string{"devserver", "--help"}, code: 0, stdout: "-secret"},
		{args: []string{"token-check", "-h"}, code: 0, stdout: "-db"},
		{args: []string{"run", "extra"}, code: 2, stderr: `unexpected argument "extra"`},
		{args: []string{"--nope"}, code: 2, stderr: "flag provided but not defined: -nope"},
		{args: []string{"demo", "--nope"}, code: 2, stderr: "flag provided but not defined"},
		{args: []string{"demo", "extra"}, code: 2, stderr: `unexpected argument "extra"`},
		{args: []string{"demo", "--log-level", "loud"}, code: 2, stderr: "--log-level: must be debug"},
		{args: []string{"devserver", "extra"}, code: 2, stderr: `unexpected argument "extra"`},
		{args: []string{"devserver", "--log-level", "loud"}, code: 2, stderr: "--log-level: must be debug"},
		{args: []string{"token-check", "extra"}, code: 2, stderr: `unexpected argument "extra"`},
		{args: []string{"token-check", "--nope"}, code: 2, stderr: "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Parallel()
			tc := newTestCLI(map[string]string{}, nil)
			if got := tc.main(tt.args); got != tt.code {
				t.Fatalf("exit code %d, want %d; stderr:\n%s", got, tt.code, tc.errOut)
			}
			if !strings.Contains(tc.out.String(), tt.stdout) {
				t.Errorf("stdout %q does not contain %q", tc.out, tt.stdout)
			}
			if !strings.Contains(tc.errOut.String(), tt.stderr) {
				t.Errorf("stderr %q does not contain %q", tc.errOut, tt.stderr)
			}
			if tt.noStdout && tc.out.String() != "" {
				t.Errorf("usage went to stdout: %q", tc.out)
			}
		})
	}
}

func TestEnvironMap(t *testing.T) {
	t.Setenv("TELEPHONE_CLI_TEST", "a=b")
	if got := environMap()["TELEPHONE_CLI_TEST"]; got != "a=b" {
		t.Fatalf("environMap: got %q", got)
	}
}
