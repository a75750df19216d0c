package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/verastack/telephone/internal/plugtoken"
	"github.com/verastack/telephone/tokenstore"
)

var storeSecret = strings.Repeat("d", 32)

// signed returns a token for pathID issued at iat and expiring at exp, signed with the key
// derived from secret.
func signed(t *testing.T, secret, pathID string, iat, exp time.Time) string {
	t.Helper()
	tok, err := plugtoken.Sign(plugtoken.Claims{Subject: "sub-1", ID: uuid.NewString(), PathID: pathID, IssuedAt: iat, ExpiresAt: exp},
		plugtoken.DeriveKey(secret))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// writeStore saves tokens in a new SQLite store; now is the store's clock while writing.
func writeStore(t *testing.T, path, secret string, now time.Time, toks ...string) {
	t.Helper()
	s, err := tokenstore.OpenSQLite(path, secret, tokenstore.SQLiteOptions{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, tok := range toks {
		c, err := plugtoken.Parse(tok)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Save(context.Background(), tok, c.ExpiresAt); err != nil {
			t.Fatal(err)
		}
	}
}

func TestTokenCheck(t *testing.T) {
	t.Parallel()
	now := time.Now().Truncate(time.Second)
	path := uuid.NewString()
	older := signed(t, secret64, path, now.Add(-10*time.Minute), now.Add(50*time.Minute))
	newer := signed(t, secret64, path, now.Add(-time.Minute), now.Add(59*time.Minute))
	expired := signed(t, secret64, path, now.Add(-3*time.Hour), now.Add(-2*time.Hour))
	forged := signed(t, strings.Repeat("x", 64), path, now.Add(-time.Minute), now.Add(time.Hour))

	dir := t.TempDir()
	db := filepath.Join(dir, "telephone.db")
	writeStore(t, db, storeSecret, now.Add(-150*time.Minute), expired, newer) // Save removes expired rows: write both in the past
	onlyOlder := filepath.Join(dir, "older.db")
	writeStore(t, onlyOlder, storeSecret, now, older)

	tests := []struct {
		name   string
		env    map[string]string
		files  map[string]string
		args   []string
		code   int
		want   []string
		absent []string
	}{
		{"stored is newer", map[string]string{"TELEPHONE_TOKEN": older, "SECRET_KEY_BASE": storeSecret, "TOKEN_DB_PATH": db, "PLUGBOARD_SECRET_KEY_BASE": secret64},
			nil, nil, 0, []string{
				"Configured token (TELEPHONE_TOKEN): " + older[:12] + "…" + older[len(older)-6:],
				"path_id    " + path, "sub        sub-1", "signature  verified with PLUGBOARD_SECRET_KEY_BASE",
				"2 row(s)", "row 1", "  expired\n", "row 2", "unexpired", "left)", "(expired 2h0m",
				"the store offers the stored token (row 2)",
				"Result: telephone run would use the stored token (row 2) for path " + path + ": it is the newest usable token by iat",
			}, []string{older, newer, expired}},
		{"configured is newer", map[string]string{"TELEPHONE_TOKEN": newer, "SECRET_KEY_BASE": storeSecret}, nil, []string{"--db", onlyOlder},
			0, []string{"signature  not checked", "would use the configured token (TELEPHONE_TOKEN)"}, []string{newer, older}},
		{"same token", map[string]string{"TELEPHONE_TOKEN": older, "SECRET_KEY_BASE": storeSecret, "TOKEN_DB_PATH": onlyOlder}, nil, nil,
			0, []string{"The stored token is the configured one.", "it is the only usable token"}, nil},
		{"forged", map[string]string{"TELEPHONE_TOKEN": forged, "PLUGBOARD_SECRET_KEY_BASE": secret64, "TOKEN_DB_PATH": filepath.Join(dir, "none.db")},
			nil, nil, 1, []string{"status     NOT usable:", "signature", "not found (nothing stored yet", "Result: NO usable token"}, []string{forged}},
		{"expired configured", map[string]string{"TELEPHONE_TOKEN": expired}, nil, []string{"--db", filepath.Join(dir, "none.db")},
			1, []string{"NOT usable:", "(expired 2h0m"}, nil},
		{"malformed", map[string]string{"TELEPHONE_TOKEN": "abc"}, nil, []string{"--db", filepath.Join(dir, "none.db")},
			1, []string{"Configured token (TELEPHONE_TOKEN): abc… (3 bytes)", "NOT usable:"}, nil},
		{"token fallback in .env", map[string]string{}, map[string]string{"my.env": "token=" + newer + "\nTOKEN_DB_PATH=" + filepath.Join(dir, "none.db") + "\n"},
			[]string{"--env", "my.env"}, 0, []string{"Configured token (token):", "would use the configured token (token)"}, nil},
		{"no secret", map[string]string{"TOKEN_DB_PATH": db}, nil, nil,
			1, []string{"Configured token: none", "SECRET_KEY_BASE is not set", "NO usable token"}, nil},
		{"wrong secret", map[string]string{"TOKEN_DB_PATH": db, "SECRET_KEY_BASE": strings.Repeat("w", 32)}, nil, nil,
			1, []string{"unreadable:", "no row decrypts: the store was written with a different SECRET_KEY_BASE"}, nil},
		{"only expired stored", map[string]string{"SECRET_KEY_BASE": storeSecret}, nil, []string{"--db", expiredOnly(t, dir, now, expired)},
			1, []string{"no unexpired token stored"}, nil},
		{"vending", map[string]string{"PLUGBOARD_SERVICE_ACCOUNT_KEY": "sa_live_secret_key"}, nil, []string{"--db", filepath.Join(dir, "none.db")},
			0, []string{"would vend one with PLUGBOARD_SERVICE_ACCOUNT_KEY"}, []string{"sa_live_secret_key"}},
		{"store is a directory", map[string]string{"SECRET_KEY_BASE": storeSecret, "TOKEN_DB_PATH": dir}, nil, nil,
			1, []string{"cannot open:"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tc := newTestCLI(tt.env, tt.files)
			code := tc.main(append([]string{"token-check"}, tt.args...))
			out := tc.out.String()
			if code != tt.code {
				t.Errorf("exit code %d, want %d", code, tt.code)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q", w)
				}
			}
			for _, a := range tt.absent {
				if strings.Contains(out, a) {
					t.Errorf("output contains a whole token")
				}
			}
			if t.Failed() {
				t.Logf("output:\n%s", out)
			}
		})
	}
}

func expiredOnly(t *testing.T, dir string, now time.Time, expired string) string {
	p := filepath.Join(dir, "expired.db")
	writeStore(t, p, storeSecret, now.Add(-150*time.Minute), expired)
	return p
}

func TestTokenCheckBadEnvFile(t *testing.T) {
	t.Parallel()
	tc := newTestCLI(map[string]string{}, map[string]string{".env": `A="open`})
	if c := tc.main([]string{"token-check"}); c != 2 || !strings.Contains(tc.errOut.String(), "parse .env") {
		t.Fatalf("exit %d, stderr %q", c, tc.errOut)
	}
}

func TestRedact(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", 12) + strings.Repeat("m", 100) + "zzzzzz"
	if got := redact(long); got != "aaaaaaaaaaaa…zzzzzz (118 bytes)" {
		t.Errorf("redact(long) = %q", got)
	}
	if got := redact("short-token-value"); got != "shor… (17 bytes)" {
		t.Errorf("redact(short) = %q", got)
	}
}
