package telephone

import (
	"net"
	"net/http"
	"strings"

	"github.com/verastack/telephone/internal/httptoken"
)

// Forwarding-header policy. telephone is one proxy hop, and its peer is Plugboard, which adds
// no forwarding headers of its own: whatever X-Forwarded-For, X-Real-Ip, Forwarded or
// X-Forwarded-Host/-Proto a request carries was chosen by the end client. So, for HTTP and
// WebSocket requests alike, to in-process handlers and TCP backends alike:
//
//   - the client address is Plugboard's host:port as in the socket URL, unless
//     WithClientIPHeader names a header set by a trusted proxy in front of Plugboard;
//   - the client's X-Forwarded-For, X-Real-Ip, Forwarded, X-Forwarded-Host and
//     X-Forwarded-Proto are removed;
//   - telephone sets X-Forwarded-For to the client address's host, X-Forwarded-Host to
//     Plugboard's host and X-Forwarded-Proto to the scheme of Plugboard's socket URL
//     (https for wss://), and an in-process handler's RemoteAddr to the client address.
//
// The Host header (Request.Host of an in-process handler) stays what the end client sent, as
// for any HTTP server: build absolute URLs from X-Forwarded-Host, not from Host.

// clientForwardingHeaders are the request headers an end client could use to pose as someone
// else; they are removed before telephone sets its own.
var clientForwardingHeaders = []string{"X-Forwarded-For", "X-Real-Ip", "Forwarded", "X-Forwarded-Host", "X-Forwarded-Proto"}

// WithClientIPHeader trusts header name, set by a load balancer or CDN in front of Plugboard,
// for the end client's address (default: none; the address is Plugboard's). trustedHops is the
// number of trusted proxies that append to the header (1 for a single load balancer): the
// address is the trustedHops-th comma-separated entry from the right, the one the outermost
// trusted proxy saw, which the end client cannot choose. A missing header, fewer entries than
// trustedHops or an entry that is not an IP address fall back to Plugboard's address.
//
// Only use it when every request reaches Plugboard through those proxies; otherwise a client
// that calls Plugboard directly chooses its address. WebSocket upgrades carry only
// X-Forwarded-For and X-Real-Ip from Plugboard, so other headers apply to HTTP requests only.
func WithClientIPHeader(name string, trustedHops int) Option {
	return func(o *options) error {
		if !httptoken.Valid(name) {
			return optErr("WithClientIPHeader", "invalid header name %q", name)
		}
		if trustedHops < 1 {
			return optErr("WithClientIPHeader", "trustedHops must be at least 1, got %d", trustedHops)
		}
		o.clientIPHeader, o.clientIPHops = http.CanonicalHeaderKey(name), trustedHops
		return nil
	}
}

// setForwarded applies the forwarding-header policy to h, the headers of a request from
// Plugboard, and returns the client address for RemoteAddr.
func (c *Client) setForwarded(h http.Header) string {
	addr, host := c.pbHost, c.pbHostname
	if o := c.conf(); o.clientIPHeader != "" {
		if ip := trustedIP(h.Values(o.clientIPHeader), o.clientIPHops); ip != "" {
			addr, host = net.JoinHostPort(ip, "0"), ip
		}
	}
	for _, name := range clientForwardingHeaders {
		h.Del(name)
	}
	h.Set("X-Forwarded-For", host)
	h.Set("X-Forwarded-Host", c.pbPublicHost)
	h.Set("X-Forwarded-Proto", c.pbProto)
	return addr
}

// trustedIP returns the hops-th entry from the right of a comma-separated list header, or ""
// when there are fewer entries or that one is not an IP address.
func trustedIP(values []string, hops int) string {
	entries := strings.Split(strings.Join(values, ","), ",")
	if hops < 1 || hops > len(entries) {
		return ""
	}
	ip := strings.TrimSpace(entries[len(entries)-hops])
	if net.ParseIP(ip) == nil {
		return ""
	}
	return ip
}
