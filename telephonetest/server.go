package telephonetest

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/verastack/telephone/internal/plugtoken"
)

// Server is an in-memory Plugboard: it mints telephone tokens, accepts
// telephone sockets at /telephone/websocket, runs the telephone channel, routes
// HTTP requests and WebSocket upgrades sent to /call/<path_id>/... through the
// joined telephones, and injects faults. Its methods are safe for concurrent
// use. The caller must Close it.
type Server struct {
	cfg     config
	key     []byte // HS256 signing key derived from cfg.secret
	subject string // sub claim of every minted token
	baseURL string
	handler http.Handler
	hs      *httptest.Server // set by NewServer
	hsrv    *http.Server     // set by Serve
	serveWG sync.WaitGroup   // joins the Serve loop

	quit      chan struct{} // closed when Close starts
	closeOnce sync.Once
	wg        sync.WaitGroup // every handler invocation and every goroutine the server starts

	refuse      atomic.Bool
	dropReplies atomic.Bool
	stopAcks    atomic.Bool
	replyDelay  atomic.Int64 // time.Duration

	// mu guards the routing state: closed, tokens, byJWT, byJTI, accounts, sockets,
	// socketSeq, paths, rr and changed, and also the mutable fields of every socket and
	// channel (their comments say which).
	mu     sync.Mutex
	closed bool
	tokens map[string]*tokenRecord // token id → record
	byJWT  map[string]*tokenRecord // current JWT of each record → record
	byJTI  map[string]*tokenRecord // jti of each minted JWT → record (refreshed JWTs carry the record id)
	// accounts maps the SHA-256 of each service-account key to its account (vending.go).
	accounts  map[string]*serviceAccount
	sockets   map[*socket]struct{}  // live telephone sockets
	socketSeq uint64                // last socket id given out
	paths     map[string][]*channel // path id → joined channels, in join order
	rr        map[string]uint64     // path id → round-robin counter
	changed   chan struct{}         // closed and replaced whenever paths changes

	recMu  sync.Mutex // guards frames
	frames []Frame
}

// NewServer starts a Server on a loopback httptest.Server. The caller must
// Close it. Options are described with each With* function.
func NewServer(opts ...Option) *Server {
	s := newServer(opts)
	s.hs = httptest.NewServer(s.handler)
	s.baseURL = s.hs.URL
	return s
}

// Serve starts a Server that serves HTTP on l (the CLI's devserver uses it). The
// Server owns l: Close closes it and stops serving. The base URL is derived from
// l's address.
func Serve(l net.Listener, opts ...Option) *Server {
	return serve(l, "http://", opts)
}

// ServeTLS is Serve over TLS with cfg (which must hold a certificate): the URLs are https://
// and wss://. A telephone reaches it with a CA that trusts the certificate (the CLI's
// PLUGBOARD_CA_FILE, or WithTLSConfig).
func ServeTLS(l net.Listener, cfg *tls.Config, opts ...Option) *Server {
	return serve(tls.NewListener(l, cfg), "https://", opts)
}

func serve(l net.Listener, scheme string, opts []Option) *Server {
	s := newServer(opts)
	s.baseURL = scheme + l.Addr().String()
	s.hsrv = &http.Server{Handler: s.handler, ReadHeaderTimeout: 10 * time.Second}
	s.serveWG.Add(1)
	go func() {
		defer s.serveWG.Done()
		_ = s.hsrv.Serve(l)
	}()
	return s
}

func newServer(opts []Option) *Server {
	cfg := defaultConfig()
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	if cfg.secret == "" {
		cfg.secret = randomSecret()
	}
	s := &Server{
		cfg:      cfg,
		key:      plugtoken.DeriveKey(cfg.secret),
		subject:  uuid.NewString(),
		quit:     make(chan struct{}),
		tokens:   make(map[string]*tokenRecord),
		byJWT:    make(map[string]*tokenRecord),
		byJTI:    make(map[string]*tokenRecord),
		accounts: make(map[string]*serviceAccount),
		sockets:  make(map[*socket]struct{}),
		paths:    make(map[string][]*channel),
		rr:       make(map[string]uint64),
		changed:  make(chan struct{}),
	}
	s.handler = http.HandlerFunc(s.serveHTTP)
	return s
}

// randomSecret returns 64 random bytes as unpadded base64 text (86 bytes).
func randomSecret() string {
	b := make([]byte, 64)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return base64.RawStdEncoding.EncodeToString(b)
}

// URL returns the server's base URL, http://host:port (https:// with ServeTLS).
func (s *Server) URL() string { return s.baseURL }

// SocketURL returns the telephone socket URL, ws://host:port/telephone/websocket
// (wss:// with ServeTLS; without the token and vsn query parameters the client adds).
func (s *Server) SocketURL() string {
	return "ws" + strings.TrimPrefix(s.baseURL, "http") + "/telephone/websocket"
}

// CallURL returns http://host:port/call/<pathID>, the HTTP front of the path.
func (s *Server) CallURL(pathID string) string { return s.baseURL + "/call/" + pathID }

// Handler returns the server's HTTP handler: the socket, the /call front and
// the loopback admin endpoints. It is what NewServer and Serve serve; it can be
// mounted elsewhere, but Close still owns the connections it accepted.
func (s *Server) Handler() http.Handler { return s.handler }

// SecretKeyBase returns the server's secret_key_base (see WithSecret).
func (s *Server) SecretKeyBase() string { return s.cfg.secret }

// Close shuts the server down: it closes every telephone socket with close code
// 1001 (going away), fails every waiting HTTP caller with 502, closes proxied
// WebSockets with 1001, stops serving HTTP and waits for every goroutine the
// server started. Close is idempotent.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		socks := s.socketsLocked()
		s.mu.Unlock()
		close(s.quit)
		for _, sk := range socks {
			sk.shutdown(1001, "server shutting down", false)
		}
		if s.hs != nil {
			s.hs.Close()
		}
		if s.hsrv != nil {
			// Shutdown lets the callers just failed with 502 get their answer.
			ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
			if s.hsrv.Shutdown(ctx) != nil {
				_ = s.hsrv.Close()
			}
			cancel()
			s.serveWG.Wait()
		}
		s.wg.Wait()
	})
}

// shutdownTimeout bounds how long Close waits for HTTP requests in progress
// when serving on a listener.
const shutdownTimeout = 10 * time.Second

// socketsLocked returns the live sockets. s.mu must be held.
func (s *Server) socketsLocked() []*socket {
	out := make([]*socket, 0, len(s.sockets))
	for sk := range s.sockets {
		out = append(out, sk)
	}
	return out
}

// enter registers one handler invocation with s.wg; it reports false once
// Close has started, so that no Add races with the final Wait.
func (s *Server) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	return true
}

// serveHTTP routes a request. The /call front and the socket path are matched
// on the raw path so that the router, not net/http, decides about dot segments.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.enter() {
		httpError(w, http.StatusServiceUnavailable, "Server shutting down")
		return
	}
	defer s.wg.Done()
	p := r.URL.Path
	switch {
	case p == socketPath:
		s.serveSocket(w, r)
	case p == "/call" || strings.HasPrefix(p, "/call/"):
		if isWebSocketUpgrade(r) {
			s.serveWSProxy(w, r)
		} else {
			s.serveCall(w, r)
		}
	case p == VendPath:
		s.serveVend(w, r)
	case p == "/mint" || strings.HasPrefix(p, "/admin/"):
		s.serveAdmin(w, r)
	default:
		httpError(w, http.StatusNotFound, "Not Found")
	}
}

// socketPath is where Plugboard mounts the telephone socket (docs/PROTOCOL.md §1).
const socketPath = "/telephone/websocket"

// isWebSocketUpgrade reports whether r asks for a WebSocket upgrade.
func isWebSocketUpgrade(r *http.Request) bool {
	return headerHasToken(r.Header, "Connection", "upgrade") && headerHasToken(r.Header, "Upgrade", "websocket")
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}
