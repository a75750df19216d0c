package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/verastack/telephone"
)

// binaryTarget runs a telephone binary (ours, the original sidecar, any build that reads the
// original's environment variables) as child processes, one per token. Each child gets ONLY
// the original sidecar's variables, a fresh token database and a temporary working directory
// (so that no .env file is picked up).
type binaryTarget struct {
	label string
	path  string
	args  []string // extra arguments (tests use them to re-execute the test binary)
	dir   string
	procs []*childProc
}

// childProc is one running child.
type childProc struct {
	cmd    *exec.Cmd
	output *tailBuffer
	done   chan struct{} // closed when the process has exited
	err    error         // exit error, valid after done
}

func newBinaryTarget(label, path string, args []string) *binaryTarget {
	return &binaryTarget{label: label, path: path, args: args}
}

func (b *binaryTarget) Name() string { return b.label }

func (b *binaryTarget) Scope() string {
	return "telephone child process(es) only: /proc/<pid>/stat utime+stime, /proc/<pid>/status VmRSS/VmHWM"
}

// childEnv returns the original sidecar's environment (docs/PROTOCOL.md §7.1) for one child.
func childEnv(env targetEnv, token, dbPath, secret string) ([]string, error) {
	host, port, err := splitHostPort(env.Backend)
	if err != nil {
		return nil, fmt.Errorf("backend address: %w", err)
	}
	vars := []string{
		"PLUGBOARD_URL=" + env.SocketURL,
		"TELEPHONE_TOKEN=" + token,
		"BACKEND_HOST=" + host,
		"BACKEND_PORT=" + strconv.Itoa(port),
		"BACKEND_SCHEME=http",
		"CONNECT_TIMEOUT=" + env.ConnectTimeout.String(),
		"REQUEST_TIMEOUT=" + env.RequestTimeout.String(),
		"HEARTBEAT_INTERVAL=" + env.Heartbeat.String(),
		"CONNECTION_MONITOR_INTERVAL=" + env.Monitor.String(),
		"INITIAL_BACKOFF=" + env.InitialBackoff.String(),
		"MAX_BACKOFF=" + env.MaxBackoff.String(),
		"MAX_RETRIES=-1",
		"SECRET_KEY_BASE=" + secret,
		"TOKEN_DB_PATH=" + dbPath,
		"MAX_RESPONSE_SIZE=" + strconv.FormatInt(env.MaxResponseSize, 10),
		"CHUNK_SIZE=" + strconv.Itoa(env.ChunkSize),
		"DB_TIMEOUT=" + env.DBTimeout.String(),
		"HEALTH_CHECK_PORT=0",
	}
	if env.MemoryBudget > telephone.DefaultMemoryBudget {
		vars = append(vars, "MEMORY_BUDGET="+strconv.FormatInt(env.MemoryBudget, 10))
	}
	if env.ServiceAccountKey != "" {
		vars = append(vars, "PLUGBOARD_SERVICE_ACCOUNT_KEY="+env.ServiceAccountKey, "TELEPHONE_INSTANCE_ID="+env.InstanceID)
	}
	switch env.RateLimit {
	case "":
	case rateOff:
		vars = append(vars, "RATE_LIMIT=off")
	default:
		n, _ := strconv.ParseFloat(env.RateLimit, 64) // validated by parseRateLimit
		vars = append(vars, "RATE_LIMIT="+env.RateLimit, "RATE_BURST="+strconv.Itoa(rateBurst(n)))
	}
	return vars, nil
}

func (b *binaryTarget) Start(_ context.Context, env targetEnv) error {
	dir, err := os.MkdirTemp("", "telephone-loadtest-")
	if err != nil {
		return err
	}
	b.dir = dir
	for i, spec := range replicas(env) {
		secret := make([]byte, 32)
		_, _ = rand.Read(secret) // never fails (crypto/rand)
		vars, err := childEnv(spec.env, spec.token, filepath.Join(b.dir, fmt.Sprintf("telephone-%d.db", i)), hex.EncodeToString(secret))
		if err != nil {
			return err
		}
		p, err := b.startProc(vars)
		if err != nil {
			return err
		}
		b.procs = append(b.procs, p)
	}
	return nil
}

// Restart sends SIGTERM to child i, waits for it and starts it again with the same
// environment (its token database included).
func (b *binaryTarget) Restart(ctx context.Context, i int) error {
	p := b.procs[i]
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-ctx.Done():
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("child %d killed after %w", i, ctx.Err())
	}
	if p.err != nil && !isSignalExit(p.err) {
		return fmt.Errorf("child %d: %w (output: %q)", i, p.err, p.output.String())
	}
	np, err := b.startProc(p.cmd.Env)
	if err != nil {
		return err
	}
	b.procs[i] = np
	return nil
}

// startProc starts one child with the environment vars.
func (b *binaryTarget) startProc(vars []string) (*childProc, error) {
	cmd := exec.Command(b.path, b.args...)
	cmd.Env = vars
	cmd.Dir = b.dir
	out := newTailBuffer(8 << 10)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", b.path, err)
	}
	p := &childProc{cmd: cmd, output: out, done: make(chan struct{})}
	go func() { // owned by p; joined through p.done in Stop or Restart
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (b *binaryTarget) Usage() (usage, error) {
	var u usage
	for _, p := range b.procs {
		pid := p.cmd.Process.Pid
		cpu, err := procCPU(pid)
		if err != nil {
			return usage{}, fmt.Errorf("pid %d: %w", pid, err)
		}
		m, err := procMem(strconv.Itoa(pid))
		if err != nil {
			return usage{}, fmt.Errorf("pid %d: %w", pid, err)
		}
		u.CPU += cpu
		u.RSS += m.RSS
		u.Peak += m.Peak
	}
	return u, nil
}

func (b *binaryTarget) Alive() error {
	for i, p := range b.procs {
		select {
		case <-p.done:
			return fmt.Errorf("child %d exited: %v", i, p.err)
		default:
		}
	}
	return nil
}

func (b *binaryTarget) Diag() string {
	var sb strings.Builder
	for i, p := range b.procs {
		select {
		case <-p.done:
			fmt.Fprintf(&sb, "child %d exited: %v; ", i, p.err)
		default:
		}
		if i < 3 {
			fmt.Fprintf(&sb, "child %d output tail: %q; ", i, p.output.String())
		}
	}
	return sb.String()
}

// Stop sends SIGTERM to every child, waits for them until ctx ends, then kills the rest.
func (b *binaryTarget) Stop(ctx context.Context) error {
	for _, p := range b.procs {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	var errs []error
	for i, p := range b.procs {
		select {
		case <-p.done:
		case <-ctx.Done():
			_ = p.cmd.Process.Kill()
			<-p.done
			errs = append(errs, fmt.Errorf("child %d killed after %w", i, ctx.Err()))
			continue
		}
		if p.err != nil && !isSignalExit(p.err) {
			errs = append(errs, fmt.Errorf("child %d: %w (output: %q)", i, p.err, p.output.String()))
		}
	}
	if b.dir != "" {
		_ = os.RemoveAll(b.dir)
	}
	return errors.Join(errs...)
}

// isSignalExit reports whether a child ended because of the SIGTERM it was sent.
func isSignalExit(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM
}

// tailBuffer keeps the last limit bytes written to it. Safe for concurrent use.
type tailBuffer struct {
	mu    sync.Mutex // guards buf
	buf   []byte
	limit int
}

func newTailBuffer(limit int) *tailBuffer { return &tailBuffer{limit: limit} }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.limit; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
