package main

import (
	"context"
	"fmt"
	"log/slog"

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
	if err := checkOTLPURL(v); err != nil {
		return err
	}
	c.OTLPEndpoint = v
	return nil
}

// checkOTLPURL checks a collector URL (OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT).
func checkOTLPURL(v string) error {
	if _, err := parseURL(v, "http", "https"); err != nil {
		return fmt.Errorf("must be an http:// or https:// URL such as http://localhost:4318, got %q", v)
	}
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

// startTracing builds the OpenTelemetry SDK with an OTLP/HTTP exporter (otlp.go) to
// cfg.OTLPEndpoint, configured by the OTEL_EXPORTER_OTLP_* variables loadConfig read. The SDK
// reads its own from the process environment (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES,
// OTEL_TRACES_SAMPLER, OTEL_BSP_*, ...). Export failures are logged at warn level.
func startTracing(cfg Config, log *slog.Logger) *sdktrace.TracerProvider {
	ocfg := cfg.otlp
	exp := newOTLPExporter(ocfg)
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
	log.Info("tracing to OpenTelemetry", slog.String("endpoint", exp.redacted),
		slog.Bool("gzip", ocfg.gzip), slog.Duration("timeout", ocfg.timeout))
	return tp
}
