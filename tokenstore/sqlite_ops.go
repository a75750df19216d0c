package tokenstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Row is one stored token as Rows reports it, for diagnostics (token-check).
type Row struct {
	ID        int64
	UpdatedAt time.Time // zero when the stored text is unreadable (Err wraps ErrCorrupt)
	ExpiresAt time.Time // zero when the stored text is unreadable (Err wraps ErrCorrupt)
	Expired   bool      // ExpiresAt is not after the store's clock (false when ExpiresAt is unreadable)
	Decrypted bool      // the token decrypted and authenticated with this store's key
	Token     string    // the token when Decrypted, else ""
	// Err says why the row cannot be used: it wraps ErrAuthentication (other secret or altered
	// bytes) or ErrCorrupt (undecodable ciphertext or time). nil for a usable row, expired or not.
	Err error
}

// usable reports whether Load may return the row at now.
func (r Row) usable() bool {
	return r.Err == nil && r.Decrypted && !r.Expired
}

// newer orders rows by updated_at, then by id (insertion order) for equal times.
func (r Row) newer(o Row) bool {
	if !r.UpdatedAt.Equal(o.UpdatedAt) {
		return r.UpdatedAt.After(o.UpdatedAt)
	}
	return r.ID > o.ID
}

// Load returns the newest (by updated_at) unexpired token that decrypts, or "" if there is none.
//
// A row that does not decrypt is skipped and logged when another row does decrypt, so one
// corrupt row loses nothing else. When rows exist but none decrypts, Load fails: with
// ErrWrongSecret if any of them failed authentication (the file was written with another
// SECRET_KEY_BASE), with ErrCorrupt if all are undecodable. It never reports such a store as
// empty. Comparisons use parsed times, so rows written in any zone or text format are ordered
// correctly.
func (s *SQLite) Load(ctx context.Context) (string, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return "", fmt.Errorf("tokenstore: load: %w", ErrClosed)
	}
	rows, err := s.readRows(ctx, s.db)
	if err != nil {
		return "", err
	}
	best, decrypted, authFailed := -1, 0, 0
	for i, r := range rows {
		if r.Decrypted {
			decrypted++
		}
		if errors.Is(r.Err, ErrAuthentication) {
			authFailed++
		}
		if r.usable() && (best < 0 || r.newer(rows[best])) {
			best = i
		}
	}
	if len(rows) > 0 && decrypted == 0 {
		if authFailed > 0 {
			return "", fmt.Errorf("tokenstore: load %s: %d of %d rows fail authentication: %w",
				s.path, authFailed, len(rows), ErrWrongSecret)
		}
		return "", fmt.Errorf("tokenstore: load %s: all %d rows undecodable: %w", s.path, len(rows), ErrCorrupt)
	}
	s.logSkipped(rows)
	if best < 0 {
		return "", nil
	}
	return rows[best].Token, nil
}

// logSkipped warns about every row that cannot be used for a reason other than expiry.
func (s *SQLite) logSkipped(rows []Row) {
	for _, r := range rows {
		if r.Err != nil {
			s.log.Warn("tokenstore: skipping unusable token row", "file", s.path, "id", r.ID, "err", r.Err)
		}
	}
}

// Save encrypts token and inserts it as a new row with updated_at = now, then deletes the rows
// that have expired, in one immediate transaction. Rows with an unreadable expiry are kept
// (Rows shows them). Save refuses an empty token (ErrEmptyToken) and an expiry that is not in
// the future (ErrExpired).
func (s *SQLite) Save(ctx context.Context, token string, expiresAt time.Time) error {
	now := s.now()
	if err := checkSave(token, expiresAt, now); err != nil {
		return err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return fmt.Errorf("tokenstore: save: %w", ErrClosed)
	}
	enc, err := encrypt(s.key, token)
	if err != nil {
		return err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("tokenstore: save to %s: begin: %w", s.path, err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit this is a no-op returning ErrTxDone
	_, err = tx.ExecContext(ctx,
		"INSERT INTO tokens (encrypted_token, expires_at, updated_at) VALUES (?, ?, ?)",
		enc, formatStoredTime(expiresAt, s.loc), formatStoredTime(now, s.loc))
	if err != nil {
		return fmt.Errorf("tokenstore: save to %s: insert: %w", s.path, err)
	}
	if err := s.deleteExpired(ctx, tx, now); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("tokenstore: save to %s: commit: %w", s.path, err)
	}
	return nil
}

// deleteExpired removes rows whose expires_at is at or before now.
func (s *SQLite) deleteExpired(ctx context.Context, tx *sql.Tx, now time.Time) error {
	rows, err := tx.QueryContext(ctx, "SELECT id, expires_at FROM tokens")
	if err != nil {
		return fmt.Errorf("tokenstore: save to %s: list rows: %w", s.path, err)
	}
	var expired []int64
	for rows.Next() {
		var id int64
		var exp any
		if err := rows.Scan(&id, &exp); err != nil {
			rows.Close()
			return fmt.Errorf("tokenstore: save to %s: scan: %w", s.path, err)
		}
		if t, err := parseStoredTime(exp); err == nil && !t.After(now) {
			expired = append(expired, id)
		}
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return fmt.Errorf("tokenstore: save to %s: list rows: %w", s.path, err)
	}
	for _, id := range expired {
		if _, err := tx.ExecContext(ctx, "DELETE FROM tokens WHERE id = ?", id); err != nil {
			return fmt.Errorf("tokenstore: save to %s: delete expired row %d: %w", s.path, id, err)
		}
	}
	if len(expired) > 0 {
		s.log.Debug("tokenstore: deleted expired tokens", "file", s.path, "count", len(expired))
	}
	return nil
}

// Rows returns every stored row in id order with its times, whether it is expired by the
// store's clock, and whether it decrypts (with the token if it does). It is meant for
// diagnostics such as token-check; the tokens it returns are secrets.
func (s *SQLite) Rows(ctx context.Context) ([]Row, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, fmt.Errorf("tokenstore: rows: %w", ErrClosed)
	}
	return s.readRows(ctx, s.db)
}

// querier is what readRows needs from *sql.DB or *sql.Tx.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// readRows reads and decrypts every row. The caller holds s.mu for reading.
func (s *SQLite) readRows(ctx context.Context, q querier) ([]Row, error) {
	rs, err := q.QueryContext(ctx, "SELECT id, encrypted_token, expires_at, updated_at FROM tokens ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("tokenstore: read %s: %w", s.path, err)
	}
	defer rs.Close()
	now := s.now()
	var out []Row
	for rs.Next() {
		var (
			r        Row
			enc      sql.NullString
			exp, upd any
		)
		if err := rs.Scan(&r.ID, &enc, &exp, &upd); err != nil {
			return nil, fmt.Errorf("tokenstore: read %s: %w", s.path, err)
		}
		s.fillRow(&r, enc.String, exp, upd, now)
		out = append(out, r)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("tokenstore: read %s: %w", s.path, err)
	}
	return out, nil
}

// fillRow decrypts the token and parses the times of one row.
func (s *SQLite) fillRow(r *Row, enc string, exp, upd any, now time.Time) {
	var errs []error
	tok, err := decrypt(s.key, enc)
	if err != nil {
		errs = append(errs, fmt.Errorf("encrypted_token: %w", err))
	} else {
		r.Token, r.Decrypted = tok, true
	}
	if r.ExpiresAt, err = parseStoredTime(exp); err != nil {
		errs = append(errs, fmt.Errorf("expires_at: %w", err))
	} else {
		r.Expired = !r.ExpiresAt.After(now)
	}
	if r.UpdatedAt, err = parseStoredTime(upd); err != nil {
		errs = append(errs, fmt.Errorf("updated_at: %w", err))
	}
	r.Err = errors.Join(errs...)
}
