package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/verastack/telephone"
	"github.com/verastack/telephone/telephonetest"
)

// Scenario names.
const (
	scnSteady   = "steady"
	scnSlow     = "slow"
	scnLarge    = "large" // expanded to one scenario per size: large-10MiB, large-50MiB
	scnBinary   = "binary"
	scnBudget   = "budget"
	scnStalled  = "stalled-bodies"
	scnBackend  = "backend-restart"
	scnSockCut  = "socket-cut"
	scnHerd     = "herd"
	scnSoak     = "soak"
	scnScale    = "scale-out" // run only when named, like soak
	scnAll      = "all"       // every scenario but soak and scale-out
	inProcLabel = "in-process"
)

// The devserver's join_ref checks (--join-ref).
const (
	joinRefStrict  = "strict"
	joinRefLenient = "lenient"
)

// allScenarios is what "all" means, in run order.
var allScenarios = []string{scnSteady, scnSlow, scnLarge, scnBudget, scnStalled, scnBinary, scnBackend, scnSockCut, scnHerd,
	scnRolling, scnSigterm, scnOneCut, scnPBRestart}

// minHerd is the smallest herd whose reconnect spread says something: with full jitter, the
// chance that n reconnects all fall within a quarter of INITIAL_BACKOFF is about n·(1/4)^(n-1),
// 3·10⁻⁵ for 10 telephones.
const minHerd = 10

// errUsage marks a bad command line.
var errUsage = errors.New("usage")

// config is the harness configuration, from flags.
type config struct {
	scenarios        []string
	duration         time.Duration // steady, binary (upper bound) and soak load phase
	concurrency      int
	maxRequests      int64
	rate             float64 // steady and soak pacing; 0: as fast as possible (soak: soakRate)
	chaosRate        float64
	chaosDelay       time.Duration
	rateLimit        string
	joinRef          string // the devserver's join_ref check: strict (Phoenix 1.8.3+) or lenient
	slowCount        int
	slowDelay        time.Duration
	largeSizes       []int64
	largeConcurrency int
	largeRequests    int64
	memFactor        float64
	slowRSS          int64         // slow: peak RSS bound of a telephone binary, bytes
	largeRSSBase     int64         // large: a telephone binary's peak RSS bound is 1.5 × bodies in flight + this
	budgetCount      int           // budget: concurrent large responses
	budgetSize       int64         // budget: size of each
	budgetRSS        int64         // budget and stalled-bodies: peak RSS bound of a telephone binary (MEMORY_BUDGET + 64 MiB)
	idleWait         time.Duration // budget: idle time before the RSS must have come back
	idleRSS          int64         // budget: RSS bound after idleWait
	stalledCount     int           // stalled-bodies: concurrent uploads the backend does not read
	stalledSize      int           // stalled-bodies: bytes of each
	binaryRequests   int64
	chaosConcurrency int
	warmup           time.Duration
	outage           time.Duration
	stableWindow     time.Duration
	recoverBound     time.Duration
	herd             int
	initialBackoff   time.Duration
	maxBackoff       time.Duration
	soakSample       time.Duration
	scaleReplicas    int
	scaleLifetime    time.Duration
	scaleDuration    time.Duration
	availRate        float64       // availability scenarios: requests per second
	availDelay       time.Duration // availability scenarios: backend delay of each request
	availConcurrency int
	drainGrace       time.Duration // SHUTDOWN_TIMEOUT of the availability scenarios
	swaps            int           // rolling-restart swaps
	restartBackoff   time.Duration // INITIAL_BACKOFF in plugboard-restart
	timingChecks     bool          // availability scenarios: check the timing-dependent bounds
	targets          []targetSpec
	inProcess        bool
	direct           bool
	jsonOut          bool
	progress         bool
	cpuProfile       string // write a CPU profile of the whole run (in-process target included) here
}

// targetSpec names a telephone under test: in-process (path "") or a binary.
type targetSpec struct {
	label string
	path  string
	args  []string
}

func (t targetSpec) new() target {
	if t.path == "" {
		return newInProcess()
	}
	return newBinaryTarget(t.label, t.path, t.args)
}

func defaultConfig() config {
	return config{
		scenarios:        []string{scnAll},
		duration:         10 * time.Second,
		concurrency:      32,
		slowCount:        1000,
		slowDelay:        2 * time.Second,
		largeSizes:       []int64{10 << 20, 50 << 20},
		largeConcurrency: 2,
		largeRequests:    8,
		memFactor:        8,
		slowRSS:          40 << 20,
		largeRSSBase:     30 << 20,
		budgetCount:      64,
		budgetSize:       8 << 20,
		budgetRSS:        telephone.DefaultMemoryBudget + 64<<20,
		idleWait:         15 * time.Second,
		idleRSS:          40 << 20,
		stalledCount:     64,
		stalledSize:      7_900_000,
		binaryRequests:   500,
		chaosConcurrency: 16,
		chaosRate:        400,
		chaosDelay:       20 * time.Millisecond,
		warmup:           2 * time.Second,
		outage:           2 * time.Second,
		stableWindow:     2 * time.Second,
		recoverBound:     20 * time.Second,
		herd:             50,
		initialBackoff:   time.Second,
		maxBackoff:       10 * time.Second,
		soakSample:       30 * time.Second,
		joinRef:          joinRefStrict,
		scaleReplicas:    3,
		scaleLifetime:    60 * time.Second,
		scaleDuration:    3 * time.Minute,
		availRate:        500,
		availDelay:       50 * time.Millisecond,
		availConcurrency: 128,
		drainGrace:       10 * time.Second,
		swaps:            3,
		restartBackoff:   500 * time.Millisecond,
		timingChecks:     true,
		inProcess:        true,
		direct:           true,
		progress:         true,
	}
}

// parseFlags parses the command line into a config. Errors wrap errUsage.
func parseFlags(args []string, stderr io.Writer) (config, error) {
	c := defaultConfig()
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var scenarios, sizes string
	fs.StringVar(&scenarios, "scenario", scnAll, "comma-separated scenarios: "+strings.Join(append(slices.Clone(allScenarios), scnSoak, scnScale, scnAll), ", "))
	fs.DurationVar(&c.duration, "duration", c.duration, "load phase of steady and soak (upper bound of binary)")
	fs.IntVar(&c.concurrency, "concurrency", c.concurrency, "concurrent callers of steady, binary and soak")
	fs.Int64Var(&c.maxRequests, "max-requests", 0, "stop steady and soak after this many requests (0: duration only)")
	fs.Float64Var(&c.rate, "rate", 0, "steady and soak: requests per second in total (0: as fast as possible; soak default 500)")
	fs.Float64Var(&c.chaosRate, "chaos-rate", c.chaosRate, "requests per second in total during backend-restart and socket-cut")
	fs.StringVar(&c.rateLimit, "rate-limit", "", "telephone's own rate limit: off, or requests/s (default: the build's own default: none, or 1000/s burst 2000 before issue 13); binaries get RATE_LIMIT/RATE_BURST, outside the original variables")
	fs.StringVar(&c.joinRef, "join-ref", c.joinRef, "the devserver's join_ref check: strict (Phoenix 1.8.3+, drops a message whose join_ref is not the channel's) or lenient (Phoenix 1.8.2 and older; needed by the original sidecar, which sets join_ref = ref)")
	fs.IntVar(&c.slowCount, "slow-count", c.slowCount, "concurrent slow requests")
	fs.DurationVar(&c.slowDelay, "slow-delay", c.slowDelay, "backend delay of each slow request")
	fs.StringVar(&sizes, "large-sizes", "10MiB,50MiB", "response sizes of the large scenarios (B, KiB, MiB)")
	fs.IntVar(&c.largeConcurrency, "large-concurrency", c.largeConcurrency, "concurrent large requests")
	fs.Int64Var(&c.largeRequests, "large-requests", c.largeRequests, "large requests per size")
	fs.Float64Var(&c.memFactor, "mem-factor", c.memFactor, "large: peak RSS growth must stay below mem-factor × size × concurrency")
	fs.Int64Var(&c.largeRSSBase, "large-rss-base", c.largeRSSBase, "large: a telephone binary's peak RSS must stay at or below 1.5 × size × concurrency + this many bytes")
	fs.Int64Var(&c.slowRSS, "slow-rss", c.slowRSS, "slow: a telephone binary's peak RSS must stay at or below this many bytes")
	fs.IntVar(&c.budgetCount, "budget-count", c.budgetCount, "budget: concurrent large responses")
	fs.Int64Var(&c.budgetSize, "budget-size", c.budgetSize, "budget: bytes of each response")
	fs.Int64Var(&c.budgetRSS, "budget-rss", c.budgetRSS, "budget and stalled-bodies: a telephone binary's peak RSS must stay at or below this many bytes (telephone's default MEMORY_BUDGET + 64 MiB)")
	fs.DurationVar(&c.idleWait, "idle-wait", c.idleWait, "budget: idle time after the load before the RSS is measured again")
	fs.Int64Var(&c.idleRSS, "idle-rss", c.idleRSS, "budget: a telephone binary's RSS after --idle-wait must be at or below this many bytes")
	fs.IntVar(&c.stalledCount, "stalled-count", c.stalledCount, "stalled-bodies: concurrent uploads the backend does not read")
	fs.IntVar(&c.stalledSize, "stalled-size", c.stalledSize, "stalled-bodies: bytes of each upload (Plugboard accepts at most "+strconv.Itoa(telephonetest.MaxBodySize)+")")
	fs.Int64Var(&c.binaryRequests, "binary-requests", c.binaryRequests, "requests of the binary-body scenario")
	fs.IntVar(&c.chaosConcurrency, "chaos-concurrency", c.chaosConcurrency, "concurrent callers during backend-restart and socket-cut")
	fs.DurationVar(&c.chaosDelay, "chaos-delay", c.chaosDelay, "backend delay of each request during backend-restart and socket-cut (requests in flight meet the fault)")
	fs.DurationVar(&c.warmup, "warmup", c.warmup, "load before a fault is injected")
	fs.DurationVar(&c.outage, "outage", c.outage, "how long the backend stays down")
	fs.DurationVar(&c.stableWindow, "stable-window", c.stableWindow, "failure-free time that ends a chaos scenario after recovery")
	fs.DurationVar(&c.recoverBound, "recover-bound", c.recoverBound, "recovery must happen within this time")
	fs.IntVar(&c.herd, "herd", c.herd, "telephones reconnecting at once in the herd scenario")
	fs.DurationVar(&c.initialBackoff, "initial-backoff", c.initialBackoff, "INITIAL_BACKOFF of the telephones")
	fs.DurationVar(&c.maxBackoff, "max-backoff", c.maxBackoff, "MAX_BACKOFF of the telephones")
	fs.Float64Var(&c.availRate, "avail-rate", c.availRate, "requests per second in the availability scenarios ("+scnRolling+", "+scnSigterm+", "+scnOneCut+", "+scnPBRestart+")")
	fs.DurationVar(&c.availDelay, "avail-delay", c.availDelay, "backend delay of each request in the availability scenarios")
	fs.IntVar(&c.availConcurrency, "avail-concurrency", c.availConcurrency, "concurrent callers in the availability scenarios")
	fs.DurationVar(&c.drainGrace, "drain-grace", c.drainGrace, "SHUTDOWN_TIMEOUT of each SIGTERM in the availability scenarios")
	fs.IntVar(&c.swaps, "swaps", c.swaps, "telephone swaps of "+scnRolling)
	fs.DurationVar(&c.restartBackoff, "restart-backoff", c.restartBackoff, "INITIAL_BACKOFF in "+scnPBRestart+" (its sessions must be back within 1 s)")
	fs.DurationVar(&c.soakSample, "soak-sample", c.soakSample, "how often soak samples the telephone's memory")
	fs.IntVar(&c.scaleReplicas, "scale-replicas", c.scaleReplicas, "scale-out: telephones sharing one service-account key")
	fs.DurationVar(&c.scaleLifetime, "scale-token-lifetime", c.scaleLifetime, "scale-out: the devserver's token lifetime (refresh at half of it)")
	fs.DurationVar(&c.scaleDuration, "scale-duration", c.scaleDuration, "scale-out: load phase, during which every replica is restarted once")
	fs.Func("binary", "telephone binary to test as a child process, [LABEL=]PATH; repeat or comma-separate to compare builds", c.addBinaries)
	fs.BoolVar(&c.inProcess, "inprocess", true, "also test the in-process telephone.Client")
	fs.BoolVar(&c.direct, "direct", true, "send the same load straight to the backend for the ratio")
	fs.BoolVar(&c.jsonOut, "json", false, "print JSON instead of the table")
	fs.BoolVar(&c.progress, "progress", true, "log progress to stderr")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write a CPU profile of this process (load generator, devserver, backend and the in-process telephone) to `file`")
	if err := fs.Parse(args); err != nil {
		return c, fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	return c, c.finish(scenarios, sizes)
}

// addBinaries adds [LABEL=]PATH entries, comma-separated.
func (c *config) addBinaries(v string) error {
	for _, item := range strings.Split(v, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		label, path, ok := strings.Cut(item, "=")
		if !ok {
			label, path = "bin:"+filepath.Base(item), item
		}
		if path == "" || label == "" {
			return fmt.Errorf("bad --binary %q: want [LABEL=]PATH", item)
		}
		c.targets = append(c.targets, targetSpec{label: label, path: path})
	}
	return nil
}

// finish validates the config and resolves the scenario list and the targets.
func (c *config) finish(scenarios, sizes string) error {
	var err error
	if c.scenarios, err = parseScenarios(scenarios); err != nil {
		return err
	}
	if c.largeSizes, err = parseSizes(sizes); err != nil {
		return err
	}
	if err := c.validate(); err != nil {
		return err
	}
	if err := parseRateLimit(c.rateLimit); err != nil {
		return err
	}
	if c.joinRef != joinRefStrict && c.joinRef != joinRefLenient {
		return fmt.Errorf("%w: --join-ref %q: want strict or lenient", errUsage, c.joinRef)
	}
	if !c.inProcess {
		for _, name := range strings.Split(scenarios, ",") {
			if name = strings.TrimSpace(name); slices.Contains(availScenarios, name) {
				return fmt.Errorf("%w: scenario %s drives in-process telephones and cannot run with --inprocess=false", errUsage, name)
			}
		}
	}
	if c.inProcess {
		c.targets = append([]targetSpec{{label: inProcLabel}}, c.targets...)
	}
	if len(c.targets) == 0 {
		return fmt.Errorf("%w: nothing to test (--inprocess=false and no --binary)", errUsage)
	}
	seen := map[string]bool{}
	for _, t := range c.targets {
		if seen[t.label] {
			return fmt.Errorf("%w: two targets labelled %q: use LABEL=PATH", errUsage, t.label)
		}
		seen[t.label] = true
	}
	return nil
}

func (c *config) validate() error {
	checks := []struct {
		ok  bool
		msg string
	}{
		{c.duration > 0, "--duration must be positive"},
		{c.concurrency >= 1 && c.concurrency <= 10_000, "--concurrency must be between 1 and 10000"},
		{c.maxRequests >= 0, "--max-requests must not be negative"},
		{c.rate >= 0 && c.chaosRate >= 0, "--rate and --chaos-rate must not be negative"},
		{c.slowCount >= 1 && c.slowCount <= 10_000, "--slow-count must be between 1 and 10000"},
		{c.slowDelay >= 0 && c.slowDelay <= 5*time.Minute, "--slow-delay must be between 0 and 5m"},
		{c.largeConcurrency >= 1 && c.largeConcurrency <= 64, "--large-concurrency must be between 1 and 64"},
		{c.largeRequests >= 1, "--large-requests must be positive"},
		{c.memFactor > 0, "--mem-factor must be positive"},
		{c.slowRSS > 0 && c.budgetRSS > 0 && c.idleRSS > 0 && c.largeRSSBase > 0, "--slow-rss, --budget-rss, --idle-rss and --large-rss-base must be positive"},
		{c.budgetCount >= 1 && c.budgetCount <= 1000 && c.budgetSize >= 1 && c.budgetSize <= maxLargeSize, "--budget-count must be between 1 and 1000, --budget-size between 1 and 1 GiB"},
		{c.idleWait >= 0 && c.idleWait <= 10*time.Minute, "--idle-wait must be between 0 and 10m"},
		{c.stalledCount >= 1 && c.stalledCount <= 1000 && c.stalledSize >= 1 && c.stalledSize <= telephonetest.MaxBodySize, "--stalled-count must be between 1 and 1000, --stalled-size between 1 and " + strconv.Itoa(telephonetest.MaxBodySize)},
		{c.binaryRequests >= 1, "--binary-requests must be positive"},
		{c.chaosConcurrency >= 1 && c.chaosConcurrency <= 10_000, "--chaos-concurrency must be between 1 and 10000"},
		{c.chaosDelay >= 0 && c.chaosDelay <= time.Minute, "--chaos-delay must be between 0 and 1m"},
		{c.warmup > 0 && c.outage > 0 && c.stableWindow > 0 && c.recoverBound > 0, "--warmup, --outage, --stable-window and --recover-bound must be positive"},
		{c.herd >= minHerd && c.herd <= 1000, "--herd must be between 10 and 1000 (fewer make the spread check a coin toss)"},
		{c.initialBackoff > 0 && c.maxBackoff >= c.initialBackoff, "--initial-backoff must be positive and at most --max-backoff"},
		{c.soakSample > 0, "--soak-sample must be positive"},
		{c.scaleReplicas >= 2 && c.scaleReplicas <= 50, "--scale-replicas must be between 2 and 50"},
		{c.scaleLifetime >= 2*time.Second && c.scaleDuration > 0, "--scale-token-lifetime must be at least 2s and --scale-duration positive"},
		{c.availRate > 0 && c.availConcurrency >= 1 && c.availConcurrency <= 10_000, "--avail-rate must be positive and --avail-concurrency between 1 and 10000"},
		{c.availDelay >= 0 && c.availDelay <= time.Minute, "--avail-delay must be between 0 and 1m"},
		{c.drainGrace >= 100*time.Millisecond && c.swaps >= 1 && c.restartBackoff > 0, "--drain-grace must be at least 100ms, --swaps and --restart-backoff positive"},
	}
	for _, ch := range checks {
		if !ch.ok {
			return fmt.Errorf("%w: %s", errUsage, ch.msg)
		}
	}
	return nil
}

// parseScenarios expands "all" and checks every name.
func parseScenarios(v string) ([]string, error) {
	var out []string
	for _, name := range strings.Split(v, ",") {
		name = strings.TrimSpace(name)
		switch {
		case name == scnAll:
			out = append(out, allScenarios...)
		case name == scnSoak || name == scnScale || slices.Contains(allScenarios, name):
			out = append(out, name)
		default:
			return nil, fmt.Errorf("%w: unknown scenario %q", errUsage, name)
		}
	}
	return out, nil
}

// parseSizes parses a comma-separated list of sizes such as "10MiB,512KiB,100".
func parseSizes(v string) ([]int64, error) {
	var out []int64
	for _, s := range strings.Split(v, ",") {
		n, err := parseSize(strings.TrimSpace(s))
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}} {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = rest, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 1 || n > maxLargeSize/mult {
		return 0, fmt.Errorf("%w: bad size %q (want 1B to 1024MiB)", errUsage, s)
	}
	return n * mult, nil
}

// sizeName is the short name of a size: 10MiB, 512KiB or 100B.
func sizeName(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	default:
		return fmt.Sprintf("%dB", n)
	}
}
