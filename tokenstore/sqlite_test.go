package tokenstore

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"modernc.org/sqlite"
)

const testSecret = "original-secret-key-base-with-at-least-sixty-four-bytes-0123456789abcdef"

// ---- an independent implementation of the original sidecar's storage format ----

// origKey derives the original's AES key; written from docs/PROTOCOL.md §7.2, not from crypto.go.
func origKey(t testing.TB, secret string) []byte {
	t.Helper()
	k, err := pbkdf2.Key(sha256.New, secret, []byte("telephone-token-encryption-v1"), 100000, 32)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func origAEAD(t testing.TB, key []byte) cipher.AEAD {
	t.Helper()
	b, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func origEncrypt(t testing.TB, key []byte, token string) string {
	t.Helper()
	g := origAEAD(t, key)
	nonce := make([]byte, g.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(g.Seal(nonce, nonce, []byte(token), nil))
}

func origDecrypt(t testing.TB, key []byte, enc string) (string, error) {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		return "", err
	}
	g := origAEAD(t, key)
	if len(raw) < g.NonceSize() {
		return "", errors.New("short")
	}
	p, err := g.Open(nil, raw[:g.NonceSize()], raw[g.NonceSize():], nil)
	return string(p), err
}

const origSchema = `
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

// openOriginal opens path the way the original sidecar did (DSN, one connection, WAL, schema).
func openOriginal(t testing.TB, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", path+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	db.SetMaxOpenConns(1)
	if _, err := db.Exec("PRAGMA journal_mode=WAL"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(origSchema); err != nil {
		t.Fatal(err)
	}
	return db
}

// origSave inserts a row exactly as the original's SaveToken: time.Time parameters.
func origSave(t testing.TB, db *sql.DB, key []byte, token string, expiresAt, updatedAt time.Time) {
	t.Helper()
	_, err := db.Exec("INSERT INTO tokens (encrypted_token, expires_at, updated_at) VALUES (?, ?, ?)",
		origEncrypt(t, key, token), expiresAt, updatedAt)
	if err != nil {
		t.Fatal(err)
	}
}

// origLoad runs the original's LoadToken query and decrypts the result.
func origLoad(t testing.TB, db *sql.DB, key []byte, now time.Time) string {
	t.Helper()
	var enc string
	err := db.QueryRow(`SELECT encrypted_token FROM tokens WHERE expires_at > ? ORDER BY updated_at DESC LIMIT 1`, now).Scan(&enc)
	if errors.Is(err, sql.ErrNoRows) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	tok, err := origDecrypt(t, key, enc)
	if err != nil {
		t.Fatalf("original cannot decrypt the newest row: %v", err)
	}
	return tok
}

// ---- helpers ----

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func openTest(t testing.TB, path, secret string, opts SQLiteOptions) *SQLite {
	t.Helper()
	s, err := OpenSQLite(path, secret, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func dbPath(t testing.TB) string {
	return filepath.Join(t.TempDir(), "telephone.db")
}

var ctx = context.Background()

// ---- tests ----

func TestSQLiteRoundTrip(t *testing.T) {
	t.Parallel()
	clk := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	s := openTest(t, dbPath(t), testSecret, SQLiteOptions{Now: clk.Now})
	if tok, err := s.Load(ctx); tok != "" || err != nil {
		t.Fatalf("empty Load = %q, %v", tok, err)
	}
	if err := s.Save(ctx, "token-one", clk.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Second)
	// Newest by updated_at wins even when its expiry is earlier.
	if err := s.Save(ctx, "token-two", clk.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if tok, err := s.Load(ctx); tok != "token-two" || err != nil {
		t.Fatalf("Load = %q, %v; want token-two", tok, err)
	}
	// Same updated_at: the later insert wins.
	if err := s.Save(ctx, "token-three", clk.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if tok, _ := s.Load(ctx); tok != "token-three" {
		t.Fatalf("Load = %q, want token-three", tok)
	}
	clk.Add(time.Minute) // two and three expire; one remains
	if tok, _ := s.Load(ctx); tok != "token-one" {
		t.Fatalf("Load after expiry of the newest = %q, want token-one", tok)
	}
	clk.Add(time.Hour)
	if tok, err := s.Load(ctx); tok != "" || err != nil {
		t.Fatalf("Load with all expired = %q, %v; want empty", tok, err)
	}
}

func TestSQLitePersistsAcrossReopen(t *testing.T) {
	t.Parallel()
	p := dbPath(t)
	s, err := OpenSQLite(p, testSecret, SQLiteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Save(ctx, "kept", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openTest(t, p, testSecret, SQLiteOptions{})
	if tok, err := s2.Load(ctx); tok != "kept" || err != nil {
		t.Fatalf("Load after reopen = %q, %v", tok, err)
	}
}

func TestSQLitePermissions(t *testing.T) {
	t.Parallel()
	p := dbPath(t)
	s := openTest(t, p, testSecret, SQLiteOptions{})
	if err := s.Save(ctx, "t", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{p, p + "-wal", p + "-shm"} {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatalf("%s: %v (WAL mode should have created it)", f, err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, st.Mode().Perm())
		}
	}
}

func TestSQLiteTightensExistingFile(t *testing.T) {
	t.Parallel()
	p := dbPath(t)
	for _, f := range []string{p, p + "-wal"} {
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(f, 0o644); err != nil { // regardless of umask
			t.Fatal(err)
		}
	}
	var logs syncBuffer
	openTest(t, p, testSecret, SQLiteOptions{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	for _, f := range []string{p, p + "-wal"} {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, st.Mode().Perm())
		}
	}
	if !strings.Contains(logs.String(), "tightened") {
		t.Errorf("no warning logged: %q", logs.String())
	}
}

func TestSQLiteWrongSecret(t *testing.T) {
	t.Parallel()
	p := dbPath(t)
	a := openTest(t, p, testSecret, SQLiteOptions{})
	for _, tok := range []string{"a1", "a2"} {
		if err := a.Save(ctx, tok, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	b := openTest(t, p, "another secret", SQLiteOptions{})
	tok, err := b.Load(ctx)
	if !errors.Is(err, ErrWrongSecret) || tok != "" {
		t.Fatalf("Load with wrong secret = %q, %v; want ErrWrongSecret", tok, err)
	}
	if !strings.Contains(err.Error(), "different SECRET_KEY_BASE") {
		t.Errorf("error %q does not explain the cause", err)
	}
	rows, err := b.Rows(ctx)
	if err != nil || len(rows) != 2 {
		t.Fatalf("Rows = %v, %v", rows, err)
	}
	for _, r := range rows {
		if r.Decrypted || r.Token != "" || !errors.Is(r.Err, ErrAuthentication) {
			t.Errorf("row %+v: want an authentication failure and no token", r)
		}
	}
	// Once this store saves its own token, that one is used and the foreign rows are skipped.
	if err := b.Save(ctx, "b1", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if tok, err := b.Load(ctx); tok != "b1" || err != nil {
		t.Fatalf("Load = %q, %v; want b1", tok, err)
	}
}

func TestSQLiteAllRowsUndecodable(t *testing.T) {
	t.Parallel()
	p := dbPath(t)
	s := openTest(t, p, testSecret, SQLiteOptions{})
	raw := openOriginal(t, p)
	if _, err := raw.Exec("INSERT INTO tokens (encrypted_token, expires_at, updated_at) VALUES ('***', ?, ?)",
		time.Now().Add(time.Hour), time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(ctx); !errors.Is(err, ErrCorrupt) || errors.Is(err, ErrWrongSecret) {
		t.Fatalf("Load = %v, want ErrCorrupt", err)
	}
}

func TestSQLiteCorruptRowLosesNothingElse(t *testing.T) {
	t.Parallel()
	clk := &clock{t: time.Now()}
	p := dbPath(t)
	var logs syncBuffer
	s := openTest(t, p, testSecret, SQLiteOptions{Now: clk.Now, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	for _, tok := range []string{"old", "middle", "newest"} {
		clk.Add(time.Second)
		if err := s.Save(ctx, tok, clk.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	raw := openOriginal(t, p)
	var enc string
	if err := raw.QueryRow("SELECT encrypted_token FROM tokens WHERE id = 3").Scan(&enc); err != nil {
		t.Fatal(err)
	}
	flipped, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		t.Fatal(err)
	}
	flipped[20] ^= 0x01 // still base64, but fails authentication
	if _, err := raw.Exec("UPDATE tokens SET encrypted_token = ? WHERE id = 3",
		base64.StdEncoding.EncodeToString(flipped)); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec("UPDATE tokens SET encrypted_token = 'garbage!' WHERE id = 2"); err != nil {
		t.Fatal(err)
	}
	if tok, err := s.Load(ctx); tok != "old" || err != nil {
		t.Fatalf("Load = %q, %v; want old", tok, err)
	}
	if l := logs.String(); !strings.Contains(l, "id=3") || !strings.Contains(l, "id=2") {
		t.Errorf("skipped rows not logged: %q", l)
	}
	rows, err := s.Rows(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(rows[1].Err, ErrCorrupt) || !errors.Is(rows[2].Err, ErrAuthentication) || rows[0].Err != nil {
		t.Fatalf("row errors = %v, %v, %v", rows[0].Err, rows[1].Err, rows[2].Err)
	}
	// A usable-looking row with an unreadable time is skipped too.
	if _, err := raw.Exec("UPDATE tokens SET updated_at = 'yesterday' WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	if tok, err := s.Load(ctx); tok != "" || err != nil {
		t.Fatalf("Load = %q, %v; want empty (the only decryptable row has an unreadable time)", tok, err)
	}
}

func TestSQLiteSaveRemovesExpiredRows(t *testing.T) {
	t.Parallel()
	clk := &clock{t: time.Now()}
	p := dbPath(t)
	s := openTest(t, p, testSecret, SQLiteOptions{Now: clk.Now})
	if err := s.Save(ctx, "short", clk.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(ctx, "long", clk.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	raw := openOriginal(t, p)
	if _, err := raw.Exec("INSERT INTO tokens (encrypted_token, expires_at, updated_at) VALUES ('x', 'never', 'never')"); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Minute) // "short" expires exactly now
	if err := s.Save(ctx, "third", clk.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	rows, err := s.Rows(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rows {
		got = append(got, fmt.Sprintf("%d:%s:%v", r.ID, r.Token, r.Expired))
	}
	// Row 1 (expired) is gone; the unreadable row 3 is kept for inspection.
	if want := "2:long:false 3::false 4:third:false"; strings.Join(got, " ") != want {
		t.Fatalf("rows = %v, want %s", got, want)
	}
	if tok, err := s.Load(ctx); tok != "third" || err != nil {
		t.Fatalf("Load = %q, %v", tok, err)
	}
}

func TestSQLiteRows(t *testing.T) {
	t.Parallel()
	clk := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	s := openTest(t, dbPath(t), testSecret, SQLiteOptions{Now: clk.Now, Location: time.UTC})
	exp := clk.Now().Add(30 * time.Second)
	if err := s.Save(ctx, "tok", exp); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Minute)
	rows, err := s.Rows(ctx)
	if err != nil || len(rows) != 1 {
		t.Fatalf("Rows = %+v, %v", rows, err)
	}
	r := rows[0]
	if r.ID != 1 || !r.ExpiresAt.Equal(exp) || !r.UpdatedAt.Equal(exp.Add(-30*time.Second)) ||
		!r.Expired || !r.Decrypted || r.Token != "tok" || r.Err != nil {
		t.Fatalf("row = %+v", r)
	}
}

func TestSQLiteOpenRefusals(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		name, path, secret string
		want               error
	}{
		{"empty secret", filepath.Join(dir, "a.db"), "", ErrEmptySecret},
		{"empty path", "", testSecret, ErrBadPath},
		{"query in path", filepath.Join(dir, "a.db?mode=ro"), testSecret, ErrBadPath},
		{"uri", "file:" + filepath.Join(dir, "a.db"), testSecret, ErrBadPath},
		{"memory", ":memory:", testSecret, ErrBadPath},
	}
	for _, tc := range tests {
		if s, err := OpenSQLite(tc.path, tc.secret, SQLiteOptions{}); !errors.Is(err, tc.want) || s != nil {
			t.Errorf("%s: OpenSQLite = %v, %v; want %v", tc.name, s, err, tc.want)
		}
	}
	if _, err := OpenSQLite(filepath.Join(dir, "missing", "a.db"), testSecret, SQLiteOptions{}); err == nil {
		t.Error("OpenSQLite in a missing directory succeeded")
	}
	notDB := filepath.Join(dir, "text.db")
	if err := os.WriteFile(notDB, []byte(strings.Repeat("this is not a database\n", 100)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenSQLite(notDB, testSecret, SQLiteOptions{}); err == nil {
		t.Error("OpenSQLite on a text file succeeded")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("refused opens left files behind: %v", entries)
	}
}

func TestSQLiteSaveRefusalsAndClose(t *testing.T) {
	t.Parallel()
	s, err := OpenSQLite(dbPath(t), testSecret, SQLiteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Save(ctx, "", time.Now().Add(time.Hour)); !errors.Is(err, ErrEmptyToken) {
		t.Errorf("empty token: %v", err)
	}
	if err := s.Save(ctx, "t", time.Now().Add(-time.Second)); !errors.Is(err, ErrExpired) {
		t.Errorf("expired: %v", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.Save(cancelled, "t", time.Now().Add(time.Hour)); !errors.Is(err, context.Canceled) {
		t.Errorf("Save with cancelled ctx: %v", err)
	}
	if _, err := s.Load(cancelled); !errors.Is(err, context.Canceled) {
		t.Errorf("Load with cancelled ctx: %v", err)
	}
	key := s.key
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(key, make([]byte, 32)) || s.key != nil {
		t.Errorf("Close did not zero the key: %x", key)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if err := s.Save(ctx, "t", time.Now().Add(time.Hour)); !errors.Is(err, ErrClosed) {
		t.Errorf("Save after Close: %v", err)
	}
	if _, err := s.Load(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Load after Close: %v", err)
	}
	if _, err := s.Rows(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Rows after Close: %v", err)
	}
}

func TestSQLiteConcurrent(t *testing.T) {
	t.Parallel()
	p := dbPath(t)
	a := openTest(t, p, testSecret, SQLiteOptions{})
	b := openTest(t, p, testSecret, SQLiteOptions{}) // a second store on the same file
	const goroutines, each = 6, 10
	var wg sync.WaitGroup
	for g := range goroutines {
		s := a
		if g%2 == 1 {
			s = b
		}
		wg.Go(func() {
			for i := range each {
				if err := s.Save(ctx, fmt.Sprintf("g%d-%d", g, i), time.Now().Add(time.Hour)); err != nil {
					t.Errorf("Save: %v", err)
					return
				}
				if tok, err := s.Load(ctx); tok == "" || err != nil {
					t.Errorf("Load = %q, %v", tok, err)
					return
				}
			}
		})
	}
	wg.Wait()
	rows, err := a.Rows(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != goroutines*each {
		t.Fatalf("%d rows, want %d", len(rows), goroutines*each)
	}
	for _, r := range rows {
		if r.Err != nil {
			t.Fatalf("row %d: %v", r.ID, r.Err)
		}
	}
}

func TestSQLiteBusyTimeoutPragma(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		set  time.Duration
		want int
	}{{0, 5000}, {1500 * time.Millisecond, 1500}, {time.Microsecond, 1}} {
		s := openTest(t, dbPath(t), testSecret, SQLiteOptions{BusyTimeout: tc.set})
		var got int
		if err := s.db.QueryRow("PRAGMA busy_timeout").Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("BusyTimeout %v: PRAGMA busy_timeout = %d, want %d", tc.set, got, tc.want)
		}
		var mode string
		if err := s.db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
			t.Errorf("journal_mode = %q, %v", mode, err)
		}
	}
}

// lockFile takes SQLite's write lock on p from another connection and returns its release.
func lockFile(t *testing.T, p string) func() {
	t.Helper()
	raw := openOriginal(t, p)
	conn, err := raw.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release := func() {
		once.Do(func() {
			if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
				t.Error(err)
			}
			conn.Close()
		})
	}
	t.Cleanup(release)
	return release
}

func TestSQLiteBusyTimeoutEffective(t *testing.T) {
	t.Parallel()
	t.Run("lock outlives timeout", func(t *testing.T) {
		t.Parallel()
		p := dbPath(t)
		s := openTest(t, p, testSecret, SQLiteOptions{BusyTimeout: time.Millisecond})
		lockFile(t, p)
		err := s.Save(ctx, "t", time.Now().Add(time.Hour))
		var se *sqlite.Error
		if !errors.As(err, &se) || se.Code()&0xff != 5 { // SQLITE_BUSY
			t.Fatalf("Save under a held lock = %v, want SQLITE_BUSY", err)
		}
	})
	t.Run("waits for release", func(t *testing.T) {
		t.Parallel()
		p := dbPath(t)
		s := openTest(t, p, testSecret, SQLiteOptions{BusyTimeout: time.Minute})
		release := lockFile(t, p)
		done := make(chan error, 1)
		go func() { done <- s.Save(ctx, "t", time.Now().Add(time.Hour)) }()
		// Whenever the lock is released, the waiting Save must then succeed (with a 1 ms
		// timeout the same situation fails, see above).
		timer := time.AfterFunc(200*time.Millisecond, release)
		defer timer.Stop()
		if err := <-done; err != nil {
			t.Fatalf("Save waiting for the lock: %v", err)
		}
	})
}

// TestSQLiteTimeTextMatchesDriver checks that the store writes times exactly as
// modernc.org/sqlite writes a bound time.Time (what the original did).
func TestSQLiteTimeTextMatchesDriver(t *testing.T) {
	t.Parallel()
	raw := openOriginal(t, dbPath(t))
	zones := []*time.Location{time.UTC, time.FixedZone("CET", 3600), time.FixedZone("", -5*3600-1800)}
	for _, loc := range zones {
		for _, tm := range []time.Time{
			time.Date(2026, 3, 1, 12, 0, 0, 0, loc),
			time.Date(2026, 3, 1, 12, 0, 0, 500_000_000, loc),
			time.Date(2026, 12, 31, 23, 59, 59, 123_456_789, loc),
		} {
			var driverText string
			if err := raw.QueryRow("SELECT ? || ''", tm).Scan(&driverText); err != nil {
				t.Fatal(err)
			}
			if ours := formatStoredTime(tm, loc); ours != driverText {
				t.Errorf("store writes %q, driver writes %q", ours, driverText)
			}
			back, err := parseStoredTime(driverText)
			if err != nil || !back.Equal(tm) {
				t.Errorf("parse %q = %v, %v", driverText, back, err)
			}
		}
	}
	// time.Now() carries a monotonic reading, which the driver writes as an " m=+..." suffix.
	now := time.Now()
	var text string
	if err := raw.QueryRow("SELECT ? || ''", now).Scan(&text); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, " m=") {
		t.Fatalf("driver text %q has no monotonic suffix; the compatibility notes are out of date", text)
	}
	if back, err := parseStoredTime(text); err != nil || !back.Equal(now) {
		t.Errorf("parse %q = %v, %v; want %v", text, back, err, now)
	}
}

// TestSQLiteReadsOriginalDatabase builds telephone.db exactly as the original sidecar writes it
// and reads it back.
func TestSQLiteReadsOriginalDatabase(t *testing.T) {
	t.Parallel()
	p := dbPath(t)
	raw := openOriginal(t, p)
	key := origKey(t, testSecret)
	cet := time.FixedZone("CET", 3600)
	now := time.Now() // monotonic, as the original's updated_at
	origSave(t, raw, key, "older", time.Unix(now.Unix()+3600, 0).In(cet), now.Add(-2*time.Minute))
	origSave(t, raw, key, "expired", time.Unix(now.Unix()-60, 0).In(cet), now.Add(-time.Minute))
	origSave(t, raw, key, "newest", time.Unix(now.Unix()+1800, 0).In(cet), now)
	origSave(t, raw, key, "stale-but-later-id", time.Unix(now.Unix()+7200, 0).In(cet), now.Add(-3*time.Minute))
	s := openTest(t, p, testSecret, SQLiteOptions{})
	if tok, err := s.Load(ctx); tok != "newest" || err != nil {
		t.Fatalf("Load = %q, %v; want newest", tok, err)
	}
	rows, err := s.Rows(ctx)
	if err != nil || len(rows) != 4 {
		t.Fatalf("Rows = %v, %v", rows, err)
	}
	if !rows[1].Expired || rows[1].Token != "expired" || rows[0].Expired {
		t.Fatalf("rows = %+v", rows)
	}
	if !rows[2].UpdatedAt.Equal(now) {
		t.Errorf("updated_at read as %v, want %v", rows[2].UpdatedAt, now)
	}
}

// TestOriginalReadsSQLiteDatabase checks that a database written by SQLite.Save stays readable by
// the original: its query picks our newest row and its decryption opens it.
func TestOriginalReadsSQLiteDatabase(t *testing.T) {
	t.Parallel()
	p := dbPath(t)
	s := openTest(t, p, testSecret, SQLiteOptions{}) // Location nil: time.Local, like the original
	for _, tok := range []string{"first", "second"} {
		if err := s.Save(ctx, tok, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	raw := openOriginal(t, p)
	key := origKey(t, testSecret)
	if tok := origLoad(t, raw, key, time.Now()); tok != "second" {
		t.Fatalf("original's LoadToken = %q, want second", tok)
	}
	// Rows written by the original afterwards sort after ours in its text comparison.
	origSave(t, raw, key, "orig", time.Now().Add(time.Hour), time.Now())
	if tok := origLoad(t, raw, key, time.Now()); tok != "orig" {
		t.Fatalf("original's LoadToken = %q, want orig", tok)
	}
	if tok, _ := s.Load(ctx); tok != "orig" {
		t.Fatalf("Load = %q, want orig", tok)
	}
	var n int
	if err := raw.QueryRow("SELECT count(*) FROM tokens WHERE expires_at > ?", time.Now()).Scan(&n); err != nil || n != 3 {
		t.Fatalf("original's unexpired count = %d, %v; want 3", n, err)
	}
	if err := s.Save(ctx, "third", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if tok := origLoad(t, raw, key, time.Now()); tok != "third" {
		t.Fatalf("original's LoadToken = %q, want third", tok)
	}
}

func TestSQLiteSchemaMatchesOriginal(t *testing.T) {
	t.Parallel()
	ours, theirs := dbPath(t), dbPath(t)
	openTest(t, ours, testSecret, SQLiteOptions{})
	openOriginal(t, theirs)
	dump := func(p string) string {
		db := openOriginal(t, p) // IF NOT EXISTS: changes nothing on an existing file
		rs, err := db.Query("SELECT type, name, tbl_name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name")
		if err != nil {
			t.Fatal(err)
		}
		defer rs.Close()
		var out []string
		for rs.Next() {
			var a, b, c string
			if err := rs.Scan(&a, &b, &c); err != nil {
				t.Fatal(err)
			}
			out = append(out, a+" "+b+" "+c)
		}
		cols, err := db.Query("SELECT name, type, \"notnull\", coalesce(dflt_value, ''), pk FROM pragma_table_info('tokens')")
		if err != nil {
			t.Fatal(err)
		}
		defer cols.Close()
		for cols.Next() {
			var n, ty, d string
			var nn, pk int
			if err := cols.Scan(&n, &ty, &nn, &d, &pk); err != nil {
				t.Fatal(err)
			}
			out = append(out, fmt.Sprint(n, ty, nn, d, pk))
		}
		return strings.Join(out, "\n")
	}
	if a, b := dump(ours), dump(theirs); a != b {
		t.Fatalf("schema differs:\nours:\n%s\noriginal:\n%s", a, b)
	}
}

func TestParseStoredTime(t *testing.T) {
	t.Parallel()
	want := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ok := []any{
		want,
		"2026-03-01 12:00:00 +0000 UTC",
		"2026-03-01 13:00:00 +0100 CET",
		"2026-03-01 17:30:00 +0530 +0530",
		"2026-03-01 12:00:00 +0000 UTC m=+12.345678901",
		"2026-03-01 12:00:00.000000000 +0000 UTC",
		"2026-03-01T12:00:00Z",
		"2026-03-01T13:00:00+01:00",
		"2026-03-01 12:00:00+00:00",
		"2026-03-01 12:00:00Z",
		"2026-03-01 12:00:00",
		"2026-03-01T12:00:00",
		"2026-03-01 12:00",
		[]byte("2026-03-01 12:00:00"),
		int64(1772366400),
		int64(1772366400000),
		"1772366400",
	}
	for _, v := range ok {
		got, err := parseStoredTime(v)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseStoredTime(%v) = %v, %v; want %v", v, got, err, want)
		}
	}
	if got, err := parseStoredTime("2026-03-01"); err != nil || !got.Equal(want.Add(-12*time.Hour)) {
		t.Errorf("date only = %v, %v", got, err)
	}
	for _, v := range []any{nil, 1.5, "yesterday", "", "2026-13-01 00:00:00"} {
		if _, err := parseStoredTime(v); !errors.Is(err, ErrCorrupt) {
			t.Errorf("parseStoredTime(%#v) = %v, want ErrCorrupt", v, err)
		}
	}
}

func TestDecryptIndependent(t *testing.T) {
	t.Parallel()
	key, err := deriveKey(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(key, origKey(t, testSecret)) {
		t.Fatal("deriveKey differs from the independent PBKDF2")
	}
	enc, err := encrypt(key, "tok")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.StdEncoding.DecodeString(enc)
	if len(raw) != 12+len("tok")+16 {
		t.Fatalf("sealed length %d, want nonce+3+tag", len(raw))
	}
	if got, err := origDecrypt(t, key, enc); got != "tok" || err != nil {
		t.Fatalf("independent decrypt = %q, %v", got, err)
	}
	if got, err := decrypt(key, origEncrypt(t, key, "tok2")); got != "tok2" || err != nil {
		t.Fatalf("decrypt of independent ciphertext = %q, %v", got, err)
	}
	if _, err := decrypt(key, origEncrypt(t, key, "")); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("empty plaintext: %v", err)
	}
}

func FuzzDecrypt(f *testing.F) {
	key := origKey(f, testSecret)
	const plain = "seed-token"
	valid := origEncrypt(f, key, plain)
	f.Add(valid)
	f.Add(valid[:len(valid)-4])
	f.Add("")
	f.Add("====")
	f.Add(base64.StdEncoding.EncodeToString(make([]byte, 28)))
	f.Fuzz(func(t *testing.T, in string) {
		tok, err := decrypt(key, in)
		if err != nil {
			if tok != "" {
				t.Fatalf("token %q returned with error %v", tok, err)
			}
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrAuthentication) {
				t.Fatalf("error %v wraps neither ErrCorrupt nor ErrAuthentication", err)
			}
			return
		}
		// Only a genuine ciphertext (possibly re-encoded, e.g. with line breaks) may decrypt.
		if tok != plain {
			t.Fatalf("garbage %q decrypted to %q", in, tok)
		}
	})
}

// BenchmarkSQLiteLoad measures Load with three stored rows (a refresh every half-life keeps
// two or three unexpired rows in practice). Load reads and decrypts every row.
func BenchmarkSQLiteLoad(b *testing.B) {
	s := openTest(b, filepath.Join(b.TempDir(), "bench.db"), testSecret, SQLiteOptions{})
	for range 3 {
		if err := s.Save(ctx, strings.Repeat("t", 300), time.Now().Add(time.Hour)); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		if tok, err := s.Load(ctx); tok == "" || err != nil {
			b.Fatal(tok, err)
		}
	}
}

// BenchmarkSQLiteSave measures Save (insert plus expired-row sweep, one WAL commit).
func BenchmarkSQLiteSave(b *testing.B) {
	clk := &clock{t: time.Now()}
	s := openTest(b, filepath.Join(b.TempDir(), "bench.db"), testSecret, SQLiteOptions{Now: clk.Now})
	tok := strings.Repeat("t", 300)
	for b.Loop() {
		clk.Add(time.Second) // each token outlives the next save by one second only
		if err := s.Save(ctx, tok, clk.Now().Add(time.Second)); err != nil {
			b.Fatal(err)
		}
	}
}
