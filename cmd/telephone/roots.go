package main

import (
	"crypto/x509"
	"strings"
	"sync"

	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// CA roots for an empty root (a FROM scratch image): the Mozilla roots that x/crypto embeds
// become crypto/x509's fallback, which it uses only where the system has no roots of its own.
// They are parsed only when the configuration dials something over TLS: the parsed pool costs
// about 0.7 MiB of heap, and about 2 MiB of peak RSS under load, that a plain ws:// or http://
// set-up never needs (importing golang.org/x/crypto/x509roots/fallback would parse them at
// start-up in every process).

var fallbackRootsOnce sync.Once

// installRoots is installFallbackRoots; a test counts its calls.
var installRoots = installFallbackRoots

// rootsFor installs the fallback roots if c dials TLS anywhere: at start-up, and again at each
// reload, which may switch the backend to https.
func rootsFor(c Config) {
	if c.dialsTLS() {
		installRoots() // used only where the system has no roots
	}
}

// installFallbackRoots makes the embedded roots crypto/x509's fallback; calling it again does
// nothing (x509.SetFallbackRoots may be called only once per process).
func installFallbackRoots() {
	fallbackRootsOnce.Do(func() {
		pool := x509.NewCertPool()
		for r := range bundle.Roots() {
			cert, err := x509.ParseCertificate(r.Certificate)
			if err != nil {
				continue // the bundle is tested upstream; a bad entry only loses that root
			}
			if r.Constraint != nil {
				pool.AddCertWithConstraint(cert, r.Constraint)
			} else {
				pool.AddCert(cert)
			}
		}
		x509.SetFallbackRoots(pool)
	})
}

// dialsTLS reports whether the configuration may open a TLS connection: to Plugboard or its
// API, to the backend (HTTP or WebSocket), or to an OTLP collector (the URL the exporter
// resolved from the OTEL_EXPORTER_OTLP_* variables).
func (c Config) dialsTLS() bool {
	tls := func(u string) bool {
		u = strings.ToLower(u)
		return strings.HasPrefix(u, "wss://") || strings.HasPrefix(u, "https://")
	}
	return tls(c.PlugboardURL) || tls(c.APIURL) || tls(c.backendURL()) || (c.otlp != nil && tls(c.otlp.url))
}
