// Package tokenstore provides the two TokenStore implementations of telephone: Memory, which
// lives and dies with the process, and SQLite, an encrypted file that is compatible in both
// directions with the telephone.db of the original Go sidecar (docs/PROTOCOL.md §7.2).
//
// Both types satisfy the root package's interface
//
//	type TokenStore interface {
//	    Load(ctx context.Context) (string, error)
//	    Save(ctx context.Context, token string, expiresAt time.Time) error
//	}
//
// and are safe for concurrent use. This package does not import the root package.
package tokenstore

import "errors"

// Sentinel errors. Errors returned by this package wrap one of them; match with errors.Is.
var (
	// ErrWrongSecret means the store holds rows but none of them decrypts with the configured
	// secret because authentication fails: the file was written with another SECRET_KEY_BASE.
	ErrWrongSecret = errors.New("token store was written with a different SECRET_KEY_BASE")
	// ErrCorrupt means stored data cannot be decoded at all (not base64, too short for
	// nonce and tag, or an unreadable time). Row.Err wraps it for such rows; Load returns it
	// when every row is in that state.
	ErrCorrupt = errors.New("tokenstore: stored token is corrupt")
	// ErrAuthentication means AES-GCM authentication of one row failed: the row was written with
	// another secret or was altered. Row.Err wraps it.
	ErrAuthentication = errors.New("tokenstore: stored token failed authentication")
	// ErrEmptySecret means OpenSQLite was given an empty SECRET_KEY_BASE.
	ErrEmptySecret = errors.New("tokenstore: empty secret key base")
	// ErrBadPath means the database path is empty or cannot be used as a plain file name.
	ErrBadPath = errors.New("tokenstore: unusable database path")
	// ErrEmptyToken means Save was given an empty token.
	ErrEmptyToken = errors.New("tokenstore: empty token")
	// ErrExpired means Save was given a token whose expiry is not in the future.
	ErrExpired = errors.New("tokenstore: token already expired")
	// ErrClosed means the store was used after Close.
	ErrClosed = errors.New("tokenstore: store is closed")
)
