package transport

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"strings"
	"testing"
)

func TestDialTLS(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	plain := newWSServer(t, p.serverTLS(tls.NoClientCert), echo)
	mtls := newWSServer(t, p.serverTLS(tls.RequireAndVerifyClientCert), echo)
	wrongPin := strings.Repeat("ab", 32)
	colonPin := strings.ToUpper(p.serverPin[:2]) + ":" + p.serverPin[2:]

	tests := []struct {
		name   string
		srv    *wsServer
		opts   Options
		wantOK bool
		wantIs error
	}{
		{"system roots reject the test CA", plain, Options{}, false, nil},
		{"custom CA file", plain, Options{CAFile: p.caFile}, true, nil},
		{"base TLSConfig roots", plain, Options{TLSConfig: &tls.Config{RootCAs: p.caPool}}, true, nil},
		{"insecure skip verify", plain, Options{InsecureSkipVerify: true}, true, nil},
		{"pin match", plain, Options{CAFile: p.caFile, PinSHA256: []string{wrongPin, p.serverPin}}, true, nil},
		{"pin match with colons and case", plain, Options{CAFile: p.caFile, PinSHA256: []string{colonPin}}, true, nil},
		{"pin only with insecure", plain, Options{InsecureSkipVerify: true, PinSHA256: []string{p.serverPin}}, true, nil},
		{"pin mismatch", plain, Options{CAFile: p.caFile, PinSHA256: []string{wrongPin}}, false, ErrPinMismatch},
		{"pin mismatch with insecure", plain, Options{InsecureSkipVerify: true, PinSHA256: []string{wrongPin}}, false, ErrPinMismatch},
		{"mTLS with client cert", mtls, Options{CAFile: p.caFile, CertFile: p.clientCert, KeyFile: p.clientKey}, true, nil},
		{"mTLS without client cert", mtls, Options{CAFile: p.caFile}, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.opts.Token = testToken
			c, err := Dial(t.Context(), tt.srv.wsURL("/telephone/websocket"), tt.opts)
			if !tt.wantOK {
				if err == nil {
					_ = c.CloseNow()
					t.Fatal("Dial succeeded, want a failure")
				}
				assertNetworkError(t, err)
				if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
					t.Fatalf("error %v does not match %v", err, tt.wantIs)
				}
				return
			}
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer c.CloseNow()
			roundTrip(t, c, false, "over TLS")
		})
	}
}

// roundTrip writes one message and expects the echo server to return it.
func roundTrip(t *testing.T, c *Conn, binary bool, msg string) {
	t.Helper()
	if err := c.Write(t.Context(), binary, []byte(msg)); err != nil {
		t.Fatalf("Write: %v", err)
	}
	gotBinary, got, err := c.Read(t.Context())
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	if gotBinary != binary || string(got) != msg {
		t.Fatalf("Read = (%v, %q), want (%v, %q)", gotBinary, got, binary, msg)
	}
}

func TestBuildTLSConfig(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	base := &tls.Config{ServerName: "plugboard.internal", MinVersion: tls.VersionTLS13}
	cfg, err := BuildTLSConfig(Options{
		TLSConfig: base, CAFile: p.caFile, CertFile: p.clientCert, KeyFile: p.clientKey,
		PinSHA256: []string{p.serverPin}, InsecureSkipVerify: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg == base || base.RootCAs != nil || base.InsecureSkipVerify || base.VerifyConnection != nil {
		t.Fatal("base config was modified instead of cloned")
	}
	if cfg.ServerName != "plugboard.internal" || cfg.MinVersion != tls.VersionTLS13 {
		t.Fatal("base settings lost")
	}
	if !cfg.InsecureSkipVerify || cfg.RootCAs == nil || len(cfg.Certificates) != 1 || cfg.VerifyConnection == nil {
		t.Fatalf("options not applied: %+v", cfg)
	}
	if strings.Join(cfg.NextProtos, ",") != "http/1.1" {
		t.Fatalf("NextProtos = %q, want [http/1.1]", cfg.NextProtos)
	}
	if err := cfg.VerifyConnection(tls.ConnectionState{}); !errors.Is(err, ErrPinMismatch) {
		t.Fatalf("VerifyConnection without certificates = %v, want ErrPinMismatch", err)
	}
}

func TestBuildTLSConfigChainsVerifyConnection(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	leaf, err := x509.ParseCertificate(p.server.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	errBase := errors.New("base callback refused")
	cfg, err := BuildTLSConfig(Options{
		TLSConfig: &tls.Config{VerifyConnection: func(tls.ConnectionState) error { return errBase }},
		PinSHA256: []string{p.serverPin},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.VerifyConnection(tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}}); !errors.Is(err, errBase) {
		t.Fatalf("VerifyConnection = %v, want the base callback's error after a pin match", err)
	}
}

func TestBuildTLSConfigErrors(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	garbage := writeFile(t, "garbage.pem", "not a certificate\n")
	keyOnly := writeFile(t, "key.pem", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
	badCert := writeFile(t, "bad.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
	tests := []struct {
		name string
		opts Options
	}{
		{"missing CA file", Options{CAFile: "/nonexistent/ca.pem"}},
		{"CA file without PEM", Options{CAFile: garbage}},
		{"CA file with a key block", Options{CAFile: keyOnly}},
		{"CA file with an invalid certificate", Options{CAFile: badCert}},
		{"cert without key", Options{CertFile: p.clientCert}},
		{"key without cert", Options{KeyFile: p.clientKey}},
		{"missing cert file", Options{CertFile: "/nonexistent/c.pem", KeyFile: p.clientKey}},
		{"key does not match", Options{CertFile: p.clientCert, KeyFile: garbage}},
		{"pin too short", Options{PinSHA256: []string{"abcd"}}},
		{"pin not hex", Options{PinSHA256: []string{strings.Repeat("zz", 32)}}},
		{"empty pin", Options{PinSHA256: []string{""}}},
		{"base64 pin", Options{PinSHA256: []string{"47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := BuildTLSConfig(tt.opts)
			if !errors.Is(err, ErrTLSConfig) || cfg != nil {
				t.Fatalf("BuildTLSConfig = %v, %v; want nil, ErrTLSConfig", cfg, err)
			}
		})
	}
}

func FuzzParsePins(f *testing.F) {
	for _, s := range []string{strings.Repeat("ab", 32), "AB:CD", " " + strings.Repeat("0", 64) + " ", "", "zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, pin string) {
		pins, err := parsePins([]string{pin})
		if err != nil {
			if !errors.Is(err, ErrTLSConfig) {
				t.Fatalf("error %v does not wrap ErrTLSConfig", err)
			}
			return
		}
		if len(pins) != 1 || len(pins[0]) != 32 {
			t.Fatalf("parsePins(%q) = %x", pin, pins)
		}
	})
}
