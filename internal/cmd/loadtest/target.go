package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"runtime/metrics"
	"strconv"
	"sync"
	"time"

	"github.com/verastack/telephone"
	"github.com/verastack/telephone/tokenstore"
)

// usage is a resource snapshot of a telephone under test.
type usage struct {
	CPU      time.Duration // CPU time used so far (user + system)
	RSS      int64         // resident set now, bytes
	Peak     int64         // peak resident set since the target started (or the reset), bytes
	PeakHeap int64         // in-process only: peak Go heap (objects) sampled every 20 ms, bytes
}

// target is the telephone under test: one or more telephones (one per token) started with
// the settings of a targetEnv. A target is used for one scenario: Start, Usage, Stop.
type target interface {
	Name() string
	// Scope says what Usage measures, for the report.
	Scope() string
	// Start starts one telephone per token. It does not wait for them to join.
	Start(ctx context.Context, env targetEnv) error
	Usage() (usage, error)
	// Alive returns an error once a telephone has stopped on its own (Run returned, the child
	// exited).
	Alive() error
	// Diag returns what helps to understand a failure (last errors, stderr tail).
	Diag() string
	// Stop stops every telephone (gracefully, then by force when ctx ends).
	Stop(ctx context.Context) error
}

// targetEnv is the configuration of the telephones under test: exactly what the original
// sidecar's environment variables can say (docs/PROTOCOL.md §7.1), so that a binary and the
// in-process client get the same settings.
type targetEnv struct {
	SocketURL       string
	Tokens          []string
	Backend         string // host:port
	ConnectTimeout  time.Duration
	RequestTimeout  time.Duration
	Heartbeat       time.Duration
	Monitor         time.Duration // CONNECTION_MONITOR_INTERVAL
	InitialBackoff  time.Duration
	MaxBackoff      time.Duration
	MaxResponseSize int64
	ChunkSize       int
	DBTimeout       time.Duration
	// RateLimit is telephone's rate limit: "" keeps telephone's default, "off" disables it, a
	// number sets requests per second (burst: twice that). Binaries get it as RATE_LIMIT and
	// RATE_BURST, variables outside the original set (the original sidecar, which has no
	// limiter, ignores them); they are only added when RateLimit is not "".
	RateLimit string
	// MaxConcurrent raises the in-process concurrency limit above telephone's default when
	// larger; binaries keep their own default (the original variables cannot set it).
	MaxConcurrent int
	// ServiceAccountKey, when set, starts Replicas telephones without tokens that vend their
	// own (scale-out), each with a token store that survives its restarts. Binaries get
	// PLUGBOARD_SERVICE_ACCOUNT_KEY and TELEPHONE_INSTANCE_ID, outside the original variables.
	ServiceAccountKey string
	Replicas          int
	InstanceID        string // set per replica by replicas
	// MemoryBudget, when above telephone's default, raises the memory budget so that it does
	// not refuse what a scenario measures (large: the memory of each response). Binaries get it
	// as MEMORY_BUDGET, outside the original variables (the original ignores it).
	MemoryBudget int64
}

// replicaSpec is one telephone to start: its settings and token ("" when it vends).
type replicaSpec struct {
	env   targetEnv
	token string
}

// replicas lists the telephones of env: one per token, or Replicas vending ones.
func replicas(env targetEnv) []replicaSpec {
	var out []replicaSpec
	if env.ServiceAccountKey == "" {
		for _, tok := range env.Tokens {
			out = append(out, replicaSpec{env: env, token: tok})
		}
		return out
	}
	for i := range env.Replicas {
		e := env
		e.InstanceID = fmt.Sprintf("replica-%d", i)
		out = append(out, replicaSpec{env: e})
	}
	return out
}

// restarter is a target whose telephones can be restarted one at a time (scale-out).
type restarter interface {
	// Restart stops telephone i gracefully and starts it again with the same settings and
	// token store; it fails when the telephone did not stop cleanly.
	Restart(ctx context.Context, i int) error
}

// defaultTargetEnv returns the settings shared by every scenario (the documented typical
// values of the original, with faster reconnects).
func defaultTargetEnv() targetEnv {
	return targetEnv{
		ConnectTimeout:  10 * time.Second,
		RequestTimeout:  30 * time.Second,
		Heartbeat:       30 * time.Second,
		Monitor:         10 * time.Second,
		InitialBackoff:  time.Second,
		MaxBackoff:      10 * time.Second,
		MaxResponseSize: 32 << 20,
		ChunkSize:       1 << 20,
		DBTimeout:       10 * time.Second,
	}
}

// inProcess runs telephone.Clients in this process, configured like a sidecar with
// WithBackendURL.
type inProcess struct {
	clients []*telephone.Client
	specs   []replicaSpec
	stores  []telephone.TokenStore // per client; kept across Restart
	runs    sync.WaitGroup         // joins the Run goroutines
	cpu0    time.Duration
	sampler *heapSampler
	resetOK bool

	mu   sync.Mutex // guards errs
	errs []error    // errors returned by Run
}

func newInProcess() *inProcess { return &inProcess{} }

func (p *inProcess) Name() string { return "in-process" }

func (p *inProcess) Scope() string {
	s := "whole loadtest process (load generator + devserver + backend + telephone)"
	if !p.resetOK {
		s += "; peak RSS is the process lifetime peak (clear_refs unavailable)"
	}
	return s
}

// clientOptions maps a targetEnv to the telephone options a sidecar would get.
func clientOptions(env targetEnv, token string) []telephone.Option {
	opts := []telephone.Option{
		telephone.WithBackendURL("http://" + env.Backend),
		telephone.WithConnectTimeout(env.ConnectTimeout),
		telephone.WithRequestTimeout(env.RequestTimeout),
		telephone.WithHeartbeat(env.Heartbeat, telephone.DefaultHeartbeatMisses),
		telephone.WithPhoenixHeartbeat(env.Monitor),
		telephone.WithReconnectBackoff(env.InitialBackoff, env.MaxBackoff),
		telephone.WithMaxResponseSize(env.MaxResponseSize),
		telephone.WithChunkSize(env.ChunkSize),
	}
	switch env.RateLimit {
	case "":
	case rateOff:
		opts = append(opts, telephone.WithRateLimit(math.Inf(1), 0))
	default:
		n, _ := strconv.ParseFloat(env.RateLimit, 64) // validated by parseRateLimit
		opts = append(opts, telephone.WithRateLimit(n, rateBurst(n)))
	}
	if env.MemoryBudget > telephone.DefaultMemoryBudget {
		opts = append(opts, telephone.WithMemoryBudget(env.MemoryBudget))
	}
	if env.MaxConcurrent > telephone.DefaultMaxConcurrent {
		opts = append(opts, telephone.WithMaxConcurrentRequests(env.MaxConcurrent, telephone.DefaultQueueWait))
	}
	if token != "" {
		opts = append(opts, telephone.WithToken(token))
	}
	if env.ServiceAccountKey != "" {
		opts = append(opts, telephone.WithTokenVending(telephone.TokenVending{APIKey: env.ServiceAccountKey, InstanceID: env.InstanceID}))
	}
	return opts
}

func (p *inProcess) Start(_ context.Context, env targetEnv) error {
	p.specs = replicas(env)
	p.stores = make([]telephone.TokenStore, len(p.specs))
	for i := range p.specs {
		if env.ServiceAccountKey != "" {
			p.stores[i] = tokenstore.NewMemory()
		}
		c, err := p.newClient(i)
		if err != nil {
			return err
		}
		p.clients = append(p.clients, c)
	}
	p.resetOK = resetPeakRSS()
	p.cpu0, _ = selfCPU()
	p.sampler = startHeapSampler(20 * time.Millisecond)
	for _, c := range p.clients {
		p.run(c)
	}
	return nil
}

// run runs c until it stops, recording the error Run returns.
func (p *inProcess) run(c *telephone.Client) {
	p.runs.Go(func() {
		if err := c.Run(context.Background()); err != nil {
			p.mu.Lock()
			p.errs = append(p.errs, err)
			p.mu.Unlock()
		}
	})
}

// newClient builds client i from its spec and token store.
func (p *inProcess) newClient(i int) (*telephone.Client, error) {
	spec := p.specs[i]
	opts := clientOptions(spec.env, spec.token)
	if p.stores[i] != nil {
		opts = append(opts, telephone.WithTokenStore(p.stores[i]))
	}
	c, err := telephone.New(spec.env.SocketURL, opts...)
	if err != nil {
		return nil, fmt.Errorf("in-process telephone %d: %w", i, err)
	}
	return c, nil
}

// Restart shuts client i down and starts a new Client with the same options and store.
func (p *inProcess) Restart(ctx context.Context, i int) error {
	if err := p.clients[i].Shutdown(ctx); err != nil {
		return fmt.Errorf("in-process telephone %d: shutdown: %w", i, err)
	}
	c, err := p.newClient(i)
	if err != nil {
		return err
	}
	p.clients[i] = c
	p.run(c)
	return nil
}

func (p *inProcess) Usage() (usage, error) {
	cpu, err := selfCPU()
	if err != nil {
		return usage{}, err
	}
	m, err := procMem("self")
	if err != nil {
		return usage{}, err
	}
	u := usage{CPU: cpu - p.cpu0, RSS: m.RSS, Peak: m.Peak}
	if p.sampler != nil {
		u.PeakHeap = p.sampler.peak()
	}
	return u, nil
}

func (p *inProcess) Alive() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.errs) > 0 {
		return fmt.Errorf("in-process telephone stopped: %w", errors.Join(p.errs...))
	}
	return nil
}

func (p *inProcess) Diag() string {
	p.mu.Lock()
	errs := errors.Join(p.errs...)
	p.mu.Unlock()
	var last string
	for i, c := range p.clients {
		if st := c.Status(); st.LastError != "" {
			last += fmt.Sprintf("client %d: %s; ", i, st.LastError)
		}
	}
	return fmt.Sprintf("run errors: %v; last errors: %s", errs, last)
}

// Stop shuts every client down in parallel (draining in-flight requests until ctx ends).
func (p *inProcess) Stop(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make([]error, len(p.clients))
	for i, c := range p.clients {
		wg.Go(func() { errs[i] = c.Shutdown(ctx) })
	}
	wg.Wait()
	p.runs.Wait()
	if p.sampler != nil {
		p.sampler.stop()
	}
	return errors.Join(errs...)
}

// heapSampler samples the Go heap (runtime/metrics) and keeps the peak.
type heapSampler struct {
	done chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex // guards max
	max  int64
}

const heapMetric = "/memory/classes/heap/objects:bytes"

func startHeapSampler(every time.Duration) *heapSampler {
	h := &heapSampler{done: make(chan struct{})}
	h.sample()
	h.wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-h.done:
				return
			case <-t.C:
				h.sample()
			}
		}
	})
	return h
}

func (h *heapSampler) sample() {
	s := []metrics.Sample{{Name: heapMetric}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return
	}
	v := int64(s[0].Value.Uint64())
	h.mu.Lock()
	h.max = max(h.max, v)
	h.mu.Unlock()
}

func (h *heapSampler) peak() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.max
}

func (h *heapSampler) stop() {
	close(h.done)
	h.wg.Wait()
}

// rateOff disables telephone's rate limit.
const rateOff = "off"

// rateBurst is the token bucket burst used with a rate limit of n per second.
func rateBurst(n float64) int { return max(int(2*n), 1) }

// parseRateLimit checks a --rate-limit value: "", "off" or a positive number.
func parseRateLimit(v string) error {
	if v == "" || v == rateOff {
		return nil
	}
	n, err := strconv.ParseFloat(v, 64)
	if err != nil || !(n > 0) || math.IsInf(n, 0) {
		return fmt.Errorf("%w: --rate-limit must be off or a positive number, got %q", errUsage, v)
	}
	return nil
}

// splitHostPort splits a host:port into its parts.
func splitHostPort(addr string) (string, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		return "", 0, fmt.Errorf("port %q: %w", port, err)
	}
	return host, n, nil
}
