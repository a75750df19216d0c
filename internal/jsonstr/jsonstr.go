// Package jsonstr appends Go strings as JSON strings, escaped exactly like encoding/json, so
// that large payloads can be built in one buffer. It serves the phoenix codec and the root
// package's proxy_res encoder.
package jsonstr

import "unicode/utf8"

const hexDigits = "0123456789abcdef"

// Append appends s to dst as a JSON string escaped exactly like encoding/json:
// control characters, quotes and backslashes escaped, invalid UTF-8 as \ufffd, U+2028 and
// U+2029 escaped, and, when escapeHTML is true, <, > and & as \u003c, \u003e and \u0026
// (json.Encoder.SetEscapeHTML(false) is escapeHTML false). It lets large payloads be built
// in one buffer, without encoding/json's intermediate copies.
func Append(dst []byte, s string, escapeHTML bool) []byte {
	dst = append(dst, '"')
	return append(AppendContent(dst, s, escapeHTML), '"')
}

// AppendContent is Append without the surrounding quotes: a JSON string's content, so that
// one string can be escaped in pieces (each piece ending on a character boundary).
func AppendContent(dst []byte, s string, escapeHTML bool) []byte {
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && (!escapeHTML || (b != '<' && b != '>' && b != '&')) {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			dst = appendEscapedByte(dst, b)
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	return append(dst, s[start:]...)
}

func appendEscapedByte(dst []byte, b byte) []byte {
	switch b {
	case '"', '\\':
		return append(dst, '\\', b)
	case '\b':
		return append(dst, '\\', 'b')
	case '\f':
		return append(dst, '\\', 'f')
	case '\n':
		return append(dst, '\\', 'n')
	case '\r':
		return append(dst, '\\', 'r')
	case '\t':
		return append(dst, '\\', 't')
	}
	return append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
}
