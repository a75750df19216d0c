package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
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

// startTracing builds the OpenTelemetry SDK with an OTLP/HTTP exporter to cfg.OTLPEndpoint
// (otlp.go). The exporter reads its other standard variables through getenv (the process
// environment): OTEL_EXPORTER_OTLP_[TRACES_]HEADERS, _TIMEOUT, _COMPRESSION, _CERTIFICATE,
// _CLIENT_CERTIFICATE, _CLIENT_KEY and OTEL_EXPORTER_OTLP_TRACES_ENDPOINT; a bad value is an
// error. The SDK reads its own (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES,
// OTEL_TRACES_SAMPLER, OTEL_BSP_*, ...). Export failures are logged at warn level.
func startTracing(cfg Config, log *slog.Logger, getenv func(string) string) (*sdktrace.TracerProvider, error) {
	ocfg, err := otlpConfigFromEnv(getenv, cfg.OTLPEndpoint)
	if err != nil {
		return nil, fmt.Errorf("OTLP exporter: %w", err)
	}
	exp, err := newOTLPExporter(ocfg)
	if err != nil {
		return nil, fmt.Errorf("OTLP exporter: %w", err)
	}
	res, err := resource.New(context.Background(),
		resource.WithAttributes(attribute.String("service.name", "telephone"), attribute.String("service.version", readBuildInfo().Version)),
		resource.WithFromEnv(), resource.WithTelemetrySDK())
	if err != nil {
		log.Warn("OpenTelemetry resource from the environment is incomplete", slog.Any("error", err))
	}
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("OpenTelemetry export failed", slog.Any("error", err))
	}))
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	log.Info("tracing to OpenTelemetry", slog.String("endpoint", exp.redactedURL()),
		slog.Bool("gzip", ocfg.gzip), slog.Duration("timeout", ocfg.timeout))
	return tp, nil
}
