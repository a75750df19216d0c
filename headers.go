package telephone

import (
	"net/http"
	"strings"
	"unicode/utf8"
)

// hopHeaders belong to one connection, or describe a body the other side frames anew: they are
// never forwarded, neither in a request to the backend nor in a response to Plugboard. Headers
// named in a request's Connection header are dropped too (connectionTokens).
var hopHeaders = map[string]bool{
	"Connection": true, "Proxy-Connection": true, "Keep-Alive": true, "Proxy-Authenticate": true,
	"Proxy-Authorization": true, "Te": true, "Trailer": true, "Transfer-Encoding": true,
	"Upgrade": true, "Content-Length": true,
}

// checkTarget says why a path and query string from Plugboard cannot form the backend request
// target, for proxy_req as for ws_connect and ws_check, or returns "". The path is taken as the
// decoded path and never decoded again.
func checkTarget(path, query string) string {
	switch {
	case !strings.HasPrefix(path, "/") || strings.HasPrefix(path, "//"):
		return "path must start with a single /"
	case strings.ContainsAny(path, "\r\n\x00"):
		return "path contains control characters"
	case !validQuery(query):
		return "query_string contains characters not allowed in a URL"
	}
	// Dot segments are refused: the backend (or a proxy in front of it) would resolve them
	// above the backend URL's path prefix.
	for seg := range strings.SplitSeq(path[1:], "/") {
		if seg == "." || seg == ".." {
			return "path contains a dot segment"
		}
	}
	return ""
}

// escapeQuery percent-encodes the bytes above 0x7f of a raw query string (a client may send
// UTF-8 unencoded), which must never go raw onto the backend's request line. Everything else
// is kept verbatim.
func escapeQuery(q string) string {
	i := strings.IndexFunc(q, func(r rune) bool { return r >= utf8.RuneSelf })
	if i < 0 {
		return q
	}
	const hex = "0123456789ABCDEF"
	b := []byte(q[:i])
	for ; i < len(q); i++ {
		if c := q[i]; c >= utf8.RuneSelf {
			b = append(b, '%', hex[c>>4], hex[c&15])
		} else {
			b = append(b, c)
		}
	}
	return string(b)
}

func validQuery(q string) bool {
	for i := 0; i < len(q); i++ {
		if c := q[i]; c <= ' ' || c == 0x7f || c == '#' {
			return false
		}
	}
	return true
}

// connectionTokens lists the headers named in Connection, which are hop-by-hop too.
func connectionTokens(h http.Header) []string {
	var out []string
	for _, v := range h.Values("Connection") {
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				out = append(out, f)
			}
		}
	}
	return out
}
