package transport

import "net/http"

// NewHTTPClient returns an HTTP client for Plugboard's HTTP API (token vending)
// with the same TLS, proxy and redirect rules as Dial: the TLS options and
// Proxy of opts apply, redirects are never followed (a 3xx is returned as the
// response, so that credentials never travel to where it points) and
// connections are not kept alive. Options.HTTPClient, when set, is returned
// as is. The error wraps ErrTLSConfig for unusable TLS options.
func NewHTTPClient(opts Options) (*http.Client, error) {
	c, _, err := opts.httpClient(nil) // plain HTTP requests: nothing to cork
	return c, err
}
