package transport

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// testToken looks like a JWT so that leaks are easy to spot.
const testToken = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ0ZXN0In0.c2VjcmV0LXNpZ25hdHVyZQ"

// assertNoToken fails when err's text (or any layer of its chain) contains
// the token.
func assertNoToken(t *testing.T, err error, token string) {
	t.Helper()
	for e := err; e != nil; {
		if strings.Contains(e.Error(), token) {
			t.Fatalf("error text leaks the token: %q", e.Error())
		}
		u, ok := e.(interface{ Unwrap() error })
		if !ok {
			break
		}
		e = u.Unwrap()
	}
}

// wsServer is an httptest WebSocket server that records the upgrade requests
// it sees and runs handle on each accepted connection.
type wsServer struct {
	*httptest.Server
	mu   sync.Mutex // guards reqs
	reqs []*http.Request
}

// requests returns the upgrade requests seen so far.
func (s *wsServer) requests() []*http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*http.Request(nil), s.reqs...)
}

// wsURL returns the server's URL with the ws or wss scheme and path.
func (s *wsServer) wsURL(path string) string {
	return "ws" + strings.TrimPrefix(s.URL, "http") + path
}

// newWSServer starts a server; tlsCfg nil means plain HTTP. It is closed at
// the end of the test.
func newWSServer(t testing.TB, tlsCfg *tls.Config, handle func(ctx context.Context, c *websocket.Conn)) *wsServer {
	t.Helper()
	s := &wsServer{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.reqs = append(s.reqs, r.Clone(context.Background()))
		s.mu.Unlock()
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(-1)
		handle(r.Context(), c)
	})
	s.Server = httptest.NewUnstartedServer(h)
	if tlsCfg != nil {
		s.TLS = tlsCfg
		s.StartTLS()
	} else {
		s.Start()
	}
	t.Cleanup(s.Close)
	return s
}

// echo sends every message back until the connection fails.
func echo(ctx context.Context, c *websocket.Conn) {
	for {
		typ, b, err := c.Read(ctx)
		if err != nil {
			return
		}
		if err := c.Write(ctx, typ, b); err != nil {
			return
		}
	}
}

// statusServer answers every request with status and the given headers.
func statusServer(t *testing.T, status int, header map[string]string) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, v := range header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(s.Close)
	return s
}

// pki holds a test CA, a server certificate for 127.0.0.1/localhost and a
// client certificate, all signed by the CA, plus their PEM files.
type pki struct {
	caPool                *x509.CertPool
	caFile                string
	server                tls.Certificate
	serverPin             string // hex SHA-256 of the server leaf DER
	clientCert, clientKey string
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	dir := t.TempDir()
	caKey := newKey(t)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "telephone test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	p := &pki{caPool: x509.NewCertPool(), caFile: filepath.Join(dir, "ca.pem")}
	p.caPool.AddCert(ca)
	writePEM(t, p.caFile, "CERTIFICATE", caDER)

	srvDER, srvKey := issue(t, ca, caKey, 2, x509.ExtKeyUsageServerAuth)
	p.server = tls.Certificate{Certificate: [][]byte{srvDER}, PrivateKey: srvKey}
	sum := sha256.Sum256(srvDER)
	p.serverPin = hex.EncodeToString(sum[:])

	cliDER, cliKey := issue(t, ca, caKey, 3, x509.ExtKeyUsageClientAuth)
	p.clientCert, p.clientKey = filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")
	writePEM(t, p.clientCert, "CERTIFICATE", cliDER)
	keyDER, err := x509.MarshalPKCS8PrivateKey(cliKey)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, p.clientKey, "PRIVATE KEY", keyDER)
	return p
}

// serverTLS returns a server config presenting the test server certificate.
func (p *pki) serverTLS(clientAuth tls.ClientAuthType) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{p.server}, ClientAuth: clientAuth, ClientCAs: p.caPool}
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// issue creates a leaf certificate for 127.0.0.1 and localhost signed by ca.
func issue(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, serial int64, usage x509.ExtKeyUsage) ([]byte, *ecdsa.PrivateKey) {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return der, key
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	data := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// mustDial dials and registers Close as a cleanup.
func mustDial(t *testing.T, rawURL string, opts Options) *Conn {
	t.Helper()
	c, err := Dial(t.Context(), rawURL, opts)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { _ = c.CloseNow() })
	return c
}
