package tokenstore

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Memory is a TokenStore that keeps one token in memory. It is lost when the process exits.
//
// Memory keeps the most recently SAVED token (save order, like the SQLite store's
// "newest updated_at" rule), not the one with the latest expiry: the caller saves tokens in the
// order it adopts them, and after a refresh the previous token is refused by Plugboard even if
// its exp is later. Load returns that token while it has not expired and "" afterwards.
//
// The zero value is ready to use; NewMemory exists for symmetry with OpenSQLite. A Memory is
// safe for concurrent use and needs no Close.
type Memory struct {
	mu        sync.Mutex // guards token and expiresAt
	token     string
	expiresAt time.Time
}

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory {
	return &Memory{}
}

// Load returns the last saved token if it has not expired (expiry strictly after time.Now()),
// otherwise "". It fails only when ctx is already done.
func (m *Memory) Load(ctx context.Context) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("tokenstore: load: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.token == "" || !time.Now().Before(m.expiresAt) {
		return "", nil
	}
	return m.token, nil
}

// Save replaces the stored token. It refuses an empty token (ErrEmptyToken), a token whose
// expiresAt is not after time.Now() (ErrExpired), and a done ctx.
func (m *Memory) Save(ctx context.Context, token string, expiresAt time.Time) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("tokenstore: save: %w", err)
	}
	if err := checkSave(token, expiresAt, time.Now()); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.token, m.expiresAt = token, expiresAt
	return nil
}

// checkSave validates the arguments of Save for both stores.
func checkSave(token string, expiresAt, now time.Time) error {
	if token == "" {
		return fmt.Errorf("tokenstore: save: %w", ErrEmptyToken)
	}
	if !now.Before(expiresAt) {
		return fmt.Errorf("tokenstore: save: expiry %s is not after now %s: %w",
			expiresAt.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), ErrExpired)
	}
	return nil
}
