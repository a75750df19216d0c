package tokenstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// defaultBusyTimeout is how long SQLite waits for another connection's lock by default.
const defaultBusyTimeout = 5 * time.Second

// schema is the original sidecar's schema, statement for statement (docs/PROTOCOL.md §7.2).
const schema = `
CREATE TABLE IF NOT EXISTS tokens (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	encrypted_token TEXT NOT NULL,
	expires_at DATETIME NOT NULL,
	updated_at DATETIME NOT NULL,
	created_at DATETIME DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX IF NOT EXISTS idx_tokens_updated_at ON tokens(updated_at DESC);
CREATE INDEX IF NOT EXISTS idx_tokens_expires_at ON tokens(expires_at DESC);
`

// SQLiteOptions tunes OpenSQLite. The zero value gives the defaults.
type SQLiteOptions struct {
	// BusyTimeout is how long a statement waits for a lock held by another connection or
	// process (SQLite's busy_timeout, set through the driver's _pragma DSN parameter).
	// 0 means 5s; it is rounded down to whole milliseconds, with a minimum of 1ms.
	BusyTimeout time.Duration
	// Logger receives warnings about skipped rows and tightened file permissions.
	// nil discards them.
	Logger *slog.Logger
	// Now is the clock used for expiry checks and updated_at; nil means time.Now. For tests.
	Now func() time.Time
	// Location is the zone times are written in. nil means time.Local, which is what the
	// original sidecar wrote; keep it so when both programs may use the same file, because the
	// original compares the stored text, which only orders correctly within one zone.
	Location *time.Location
}

// SQLite is a TokenStore in an SQLite file, encrypted and laid out exactly like the original
// sidecar's telephone.db so that either program reads what the other wrote.
//
// Each Save inserts a row and removes expired rows; Load returns the newest decryptable,
// unexpired token. A SQLite is safe for concurrent use, and several stores (in one or several
// processes) may share a file: writes take an immediate transaction and wait up to BusyTimeout
// for each other. The caller owns the store and must Close it.
type SQLite struct {
	db     *sql.DB
	log    *slog.Logger
	now    func() time.Time
	loc    *time.Location
	path   string
	mu     sync.RWMutex // guards key: read by every operation, zeroed and set to nil by Close
	key    []byte
	closed bool // guarded by mu
}

// OpenSQLite opens the encrypted token store at path, creating the file (mode 0600) and its
// schema when they do not exist; the caller must Close it.
//
// In detail: path is a plain file path (not a "file:" URI, not ":memory:", no '?'). A missing file
// is created with mode 0600 before SQLite opens it; an existing file, -wal or -shm file that is
// readable or writable by group or others is tightened to 0600 (logged). SQLite creates the -wal
// and -shm files with the main file's permissions. The journal mode is set to WAL, the busy
// timeout with the driver's _pragma=busy_timeout(ms) DSN parameter on every connection, and the
// schema with CREATE ... IF NOT EXISTS. The encryption key is PBKDF2-HMAC-SHA256 of
// secretKeyBase (100 000 iterations, about 30-100 ms). An empty secretKeyBase is refused with
// ErrEmptySecret.
func OpenSQLite(path, secretKeyBase string, opts SQLiteOptions) (*SQLite, error) {
	if secretKeyBase == "" {
		return nil, fmt.Errorf("tokenstore: open: %w", ErrEmptySecret)
	}
	if err := checkPath(path); err != nil {
		return nil, err
	}
	s := &SQLite{log: opts.Logger, now: opts.Now, loc: opts.Location, path: path}
	s.fillDefaults()
	if err := s.prepareFiles(); err != nil {
		return nil, err
	}
	key, err := deriveKey(secretKeyBase)
	if err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite", dsn(path, opts.BusyTimeout))
	if err != nil {
		clear(key)
		return nil, fmt.Errorf("tokenstore: open %s: %w", path, err)
	}
	// One connection: callers in this process queue in database/sql instead of contending for
	// SQLite's locks; other processes are handled by the busy timeout.
	db.SetMaxOpenConns(1)
	s.db, s.key = db, key
	if err := s.initSchema(); err != nil {
		clear(key)
		return nil, errors.Join(err, db.Close())
	}
	return s, nil
}

// fillDefaults replaces nil options by their documented defaults.
func (s *SQLite) fillDefaults() {
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.loc == nil {
		s.loc = time.Local
	}
}

// checkPath refuses paths the driver would not treat as a plain file name.
func checkPath(path string) error {
	switch {
	case path == "":
		return fmt.Errorf("%w: empty", ErrBadPath)
	case strings.ContainsRune(path, '?'), strings.HasPrefix(path, "file:"), strings.HasPrefix(path, ":memory:"):
		return fmt.Errorf("%w: %q must be a plain file path (no '?', file: URI or :memory:)", ErrBadPath, path)
	}
	return nil
}

// dsn returns the driver name for path with WAL and the busy timeout applied to every connection.
func dsn(path string, busy time.Duration) string {
	if busy == 0 {
		busy = defaultBusyTimeout
	}
	ms := max(busy.Milliseconds(), 1)
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", ms))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Set("_txlock", "immediate")
	return path + "?" + q.Encode()
}

// prepareFiles creates the database file 0600 if missing and tightens the permissions of the
// existing database, -wal and -shm files.
func (s *SQLite) prepareFiles() error {
	f, err := os.OpenFile(s.path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("tokenstore: create %s: %w", s.path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("tokenstore: create %s: %w", s.path, err)
	}
	for _, p := range []string{s.path, s.path + "-wal", s.path + "-shm"} {
		if err := s.tighten(p); err != nil {
			return err
		}
	}
	return nil
}

// tighten sets mode 0600 on p when group or others have any access; a missing p is fine.
func (s *SQLite) tighten(p string) error {
	st, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("tokenstore: stat %s: %w", p, err)
	}
	if st.Mode().Perm()&0o077 == 0 {
		return nil
	}
	if err := os.Chmod(p, 0o600); err != nil {
		return fmt.Errorf("tokenstore: tighten permissions of %s (mode %v): %w", p, st.Mode().Perm(), err)
	}
	s.log.Warn("tokenstore: tightened token database permissions", "file", p, "was", st.Mode().Perm().String())
	return nil
}

// initSchema sets WAL mode explicitly (it is persistent in the file) and creates the schema.
func (s *SQLite) initSchema() error {
	ctx := context.Background()
	var mode string
	if err := s.db.QueryRowContext(ctx, "PRAGMA journal_mode=WAL").Scan(&mode); err != nil {
		return fmt.Errorf("tokenstore: set WAL mode on %s: %w", s.path, err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("tokenstore: %s: journal mode is %q, not wal", s.path, mode)
	}
	if _, err := s.db.ExecContext(ctx, schema); err != nil {
		return fmt.Errorf("tokenstore: create schema in %s: %w", s.path, err)
	}
	return nil
}

// Close closes the database and zeroes the derived key. Further calls return ErrClosed; Close
// itself is idempotent and returns nil after the first call.
func (s *SQLite) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	clear(s.key)
	s.key = nil
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("tokenstore: close %s: %w", s.path, err)
	}
	return nil
}
