package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// setOTLPEndpoint parses OTEL_EXPORTER_OTLP_ENDPOINT: the base URL of an OTLP/HTTP collector
// (the traces path /v1/traces is appended, as the OpenTelemetry specification says).
func setOTLPEndpoint(c *Config, v string) error {
	c.OTLPEndpoint = ""
	if v == "" {
		return nil
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("must be an http:// or https:// URL such as http://localhost:4318, got %q", v)
	}
	c.OTLPEndpoint = v
	return nil
}

// setOTLPProtocol accepts the one OTLP protocol the CLI speaks.
func setOTLPProtocol(_ *Config, v string) error {
	switch v {
	case "", "http/protobuf":
		return nil
	}
	return fmt.Errorf("only http/protobuf is supported (an OTLP/HTTP collector, usually port 4318), got %q", v)
}

// startTracing builds the OpenTelemetry SDK with an OTLP/HTTP exporter to cfg.OTLPEndpoint.
// The SDK reads the other standard variables from the environment itself (OTEL_SERVICE_NAME,
// OTEL_RESOURCE_ATTRIBUTES, OTEL_EXPORTER_OTLP_HEADERS, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
// OTEL_TRACES_SAMPLER, OTEL_BSP_*, ...). Export failures are logged at warn level.
func startTracing(cfg Config, log *slog.Logger) (*sdktrace.TracerProvider, error) {
	ctx := context.Background()
	var opts []otlptracehttp.Option
	// The SDK reads the process environment itself; a traces endpoint there wins, as specified.
	if os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
		opts = append(opts, otlptracehttp.WithEndpointURL(strings.TrimSuffix(cfg.OTLPEndpoint, "/")+"/v1/traces"))
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("OTLP exporter: %w", err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", "telephone"), attribute.String("service.version", readBuildInfo().Version)),
		resource.WithFromEnv(), resource.WithTelemetrySDK())
	if err != nil {
		log.Warn("OpenTelemetry resource from the environment is incomplete", slog.Any("error", err))
	}
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("OpenTelemetry export failed", slog.Any("error", err))
	}))
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	log.Info("tracing to OpenTelemetry", slog.String("endpoint", cfg.OTLPEndpoint))
	return tp, nil
}
