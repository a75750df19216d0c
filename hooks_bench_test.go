package telephone_test

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/verastack/telephone"
)

// BenchmarkTunnelHooks compares one request end to end with no hook, with an Observer that
// keeps nothing, and with tracing through the OpenTelemetry SDK (spans sampled and ended,
// exported nowhere).
func BenchmarkTunnelHooks(b *testing.B) {
	tp := sdktrace.NewTracerProvider()
	defer func() { _ = tp.Shutdown(context.Background()) }()
	for _, v := range []struct {
		name string
		opts []telephone.Option
	}{
		{"Off", nil},
		{"Observer", []telephone.Option{telephone.WithObserver(discardObserver{})}},
		{"Tracing", []telephone.Option{telephone.WithTracerProvider(tp)}},
	} {
		b.Run(v.name, func(b *testing.B) { benchTunnel(b, v.opts...) })
	}
}

// discardObserver looks at every request and response and keeps nothing.
type discardObserver struct{}

func (discardObserver) ObserveRequest(*telephone.ObservedRequest) func(*telephone.ObservedResponse) {
	return func(*telephone.ObservedResponse) {}
}

func (discardObserver) ObserveWebSocket(*telephone.ObservedWebSocket) func(*telephone.ObservedWebSocketEnd) {
	return nil
}
