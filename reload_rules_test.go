package telephone

import (
	"go.opentelemetry.io/otel/trace/noop"

	"crypto/tls"
	"errors"
	"go/ast"
	"go/parser"
	gotoken "go/token"
	"io"
	"log/slog"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/verastack/telephone/internal/plugtoken"
	"github.com/verastack/telephone/tokenstore"
)

// exportedOptions lists every exported function of the root package whose name starts with
// "With" and which returns an Option, read from the source so that a new one cannot be missed.
func exportedOptions(t *testing.T) []string {
	t.Helper()
	fset := gotoken.NewFileSet()
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, e.Name(), nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Recv != nil || !fn.Name.IsExported() || !strings.HasPrefix(fn.Name.Name, "With") {
				continue
			}
			if r := fn.Type.Results; r != nil && len(r.List) == 1 {
				if id, ok := r.List[0].Type.(*ast.Ident); ok && id.Name == "Option" {
					names = append(names, fn.Name.Name)
				}
			}
		}
	}
	slices.Sort(names)
	return names
}

// reloadCase is a value for one option that differs from the base Client's configuration;
// handler says the base Client serves with WithHandler rather than WithBackendURL.
type reloadCase struct {
	opt     Option
	handler bool
}

func reloadCases() map[string]reloadCase {
	discard := slog.New(slog.NewTextHandler(io.Discard, nil))
	return map[string]reloadCase{
		"WithToken":                     {opt: WithToken("a.b.c")},
		"WithTokenVending":              {opt: WithTokenVending(TokenVending{APIKey: "sa_live_k", InstanceID: "r1"})},
		"WithTokenStore":                {opt: WithTokenStore(tokenstore.NewMemory())},
		"WithHandler":                   {opt: WithHandler(http.NotFoundHandler()), handler: true},
		"WithBackendURL":                {opt: WithBackendURL("http://127.0.0.1:2/base")},
		"WithBackend":                   {opt: WithBackend(&http.Transport{})},
		"WithLogger":                    {opt: WithLogger(discard)},
		"WithTLSConfig":                 {opt: WithTLSConfig(&tls.Config{MinVersion: tls.VersionTLS13})},
		"WithProxy":                     {opt: WithProxy(http.ProxyFromEnvironment)},
		"WithPlugboardSecret":           {opt: WithPlugboardSecret(strings.Repeat("s", 64))},
		"WithClockSkew":                 {opt: WithClockSkew(time.Minute)},
		"WithHeartbeat":                 {opt: WithHeartbeat(time.Second, 3)},
		"WithPhoenixHeartbeat":          {opt: WithPhoenixHeartbeat(time.Second)},
		"WithConnections":               {opt: WithConnections(3)},
		"WithMemoryBudget":              {opt: WithMemoryBudget(64 << 20)},
		"WithConnectTimeout":            {opt: WithConnectTimeout(time.Second)},
		"WithReconnectBackoff":          {opt: WithReconnectBackoff(2*time.Second, time.Minute)},
		"WithRequestTimeout":            {opt: WithRequestTimeout(time.Second)},
		"WithMaxResponseSize":           {opt: WithMaxResponseSize(1 << 21)},
		"WithChunkSize":                 {opt: WithChunkSize(1024)},
		"WithUTF8Policy":                {opt: WithUTF8Policy(UTF8Replace)},
		"WithClientIPHeader":            {opt: WithClientIPHeader("X-Forwarded-For", 2)},
		"WithAcceptEncodingPassthrough": {opt: WithAcceptEncodingPassthrough()},
		"WithMaxRequestBody":            {opt: WithMaxRequestBody(100)},
		"WithMaxConcurrentRequests":     {opt: WithMaxConcurrentRequests(4, 0)},
		"WithRateLimit":                 {opt: WithRateLimit(5, 1)},
		"WithCircuitBreaker":            {opt: WithCircuitBreaker(0, 0)},
		"WithRetries":                   {opt: WithRetries(0, 0)},
		"WithWebSocketLimits":           {opt: WithWebSocketLimits(2, 1024, time.Minute, 4096)},
		"WithWebSocketHandshakeTimeout": {opt: WithWebSocketHandshakeTimeout(time.Second)},
		"WithMetrics":                   {opt: WithMetrics(prometheus.NewRegistry())},
		"WithObserver":                  {opt: WithObserver(nopObserver{})},
		"WithTracerProvider":            {opt: WithTracerProvider(noop.NewTracerProvider())},
	}
}

// TestReloadAccountsForEveryOption: for every exported With* option, Reload with a new value
// either applies it (named in changed, and the configuration snapshot holds it) or names it in
// needRestart (and the snapshot keeps the running value); never silence.
func TestReloadAccountsForEveryOption(t *testing.T) {
	t.Parallel()
	cases := reloadCases()
	var ruleNames []string
	for _, r := range reloadRules {
		ruleNames = append(ruleNames, r.name)
	}
	slices.Sort(ruleNames)
	exported := exportedOptions(t)
	if !slices.Equal(exported, ruleNames) {
		t.Fatalf("exported options %v\nreload rules     %v", exported, ruleNames)
	}
	for _, name := range exported {
		tc, ok := cases[name]
		if !ok {
			t.Errorf("%s: no test value; add one to reloadCases", name)
			continue
		}
		t.Run(name, func(t *testing.T) { checkReload(t, name, tc) })
	}
}

func checkReload(t *testing.T, name string, tc reloadCase) {
	base := WithBackendURL("http://127.0.0.1:1")
	if tc.handler {
		base = WithHandler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	}
	c, err := New("ws://pb.example/telephone/websocket", base)
	if err != nil {
		t.Fatal(err)
	}
	before := c.conf()
	changed, restart, err := c.Reload(tc.opt)
	if err != nil {
		t.Fatal(err)
	}
	r := &reloadRules[slices.IndexFunc(reloadRules, func(r reloadRule) bool { return r.name == name })]
	after := c.conf()
	switch {
	case slices.Equal(changed, []string{name}) && restart == nil:
		if !r.live || !r.differs(before, after, true) {
			t.Fatalf("reported as applied, but the configuration did not take it (live %v)", r.live)
		}
	case changed == nil && slices.Equal(restart, []string{name}):
		if r.live || r.differs(before, after, false) {
			t.Fatalf("reported as needing a restart, but the configuration changed (live %v)", r.live)
		}
	default:
		t.Fatalf("changed %v, needRestart %v", changed, restart)
	}
	if changed, restart, err := c.Reload(); changed != nil || restart != nil || err != nil {
		t.Fatalf("an empty Reload after %s: %v %v %v", name, changed, restart, err)
	}
}

// TestReloadRulesCoverEveryField: every options field that an option sets belongs to exactly
// one reload rule.
func TestReloadRulesCoverEveryField(t *testing.T) {
	t.Parallel()
	var o options
	covered := map[uintptr]string{}
	for _, r := range reloadRules {
		for _, p := range r.fields(&o) {
			off := reflect.ValueOf(p).Pointer() - uintptr(unsafe.Pointer(&o))
			if prev, dup := covered[off]; dup {
				t.Errorf("field at offset %d in both %s and %s", off, prev, r.name)
			}
			covered[off] = r.name
		}
	}
	notOptions := map[string]bool{"stableAfter": true} // DefaultStableAfter; no option sets it
	ty := reflect.TypeFor[options]()
	for i := range ty.NumField() {
		f := ty.Field(i)
		if _, ok := covered[f.Offset]; !ok && !notOptions[f.Name] {
			t.Errorf("options.%s is in no reload rule", f.Name)
		}
	}
}

// TestReloadNewLiveOptionsTakeEffect: the clock skew applies to the next token parsed, and the
// handshake timeout to the next proxied WebSocket.
func TestReloadNewLiveOptionsTakeEffect(t *testing.T) {
	t.Parallel()
	c, err := New("ws://pb.example/telephone/websocket", WithHandler(http.NotFoundHandler()), WithClockSkew(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tok, err := plugtoken.Sign(plugtoken.Claims{Subject: "s", ID: "j", PathID: "p",
		IssuedAt: now.Add(3 * time.Minute), ExpiresAt: now.Add(time.Hour)}, []byte("k"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.tokens.parse(tok, "configured"); !errors.Is(err, plugtoken.ErrIssuedInFuture) {
		t.Fatalf("iat 3 min ahead with 1 min skew: %v", err)
	}
	if _, _, err := c.Reload(WithClockSkew(5*time.Minute), WithWebSocketHandshakeTimeout(1500*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.tokens.parse(tok, "configured"); err != nil {
		t.Fatalf("iat 3 min ahead after the skew was reloaded to 5 min: %v", err)
	}
	if g := c.ws.limits().grace; g != 1500*time.Millisecond {
		t.Fatalf("handshake timeout for new connections %v", g)
	}
}

type nopObserver struct{}

func (nopObserver) ObserveRequest(*ObservedRequest) func(*ObservedResponse) { return nil }

func (nopObserver) ObserveWebSocket(*ObservedWebSocket) func(*ObservedWebSocketEnd) { return nil }
