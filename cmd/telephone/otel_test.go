package main

import (
	"io"
	"net/http"
	"sync"
	"syscall"
	"testing"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// collector is a fake OTLP/HTTP collector that keeps the spans it receives.
type collector struct {
	mu       sync.Mutex
	spans    []*tracepb.Span
	services []string
	paths    []string
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	var req collectortrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.paths = append(c.paths, r.URL.Path)
	for _, rs := range req.ResourceSpans {
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.Key == "service.name" {
				c.services = append(c.services, kv.GetValue().GetStringValue())
			}
		}
		for _, ss := range rs.ScopeSpans {
			c.spans = append(c.spans, ss.Spans...)
		}
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
	_, _ = w.Write(out)
}

// TestRunExportsTraces: with OTEL_EXPORTER_OTLP_ENDPOINT, `telephone run` exports one span per
// request (with its three children) to the collector's /v1/traces, flushed at shutdown.
func TestRunExportsTraces(t *testing.T) {
	t.Parallel()
	col := &collector{}
	colSrv := newBackend(t, col.ServeHTTP)
	srv := newPlugboard(t)
	env, tok := runEnv(t, srv, okBackend(t, "traced").URL, "OTEL_EXPORTER_OTLP_ENDPOINT", colSrv.URL+"/", "LOG_FORMAT", "json")
	tc := newTestCLI(env, nil)
	code := tc.start("run")
	waitJoined(t, srv, tok.PathID)
	tc.errOut.waitLine(t, "tracing to OpenTelemetry")
	if c, _, body := get(t, http.MethodGet, srv.CallURL(tok.PathID)+"/traced/path", nil); c != 200 || body != "traced" {
		t.Fatalf("call: %d %q", c, body)
	}
	tc.sigs <- syscall.SIGTERM
	if c := waitCode(t, code); c != 0 {
		t.Fatalf("exit %d; stderr:\n%s", c, tc.errOut)
	}
	col.mu.Lock()
	defer col.mu.Unlock()
	names := map[string]*tracepb.Span{}
	for _, s := range col.spans {
		names[s.Name] = s
	}
	root := names["GET"]
	if root == nil || names["queue wait"] == nil || names["backend"] == nil || names["encode+send"] == nil {
		t.Fatalf("spans exported: %v", names)
	}
	path := ""
	for _, kv := range root.Attributes {
		if kv.Key == "url.path" {
			path = kv.GetValue().GetStringValue()
		}
	}
	if path != "/traced/path" || string(names["backend"].ParentSpanId) != string(root.SpanId) {
		t.Errorf("root span path %q; backend parent %x, root %x", path, names["backend"].ParentSpanId, root.SpanId)
	}
	if len(col.services) == 0 || col.services[0] != "telephone" || col.paths[0] != "/v1/traces" {
		t.Errorf("service names %v, paths %v", col.services, col.paths)
	}
}
