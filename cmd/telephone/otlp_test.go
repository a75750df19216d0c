package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// everyAttribute has one attribute of every attribute.Type.
var everyAttribute = []attribute.KeyValue{
	attribute.Bool("bool", true),
	attribute.Bool("bool.false", false),
	attribute.Int64("int64", -42),
	attribute.Int64("int64.zero", 0),
	attribute.Float64("float64", 2.5),
	attribute.String("string", "héllo"),
	attribute.String("string.empty", ""),
	attribute.BoolSlice("bools", []bool{true, false}),
	attribute.Int64Slice("int64s", []int64{1, -2, 1 << 40}),
	attribute.Float64Slice("float64s", []float64{0, -1.5}),
	attribute.StringSlice("strings", []string{"a", "", "c"}),
	attribute.ByteSlice("bytes", []byte{0, 1, 0xff}),
	attribute.Slice("slice", attribute.IntValue(1), attribute.StringValue("two"), attribute.SliceValue(attribute.BoolValue(true))),
	attribute.Map("map", attribute.String("k", "v"), attribute.Map("inner", attribute.Float64("f", 1))),
	{Key: "empty"},
}

var t0 = time.Date(2026, 11, 30, 12, 0, 0, 123456789, time.UTC)

// recordSpans returns spans recorded by the SDK: two resources, two scopes in the first, a
// remote parent with trace state, a local parent, every attribute type, events, links, status
// codes and dropped attributes, events and links.
func recordSpans(t *testing.T) []sdktrace.ReadOnlySpan {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	limits := sdktrace.NewSpanLimits()
	limits.AttributeCountLimit = len(everyAttribute)
	limits.EventCountLimit, limits.LinkCountLimit = 2, 2
	limits.AttributePerEventCountLimit, limits.AttributePerLinkCountLimit = 2, 2
	resA := resource.NewWithAttributes("https://opentelemetry.io/schemas/1.26.0", attribute.String("service.name", "a"), attribute.Int64Slice("r", []int64{7}))
	resB := resource.NewSchemaless(attribute.String("service.name", "b"))
	tpA := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithResource(resA), sdktrace.WithRawSpanLimits(limits))
	tpB := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithResource(resB))
	tr1 := tpA.Tracer("scope.one", trace.WithInstrumentationVersion("1.2.3"), trace.WithSchemaURL("https://opentelemetry.io/schemas/1.20.0"),
		trace.WithInstrumentationAttributes(attribute.String("scope.attr", "x")))
	tr2 := tpA.Tracer("scope.two")
	trB := tpB.Tracer("scope.b")

	ts, err := trace.ParseTraceState("vendor=value,other=1")
	if err != nil {
		t.Fatal(err)
	}
	remote := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5, 6},
		TraceFlags: trace.FlagsSampled, TraceState: ts, Remote: true})
	linked := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{9}, SpanID: trace.SpanID{8}, TraceState: ts, Remote: true})
	localLink := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{7}, SpanID: trace.SpanID{6}, TraceFlags: trace.FlagsSampled})
	ctx := trace.ContextWithRemoteSpanContext(context.Background(), remote)

	ctx, root := tr1.Start(ctx, "everything", trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(t0),
		trace.WithAttributes(append(everyAttribute, attribute.String("dropped.1", "x"), attribute.String("dropped.2", "y"))...),
		trace.WithLinks( // the SDK drops the oldest events and links above the limit
			trace.Link{SpanContext: localLink, Attributes: []attribute.KeyValue{attribute.Bool("dropped link", true)}},
			trace.Link{SpanContext: localLink},
			trace.Link{SpanContext: linked, Attributes: []attribute.KeyValue{attribute.Int("l1", 1), attribute.Int("l2", 2), attribute.Int("l3", 3)}}))
	root.AddEvent("dropped", trace.WithTimestamp(t0.Add(time.Millisecond)))
	root.AddEvent("plain", trace.WithTimestamp(t0.Add(2*time.Millisecond)))
	root.AddEvent("with attributes", trace.WithTimestamp(t0.Add(3*time.Millisecond)), trace.WithAttributes(attribute.String("e1", "v"), attribute.Float64("e2", 3), attribute.Bool("e3", false)))
	root.SetStatus(codes.Error, "boom")

	_, child := tr2.Start(ctx, "child", trace.WithSpanKind(trace.SpanKindClient), trace.WithTimestamp(t0.Add(time.Microsecond)))
	child.SetStatus(codes.Ok, "")
	child.End(trace.WithTimestamp(t0.Add(time.Second)))
	root.End(trace.WithTimestamp(t0.Add(2 * time.Second)))
	_, other := trB.Start(context.Background(), "in b", trace.WithSpanKind(trace.SpanKindProducer), trace.WithTimestamp(t0))
	other.End(trace.WithTimestamp(t0.Add(time.Nanosecond)))
	_, last := tr1.Start(context.Background(), "alone", trace.WithSpanKind(trace.SpanKindConsumer), trace.WithTimestamp(t0))
	last.End(trace.WithTimestamp(t0.Add(time.Minute)))

	spans := rec.Ended()
	if len(spans) != 4 || spans[0].Name() != "child" || spans[1].DroppedAttributes() != 2 || spans[1].DroppedEvents() != 1 ||
		spans[1].DroppedLinks() != 1 || spans[1].Events()[1].DroppedAttributeCount != 1 || spans[1].Links()[1].DroppedAttributeCount != 1 {
		var got []string
		for _, s := range spans {
			got = append(got, fmt.Sprintf("%s attrs -%d events -%d links -%d %+v %+v", s.Name(), s.DroppedAttributes(), s.DroppedEvents(), s.DroppedLinks(), s.Events(), s.Links()))
		}
		t.Fatalf("the SDK recorded something else than the test needs:\n%s", strings.Join(got, "\n"))
	}
	return spans
}

// canonical turns an attribute value into plain Go values; typed slices and SLICE become []any,
// MAP a list of key/value pairs, EMPTY nil.
func canonical(v attribute.Value) any {
	list := func(n int, at func(int) any) []any {
		out := make([]any, n)
		for i := range out {
			out[i] = at(i)
		}
		return out
	}
	switch v.Type() {
	case attribute.BOOLSLICE:
		s := v.AsBoolSlice()
		return list(len(s), func(i int) any { return s[i] })
	case attribute.INT64SLICE:
		s := v.AsInt64Slice()
		return list(len(s), func(i int) any { return s[i] })
	case attribute.FLOAT64SLICE:
		s := v.AsFloat64Slice()
		return list(len(s), func(i int) any { return s[i] })
	case attribute.STRINGSLICE:
		s := v.AsStringSlice()
		return list(len(s), func(i int) any { return s[i] })
	case attribute.SLICE:
		s := v.AsSlice()
		return list(len(s), func(i int) any { return canonical(s[i]) })
	case attribute.MAP:
		m := v.AsMap()
		return list(len(m), func(i int) any { return [2]any{string(m[i].Key), canonical(m[i].Value)} })
	case attribute.EMPTY:
		return nil
	}
	return v.AsInterface()
}

// canonicalPB is canonical for a decoded AnyValue.
func canonicalPB(t *testing.T, v *commonpb.AnyValue) any {
	switch x := v.GetValue().(type) {
	case nil:
		return nil
	case *commonpb.AnyValue_BoolValue:
		return x.BoolValue
	case *commonpb.AnyValue_IntValue:
		return x.IntValue
	case *commonpb.AnyValue_DoubleValue:
		return x.DoubleValue
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_BytesValue:
		return x.BytesValue
	case *commonpb.AnyValue_ArrayValue:
		out := make([]any, len(x.ArrayValue.Values))
		for i, e := range x.ArrayValue.Values {
			out[i] = canonicalPB(t, e)
		}
		return out
	case *commonpb.AnyValue_KvlistValue:
		out := make([]any, len(x.KvlistValue.Values))
		for i, kv := range x.KvlistValue.Values {
			out[i] = [2]any{kv.Key, canonicalPB(t, kv.Value)}
		}
		return out
	}
	t.Errorf("unexpected AnyValue %v", v)
	return nil
}

func checkAttributes(t *testing.T, where string, want []attribute.KeyValue, got []*commonpb.KeyValue) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d attributes, want %d: %v", where, len(got), len(want), got)
		return
	}
	for i, kv := range want {
		if got[i].Key != string(kv.Key) || !equalCanonical(canonicalPB(t, got[i].Value), canonical(kv.Value)) {
			t.Errorf("%s: attribute %d = %v, want %s=%v", where, i, got[i], kv.Key, canonical(kv.Value))
		}
	}
}

func equalCanonical(a, b any) bool {
	switch x := a.(type) {
	case []byte:
		y, ok := b.([]byte)
		return ok && bytes.Equal(x, y)
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !equalCanonical(x[i], y[i]) {
				return false
			}
		}
		return true
	case [2]any:
		y, ok := b.([2]any)
		return ok && x[0] == y[0] && equalCanonical(x[1], y[1])
	}
	return a == b
}

// checkSpan compares a decoded span with the SDK's, field by field.
func checkSpan(t *testing.T, want sdktrace.ReadOnlySpan, got *tracepb.Span) {
	t.Helper()
	sc, parent := want.SpanContext(), want.Parent()
	tid, sid := sc.TraceID(), sc.SpanID()
	if !bytes.Equal(got.TraceId, tid[:]) || !bytes.Equal(got.SpanId, sid[:]) || got.TraceState != sc.TraceState().String() {
		t.Errorf("%s: ids %x %x %q, want %s %s %q", want.Name(), got.TraceId, got.SpanId, got.TraceState, tid, sid, sc.TraceState())
	}
	var wantParent []byte
	if parent.IsValid() {
		pid := parent.SpanID()
		wantParent = pid[:]
	}
	if !bytes.Equal(got.ParentSpanId, wantParent) {
		t.Errorf("%s: parent %x, want %x", want.Name(), got.ParentSpanId, wantParent)
	}
	wantFlags := uint32(sc.TraceFlags()) | 0x100 // SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
	if parent.IsRemote() {
		wantFlags |= 0x200 // SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK
	}
	if got.Flags != wantFlags {
		t.Errorf("%s: flags %#x, want %#x", want.Name(), got.Flags, wantFlags)
	}
	kinds := map[trace.SpanKind]tracepb.Span_SpanKind{trace.SpanKindInternal: tracepb.Span_SPAN_KIND_INTERNAL,
		trace.SpanKindServer: tracepb.Span_SPAN_KIND_SERVER, trace.SpanKindClient: tracepb.Span_SPAN_KIND_CLIENT,
		trace.SpanKindProducer: tracepb.Span_SPAN_KIND_PRODUCER, trace.SpanKindConsumer: tracepb.Span_SPAN_KIND_CONSUMER}
	if got.Name != want.Name() || got.Kind != kinds[want.SpanKind()] {
		t.Errorf("name %q kind %v, want %q %v", got.Name, got.Kind, want.Name(), want.SpanKind())
	}
	if got.StartTimeUnixNano != uint64(want.StartTime().UnixNano()) || got.EndTimeUnixNano != uint64(want.EndTime().UnixNano()) {
		t.Errorf("%s: times %d..%d, want %v..%v", want.Name(), got.StartTimeUnixNano, got.EndTimeUnixNano, want.StartTime(), want.EndTime())
	}
	checkAttributes(t, want.Name(), want.Attributes(), got.Attributes)
	if int(got.DroppedAttributesCount) != want.DroppedAttributes() || int(got.DroppedEventsCount) != want.DroppedEvents() ||
		int(got.DroppedLinksCount) != want.DroppedLinks() {
		t.Errorf("%s: dropped %d %d %d", want.Name(), got.DroppedAttributesCount, got.DroppedEventsCount, got.DroppedLinksCount)
	}
	if len(got.Events) != len(want.Events()) {
		t.Fatalf("%s: %d events, want %d", want.Name(), len(got.Events), len(want.Events()))
	}
	for i, e := range want.Events() {
		g := got.Events[i]
		if g.Name != e.Name || g.TimeUnixNano != uint64(e.Time.UnixNano()) || int(g.DroppedAttributesCount) != e.DroppedAttributeCount {
			t.Errorf("%s: event %d = %v, want %+v", want.Name(), i, g, e)
		}
		checkAttributes(t, want.Name()+" event "+e.Name, e.Attributes, g.Attributes)
	}
	if len(got.Links) != len(want.Links()) {
		t.Fatalf("%s: %d links, want %d", want.Name(), len(got.Links), len(want.Links()))
	}
	for i, l := range want.Links() {
		g := got.Links[i]
		ltid, lsid := l.SpanContext.TraceID(), l.SpanContext.SpanID()
		flags := uint32(l.SpanContext.TraceFlags()) | 0x100
		if l.SpanContext.IsRemote() {
			flags |= 0x200
		}
		if !bytes.Equal(g.TraceId, ltid[:]) || !bytes.Equal(g.SpanId, lsid[:]) || g.TraceState != l.SpanContext.TraceState().String() ||
			int(g.DroppedAttributesCount) != l.DroppedAttributeCount || g.Flags != flags {
			t.Errorf("%s: link %d = %v, want %+v", want.Name(), i, g, l)
		}
		checkAttributes(t, want.Name()+" link", l.Attributes, g.Attributes)
	}
	statuses := map[codes.Code]tracepb.Status_StatusCode{codes.Unset: tracepb.Status_STATUS_CODE_UNSET,
		codes.Ok: tracepb.Status_STATUS_CODE_OK, codes.Error: tracepb.Status_STATUS_CODE_ERROR}
	if got.GetStatus().GetCode() != statuses[want.Status().Code] || got.GetStatus().GetMessage() != want.Status().Description {
		t.Errorf("%s: status %v, want %+v", want.Name(), got.GetStatus(), want.Status())
	}
}

// checkRequest decodes body with the OTLP protobuf types and compares it with spans: one
// ResourceSpans per resource, one ScopeSpans per scope, every span once, in order.
func checkRequest(t *testing.T, body []byte, spans []sdktrace.ReadOnlySpan) {
	t.Helper()
	var req collectortrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(body, &req); err != nil {
		t.Fatalf("the collector's protobuf cannot decode the request: %v", err)
	}
	next := 0 // spans are grouped in the order of first appearance; recordSpans orders them so
	seen := map[string]bool{}
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			for _, got := range ss.Spans {
				if seen[string(got.SpanId)] {
					t.Fatalf("span %s sent twice", got.Name)
				}
				seen[string(got.SpanId)] = true
				var want sdktrace.ReadOnlySpan
				for _, s := range spans {
					if sid := s.SpanContext().SpanID(); bytes.Equal(sid[:], got.SpanId) {
						want = s
					}
				}
				if want == nil {
					t.Fatalf("unknown span %v", got)
				}
				checkSpan(t, want, got)
				res, scope := want.Resource(), want.InstrumentationScope()
				checkAttributes(t, "resource", res.Attributes(), rs.GetResource().GetAttributes())
				checkAttributes(t, "scope", scope.Attributes.ToSlice(), ss.GetScope().GetAttributes())
				if rs.SchemaUrl != res.SchemaURL() || ss.SchemaUrl != scope.SchemaURL || ss.GetScope().GetName() != scope.Name ||
					ss.GetScope().GetVersion() != scope.Version {
					t.Errorf("%s: resource schema %q, scope %v schema %q; want %q, %+v", got.Name, rs.SchemaUrl, ss.Scope, ss.SchemaUrl, res.SchemaURL(), scope)
				}
				next++
			}
		}
	}
	if next != len(spans) {
		t.Errorf("%d spans sent, want %d", next, len(spans))
	}
}

// TestOTLPEncodingDecodesAsOTLP: what the hand-written encoder produces decodes with the OTLP
// protobuf types into the SDK's spans, field by field, grouped by resource and scope.
func TestOTLPEncodingDecodesAsOTLP(t *testing.T) {
	t.Parallel()
	spans := recordSpans(t)
	body := appendTraceRequest(nil, spans)
	checkRequest(t, body, spans)
	var req collectortrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(body, &req); err != nil {
		t.Fatal(err)
	}
	// child (scope.two, A), everything (scope.one, A), in b (B), alone (scope.one, A)
	var shape []string
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			var names []string
			for _, s := range ss.Spans {
				names = append(names, s.Name)
			}
			service := ""
			for _, kv := range rs.Resource.Attributes {
				if kv.Key == "service.name" {
					service = kv.Value.GetStringValue()
				}
			}
			shape = append(shape, service+"/"+ss.Scope.Name+":"+strings.Join(names, ","))
		}
	}
	if got := strings.Join(shape, " "); got != "a/scope.two:child a/scope.one:everything,alone b/scope.b:in b" {
		t.Errorf("grouping: %s", got)
	}
	if len(req.ResourceSpans) != 2 {
		t.Errorf("%d ResourceSpans, want 2", len(req.ResourceSpans))
	}
	// Re-encoding with the protobuf runtime gives the same size: no field was written twice
	// or in a non-canonical form.
	if again, err := proto.Marshal(&req); err != nil || len(again) != len(body) {
		t.Errorf("protobuf re-encodes %d bytes (%v), the encoder wrote %d", len(again), err, len(body))
	}
}

// TestOTLPEncodingEdgeCases: an empty batch encodes to nothing; a span never ended has no end
// time; a long message gets a multi-byte length.
func TestOTLPEncodingEdgeCases(t *testing.T) {
	t.Parallel()
	if b := appendTraceRequest(nil, nil); len(b) != 0 {
		t.Errorf("empty batch: %x", b)
	}
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	_, s := tp.Tracer("t").Start(context.Background(), strings.Repeat("n", 70000))
	s.End()
	snap := rec.Ended()[0]
	stub := tracetest.SpanStubFromReadOnlySpan(snap)
	stub.EndTime = time.Time{}
	stub.StartTime = time.Unix(0, 0).Add(-time.Hour)
	body := appendTraceRequest(nil, []sdktrace.ReadOnlySpan{stub.Snapshot()})
	var req collectortrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(body, &req); err != nil {
		t.Fatal(err)
	}
	got := req.ResourceSpans[0].ScopeSpans[0].Spans[0]
	if len(got.Name) != 70000 || got.StartTimeUnixNano != 0 || got.EndTimeUnixNano != 0 {
		t.Errorf("name %d bytes, times %d %d", len(got.Name), got.StartTimeUnixNano, got.EndTimeUnixNano)
	}
}

// collectorRequest is what a test collector received.
type collectorRequest struct {
	path, contentType, encoding string
	header                      http.Header
	body                        []byte // decompressed
}

// testCollector answers each request with the next status (200 once they run out) and
// records what it received.
type testCollector struct {
	mu       sync.Mutex
	statuses []int
	header   http.Header // added to refusals
	reply    string      // body of refusals
	got      []collectorRequest
}

func (c *testCollector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	b, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, collectorRequest{path: r.URL.Path, contentType: r.Header.Get("Content-Type"),
		encoding: r.Header.Get("Content-Encoding"), header: r.Header.Clone(), body: b})
	if len(c.statuses) > 0 {
		status := c.statuses[0]
		c.statuses = c.statuses[1:]
		if status != http.StatusOK {
			for k, v := range c.header {
				w.Header()[k] = v
			}
			w.WriteHeader(status)
			io.WriteString(w, c.reply)
			return
		}
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
}

func (c *testCollector) requests() []collectorRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]collectorRequest(nil), c.got...)
}

// newTestExporter returns an exporter configured by env (a base endpoint of base), shut down
// at the end of the test.
func newTestExporter(t *testing.T, base string, env map[string]string) *otlpExporter {
	t.Helper()
	cfg, errs := otlpConfigFromEnv(mapLookup(env), base)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	e := newOTLPExporter(cfg)
	t.Cleanup(func() { _ = e.Shutdown(context.Background()) })
	return e
}

// TestOTLPExporterPosts: spans are POSTed as protobuf to <endpoint>/v1/traces with the
// configured headers (the TRACES_ variable wins), gzip-compressed when asked.
func TestOTLPExporterPosts(t *testing.T) {
	t.Parallel()
	spans := recordSpans(t)
	for _, tc := range []struct {
		name     string
		env      map[string]string
		encoding string
		headers  map[string]string
	}{
		{"plain", map[string]string{"OTEL_EXPORTER_OTLP_HEADERS": "Authorization=Bearer%20s3cret, x-tenant = a%2Cb"}, "",
			map[string]string{"Authorization": "Bearer s3cret", "X-Tenant": "a,b"}},
		{"gzip, traces variables win", map[string]string{"OTEL_EXPORTER_OTLP_HEADERS": "x-generic=1", "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "x-traces=2",
			"OTEL_EXPORTER_OTLP_COMPRESSION": "none", "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "gzip"}, "gzip",
			map[string]string{"X-Generic": "", "X-Traces": "2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			col := &testCollector{}
			srv := newBackend(t, col.ServeHTTP)
			e := newTestExporter(t, srv.URL+"/", tc.env)
			if err := e.ExportSpans(context.Background(), spans); err != nil {
				t.Fatal(err)
			}
			if err := e.ExportSpans(context.Background(), nil); err != nil {
				t.Fatal(err)
			}
			got := col.requests()
			if len(got) != 1 || got[0].path != "/v1/traces" || got[0].contentType != "application/x-protobuf" || got[0].encoding != tc.encoding {
				t.Fatalf("requests %+v", got)
			}
			for k, v := range tc.headers {
				if got[0].header.Get(k) != v {
					t.Errorf("header %s = %q, want %q", k, got[0].header.Get(k), v)
				}
			}
			checkRequest(t, got[0].body, spans)
		})
	}
}

// TestOTLPTracesEndpoint: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is used as is.
func TestOTLPTracesEndpoint(t *testing.T) {
	t.Parallel()
	col := &testCollector{}
	srv := newBackend(t, col.ServeHTTP)
	e := newTestExporter(t, "http://unused.invalid:4318", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": srv.URL + "/custom/path"})
	if err := e.ExportSpans(context.Background(), recordSpans(t)); err != nil {
		t.Fatal(err)
	}
	if got := col.requests(); len(got) != 1 || got[0].path != "/custom/path" {
		t.Errorf("requests %+v", got)
	}
}

// mapLookup looks variables up in env, as if they came from the environment.
func mapLookup(env map[string]string) func(string) (string, string) {
	return func(k string) (string, string) {
		if v := env[k]; v != "" {
			return v, srcEnv
		}
		return "", ""
	}
}

// TestOTLPConfigFromEnv: defaults, each variable, the TRACES_ form winning, and bad values as
// errors that name the variable and never quote a header value.
func TestOTLPConfigFromEnv(t *testing.T) {
	t.Parallel()
	cfg, errs := otlpConfigFromEnv(mapLookup(nil), "https://c.example:4318/")
	if len(errs) > 0 || cfg.url != "https://c.example:4318/v1/traces" || cfg.timeout != 10*time.Second || cfg.gzip || cfg.headers != nil || cfg.tls != nil {
		t.Errorf("defaults: %+v %v", cfg, errs)
	}
	ca, cert, key := writePKI(t, t.TempDir())
	env := map[string]string{
		"OTEL_EXPORTER_OTLP_TIMEOUT": "abc", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "2500",
		"OTEL_EXPORTER_OTLP_COMPRESSION": "GZIP",
		"OTEL_EXPORTER_OTLP_CERTIFICATE": "/no/such/ca.pem", "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE": ca,
		"OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": cert, "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY": key,
		"OTEL_EXPORTER_OTLP_HEADERS": "a=1,,b=x%3Dy",
	}
	cfg, errs = otlpConfigFromEnv(mapLookup(env), "http://c:4318")
	if len(errs) > 0 || cfg.timeout != 2500*time.Millisecond || !cfg.gzip || cfg.tls == nil || cfg.tls.RootCAs == nil ||
		len(cfg.tls.Certificates) != 1 || len(cfg.headers) != 2 || cfg.headers[1] != [2]string{"b", "x=y"} {
		t.Errorf("variables: %+v %v", cfg, errs)
	}
	for _, tc := range []struct{ name, value, want string }{
		{"OTEL_EXPORTER_OTLP_TIMEOUT", "10s", `OTEL_EXPORTER_OTLP_TIMEOUT: must be a whole number of milliseconds from 1 to 3600000, got "10s" (from environment)`},
		{"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "0", `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: must be a whole number`},
		{"OTEL_EXPORTER_OTLP_TIMEOUT", "-5", `from 1 to`},
		{"OTEL_EXPORTER_OTLP_COMPRESSION", "zstd", `OTEL_EXPORTER_OTLP_COMPRESSION: must be gzip or none, got "zstd" (from environment)`},
		{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "localhost:4318/v1/traces", `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: must be an http:// or https:// URL`},
		{"OTEL_EXPORTER_OTLP_HEADERS", "api-key=s3cret,token", `OTEL_EXPORTER_OTLP_HEADERS: entry 2 is not key=value`},
		{"OTEL_EXPORTER_OTLP_TRACES_HEADERS", "bad key=s3cret", `OTEL_EXPORTER_OTLP_TRACES_HEADERS: entry 1 is not key=value with a valid header name`},
		{"OTEL_EXPORTER_OTLP_HEADERS", "api-key=s3cret%zz", `OTEL_EXPORTER_OTLP_HEADERS: the value of api-key (entry 1) is not a valid URL-encoded header value`},
		{"OTEL_EXPORTER_OTLP_HEADERS", "api-key=s3cret%0Aevil", `the value of api-key (entry 1) is not a valid`},
		{"OTEL_EXPORTER_OTLP_HEADERS", "é=s3cret", `entry 1 is not key=value`},
		{"OTEL_EXPORTER_OTLP_CERTIFICATE", "/no/such/ca.pem", `OTEL_EXPORTER_OTLP_CERTIFICATE: transport: invalid TLS options: CA file: open /no/such/ca.pem`},
		{"OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", key, `OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE: transport: invalid TLS options: CA file`},
		{"OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", cert, `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE: OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY must be set together`},
		{"OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", key, `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE: OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY must be set together`},
	} {
		_, errs := otlpConfigFromEnv(mapLookup(map[string]string{tc.name: tc.value}), "http://c:4318")
		if got := errStrings(errs); len(got) != 1 || !strings.Contains(got[0], tc.want) || strings.Contains(got[0], "s3cret") {
			t.Errorf("%s=%q: errors %q, want %q (and no secret)", tc.name, tc.value, got, tc.want)
		}
	}
	// A certificate file that is not a key pair.
	_, errs = otlpConfigFromEnv(mapLookup(map[string]string{"OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": cert, "OTEL_EXPORTER_OTLP_CLIENT_KEY": ca}), "http://c:4318")
	if got := errStrings(errs); len(got) != 1 || !strings.HasPrefix(got[0], "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE: transport: invalid TLS options") {
		t.Errorf("bad key pair: %q", got)
	}
}

// TestOTLPExporterTLS: OTEL_EXPORTER_OTLP_CERTIFICATE makes a private CA trusted, and the
// client certificate and key are presented to a collector that asks for one (mTLS).
func TestOTLPExporterTLS(t *testing.T) {
	t.Parallel()
	ca, cert, key := writePKI(t, t.TempDir())
	col := &testCollector{}
	var peers int
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		col.mu.Lock()
		peers = len(r.TLS.PeerCertificates)
		col.mu.Unlock()
		col.ServeHTTP(w, r)
	}))
	serverCert, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	// The collector asks for any client certificate; the test CA's leaf serves as one.
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientAuth: tls.RequireAnyClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	e := newTestExporter(t, srv.URL, map[string]string{"OTEL_EXPORTER_OTLP_CERTIFICATE": ca,
		"OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": cert, "OTEL_EXPORTER_OTLP_CLIENT_KEY": key})
	if err := e.ExportSpans(context.Background(), recordSpans(t)); err != nil {
		t.Fatal(err)
	}
	col.mu.Lock()
	defer col.mu.Unlock()
	if len(col.got) != 1 || peers != 1 {
		t.Errorf("%d requests, %d client certificates", len(col.got), peers)
	}
}

// roundTripFunc serves requests in memory, for tests inside a synctest bubble (whose clock
// only moves when no goroutine waits on the network).
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// inMemory routes the exporter's requests to h, or to fail when it returns an error.
func inMemory(e *otlpExporter, h http.Handler, fail func() error) {
	e.client.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if fail != nil {
			if err := fail(); err != nil {
				return nil, err
			}
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec.Result(), nil
	})
}

// TestOTLPExporterRetries: 429, 502, 503, 504 and network errors are retried with growing,
// jittered waits (or the Retry-After the collector asks for) within the export timeout; other
// statuses fail at once with the status and a piece of the body.
func TestOTLPExporterRetries(t *testing.T) {
	t.Parallel()
	spans := recordSpans(t)
	protoStatus := protowire.AppendString(protowire.AppendTag(
		protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 3), 2, protowire.BytesType), "bad span")
	for _, tc := range []struct {
		name             string
		statuses         []int
		header           http.Header
		dateIn           time.Duration // Retry-After as an HTTP date this far ahead
		reply            string
		netErrs          int
		env              map[string]string
		wantErr          string // "" for success
		attempts         int
		minWait, maxWait time.Duration
	}{
		{name: "503 then success", statuses: []int{503, 502, 504, 200}, attempts: 4, minWait: 3500 * time.Millisecond, maxWait: 7 * time.Second},
		{name: "network errors then success", netErrs: 2, attempts: 1, minWait: 1500 * time.Millisecond, maxWait: 3 * time.Second},
		{name: "Retry-After seconds", statuses: []int{429}, header: http.Header{"Retry-After": {"7"}}, attempts: 2, minWait: 7 * time.Second, maxWait: 7 * time.Second},
		{name: "Retry-After date", statuses: []int{503}, dateIn: 5 * time.Second, attempts: 2, minWait: 4 * time.Second, maxWait: 5 * time.Second},
		{name: "Retry-After past the timeout", statuses: []int{429}, header: http.Header{"Retry-After": {"60"}}, reply: "slow down",
			wantErr: "collector answered 429 Too Many Requests: slow down (not retried: the export timeout ends before the 1m0s wait)", attempts: 1},
		{name: "Retry-After overflowing", statuses: []int{503}, header: http.Header{"Retry-After": {"9223372036854775807"}},
			wantErr: "(not retried: the export timeout ends before the 1h0m0s wait)", attempts: 1},
		{name: "Retry-After unreadable", statuses: []int{503}, header: http.Header{"Retry-After": {"soon"}}, attempts: 2, minWait: 500 * time.Millisecond, maxWait: time.Second},
		{name: "400 fails at once", statuses: []int{400}, reply: "bad\x00request " + strings.Repeat("x", 300),
			wantErr: "/v1/traces: collector answered 400 Bad Request: bad request " + strings.Repeat("x", 188) + "…", attempts: 1},
		{name: "protobuf status", statuses: []int{400}, header: http.Header{"Content-Type": {"application/x-protobuf"}}, reply: string(protoStatus),
			wantErr: "collector answered 400 Bad Request: bad span", attempts: 1},
		{name: "redirect fails", statuses: []int{307}, header: http.Header{"Location": {"http://elsewhere/"}}, wantErr: "307 Temporary Redirect", attempts: 1},
		// 1.2 s: the first wait (0.5-1 s) fits, the second (1-2 s) does not.
		{name: "gives up at the timeout", statuses: []int{503, 503, 503}, env: map[string]string{"OTEL_EXPORTER_OTLP_TIMEOUT": "1200"},
			wantErr: "collector answered 503 Service Unavailable (not retried: the export timeout ends", attempts: 2, minWait: 500 * time.Millisecond, maxWait: time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				e := newTestExporter(t, "http://collector.test:4318", mergeEnv(tc.env, map[string]string{"OTEL_EXPORTER_OTLP_HEADERS": "api-key=s3cret"}))
				col := &testCollector{statuses: tc.statuses, header: tc.header, reply: tc.reply}
				if tc.dateIn > 0 {
					col.header = http.Header{"Retry-After": {time.Now().Add(tc.dateIn).Format(http.TimeFormat)}}
				}
				netErrs := tc.netErrs
				inMemory(e, col, func() error {
					if netErrs > 0 {
						netErrs--
						return errors.New("connection refused")
					}
					return nil
				})
				start := time.Now()
				err := e.ExportSpans(context.Background(), spans)
				waited := time.Since(start)
				if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
					t.Errorf("error %v, want %q", err, tc.wantErr)
				}
				if err != nil && strings.Contains(err.Error(), "s3cret") {
					t.Errorf("the error quotes a header value: %v", err)
				}
				if got := len(col.requests()); got != tc.attempts {
					t.Errorf("%d requests reached the collector, want %d", got, tc.attempts)
				}
				if waited < tc.minWait || waited > tc.maxWait {
					t.Errorf("waited %v, want %v..%v", waited, tc.minWait, tc.maxWait)
				}
			})
		})
	}
}

func mergeEnv(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range []map[string]string{a, b} {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// TestOTLPExporterCallerContext: a retry wait ends when the caller's context does.
func TestOTLPExporterCallerContext(t *testing.T) {
	t.Parallel()
	spans := recordSpans(t)
	synctest.Test(t, func(t *testing.T) {
		e := newTestExporter(t, "http://collector.test:4318", nil)
		col := &testCollector{statuses: []int{503, 503, 503}}
		inMemory(e, col, nil)
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			time.Sleep(700 * time.Millisecond) // the bubble's clock: during the first or second wait
			cancel()
		}()
		start := time.Now()
		err := e.ExportSpans(ctx, spans)
		if err == nil || !strings.Contains(err.Error(), "503 Service Unavailable (retry abandoned: context canceled)") || time.Since(start) != 700*time.Millisecond {
			t.Errorf("error %v after %v", err, time.Since(start))
		}
	})
}

// TestOTLPExporterShutdown: Shutdown refuses new exports and waits for a running one; if that
// one finishes, Shutdown returns nil; if Shutdown's context ends first, it aborts the export and
// returns the context's error. Either way later exports are refused.
func TestOTLPExporterShutdown(t *testing.T) {
	t.Parallel()
	spans := recordSpans(t)
	for _, finish := range []bool{true, false} {
		t.Run(fmt.Sprintf("export finishes=%v", finish), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newTestExporter(t, "http://collector.test:4318", nil)
				release := make(chan struct{})
				// The collector holds each request until released; an aborted request ends.
				e.client.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
					select {
					case <-release:
						return &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: http.NoBody, Request: r}, nil
					case <-r.Context().Done():
						return nil, r.Context().Err()
					}
				})
				exported := make(chan error, 1)
				go func() { exported <- e.ExportSpans(context.Background(), spans) }()
				synctest.Wait() // the export is at the collector
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				shut := make(chan error, 1)
				go func() { shut <- e.Shutdown(ctx) }()
				synctest.Wait()
				if len(shut) != 0 || len(exported) != 0 {
					t.Fatal("Shutdown did not wait for the running export")
				}
				if err := e.ExportSpans(context.Background(), spans); !errors.Is(err, errExporterStopped) {
					t.Errorf("export during Shutdown: %v", err)
				}
				if finish {
					close(release)
					if err := <-shut; err != nil {
						t.Errorf("Shutdown: %v", err)
					}
					if err := <-exported; err != nil {
						t.Errorf("the running export: %v", err)
					}
				} else {
					cancel()
					if err := <-shut; !errors.Is(err, context.Canceled) {
						t.Errorf("Shutdown: %v", err)
					}
					if err := <-exported; err == nil || !strings.Contains(err.Error(), "context canceled") {
						t.Errorf("the running export: %v", err)
					}
				}
				if err := e.ExportSpans(context.Background(), spans); !errors.Is(err, errExporterStopped) {
					t.Errorf("export after Shutdown: %v", err)
				}
				if err := e.Shutdown(context.Background()); err != nil {
					t.Errorf("second Shutdown: %v", err)
				}
			})
		})
	}
}

// BenchmarkOTLPEncode encodes a full batch (the SDK's default of 512 spans) of spans like the
// CLI's: a server span with seven attributes and an event.
func BenchmarkOTLPEncode(b *testing.B) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	tr := tp.Tracer("github.com/verastack/telephone")
	for range 512 {
		_, s := tr.Start(context.Background(), "GET", trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(
			attribute.String("http.request.method", "GET"), attribute.String("url.path", "/some/path/here"),
			attribute.String("server.address", "backend.internal"), attribute.Int("http.response.status_code", 200),
			attribute.Int64("http.response.body.size", 1234), attribute.String("telephone.request_id", "0f8c2a7e-1d2b-4c3e-9f4a-5b6c7d8e9f00"),
			attribute.Int("telephone.session", 1)))
		s.AddEvent("queued")
		s.End()
	}
	spans := rec.Ended()
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = appendTraceRequest(buf[:0], spans)
	}
	b.SetBytes(int64(len(buf)))
}
