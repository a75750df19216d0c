// Package plugtoken reads, checks and (for tests and the in-memory Plugboard) mints the JWTs that
// Plugboard issues to telephones (docs/PROTOCOL.md §4).
//
// A token is a compact JWS with header {"alg":"HS256","typ":"JWT"} and exactly the claims sub,
// jti, path_id, iat and exp (iat and exp are integer Unix seconds). The newest Plugboard signs
// with a key derived from its secret_key_base (see DeriveKey); older servers used
// secret_key_base directly (see VerifyAny).
//
// Every function is safe for concurrent use; none keeps state between calls.
package plugtoken

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"time"
)

// Sentinel errors. Every error returned by this package wraps exactly one of them (ErrAlgorithm
// and ErrEmptyKey are wrapped together with ErrMalformed or ErrSignature) and its text says which
// check failed.
var (
	// ErrMalformed means the token does not have the shape of a Plugboard token: not three
	// base64url parts, a bad header, or a missing or ill-typed claim.
	ErrMalformed = errors.New("plugtoken: malformed token")
	// ErrSignature means the HS256 signature check failed (wrong key or tampered token).
	ErrSignature = errors.New("plugtoken: signature check failed")
	// ErrExpired means the exp claim is not in the future.
	ErrExpired = errors.New("plugtoken: token expired")
	// ErrIssuedInFuture means the iat claim is further in the future than the allowed skew.
	ErrIssuedInFuture = errors.New("plugtoken: token issued in the future")
	// ErrAlgorithm means the header names an algorithm other than HS256 (including "none").
	// It is always wrapped together with ErrMalformed.
	ErrAlgorithm = errors.New("plugtoken: algorithm is not HS256")
	// ErrEmptyKey means an empty HMAC key was given to Sign, Verify or VerifyAny.
	ErrEmptyKey = errors.New("plugtoken: empty key")
)

// MaxTokenLen is the longest token Parse and Verify accept, in bytes. Plugboard tokens are about
// 300 bytes; the cap keeps garbage input cheap to refuse.
const MaxTokenLen = 8 << 10

// keyDerivationMessage is the HMAC message of Plugboard's derive_jwt_secret (docs/PROTOCOL.md §4.2).
const keyDerivationMessage = "plugboard_telephone_jwt_v1"

// Claims are the claims Plugboard puts in every telephone token (docs/PROTOCOL.md §4.1).
type Claims struct {
	Subject   string    // sub
	ID        string    // jti
	PathID    string    // path_id
	IssuedAt  time.Time // iat
	ExpiresAt time.Time // exp
}

// DeriveKey returns Plugboard's JWT signing key for secretKeyBase: the standard padded Base64 text of
// HMAC-SHA256(key=secretKeyBase, msg="plugboard_telephone_jwt_v1"), used as raw bytes.
//
// The result is the 44 bytes of that Base64 text, not the 32 decoded MAC bytes: this is what the
// newest Plugboard hands to Joken as its HS256 secret. Servers older than that key derivation
// sign with []byte(secretKeyBase) itself (see VerifyAny).
func DeriveKey(secretKeyBase string) []byte {
	mac := hmac.New(sha256.New, []byte(secretKeyBase))
	mac.Write([]byte(keyDerivationMessage))
	return []byte(base64.StdEncoding.EncodeToString(mac.Sum(nil)))
}

// Check validates times: exp in the future (ErrExpired), iat not more than skew in the future (ErrIssuedInFuture).
//
// A token is expired when now is at or after ExpiresAt. A negative skew counts as zero. Check does
// not compare iat with exp: an already expired token is reported as ErrExpired.
func (c Claims) Check(now time.Time, skew time.Duration) error {
	if !now.Before(c.ExpiresAt) {
		return errorf(ErrExpired, "exp %s is not after now %s", stamp(c.ExpiresAt), stamp(now))
	}
	skew = max(skew, 0)
	if c.IssuedAt.After(now.Add(skew)) {
		return errorf(ErrIssuedInFuture, "iat %s is more than %s after now %s",
			stamp(c.IssuedAt), skew, stamp(now))
	}
	return nil
}

// stamp formats t for error messages.
func stamp(t time.Time) string {
	return t.UTC().Format(time.RFC3339)
}
