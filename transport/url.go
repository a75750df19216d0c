package transport

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/verastack/telephone/internal/secretkey"
)

// protocolVersion is the Phoenix serializer version telephone speaks (V2).
const protocolVersion = "2.0.0"

// redacted replaces secrets in URLs and error texts.
const redacted = "REDACTED"

// SocketURL returns plugboardURL with the query parameter token set to token
// and vsn set to 2.0.0, keeping every other query parameter.
//
// An existing token or vsn parameter is replaced, never duplicated. When token
// is empty an existing token parameter is left as it is (the token may be
// embedded in the URL), and none is added otherwise. The query is re-encoded
// with url.Values.Encode, so keys come out sorted.
//
// The schemes ws and wss are accepted; http and https are mapped to ws and
// wss. Any other scheme, a missing host, a fragment or a malformed query is an
// error wrapping ErrBadURL whose text shows the URL redacted. The path is used
// as given: for Plugboard it is normally /telephone/websocket.
func SocketURL(plugboardURL, token string) (string, error) {
	u, err := parseSocketURL(plugboardURL)
	if err != nil {
		return "", err
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return "", fmt.Errorf("%w: %s: malformed query: %v", ErrBadURL, Redact(plugboardURL), err)
	}
	if token != "" {
		q.Set("token", token)
	}
	q.Set("vsn", protocolVersion)
	u.RawQuery = q.Encode()
	u.ForceQuery = false
	return u.String(), nil
}

// parseSocketURL parses raw and checks its scheme, host and fragment.
func parseSocketURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the url.Error text repeats the raw URL, token included
		}
		return nil, fmt.Errorf("%w: %s: %v", ErrBadURL, Redact(raw), err)
	}
	switch strings.ToLower(u.Scheme) {
	case "ws", "http":
		u.Scheme = "ws"
	case "wss", "https":
		u.Scheme = "wss"
	default:
		return nil, fmt.Errorf("%w: %s: scheme %q is not ws, wss, http or https", ErrBadURL, Redact(raw), u.Scheme)
	}
	switch {
	case u.Opaque != "" || u.Host == "":
		return nil, fmt.Errorf("%w: %s: no host", ErrBadURL, Redact(raw))
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return nil, fmt.Errorf("%w: %s: a WebSocket URL cannot have a fragment", ErrBadURL, Redact(raw))
	}
	return u, nil
}

// tokenValues returns the values of the token parameters in rawURL's query,
// including those whose key is written with escapes or in another case.
func tokenValues(rawURL string) []string {
	_, query, _ := strings.Cut(rawURL, "?")
	query, _, _ = strings.Cut(query, "#")
	var out []string
	for part := range strings.FieldsFuncSeq(query, func(r rune) bool { return r == '&' || r == ';' }) {
		key, val, ok := strings.Cut(part, "=")
		if !ok || !isTokenKey(key) {
			continue
		}
		out = append(out, val)
		if v, err := url.QueryUnescape(val); err == nil {
			out = append(out, v)
		}
	}
	return out
}

// Redact returns rawURL with the value of every token-like query parameter
// (see internal/secretkey: token, access_token, api_key, X-Amz-Signature, ...)
// replaced by "REDACTED" and any userinfo password replaced likewise, for
// logs and error messages. Parameter keys are compared after unescaping and
// ignoring case, so "Token" and "tok%65n" are redacted too. A string that
// does not parse as a URL is still redacted on a best-effort textual basis.
// Redact never panics.
func Redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return redactLoose(rawURL)
	}
	if u.Scheme == "" && u.Host == "" && !strings.Contains(rawURL, "?") {
		return redactQuery(rawURL) // a bare query such as "token=x&a=b"
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), redacted)
		}
	}
	u.RawQuery = redactQuery(u.RawQuery)
	frag := u.EscapedFragment()
	u.Fragment, u.RawFragment = "", ""
	s := u.String()
	if frag != "" {
		s += "#" + redactQuery(frag)
	}
	return s
}

// redactLoose redacts a string that url.Parse rejected: the password of a
// userinfo and every token parameter after the first '?' (or in the whole
// string when there is none).
func redactLoose(s string) string {
	if scheme, rest, ok := strings.Cut(s, "://"); ok {
		authority, path, hasPath := strings.Cut(rest, "/")
		if at := strings.LastIndex(authority, "@"); at >= 0 {
			if user, _, hasPass := strings.Cut(authority[:at], ":"); hasPass {
				authority = user + ":" + redacted + authority[at:]
			}
		}
		s = scheme + "://" + authority
		if hasPath {
			s += "/" + path
		}
	}
	if before, query, ok := strings.Cut(s, "?"); ok {
		return before + "?" + redactQuery(query)
	}
	return redactQuery(s)
}

// redactQuery replaces the value of every token-like parameter in a raw query,
// keeping the order of the parameters and their separators ('&' and ';').
func redactQuery(q string) string { return secretkey.MaskQuery(q, redacted) }

// isTokenKey reports whether a raw query key names the token parameter.
func isTokenKey(key string) bool {
	if k, err := url.QueryUnescape(key); err == nil {
		key = k
	}
	return strings.EqualFold(strings.TrimSpace(key), "token")
}
