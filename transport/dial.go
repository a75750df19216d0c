package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// DefaultHandshakeTimeout bounds the whole handshake (TCP connect, proxy,
// TLS and HTTP upgrade) when Options.HandshakeTimeout is 0.
const DefaultHandshakeTimeout = 10 * time.Second

// DefaultReadLimit is the largest inbound message accepted when
// Options.ReadLimit is 0: 64 MiB.
const DefaultReadLimit int64 = 64 << 20

// Options configure Dial. The zero value dials with the system roots, the
// proxy from the environment, a 10 s handshake timeout and a 64 MiB read
// limit. Options are read by Dial and BuildTLSConfig and never modified.
type Options struct {
	// Token is set as the token query parameter, replacing any token already
	// in the URL. When empty, the URL's own token parameter (if any) is kept.
	Token string
	// Header holds extra upgrade request headers; it may be nil. It is
	// cloned. Headers the WebSocket handshake sets itself are overwritten.
	Header http.Header
	// HandshakeTimeout bounds the handshake; 0 means DefaultHandshakeTimeout.
	// The context given to Dial still applies.
	HandshakeTimeout time.Duration
	// ReadLimit is the maximum inbound message size in bytes; 0 means
	// DefaultReadLimit, a negative value disables the limit.
	ReadLimit int64
	// TLSConfig is the base TLS configuration; it is cloned. nil means the
	// system roots and Go's defaults.
	TLSConfig *tls.Config
	// CAFile is a PEM bundle trusted in addition to the base (or system)
	// roots.
	CAFile string
	// CertFile and KeyFile are the PEM client certificate and key for mTLS;
	// both or neither.
	CertFile, KeyFile string
	// PinSHA256 optionally lists hex SHA-256 digests of acceptable server
	// leaf certificates (of the DER bytes); any match passes. Colons between
	// bytes are allowed.
	PinSHA256 []string
	// InsecureSkipVerify disables chain and host name verification. Set it
	// only when asked to; pins are still enforced.
	InsecureSkipVerify bool
	// Proxy chooses the proxy for the upgrade request. nil means
	// http.ProxyFromEnvironment (HTTPS_PROXY for wss, HTTP_PROXY for ws,
	// NO_PROXY): this is the only environment read in the package, done by
	// the standard library. A wss URL goes through the proxy with CONNECT; a
	// ws URL is sent to an HTTP proxy as a forward-proxy request, which the
	// proxy must pass on with its Upgrade header, so prefer wss with proxies.
	Proxy func(*http.Request) (*url.URL, error)
	// HTTPClient, when set, replaces the client Dial builds: TLSConfig,
	// CAFile, CertFile, KeyFile, PinSHA256, InsecureSkipVerify and Proxy are
	// then ignored, and redirects follow the client's CheckRedirect. Its
	// Transport must support HTTP/1.1 protocol switches (http.Transport does).
	HTTPClient *http.Client
}

// Dial opens a WebSocket to plugboardURL with the token and vsn=2.0.0 query
// parameters set (see SocketURL). ctx bounds the handshake only, together
// with Options.HandshakeTimeout; it does not bound the returned connection.
// Messages are sent uncompressed (compression is not negotiated).
//
// Redirects are not followed, as the token would go wherever they point: a 3xx
// answer is an *UpgradeError with Location set.
//
// Errors never contain the token. They wrap ErrBadURL or ErrTLSConfig for bad
// options; an *UpgradeError when the server answered with another status than
// 101 (401 and 403 match ErrUnauthorized and are permanent); otherwise a
// *DialError (refused connection, DNS, proxy, TLS including ErrPinMismatch,
// ErrHandshakeTimeout), which is not permanent.
//
// The caller owns the returned Conn and must Close it.
func Dial(ctx context.Context, plugboardURL string, opts Options) (*Conn, error) {
	socketURL, err := SocketURL(plugboardURL, opts.Token)
	if err != nil {
		return nil, err
	}
	var dialed atomic.Pointer[corkConn] // the socket's connection when Dial built the client
	client, release, err := opts.httpClient(&dialed)
	if err != nil {
		return nil, err
	}
	defer release()

	timeout := opts.HandshakeTimeout
	if timeout <= 0 {
		timeout = DefaultHandshakeTimeout
	}
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	ws, resp, err := websocket.Dial(hctx, socketURL, &websocket.DialOptions{
		HTTPClient:      client,
		HTTPHeader:      opts.Header.Clone(),
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		f := failure{url: Redact(socketURL), secrets: append(tokenValues(socketURL), opts.Token), timeout: timeout}
		return nil, f.classify(ctx, hctx, err, resp)
	}
	limit := opts.ReadLimit
	switch {
	case limit == 0:
		limit = DefaultReadLimit
	case limit < 0:
		limit = -1
	}
	ws.SetReadLimit(limit)
	return &Conn{ws: ws, url: Redact(socketURL), limit: limit, cork: dialed.Load()}, nil
}

// httpClient returns the client for the handshake and a function releasing
// its idle connections (a refused upgrade may leave one behind). The connection
// it dials is stored in dialed, when not nil (nothing with Options.HTTPClient). Should the
// transport dial more than once, a batch corks the wrong connection: it is then
// written message by message, still correctly.
func (o Options) httpClient(dialed *atomic.Pointer[corkConn]) (*http.Client, func(), error) {
	if o.HTTPClient != nil {
		return o.HTTPClient, func() {}, nil
	}
	tlsCfg, err := BuildTLSConfig(o)
	if err != nil {
		return nil, nil, err
	}
	proxy := o.Proxy
	if proxy == nil {
		proxy = http.ProxyFromEnvironment
	}
	dialer := &net.Dialer{KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy: proxy,
		// One dial per client (no keep-alive): the last connection is the socket's.
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			nc, err := dialer.DialContext(ctx, network, addr)
			if err != nil || dialed == nil {
				return nc, err
			}
			cc := &corkConn{Conn: nc}
			dialed.Store(cc)
			return cc, nil
		},
		TLSClientConfig:    tlsCfg,
		DisableKeepAlives:  true,
		DisableCompression: true,
		// 64 KiB of response headers is plenty for an upgrade answer.
		MaxResponseHeaderBytes: 64 << 10,
	}
	client := &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	return client, tr.CloseIdleConnections, nil
}

// failure turns a handshake error into the documented error types.
type failure struct {
	url     string        // redacted socket URL
	secrets []string      // token values to remove from error texts
	timeout time.Duration // the handshake timeout in force
}

// classify returns an *UpgradeError when the server answered with a status
// other than 101, and a *DialError otherwise.
func (f failure) classify(parent, hctx context.Context, err error, resp *http.Response) error {
	var ue *url.Error
	if resp == nil && errors.As(err, &ue) {
		err = ue.Err // the request error repeats the URL; f.url says it once
	}
	err = scrub(err, f.secrets)
	if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
		return &UpgradeError{
			StatusCode: resp.StatusCode,
			URL:        f.url,
			Err:        err,
			Location:   scrubString(Redact(resp.Header.Get("Location")), f.secrets),
			RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After")),
		}
	}
	if parent.Err() == nil && errors.Is(hctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("%w after %v (%w)", ErrHandshakeTimeout, f.timeout, err)
	}
	return &DialError{URL: f.url, Err: err}
}

// parseRetryAfter reads a Retry-After header in delta-seconds form; an HTTP
// date or anything else gives 0.
func parseRetryAfter(v string) time.Duration {
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 32)
	if err != nil || n <= 0 {
		return 0
	}
	return time.Duration(n) * time.Second
}
