package tokenstore

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
)

// Key derivation and sealing exactly as the original sidecar (docs/PROTOCOL.md §7.2).
const (
	kdfSalt       = "telephone-token-encryption-v1"
	kdfIterations = 100_000
	keyLen        = 32 // AES-256
	nonceLen      = 12
	tagLen        = 16
)

// deriveKey returns PBKDF2-HMAC-SHA256(secretKeyBase, kdfSalt, 100 000 iterations, 32 bytes).
func deriveKey(secretKeyBase string) ([]byte, error) {
	k, err := pbkdf2.Key(sha256.New, secretKeyBase, []byte(kdfSalt), kdfIterations, keyLen)
	if err != nil {
		return nil, fmt.Errorf("tokenstore: derive key: %w", err)
	}
	return k, nil
}

// newGCM returns AES-256-GCM with the standard 12-byte nonce and 16-byte tag.
func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("tokenstore: cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("tokenstore: gcm: %w", err)
	}
	return aead, nil
}

// encrypt returns base64(nonce ‖ ciphertext ‖ tag) of token under key, with a random nonce and
// no associated data.
func encrypt(key []byte, token string) (string, error) {
	aead, err := newGCM(key)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, nonceLen, nonceLen+len(token)+tagLen)
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("tokenstore: nonce: %w", err)
	}
	sealed := aead.Seal(nonce, nonce, []byte(token), nil)
	return base64.StdEncoding.EncodeToString(sealed), nil
}

// decrypt reverses encrypt. Undecodable input wraps ErrCorrupt; a failed authentication (other
// key or altered bytes) wraps ErrAuthentication. It never returns a token for an error.
func decrypt(key []byte, encoded string) (string, error) {
	raw, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil {
		return "", fmt.Errorf("%w: not standard base64: %v", ErrCorrupt, err)
	}
	if len(raw) < nonceLen+tagLen {
		return "", fmt.Errorf("%w: %d bytes, shorter than nonce and tag (%d)", ErrCorrupt, len(raw), nonceLen+tagLen)
	}
	aead, err := newGCM(key)
	if err != nil {
		return "", err
	}
	plain, err := aead.Open(nil, raw[:nonceLen], raw[nonceLen:], nil)
	if err != nil {
		return "", fmt.Errorf("%w: AES-GCM open failed", ErrAuthentication)
	}
	if len(plain) == 0 {
		return "", fmt.Errorf("%w: empty token", ErrCorrupt)
	}
	return string(plain), nil
}
