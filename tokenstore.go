package telephone

import (
	"context"
	"time"
)

// TokenStore keeps the token a Client uses so that a restart resumes with the newest one
// (tokens are rotated by every refresh, and Plugboard refuses the previous one at once).
//
// Implementations must be safe for concurrent use. The tokenstore package provides an
// in-memory store and an encrypted SQLite store compatible with the original sidecar.
type TokenStore interface {
	// Load returns the newest stored token that has not expired, or "" and a nil error when
	// there is none. A store that cannot be read returns an error: it never reports a
	// broken store as empty.
	Load(ctx context.Context) (string, error)
	// Save stores token, which expires at expiresAt.
	Save(ctx context.Context, token string, expiresAt time.Time) error
}
