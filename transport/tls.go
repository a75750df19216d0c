package transport

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
	"strings"
)

// BuildTLSConfig returns the tls.Config Dial uses for wss URLs, built from
// opts.TLSConfig (cloned; nil means the system roots), opts.CAFile,
// opts.CertFile/KeyFile, opts.PinSHA256 and opts.InsecureSkipVerify. The
// configuration only offers HTTP/1.1 through ALPN, as WebSocket upgrades need
// it.
//
// It fails with an error wrapping ErrTLSConfig when a file cannot be read or
// holds no valid certificate or key, when only one of CertFile and KeyFile is
// set, or when a pin is not 64 hex digits (colons between bytes are allowed).
// Call it at start-up to validate the options early; Dial calls it again.
//
// Pins are checked in addition to normal chain verification, and also when
// InsecureSkipVerify is set (so "trust exactly this certificate" is
// InsecureSkipVerify plus a pin).
func BuildTLSConfig(opts Options) (*tls.Config, error) {
	cfg := &tls.Config{}
	if opts.TLSConfig != nil {
		cfg = opts.TLSConfig.Clone()
	}
	if opts.InsecureSkipVerify {
		cfg.InsecureSkipVerify = true
	}
	if opts.CAFile != "" {
		pool, err := loadCAFile(cfg.RootCAs, opts.CAFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if opts.CertFile != "" || opts.KeyFile != "" {
		cert, err := loadClientCert(opts.CertFile, opts.KeyFile)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = append(cfg.Certificates, cert)
	}
	if len(opts.PinSHA256) > 0 {
		pins, err := parsePins(opts.PinSHA256)
		if err != nil {
			return nil, err
		}
		cfg.VerifyConnection = pinVerifier(pins, cfg.VerifyConnection)
	}
	cfg.NextProtos = []string{"http/1.1"}
	return cfg, nil
}

// loadCAFile returns base (or the system pool when base is nil) plus every
// certificate in the PEM file at path. Every PEM block must be a valid
// certificate and there must be at least one.
func loadCAFile(base *x509.CertPool, path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: CA file: %w", ErrTLSConfig, err)
	}
	certs, err := parsePEMCertificates(data)
	if err != nil {
		return nil, fmt.Errorf("%w: CA file %s: %w", ErrTLSConfig, path, err)
	}
	pool := base
	switch {
	case pool != nil:
		pool = pool.Clone()
	default:
		if pool, err = x509.SystemCertPool(); err != nil {
			pool = x509.NewCertPool()
		}
	}
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

// parsePEMCertificates decodes every PEM block in data as an X.509
// certificate.
func parsePEMCertificates(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("unexpected PEM block %q (want CERTIFICATE)", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("no PEM certificates found")
	}
	return certs, nil
}

// loadClientCert loads the mTLS client certificate; both paths are required.
func loadClientCert(certFile, keyFile string) (tls.Certificate, error) {
	if certFile == "" || keyFile == "" {
		return tls.Certificate{}, fmt.Errorf("%w: client certificate needs both CertFile and KeyFile", ErrTLSConfig)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%w: client certificate %s / key %s: %w", ErrTLSConfig, certFile, keyFile, err)
	}
	return cert, nil
}

// parsePins decodes hex SHA-256 pins; colons and surrounding spaces are
// ignored and case does not matter.
func parsePins(in []string) ([][]byte, error) {
	pins := make([][]byte, 0, len(in))
	for _, p := range in {
		h := strings.ReplaceAll(strings.TrimSpace(p), ":", "")
		b, err := hex.DecodeString(h)
		if err != nil || len(b) != sha256.Size {
			return nil, fmt.Errorf("%w: pin %q is not a hex SHA-256 (64 hex digits)", ErrTLSConfig, p)
		}
		pins = append(pins, b)
	}
	return pins, nil
}

// pinVerifier returns a VerifyConnection callback that accepts the
// connection when the SHA-256 of the leaf certificate's DER equals one of
// pins, then runs next (the base config's callback) if there is one.
func pinVerifier(pins [][]byte, next func(tls.ConnectionState) error) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return fmt.Errorf("%w: no server certificate", ErrPinMismatch)
		}
		sum := sha256.Sum256(cs.PeerCertificates[0].Raw)
		matched := 0
		for _, p := range pins {
			matched |= subtle.ConstantTimeCompare(sum[:], p)
		}
		if matched == 0 {
			return fmt.Errorf("%w: leaf certificate SHA-256 is %x", ErrPinMismatch, sum)
		}
		if next != nil {
			return next(cs)
		}
		return nil
	}
}
