package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/verastack/telephone"
	"github.com/verastack/telephone/internal/plugtoken"
	"github.com/verastack/telephone/tokenstore"
)

// tokenCheck is `telephone token-check`: it shows the configured token and the stored ones,
// whether they verify, and which one `telephone run` would use and why. It exits 1 when no
// usable token exists. Tokens are never printed whole.
func (c *cli) tokenCheck(args []string) int {
	fset := flag.NewFlagSet("telephone token-check", flag.ContinueOnError)
	envFile := fset.String("env", ".env", "`file` with KEY=value lines, loaded if it exists")
	db := fset.String("db", "", "token store `path` (default: TOKEN_DB_PATH, else telephone.db)")
	if code, done := c.parseFlags(fset, args); done {
		return code
	}
	dotenv, err := readDotenv(*envFile, c.readFile)
	if err != nil {
		fmt.Fprintf(c.stderr, "telephone token-check: %v\n", err)
		return exitConfig
	}
	env := c.environ()
	get := func(k string) string {
		if v := env[k]; v != "" {
			return v
		}
		return dotenv[k]
	}
	tc := &tokenChecker{w: c.stdout, now: time.Now()}
	if s := get("PLUGBOARD_SECRET_KEY_BASE"); s != "" {
		tc.key = plugtoken.DeriveKey(s)
	}
	dbPath := firstNonEmpty(*db, get("TOKEN_DB_PATH"), defaultTokenDB)
	return tc.run(get, dbPath)
}

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// tokenChecker evaluates and prints tokens.
type tokenChecker struct {
	w       io.Writer
	now     time.Time
	key     []byte // Plugboard's derived key; nil when PLUGBOARD_SECRET_KEY_BASE is unknown
	vending bool   // PLUGBOARD_SERVICE_ACCOUNT_KEY is set: run vends a token when none is usable
}

// checkedToken is one token and what the checks found.
type checkedToken struct {
	label    string
	raw      string
	claims   plugtoken.Claims
	parsed   bool
	verified bool
	problem  error // why it is not usable; nil when it is
}

func (t *checkedToken) usable() bool { return t.problem == nil }

func (tc *tokenChecker) run(get func(string) string, dbPath string) int {
	tc.vending = get("PLUGBOARD_SERVICE_ACCOUNT_KEY") != ""
	var cands []*checkedToken
	if conf := tc.configured(get); conf != nil {
		cands = append(cands, conf)
	}
	if stored := tc.stored(dbPath, get("SECRET_KEY_BASE")); stored != nil {
		if len(cands) == 1 && cands[0].raw == stored.raw {
			fmt.Fprintln(tc.w, "\nThe stored token is the configured one.")
		} else {
			cands = append(cands, stored)
		}
	}
	return tc.decide(cands)
}

// configured reports TELEPHONE_TOKEN (or token); nil when neither is set.
func (tc *tokenChecker) configured(get func(string) string) *checkedToken {
	name, raw := "TELEPHONE_TOKEN", get("TELEPHONE_TOKEN")
	if raw == "" {
		name, raw = "token", get("token")
	}
	if raw == "" {
		fmt.Fprintln(tc.w, "Configured token: none (TELEPHONE_TOKEN and token are not set)")
		return nil
	}
	t := tc.check("configured token ("+name+")", raw)
	fmt.Fprintf(tc.w, "Configured token (%s): %s\n", name, redact(raw))
	tc.print(t, "  ")
	return t
}

// check parses, verifies (when the key is known) and time-checks raw.
func (tc *tokenChecker) check(label, raw string) *checkedToken {
	t := &checkedToken{label: label, raw: raw}
	c, err := plugtoken.Parse(raw)
	if err != nil {
		t.problem = err
		return t
	}
	t.claims, t.parsed = c, true
	if tc.key != nil {
		if _, err := plugtoken.Verify(raw, tc.key); err != nil {
			t.problem = err
			return t
		}
		t.verified = true
	}
	t.problem = c.Check(tc.now, telephone.DefaultTokenSkew)
	return t
}

func (tc *tokenChecker) print(t *checkedToken, indent string) {
	if t.parsed {
		c := t.claims
		fmt.Fprintf(tc.w, "%ssub        %s\n%spath_id    %s\n%sjti        %s\n", indent, c.Subject, indent, c.PathID, indent, c.ID)
		fmt.Fprintf(tc.w, "%siat        %s\n", indent, c.IssuedAt.UTC().Format(time.RFC3339))
		fmt.Fprintf(tc.w, "%sexp        %s (%s)\n", indent, c.ExpiresAt.UTC().Format(time.RFC3339), remaining(c.ExpiresAt, tc.now))
		switch {
		case t.verified:
			fmt.Fprintf(tc.w, "%ssignature  verified with PLUGBOARD_SECRET_KEY_BASE\n", indent)
		case tc.key == nil:
			fmt.Fprintf(tc.w, "%ssignature  not checked (set PLUGBOARD_SECRET_KEY_BASE to verify it)\n", indent)
		}
	}
	if t.usable() {
		fmt.Fprintf(tc.w, "%sstatus     usable\n", indent)
	} else {
		fmt.Fprintf(tc.w, "%sstatus     NOT usable: %v\n", indent, t.problem)
	}
}

// remaining describes the time left until exp.
func remaining(exp, now time.Time) string {
	d := exp.Sub(now).Round(time.Second)
	if d <= 0 {
		return "expired " + (-d).String() + " ago"
	}
	return d.String() + " left"
}

// redact shows at most the first 12 and the last 6 characters of a token.
func redact(tok string) string {
	if len(tok) < 40 {
		return fmt.Sprintf("%.4s… (%d bytes)", tok, len(tok))
	}
	return fmt.Sprintf("%s…%s (%d bytes)", tok[:12], tok[len(tok)-6:], len(tok))
}

// stored reports the token store's rows and returns the token Load would return (the newest
// unexpired row that decrypts), or nil.
func (tc *tokenChecker) stored(path, secret string) *checkedToken {
	fmt.Fprintf(tc.w, "\nToken store %s:\n", path)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintln(tc.w, "  not found (nothing stored yet; telephone run creates it when SECRET_KEY_BASE is set)")
		return nil
	}
	if secret == "" {
		fmt.Fprintln(tc.w, "  SECRET_KEY_BASE is not set: the stored tokens are encrypted with it and cannot be read")
		return nil
	}
	s, err := tokenstore.OpenSQLite(path, secret, tokenstore.SQLiteOptions{})
	if err != nil {
		fmt.Fprintf(tc.w, "  cannot open: %v\n", err)
		return nil
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	rows, err := s.Rows(ctx)
	if err != nil {
		fmt.Fprintf(tc.w, "  cannot read: %v\n", err)
		return nil
	}
	tc.printRows(rows)
	return tc.loaded(ctx, s, rows)
}

func (tc *tokenChecker) printRows(rows []tokenstore.Row) {
	fmt.Fprintf(tc.w, "  %d row(s)\n", len(rows))
	for _, r := range rows {
		state := "unexpired"
		switch {
		case r.Err != nil:
			state = fmt.Sprintf("unreadable: %v", r.Err)
		case r.Expired:
			state = "expired"
		}
		fmt.Fprintf(tc.w, "  row %d  updated_at %s  expires_at %s  %s\n", r.ID,
			r.UpdatedAt.UTC().Format(time.RFC3339), r.ExpiresAt.UTC().Format(time.RFC3339), state)
		if r.Decrypted {
			fmt.Fprintf(tc.w, "    token %s\n", redact(r.Token))
			tc.print(tc.check("", r.Token), "    ")
		}
	}
}

// loaded returns what the store's Load returns, which is what telephone run considers.
func (tc *tokenChecker) loaded(ctx context.Context, s *tokenstore.SQLite, rows []tokenstore.Row) *checkedToken {
	raw, err := s.Load(ctx)
	switch {
	case errors.Is(err, tokenstore.ErrWrongSecret):
		fmt.Fprintln(tc.w, "  no row decrypts: the store was written with a different SECRET_KEY_BASE")
		return nil
	case err != nil:
		fmt.Fprintf(tc.w, "  cannot load: %v\n", err)
		return nil
	case raw == "":
		fmt.Fprintln(tc.w, "  no unexpired token stored")
		return nil
	}
	label := "stored token"
	for _, r := range rows {
		if r.Decrypted && r.Token == raw {
			label = fmt.Sprintf("stored token (row %d)", r.ID)
		}
	}
	fmt.Fprintf(tc.w, "  the store offers the %s: the newest unexpired row that decrypts\n", label)
	return tc.check(label, raw)
}

// decide names the token telephone run would use: the newest usable one by iat.
func (tc *tokenChecker) decide(cands []*checkedToken) int {
	var best *checkedToken
	for _, t := range cands {
		if t.usable() && (best == nil || t.claims.IssuedAt.After(best.claims.IssuedAt)) {
			best = t
		}
	}
	fmt.Fprintln(tc.w)
	if best == nil && tc.vending {
		fmt.Fprintln(tc.w, "Result: no usable token; telephone run would vend one with PLUGBOARD_SERVICE_ACCOUNT_KEY (Plugboard's token vending API).")
		return exitOK
	}
	if best == nil {
		fmt.Fprintln(tc.w, "Result: NO usable token. telephone run would stop with \"no usable token\".")
		fmt.Fprintln(tc.w, "  - get a new token for the path from Plugboard and set TELEPHONE_TOKEN (in the environment or .env);")
		fmt.Fprintln(tc.w, "  - if a stored token should be used, check SECRET_KEY_BASE and TOKEN_DB_PATH (or --db).")
		return exitFail
	}
	why := "it is the only usable token"
	for _, t := range cands {
		if t != best && t.usable() {
			why = fmt.Sprintf("it is the newest usable token by iat (%s, against %s for the %s)",
				best.claims.IssuedAt.UTC().Format(time.RFC3339), t.claims.IssuedAt.UTC().Format(time.RFC3339), t.label)
		}
	}
	fmt.Fprintf(tc.w, "Result: telephone run would use the %s for path %s: %s.\n", best.label, best.claims.PathID, why)
	return exitOK
}
