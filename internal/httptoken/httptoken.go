// Package httptoken checks HTTP tokens (RFC 9110, 5.6.2), the syntax of header field names
// and of WebSocket subprotocol names. It exists so that the root package, telephonetest and
// the CLI share one check without importing golang.org/x/net/http/httpguts, whose idna and
// text tables would be a second copy next to the standard library's vendored one.
package httptoken

import "strings"

// delimiters are the visible ASCII characters a token may not contain.
const delimiters = `"(),/:;<=>?@[\]{}`

// Valid reports whether s is a non-empty token: visible ASCII characters other than the
// delimiters.
func Valid(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(delimiters, c) >= 0 {
			return false
		}
	}
	return true
}
