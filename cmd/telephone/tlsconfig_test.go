package main

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/verastack/telephone"
)

// writeCert writes a certificate (for 127.0.0.1, signed by a private CA) and its key as PEM files.
func writeCert(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	_, certFile, keyFile = writePKI(t, t.TempDir())
	return certFile, keyFile
}

func TestConfigPlugboardTLS(t *testing.T) {
	t.Parallel()
	cert, key := writeCert(t)
	pin := strings.Repeat("ab", 32)
	c, errs := load(base("PLUGBOARD_CA_FILE", cert, "PLUGBOARD_CLIENT_CERT", cert, "PLUGBOARD_CLIENT_KEY", key,
		"PLUGBOARD_CERT_PINS", pin+", "+strings.Repeat("CD", 32)), nil)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if c.tlsConfig == nil || c.tlsConfig.RootCAs == nil || len(c.tlsConfig.Certificates) != 1 ||
		c.tlsConfig.VerifyConnection == nil || len(c.CertPins) != 2 || c.tlsConfig.InsecureSkipVerify {
		t.Fatalf("TLS config not built from the settings: %+v", c.tlsConfig)
	}
	c, errs = load(base("PLUGBOARD_INSECURE_SKIP_VERIFY", "true"), nil)
	if len(errs) > 0 || !c.tlsConfig.InsecureSkipVerify || len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "not verified at all") {
		t.Fatalf("insecure: %v %+v", errs, c.Warnings)
	}
	if c, _ := load(base(), nil); c.tlsConfig != nil {
		t.Fatal("a TLS config was built although no TLS setting is given")
	}
}

func TestConfigPlugboardTLSErrors(t *testing.T) {
	t.Parallel()
	cert, _ := writeCert(t)
	for _, tt := range []struct {
		env        map[string]string
		varName    string
		reasonPart string
	}{
		{base("PLUGBOARD_CA_FILE", "/nonexistent/ca.pem"), "PLUGBOARD_CA_FILE", "/nonexistent/ca.pem"},
		{base("PLUGBOARD_CLIENT_CERT", cert), "PLUGBOARD_CLIENT_CERT", "PLUGBOARD_CLIENT_CERT and PLUGBOARD_CLIENT_KEY must be set together"},
		{base("PLUGBOARD_CLIENT_CERT", cert, "PLUGBOARD_CLIENT_KEY", cert), "PLUGBOARD_CLIENT_CERT", "transport"},
		{base("PLUGBOARD_CERT_PINS", "abc"), "PLUGBOARD_CERT_PINS", "abc"},
		{base("PLUGBOARD_INSECURE_SKIP_VERIFY", "sure"), "PLUGBOARD_INSECURE_SKIP_VERIFY", `must be true or false, got "sure"`},
	} {
		_, errs := load(tt.env, nil)
		if len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), tt.varName+": ") || !strings.Contains(errs[0].Error(), tt.reasonPart) {
			t.Errorf("%s: errors %v", tt.varName, errs)
		}
	}
}

// TestFallbackRootsOnlyForTLS: the embedded CA roots are parsed only for a configuration that
// dials TLS somewhere; installing them twice is harmless.
func TestFallbackRootsOnlyForTLS(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want bool
	}{
		{"ws and http", Config{PlugboardURL: "ws://p/telephone/websocket", BackendURL: "http://b:8080"}, false},
		{"wss Plugboard", Config{PlugboardURL: "WSS://p/telephone/websocket", BackendURL: "http://b:8080"}, true},
		{"https backend", Config{PlugboardURL: "ws://p/telephone/websocket", BackendScheme: "https", BackendHost: "b", BackendPort: 443}, true},
		{"https vending API", Config{PlugboardURL: "ws://p/telephone/websocket", APIURL: "https://p", BackendURL: "http://b"}, true},
		{"OTLP over http", Config{PlugboardURL: "ws://p/telephone/websocket", BackendURL: "http://b", otlp: defaultOTLPConfig("http://c:4318")}, false},
		{"OTLP over https", Config{PlugboardURL: "ws://p/telephone/websocket", BackendURL: "http://b", otlp: defaultOTLPConfig("https://c:4318")}, true},
	} {
		if got := tc.cfg.dialsTLS(); got != tc.want {
			t.Errorf("%s: dialsTLS = %v, want %v", tc.name, got, tc.want)
		}
	}
	installFallbackRoots()
	installFallbackRoots() // x509.SetFallbackRoots would panic on a second call
}

// TestReloadToHTTPSInstallsRoots: a SIGHUP that switches the backend to https installs the
// fallback roots, which a start with an http backend did not need (a FROM scratch image would
// otherwise fail every request with an unknown authority). Not parallel: it swaps installRoots.
func TestReloadToHTTPSInstallsRoots(t *testing.T) {
	installs := 0
	defer func(f func()) { installRoots = f }(installRoots)
	installRoots = func() { installs++ }
	cfg, errs := load(base("BACKEND_URL", "http://b:8080"), nil)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	client, err := telephone.New(cfg.PlugboardURL, cfg.options(discard, nil, newRegistry())...)
	if err != nil {
		t.Fatal(err)
	}
	r := &runner{cfg: cfg, log: discard, level: new(slog.LevelVar), client: client}
	rootsFor(cfg)
	if installs != 0 {
		t.Fatalf("roots installed for ws:// and http://")
	}
	next, errs := load(base("BACKEND_URL", "https://b"), nil)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	r.reload(next, nil)
	if installs != 1 || r.cfg.backendURL() != "https://b" {
		t.Errorf("after a reload to https: %d installs, backend %q", installs, r.cfg.backendURL())
	}
}
