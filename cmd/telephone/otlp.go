package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/verastack/telephone/internal/httptoken"
	"github.com/verastack/telephone/transport"
)

// otlpExporter sends spans to an OTLP/HTTP collector as protobuf (the http/protobuf protocol):
// a small sdktrace.SpanExporter in place of the SDK's otlptracehttp, which brings gRPC and the
// generated OTLP types into the binary (3.3 MB, resident in every process: ~1.7 MB of RSS).
type otlpExporter struct {
	cfg      *otlpConfig
	redacted string // cfg.url as logs and errors show it (transport.Redact)
	client   *http.Client

	// stopCtx is cancelled when Shutdown gives up waiting: exports still running abort.
	stopCtx  context.Context
	stopAll  context.CancelFunc
	mu       sync.Mutex
	stopped  bool
	inflight sync.WaitGroup
}

// otlpConfig is the exporter's configuration, from OTEL_EXPORTER_OTLP_* variables.
type otlpConfig struct {
	url     string // where spans are POSTed
	headers [][2]string
	timeout time.Duration // of one export, retries included
	gzip    bool
	tls     *tls.Config // nil: the defaults
}

const (
	otlpDefaultTimeout = 10 * time.Second
	otlpMaxTimeout     = time.Hour
	otlpRetryFirst     = time.Second      // first retry wait before jitter
	otlpRetryMax       = 30 * time.Second // longest retry wait before jitter
	otlpErrorBodyMax   = 200              // bytes of a refusal's body quoted in the error
)

// errExporterStopped is returned by ExportSpans after Shutdown.
var errExporterStopped = errors.New("OTLP exporter is shut down")

// defaultOTLPConfig sends spans to endpoint (a base URL) + /v1/traces.
func defaultOTLPConfig(endpoint string) *otlpConfig {
	return &otlpConfig{url: strings.TrimSuffix(endpoint, "/") + "/v1/traces", timeout: otlpDefaultTimeout}
}

// otlpConfigFromEnv reads the exporter variables through lookup, which returns a variable's
// value and where it came from. The endpoint is the base URL of OTEL_EXPORTER_OTLP_ENDPOINT
// (already validated); /v1/traces is appended to it unless OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
// gives the full URL. For every variable the TRACES_ form wins over the generic one. Each bad
// value is a ConfigError naming the variable (never quoting a header value: often a secret).
func otlpConfigFromEnv(lookup func(name string) (value, source string), endpoint string) (*otlpConfig, []error) {
	get := func(suffix string) (name, value, source string) {
		name = "OTEL_EXPORTER_OTLP_TRACES_" + suffix
		if v, src := lookup(name); v != "" {
			return name, v, src
		}
		name = "OTEL_EXPORTER_OTLP_" + suffix
		v, src := lookup(name)
		return name, v, src
	}
	var errs []error
	bad := func(name, source, format string, args ...any) {
		errs = append(errs, &ConfigError{Var: name, Source: source, Reason: fmt.Sprintf(format, args...)})
	}
	c := defaultOTLPConfig(endpoint)
	if v, src := lookup("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"); v != "" {
		if err := checkOTLPURL(v); err != nil {
			bad("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", src, "%v", err)
		}
		c.url = v
	}
	if name, v, src := get("HEADERS"); v != "" {
		h, err := parseOTLPHeaders(v)
		if err != nil {
			bad(name, src, "%v", err)
		}
		c.headers = h
	}
	if name, v, src := get("TIMEOUT"); v != "" {
		ms, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil || ms < 1 || ms > otlpMaxTimeout.Milliseconds() {
			bad(name, src, "must be a whole number of milliseconds from 1 to %d, got %q", otlpMaxTimeout.Milliseconds(), v)
		} else {
			c.timeout = time.Duration(ms) * time.Millisecond
		}
	}
	if name, v, src := get("COMPRESSION"); v != "" {
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "gzip":
			c.gzip = true
		case "none":
		default:
			bad(name, src, "must be gzip or none, got %q", v)
		}
	}
	if name, ca, src := get("CERTIFICATE"); ca != "" {
		tc, err := transport.BuildTLSConfig(transport.Options{CAFile: ca})
		if err != nil {
			bad(name, src, "%v", err)
		}
		c.tls = tc
	}
	certName, cert, certSrc := get("CLIENT_CERTIFICATE")
	keyName, key, _ := get("CLIENT_KEY")
	switch {
	case (cert == "") != (key == ""):
		bad(certName, certSrc, "%s and %s must be set together", certName, keyName)
	case cert != "":
		tc, err := transport.BuildTLSConfig(transport.Options{TLSConfig: c.tls, CertFile: cert, KeyFile: key})
		if err != nil {
			bad(certName, certSrc, "%v", err)
		}
		c.tls = tc
	}
	return c, errs
}

// parseOTLPHeaders parses key=value pairs separated by commas; values are URL-encoded (%XX).
// Errors name the entry by position only: values are often credentials.
func parseOTLPHeaders(s string) ([][2]string, error) {
	var out [][2]string
	for i, entry := range strings.Split(s, ",") {
		if strings.TrimSpace(entry) == "" {
			continue
		}
		k, v, ok := strings.Cut(entry, "=")
		k = strings.TrimSpace(k)
		if !ok || !httptoken.Valid(k) {
			return nil, fmt.Errorf("entry %d is not key=value with a valid header name (the list is comma-separated key=value pairs)", i+1)
		}
		val, err := url.PathUnescape(strings.TrimSpace(v))
		if err != nil || strings.ContainsAny(val, "\r\n\x00") {
			return nil, fmt.Errorf("the value of %s (entry %d) is not a valid URL-encoded header value", k, i+1)
		}
		out = append(out, [2]string{k, val})
	}
	return out, nil
}

// newOTLPExporter returns an exporter for cfg.
func newOTLPExporter(cfg *otlpConfig) *otlpExporter {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if cfg.tls != nil {
		tr.TLSClientConfig = cfg.tls
	}
	client := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse // a redirect would carry the headers elsewhere
	}}
	stopCtx, stopAll := context.WithCancel(context.Background())
	return &otlpExporter{cfg: cfg, redacted: transport.Redact(cfg.url), client: client, stopCtx: stopCtx, stopAll: stopAll}
}

// jitteredBackoff returns a wait from half to all of 1s, 2s, 4s, ... up to 30s.
func jitteredBackoff(n int) time.Duration {
	d := otlpRetryMax
	if n < 5 {
		d = min(otlpRetryFirst<<n, otlpRetryMax)
	}
	return d/2 + rand.N(d/2+1)
}

// ExportSpans sends spans in one request, retrying what the collector or the network says is
// temporary, within the export timeout and ctx.
func (e *otlpExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	if len(spans) == 0 {
		return nil
	}
	e.mu.Lock()
	if e.stopped {
		e.mu.Unlock()
		return errExporterStopped
	}
	e.inflight.Add(1)
	e.mu.Unlock()
	defer e.inflight.Done()

	ctx, cancel := context.WithTimeout(ctx, e.cfg.timeout)
	defer cancel()
	defer context.AfterFunc(e.stopCtx, cancel)()

	body := appendTraceRequest(nil, spans)
	if e.cfg.gzip {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		_, _ = zw.Write(body) // a bytes.Buffer does not fail
		_ = zw.Close()
		body = buf.Bytes()
	}
	for attempt := 0; ; attempt++ {
		retryAfter, err := e.post(ctx, body)
		if err == nil {
			return nil
		}
		if retryAfter < 0 || ctx.Err() != nil {
			return err
		}
		wait := max(jitteredBackoff(attempt), retryAfter)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return fmt.Errorf("%w (not retried: the export timeout ends before the %v wait)", err, wait.Round(time.Millisecond))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (retry abandoned: %w)", err, context.Cause(ctx))
		case <-t.C:
		}
	}
}

// post sends body once. On failure, retryAfter is -1 when the failure is final, else the wait
// the collector asked for (0 when it did not say).
func (e *otlpExporter) post(ctx context.Context, body []byte) (retryAfter time.Duration, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.cfg.url, bytes.NewReader(body))
	if err != nil {
		return -1, fmt.Errorf("OTLP export: %w", err)
	}
	for _, h := range e.cfg.headers {
		req.Header.Set(h[0], h[1])
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	if e.cfg.gzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	resp, err := e.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its text repeats the URL
		}
		return 0, fmt.Errorf("OTLP export to %s: %w", e.redacted, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
		return 0, nil
	}
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	err = fmt.Errorf("OTLP export to %s: collector answered %s%s", e.redacted, resp.Status, refusalText(resp.Header.Get("Content-Type"), snippet))
	switch resp.StatusCode {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return parseRetryAfter(resp.Header.Get("Retry-After")), err
	}
	return -1, err
}

// parseRetryAfter reads a Retry-After header: seconds or an HTTP date. Anything else is 0.
func parseRetryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
		return time.Duration(min(max(s, 0), int(otlpMaxTimeout/time.Second))) * time.Second // longer is as good as never
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(time.Until(t), 0), otlpMaxTimeout)
	}
	return 0
}

// refusalText returns ": " and a short printable piece of a refusal's body: the message of a
// protobuf google.rpc.Status (field 2), or the start of a text body.
func refusalText(contentType string, body []byte) string {
	if mt, _, _ := mime.ParseMediaType(contentType); mt == "application/x-protobuf" || mt == "application/protobuf" {
		body = statusMessage(body)
	}
	s := strings.TrimSpace(strings.ToValidUTF8(string(body), "\uFFFD"))
	s = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return ' '
	}, s)
	if len(s) > otlpErrorBodyMax {
		cut := otlpErrorBodyMax
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	if s == "" {
		return ""
	}
	return ": " + s
}

// statusMessage returns field 2 (message) of a google.rpc.Status, or nil.
func statusMessage(b []byte) []byte {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil
		}
		b = b[n:]
		if num == 2 && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return nil
			}
			return v
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return nil
		}
		b = b[n:]
	}
	return nil
}

// Shutdown refuses further exports and waits for those running, until ctx ends; then it
// aborts them and returns ctx's error. It closes idle connections.
func (e *otlpExporter) Shutdown(ctx context.Context) error {
	e.mu.Lock()
	e.stopped = true
	e.mu.Unlock()
	done := make(chan struct{})
	go func() {
		e.inflight.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		e.stopAll()
		<-done // the aborted exports return at once
	}
	e.stopAll()
	e.client.CloseIdleConnections()
	return err
}
