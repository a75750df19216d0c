// Package secretkey is the one rule for which query parameters carry secrets, and the one walk
// that masks them in a raw query: transport.Redact applies it to URLs in logs, the request
// inspector to the queries it shows (and Is to the header names it shows).
package secretkey

import (
	"net/url"
	"slices"
	"strings"
)

// parts make a parameter name secret wherever they appear in it.
var parts = []string{"token", "secret", "passw", "pwd", "key", "sig", "auth", "jwt", "session", "credential"}

// names are secret only as whole names (as parts they would catch harmless names).
var names = []string{"code", "sid", "pass"}

// Is reports whether a raw (possibly percent-encoded) query parameter name looks like it
// carries a secret: token, access_token, api_key, X-Amz-Signature, sessionid, code, ...
// Hiding a harmless parameter costs nothing; showing a secret one does.
func Is(name string) bool {
	if n, err := url.QueryUnescape(name); err == nil {
		name = n
	}
	name = strings.ToLower(strings.TrimSpace(name))
	if slices.Contains(names, name) {
		return true
	}
	for _, p := range parts {
		if strings.Contains(name, p) {
			return true
		}
	}
	return false
}

// MaskQuery replaces with mask the value of every parameter of the raw query q whose name Is
// secret, keeping the parameters' order, their encoding and their separators ('&' and ';',
// which some servers also split on). A parameter without '=' has no value to mask.
func MaskQuery(q, mask string) string {
	if q == "" {
		return q
	}
	var b strings.Builder
	b.Grow(len(q))
	for q != "" {
		end := strings.IndexAny(q, "&;")
		part, sep := q, ""
		if end >= 0 {
			part, sep, q = q[:end], q[end:end+1], q[end+1:]
		} else {
			q = ""
		}
		if key, _, ok := strings.Cut(part, "="); ok && Is(key) {
			part = key + "=" + mask
		}
		b.WriteString(part)
		b.WriteString(sep)
	}
	return b.String()
}
