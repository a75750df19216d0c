package telephone_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportRules enforces the import graph with `go list -deps`: imports flow
// cmd/telephone -> telephone -> {phoenix, transport, tokenstore, internal}; phoenix imports
// neither net/http nor a WebSocket library; transport imports neither phoenix nor tokenstore;
// telephonetest and tokenstore never import the root package; the root package imports the
// OpenTelemetry API, never its SDK or an exporter; the CLI brings neither gRPC nor the OTLP
// protobuf types.
func TestImportRules(t *testing.T) {
	t.Parallel()
	const root = "github.com/verastack/telephone"
	deps := func(pkg string) map[string]bool {
		out, err := exec.Command("go", "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		set := map[string]bool{}
		for _, p := range strings.Fields(string(out)) {
			set[p] = true
		}
		return set
	}
	for _, rule := range []struct {
		pkg       string
		forbidden []string
	}{
		{root + "/phoenix", []string{"net/http", "github.com/coder/websocket", root + "/transport", root}},
		{root + "/transport", []string{root + "/phoenix", root + "/tokenstore", root}},
		{root + "/telephonetest", []string{root, root + "/transport", root + "/tokenstore"}},
		{root + "/tokenstore", []string{root, root + "/phoenix", root + "/transport"}},
		// The library uses the OpenTelemetry API only; the program chooses the SDK and exporter.
		{root, []string{root + "/cmd/telephone", root + "/telephonetest", "go.opentelemetry.io/otel/sdk/trace",
			"go.opentelemetry.io/otel/exporters/otlp/otlptrace"}},
		// The CLI's OTLP exporter encodes with protowire alone (cmd/telephone/otlp.go): gRPC and
		// the generated OTLP types cost 3.5 MB of binary and as much RSS in every process.
		{root + "/cmd/telephone", []string{"google.golang.org/grpc", "go.opentelemetry.io/proto/otlp/collector/trace/v1",
			"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"}},
	} {
		got := deps(rule.pkg)
		for _, f := range rule.forbidden {
			if got[f] {
				t.Errorf("%s must not import %s", rule.pkg, f)
			}
		}
	}
}
