package inspector

import (
	"encoding/hex"
	"net/http"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/verastack/telephone/internal/secretkey"
)

// masked replaces a secret value on the page.
const masked = "••••••"

// secretHeaders have values masked on the page, as do headers whose names look secret by the
// rule of query parameters (X-Goog-Api-Key, Private-Token, X-Vault-Token, ...).
var secretHeaders = map[string]bool{
	"Authorization": true, "Proxy-Authorization": true, "Cookie": true, "Set-Cookie": true,
	"X-Api-Key": true, "X-Auth-Token": true, "X-Csrf-Token": true, "X-Xsrf-Token": true,
}

// publicHeaders look secret by name but carry public values: authentication challenges, a
// boolean, the WebSocket handshake nonce, public key hashes.
var publicHeaders = map[string]bool{
	"Www-Authenticate": true, "Proxy-Authenticate": true, "Access-Control-Allow-Credentials": true,
	"Sec-Websocket-Key": true, "Public-Key-Pins": true, "Public-Key-Pins-Report-Only": true,
}

// isSecretHeader reports whether the page masks the values of header k (canonical form).
func isSecretHeader(k string) bool {
	return secretHeaders[k] || (!publicHeaders[k] && secretkey.Is(k))
}

// maskQuery masks the values of token-like parameters, keeping the rest of the query as sent.
func maskQuery(q string, show bool) string {
	if show {
		return q
	}
	return secretkey.MaskQuery(q, masked)
}

// maskURL masks the values of token-like parameters in a URL's query.
func maskURL(raw string, show bool) string {
	base, q, ok := strings.Cut(raw, "?")
	if !ok || show {
		return raw
	}
	return base + "?" + maskQuery(q, false)
}

// maskValue masks one header value: Authorization keeps its scheme, cookies keep their names.
func maskValue(name, v string) string {
	switch name {
	case "Authorization", "Proxy-Authorization":
		if scheme, _, ok := strings.Cut(v, " "); ok {
			return scheme + " " + masked
		}
		return masked
	case "Cookie":
		parts := strings.Split(v, ";")
		for i, p := range parts {
			if n, _, ok := strings.Cut(p, "="); ok {
				parts[i] = n + "=" + masked
			}
		}
		return strings.Join(parts, ";")
	case "Set-Cookie":
		n, rest, ok := strings.Cut(v, "=")
		if !ok {
			return masked
		}
		attrs := ""
		if i := strings.IndexByte(rest, ';'); i >= 0 {
			attrs = rest[i:]
		}
		return n + "=" + masked + attrs
	}
	return masked
}

// headerLine is one header as the page shows it.
type headerLine struct {
	Name   string `json:"name"`
	Value  string `json:"value"`
	Masked bool   `json:"masked,omitempty"`
}

// showHeaders lists h sorted by name, with secret values masked unless show.
func showHeaders(h http.Header, show bool) []headerLine {
	names := make([]string, 0, len(h))
	for k := range h {
		names = append(names, k)
	}
	sort.Strings(names)
	var out []headerLine
	for _, k := range names {
		for _, v := range h[k] {
			if !show && isSecretHeader(k) {
				out = append(out, headerLine{Name: k, Value: maskValue(k, v), Masked: true})
				continue
			}
			out = append(out, headerLine{Name: k, Value: v})
		}
	}
	return out
}

// shownBody is a body as the page shows it: text, or a hex dump of its first bytes.
type shownBody struct {
	Size      int    `json:"size"`
	Binary    bool   `json:"binary"`
	Text      string `json:"text,omitempty"`
	Hex       string `json:"hex,omitempty"`
	Truncated bool   `json:"truncated"`
}

// hexHead is how many bytes of a binary body the page shows.
const hexHead = 256

func showBody(b body) shownBody {
	sb := shownBody{Size: b.size, Truncated: len(b.data) < b.size}
	if isText(b.data) {
		sb.Text = b.data
		return sb
	}
	sb.Binary = true
	sb.Hex = hex.Dump([]byte(b.data[:min(len(b.data), hexHead)]))
	return sb
}

// isText reports whether s is UTF-8 text without control characters other than whitespace.
// A prefix cut inside a character still counts as text.
func isText(s string) bool {
	for i, r := range s {
		if r == utf8.RuneError && !utf8.FullRuneInString(s[i:]) {
			return true // cut at the keep limit
		}
		if r == utf8.RuneError || (r < 0x20 && r != '\t' && r != '\n' && r != '\r') || r == 0x7f {
			return false
		}
	}
	return true
}
