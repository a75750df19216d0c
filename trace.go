package telephone

import (
	"context"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// tracerName is the instrumentation scope of the Client's spans.
const tracerName = "github.com/verastack/telephone"

// WithTracerProvider traces every forwarded request with tp (OpenTelemetry): one server span
// per request, named after its method, with three child spans: "queue wait" (until a
// concurrency slot is free), "backend" (the backend call) and "encode+send" (the proxy_res
// encoded and handed to the socket). A W3C traceparent (and tracestate) in the incoming
// headers is continued, and the backend receives the traceparent of the "backend" span.
// Only the OpenTelemetry API is used: the program chooses the SDK and exporter. Default: no
// tracing, which costs one nil check per request; the incoming traceparent then reaches the
// backend unchanged.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(o *options) error {
		if tp == nil {
			return optErr("WithTracerProvider", "tracer provider is nil")
		}
		o.tracerProvider = tp
		o.tracer = tp.Tracer(tracerName)
		return nil
	}
}

// w3c reads and writes traceparent and tracestate headers.
var w3c = propagation.TraceContext{}

// reqTrace is one forwarded request's span and its current child; nil when tracing is off
// (every method is then a no-op).
type reqTrace struct {
	tracer trace.Tracer
	span   trace.Span
	start  time.Time
	child  trace.Span
}

// startTrace starts the request's span, continuing the incoming traceparent, and returns the
// context that carries it. Without a tracer it returns ctx and nil.
func (c *Client) startTrace(ctx context.Context, s *session, pr *proxyReq, start time.Time) (context.Context, *reqTrace) {
	tracer := c.conf().tracer
	if tracer == nil {
		return ctx, nil
	}
	ctx = w3c.Extract(ctx, propagation.HeaderCarrier(pr.header))
	ctx, span := tracer.Start(ctx, pr.Method, trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(start),
		trace.WithAttributes(
			attribute.String("http.request.method", pr.Method),
			attribute.String("url.path", pr.Path),
			attribute.String("server.address", pr.host),
			attribute.String("telephone.request_id", pr.RequestID),
			attribute.Int("telephone.session", s.observedID()),
			attribute.Int("http.request.body.size", len(pr.Body)),
		))
	return ctx, &reqTrace{tracer: tracer, span: span, start: start}
}

// queued records the wait for a concurrency slot, from the start to now, and passes rej on.
func (t *reqTrace) queued(ctx context.Context, rej *rejection) *rejection {
	if t == nil {
		return rej
	}
	_, span := t.tracer.Start(ctx, "queue wait", trace.WithTimestamp(t.start))
	if rej != nil {
		span.SetStatus(codes.Error, rej.reason)
	}
	span.End()
	return rej
}

// backend runs call (the backend call) in a "backend" child span whose traceparent the
// backend receives in h.
func (t *reqTrace) backend(ctx context.Context, h http.Header, call func(context.Context) *response) *response {
	if t == nil {
		return call(ctx)
	}
	ctx, span := t.tracer.Start(ctx, "backend", trace.WithSpanKind(trace.SpanKindClient))
	w3c.Inject(ctx, propagation.HeaderCarrier(h))
	res := call(ctx)
	span.SetAttributes(attribute.Int("http.response.status_code", res.status))
	if res.status >= 500 {
		span.SetStatus(codes.Error, http.StatusText(res.status))
	}
	span.End()
	return res
}

// sending starts the "encode+send" child span; ended by end.
func (t *reqTrace) sending(ctx context.Context) {
	if t == nil {
		return
	}
	_, t.child = t.tracer.Start(ctx, "encode+send")
}

// end ends the request's span with the status sent back to Plugboard.
func (t *reqTrace) end(res *response) {
	if t == nil {
		return
	}
	if t.child != nil {
		t.child.End()
	}
	t.span.SetAttributes(attribute.Int("http.response.status_code", res.status), attribute.Int64("http.response.body.size", res.bodyLen()))
	if res.status >= 500 {
		t.span.SetStatus(codes.Error, http.StatusText(res.status))
	}
	t.span.End()
}
