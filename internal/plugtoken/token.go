package plugtoken

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// wireClaims is the JSON payload Sign writes, in Plugboard's claim names.
type wireClaims struct {
	Sub    string `json:"sub"`
	Jti    string `json:"jti"`
	PathID string `json:"path_id"`
	Iat    int64  `json:"iat"`
	Exp    int64  `json:"exp"`
}

// errorf returns an error wrapping sentinel whose text is the sentinel's text, ": ", and the
// formatted detail.
func errorf(sentinel error, format string, args ...any) error {
	return fmt.Errorf("%w: %s", sentinel, fmt.Sprintf(format, args...))
}

// Sign produces a compact HS256 JWT with header typ JWT and exactly the claims sub, jti, path_id, iat, exp.
//
// iat and exp are written as integer Unix seconds (sub-second parts are dropped). Sign refuses an
// empty key (ErrEmptyKey) and claims that Parse would refuse (ErrMalformed): empty sub, jti or
// path_id, or a zero time.
func Sign(c Claims, key []byte) (string, error) {
	if len(key) == 0 {
		return "", fmt.Errorf("plugtoken: sign: %w", ErrEmptyKey)
	}
	if err := c.validate(); err != nil {
		return "", err
	}
	payload, err := json.Marshal(wireClaims{
		Sub: c.Subject, Jti: c.ID, PathID: c.PathID,
		Iat: c.IssuedAt.Unix(), Exp: c.ExpiresAt.Unix(),
	})
	if err != nil {
		return "", fmt.Errorf("plugtoken: encode claims: %w", err)
	}
	hdr := jws.NewHeaders()
	if err := hdr.Set(jws.TypeKey, "JWT"); err != nil {
		return "", fmt.Errorf("plugtoken: set typ header: %w", err)
	}
	out, err := jws.Sign(payload, jws.WithKey(jwa.HS256, key, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		return "", fmt.Errorf("plugtoken: sign: %w", err)
	}
	return string(out), nil
}

// validate reports claims that cannot appear in a Plugboard token.
func (c Claims) validate() error {
	for _, f := range []struct{ name, v string }{{"sub", c.Subject}, {"jti", c.ID}, {"path_id", c.PathID}} {
		if f.v == "" {
			return errorf(ErrMalformed, "claim %s is empty", f.name)
		}
	}
	if c.IssuedAt.IsZero() {
		return errorf(ErrMalformed, "claim iat is the zero time")
	}
	if c.ExpiresAt.IsZero() {
		return errorf(ErrMalformed, "claim exp is the zero time")
	}
	return nil
}

// Parse reads the claims WITHOUT verifying the signature; it checks the shape (3 parts, HS256 alg, all five
// claims present and well-typed, path_id non-empty) and returns errors wrapping ErrMalformed.
//
// Well-typed means: sub, jti and path_id are non-empty JSON strings; iat and exp are JSON numbers
// with an integral value (Unix seconds). Other claims are ignored. A header whose alg is not
// HS256 (for example "none") is refused with an error wrapping both ErrMalformed and ErrAlgorithm.
// The returned times are in UTC.
func Parse(token string) (Claims, error) {
	msg, err := parseMessage(token)
	if err != nil {
		return Claims{}, err
	}
	return parseClaims(msg.Payload())
}

// Verify checks the HS256 signature with key (errors wrap ErrSignature) and then parses the claims.
//
// The header is checked first (a token that is not a three-part HS256 JWS wraps ErrMalformed),
// then the signature (wrong key or any tampering wraps ErrSignature), then the claims as in Parse.
// Verify does not check times; call Claims.Check for that.
func Verify(token string, key []byte) (Claims, error) {
	return VerifyAny(token, key)
}

// VerifyAny is Verify with several candidate keys: the signature must match one of them. It
// serves servers of different ages with one secret: the newest Plugboard signs with
// DeriveKey(secretKeyBase), servers before that key derivation (docs/PROTOCOL.md §4.2) with
// []byte(secretKeyBase) itself, so pass both:
//
//	plugtoken.VerifyAny(tok, plugtoken.DeriveKey(skb), []byte(skb))
//
// With no keys, or an empty key among them, the error wraps ErrSignature and ErrEmptyKey.
func VerifyAny(token string, keys ...[]byte) (Claims, error) {
	if len(keys) == 0 {
		return Claims{}, fmt.Errorf("%w: no key given: %w", ErrSignature, ErrEmptyKey)
	}
	for i, k := range keys {
		if len(k) == 0 {
			return Claims{}, fmt.Errorf("%w: key %d: %w", ErrSignature, i, ErrEmptyKey)
		}
	}
	msg, err := parseMessage(token)
	if err != nil {
		return Claims{}, err
	}
	opts := make([]jws.VerifyOption, 0, len(keys))
	for _, k := range keys {
		opts = append(opts, jws.WithKey(jwa.HS256, k))
	}
	if _, err := jws.Verify([]byte(token), opts...); err != nil {
		return Claims{}, errorf(ErrSignature, "HS256 signature matches none of %d key(s)", len(keys))
	}
	return parseClaims(msg.Payload())
}

// parseMessage checks the compact form and the protected header and returns the decoded message.
func parseMessage(token string) (*jws.Message, error) {
	if err := checkCompact(token); err != nil {
		return nil, err
	}
	msg, err := jws.Parse([]byte(token), jws.WithCompact())
	if err != nil {
		return nil, errorf(ErrMalformed, "cannot decode JWS: %v", err)
	}
	hdr := msg.Signatures()[0].ProtectedHeaders()
	if alg := hdr.Algorithm(); alg != jwa.HS256 {
		return nil, fmt.Errorf("%w: %w: header alg is %q", ErrMalformed, ErrAlgorithm, alg.String())
	}
	if typ := hdr.Type(); typ != "" && !strings.EqualFold(typ, "JWT") {
		return nil, errorf(ErrMalformed, "header typ is %q, not JWT", typ)
	}
	if v, ok := hdr.Get("b64"); ok && v != true {
		return nil, errorf(ErrMalformed, "header b64 is %v; JWTs need base64url payloads", v)
	}
	if len(hdr.Critical()) > 0 {
		return nil, errorf(ErrMalformed, "header crit %q is not supported", hdr.Critical())
	}
	return msg, nil
}

// checkCompact checks the size, the three dot-separated parts and their base64url alphabet
// (no padding) before any decoding.
func checkCompact(token string) error {
	if len(token) > MaxTokenLen {
		return errorf(ErrMalformed, "token is %d bytes, longer than %d", len(token), MaxTokenLen)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return errorf(ErrMalformed, "token has %d dot-separated parts, not 3", len(parts))
	}
	for i, p := range parts {
		name := [...]string{"header", "payload", "signature"}[i]
		if p == "" {
			return errorf(ErrMalformed, "%s part is empty", name)
		}
		if j := strings.IndexFunc(p, notBase64URL); j >= 0 {
			return errorf(ErrMalformed, "%s part has byte %q at %d, not base64url", name, p[j], j)
		}
	}
	return nil
}

// notBase64URL reports runes outside the unpadded base64url alphabet.
func notBase64URL(r rune) bool {
	switch {
	case r >= 'A' && r <= 'Z', r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
		return false
	}
	return true
}

// parseClaims decodes and type-checks the five claims of a payload.
func parseClaims(payload []byte) (Claims, error) {
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return Claims{}, errorf(ErrMalformed, "payload is not a JSON object: %v", err)
	}
	if dec.More() {
		return Claims{}, errorf(ErrMalformed, "payload has data after the JSON object")
	}
	var c Claims
	var err error
	if c.Subject, err = stringClaim(m, "sub"); err != nil {
		return Claims{}, err
	}
	if c.ID, err = stringClaim(m, "jti"); err != nil {
		return Claims{}, err
	}
	if c.PathID, err = stringClaim(m, "path_id"); err != nil {
		return Claims{}, err
	}
	if c.IssuedAt, err = timeClaim(m, "iat"); err != nil {
		return Claims{}, err
	}
	if c.ExpiresAt, err = timeClaim(m, "exp"); err != nil {
		return Claims{}, err
	}
	return c, nil
}

// stringClaim returns the non-empty string claim name.
func stringClaim(m map[string]any, name string) (string, error) {
	v, ok := m[name]
	if !ok {
		return "", errorf(ErrMalformed, "claim %s is missing", name)
	}
	s, ok := v.(string)
	if !ok {
		return "", errorf(ErrMalformed, "claim %s is %s, not a string", name, jsonType(v))
	}
	if s == "" {
		return "", errorf(ErrMalformed, "claim %s is empty", name)
	}
	return s, nil
}

// maxSeconds bounds numeric dates to values float64 represents exactly (about 285 million years).
const maxSeconds = 1 << 53

// timeClaim returns the numeric-date claim name as a UTC time.
func timeClaim(m map[string]any, name string) (time.Time, error) {
	v, ok := m[name]
	if !ok {
		return time.Time{}, errorf(ErrMalformed, "claim %s is missing", name)
	}
	n, ok := v.(json.Number)
	if !ok {
		return time.Time{}, errorf(ErrMalformed, "claim %s is %s, not a number", name, jsonType(v))
	}
	secs, err := integralSeconds(n)
	if err != nil {
		return time.Time{}, errorf(ErrMalformed, "claim %s: %v", name, err)
	}
	return time.Unix(secs, 0).UTC(), nil
}

// errNotSeconds is the detail for numbers that are not integer Unix seconds.
var errNotSeconds = errors.New("not integer Unix seconds within ±2^53")

// integralSeconds accepts integer literals and integral floats (1.7e9) within ±2^53.
func integralSeconds(n json.Number) (int64, error) {
	if i, err := strconv.ParseInt(string(n), 10, 64); err == nil {
		if i > maxSeconds || i < -maxSeconds {
			return 0, fmt.Errorf("%s is %w", n, errNotSeconds)
		}
		return i, nil
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || f != math.Trunc(f) || math.Abs(f) > maxSeconds {
		return 0, fmt.Errorf("%s is %w", n, errNotSeconds)
	}
	return int64(f), nil
}

// jsonType names the JSON type of a value decoded with UseNumber.
func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	default:
		return "an object"
	}
}
