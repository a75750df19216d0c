package telephone_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/verastack/telephone"
)

// tracedTunnel is a tunnel whose Client records its spans in memory.
func tracedTunnel(t *testing.T, opts ...telephone.Option) (*tunnel, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return startTunnel(t, nil, append(opts, telephone.WithTracerProvider(tp))...), exp
}

// spansOf waits for the request's span (the root of its trace in the Client, ended last) and
// returns it and its children by name.
func spansOf(t *testing.T, exp *tracetest.InMemoryExporter, method string) (tracetest.SpanStub, map[string]tracetest.SpanStub) {
	t.Helper()
	var root tracetest.SpanStub
	waitFor(t, func() bool {
		for _, s := range exp.GetSpans() {
			if s.Name == method && s.SpanKind == trace.SpanKindServer {
				root = s
				return true
			}
		}
		return false
	})
	children := map[string]tracetest.SpanStub{}
	waitFor(t, func() bool {
		for _, s := range exp.GetSpans() {
			if s.Parent.SpanID() == root.SpanContext.SpanID() {
				children[s.Name] = s
			}
		}
		return len(children) == 3
	})
	return root, children
}

func attr(s tracetest.SpanStub, key string) attribute.Value {
	for _, kv := range s.Attributes {
		if string(kv.Key) == key {
			return kv.Value
		}
	}
	return attribute.Value{}
}

// TestTracingContinuesTraceparent: the request's span continues the caller's trace, has its
// three child spans, and the backend receives the traceparent of the "backend" span.
func TestTracingContinuesTraceparent(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var seen string
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = r.Header.Get("Traceparent")
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(backend.Close)
	tn, exp := tracedTunnel(t, telephone.WithBackendURL(backend.URL))
	const traceID, parentID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	res, _ := tn.do("PUT", "/traced/x?secret=1", strings.NewReader("body"), "Traceparent", "00-"+traceID+"-"+parentID+"-01")
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("status %d", res.StatusCode)
	}
	root, children := spansOf(t, exp, "PUT")
	if root.SpanContext.TraceID().String() != traceID || root.Parent.SpanID().String() != parentID || !root.Parent.IsRemote() {
		t.Errorf("span %s parent %s: the incoming traceparent was not continued", root.SpanContext.TraceID(), root.Parent.SpanID())
	}
	if attr(root, "http.response.status_code").AsInt64() != 202 || attr(root, "url.path").AsString() != "/traced/x" ||
		attr(root, "http.request.method").AsString() != "PUT" || attr(root, "telephone.request_id").AsString() == "" {
		t.Errorf("span attributes %v", root.Attributes)
	}
	for _, name := range []string{"queue wait", "backend", "encode+send"} {
		c, ok := children[name]
		if !ok || c.EndTime.Before(c.StartTime) || c.StartTime.Before(root.StartTime) {
			t.Errorf("child span %q: %+v", name, c)
		}
	}
	b := children["backend"]
	mu.Lock()
	defer mu.Unlock()
	if want := "00-" + traceID + "-" + b.SpanContext.SpanID().String() + "-01"; seen != want {
		t.Errorf("backend saw traceparent %q, want %q (the backend span's)", seen, want)
	}
	if attr(b, "http.response.status_code").AsInt64() != 202 || b.SpanKind != trace.SpanKindClient {
		t.Errorf("backend span %+v", b)
	}
}

// TestTracingNewTraceAndErrors: without a traceparent the request starts a trace; a 504 at the
// deadline marks the span as an error.
func TestTracingNewTraceAndErrors(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release })
	tn, exp := tracedTunnel(t, telephone.WithHandler(h), telephone.WithRequestTimeout(200*time.Millisecond))
	res, _ := tn.do("GET", "/slow", nil)
	close(release)
	if res.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("status %d", res.StatusCode)
	}
	root, children := spansOf(t, exp, "GET")
	if root.Parent.IsValid() || !root.SpanContext.IsValid() {
		t.Errorf("a request without traceparent has parent %v", root.Parent)
	}
	if root.Status.Code != codes.Error || attr(root, "http.response.status_code").AsInt64() != 504 {
		t.Errorf("span status %+v, attributes %v", root.Status, root.Attributes)
	}
	if _, ok := children["backend"]; !ok {
		t.Error("no backend span")
	}
}

// TestTracingOffPassesTraceparent: without a tracer provider the incoming traceparent reaches
// the backend unchanged.
func TestTracingOffPassesTraceparent(t *testing.T) {
	t.Parallel()
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(r.Header.Get("Traceparent")))
	}))
	t.Cleanup(backend.Close)
	tn := startTunnel(t, nil, telephone.WithBackendURL(backend.URL))
	if _, body := tn.do("GET", "/", nil, "Traceparent", tp); body != tp {
		t.Errorf("backend saw traceparent %q, want %q", body, tp)
	}
}

func TestWithTracerProviderNil(t *testing.T) {
	t.Parallel()
	if _, err := telephone.New("ws://pb.test/telephone/websocket", telephone.WithTracerProvider(nil)); err == nil {
		t.Fatal("WithTracerProvider(nil) accepted")
	}
}
