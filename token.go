package telephone

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/verastack/telephone/internal/metrics"
	"github.com/verastack/telephone/internal/plugtoken"
	"github.com/verastack/telephone/phoenix"
)

// token is a JWT with its parsed claims.
type token struct {
	raw    string
	claims plugtoken.Claims
	source string // "configured", "stored" or "refreshed"
}

// tokenManager chooses, verifies, refreshes and persists the Client's token.
type tokenManager struct {
	cfg *config
	log *slog.Logger
	m   *metrics.Metrics
	key []byte // Plugboard's derived JWT key; nil when the secret is unknown

	mu        sync.Mutex // guards the fields below
	cur       token
	fallback  *token          // the other source, tried once when cur is refused
	refusedID map[string]bool // raw tokens Plugboard refused
	revoked   bool
	lastOK    time.Time
	failures  int
	vend      *vendor // WithTokenVending; nil without it (vending.go)
	explained bool    // explainRefusal logged its error
}

func newTokenManager(cfg *config, log *slog.Logger, m *metrics.Metrics) *tokenManager {
	tm := &tokenManager{cfg: cfg, log: log, m: m, refusedID: map[string]bool{}}
	if o := cfg.load(); o.plugboardSecret != "" {
		tm.key = plugtoken.DeriveKey(o.plugboardSecret)
	}
	return tm
}

// parse checks a token's shape, signature (when the secret is known) and times.
func (tm *tokenManager) parse(raw, source string) (token, error) {
	var (
		c   plugtoken.Claims
		err error
	)
	if tm.key != nil {
		c, err = plugtoken.Verify(raw, tm.key)
	} else {
		c, err = plugtoken.Parse(raw)
	}
	if err == nil {
		err = c.Check(time.Now(), tm.cfg.load().tokenSkew)
	}
	if err != nil {
		return token{}, fmt.Errorf("%w (%s token): %w", ErrInvalidToken, source, err)
	}
	return token{raw: raw, claims: c, source: source}, nil
}

// init picks the newest valid token by iat among the configured and the stored one, and
// stores the configured one too.
func (tm *tokenManager) init(ctx context.Context) error {
	var cands []token
	var problems []error
	if tm.cfg.load().token != "" {
		t, err := tm.parse(tm.cfg.load().token, "configured")
		if err != nil {
			problems = append(problems, err)
		} else {
			cands = append(cands, t)
		}
	}
	if tm.cfg.load().store != nil {
		raw, err := tm.cfg.load().store.Load(ctx)
		switch {
		case err != nil:
			problems = append(problems, fmt.Errorf("token store: %w", err))
		case raw != "" && raw != tm.cfg.load().token:
			t, err := tm.parse(raw, "stored")
			if err != nil {
				problems = append(problems, err)
			} else {
				cands = append(cands, t)
			}
		}
	}
	for _, p := range problems {
		tm.log.Warn("token not usable", slog.Any("error", p))
	}
	cands = tm.forPath(cands)
	if len(cands) == 0 && tm.vend != nil {
		return nil // the first dial vends one
	}
	if len(cands) == 0 {
		return fmt.Errorf("%w: %w", ErrNoToken, errors.Join(problems...))
	}
	best := 0
	for i, t := range cands {
		if t.claims.IssuedAt.After(cands[best].claims.IssuedAt) {
			best = i
		}
	}
	tm.mu.Lock()
	tm.cur = cands[best]
	if len(cands) == 2 {
		other := cands[1-best]
		tm.fallback = &other
	}
	tm.mu.Unlock()
	tm.m.TokenExpiry(tm.cur.claims.ExpiresAt)
	tm.log.Info("using token", slog.String("source", tm.cur.source), slog.String("token_id", tm.cur.claims.ID),
		slog.String("path_id", tm.cur.claims.PathID), slog.Time("expires", tm.cur.claims.ExpiresAt))
	if tm.cur.source == "configured" {
		tm.save(ctx, tm.cur)
	}
	return nil
}

func (tm *tokenManager) current() token {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return tm.cur
}

// refused records that Plugboard refused t. It switches to the fallback token once and
// reports whether there is a token left to try.
func (tm *tokenManager) refused(t token) bool {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	tm.refusedID[t.raw] = true
	if tm.cur.raw != t.raw {
		return !tm.refusedID[tm.cur.raw] // another goroutine already switched
	}
	if tm.fallback != nil && !tm.refusedID[tm.fallback.raw] && tm.fallback.claims.PathID == t.claims.PathID {
		tm.cur, tm.fallback = *tm.fallback, nil
		tm.log.Info("trying the other token", slog.String("source", tm.cur.source), slog.String("token_id", tm.cur.claims.ID))
		return true
	}
	return tm.vend != nil // forDial vends a new one
}

func (tm *tokenManager) save(ctx context.Context, t token) {
	if tm.cfg.load().store == nil {
		return
	}
	if err := tm.cfg.load().store.Save(ctx, t.raw, t.claims.ExpiresAt); err != nil {
		tm.log.Error("could not save token", slog.String("token_id", t.claims.ID), slog.Any("error", err))
	}
}

func (tm *tokenManager) fill(st *Status) {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	st.PathID = tm.cur.claims.PathID
	st.TokenID = tm.cur.claims.ID
	st.TokenExpiry = tm.cur.claims.ExpiresAt
	st.TokenRevoked = tm.revoked
	st.LastRefresh = tm.lastOK
	st.RefreshFailures = tm.failures
}

// nextRefresh returns when to refresh: at half-life with ±5 % jitter after a success, and
// after a failure with backoff, but no later than five minutes before expiry.
func (tm *tokenManager) nextRefresh(now time.Time) time.Duration {
	tm.mu.Lock()
	c, failures := tm.cur.claims, tm.failures
	tm.mu.Unlock()
	if failures > 0 {
		d := min(5*time.Second<<min(failures-1, 6), 5*time.Minute)
		d = d/2 + rand.N(d/2+1)
		if last := c.ExpiresAt.Add(-5 * time.Minute).Sub(now); last > 0 && d > last {
			d = last
		}
		return d
	}
	life := c.ExpiresAt.Sub(c.IssuedAt)
	at := c.IssuedAt.Add(life / 2)
	d := at.Sub(now)
	if d <= 0 {
		return time.Second
	}
	jitter := d / 20
	if jitter > 0 {
		d += rand.N(2*jitter+1) - jitter
	}
	return d
}

// refreshLoop refreshes the Client's token until ctx ends or the token is revoked. It is owned
// by Run; each refresh is carried by a joined session, waited for when there is none.
func (c *Client) refreshLoop(ctx context.Context) {
	for {
		t := time.NewTimer(c.tokens.nextRefresh(time.Now()))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		s := c.sessions.waitJoined(ctx)
		if s == nil || c.tokens.refreshOnce(ctx, s) {
			return
		}
	}
}

// refreshOnce asks Plugboard for a new token over s; it accepts both the phx_reply form and the
// older refresh_token_ack push. It reports whether refreshing must stop (revoked, or ctx done).
// A session that ends meanwhile is not a failure: the next attempt uses the next session.
func (tm *tokenManager) refreshOnce(ctx context.Context, s *session) (stop bool) {
	rctx, cancel := context.WithTimeout(ctx, tm.cfg.load().connectTimeout)
	defer cancel()
	defer context.AfterFunc(s.ended, cancel)()
	type result struct {
		raw json.RawMessage
		err error
	}
	res := make(chan result, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		raw, err := s.ch.Push(rctx, "refresh_token", nil)
		res <- result{raw, err}
	})
	var newRaw string
	var err error
	select {
	case r := <-res:
		newRaw, err = decodeRefresh(r.raw, r.err)
	case newRaw = <-s.refreshAck:
		cancel()
	}
	if err == nil {
		err = tm.adopt(ctx, newRaw)
	}
	if err == nil {
		return false
	}
	if ctx.Err() != nil {
		return true
	}
	if s.ended.Err() != nil {
		return false
	}
	return tm.refreshFailed(err)
}

func decodeRefresh(raw json.RawMessage, err error) (string, error) {
	var re *phoenix.ReplyError
	if errors.As(err, &re) && re.Reason() == ":token_revoked" {
		return "", fmt.Errorf("%w: %w", ErrTokenRevoked, err)
	}
	if err != nil {
		return "", err
	}
	var p struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(raw, &p); err != nil || p.Token == "" {
		return "", fmt.Errorf("refresh reply has no token: %s", raw)
	}
	return p.Token, nil
}

// adopt checks a refreshed token, makes it current and saves it at once.
func (tm *tokenManager) adopt(ctx context.Context, raw string) error {
	t, err := tm.parse(raw, "refreshed")
	if err != nil {
		return err
	}
	tm.mu.Lock()
	if t.claims.PathID != tm.cur.claims.PathID {
		tm.mu.Unlock()
		return fmt.Errorf("%w: refreshed token is for path %s, not %s", ErrInvalidToken, t.claims.PathID, tm.cur.claims.PathID)
	}
	tm.cur, tm.fallback, tm.failures = t, nil, 0
	tm.mu.Unlock()
	tm.save(ctx, t)
	tm.mu.Lock()
	tm.lastOK = time.Now() // after the save: Status.LastRefresh means refreshed and stored
	tm.mu.Unlock()
	tm.m.TokenRefresh(true)
	tm.m.TokenExpiry(t.claims.ExpiresAt)
	tm.log.Info("token refreshed", slog.String("token_id", t.claims.ID), slog.Time("expires", t.claims.ExpiresAt))
	return nil
}

func (tm *tokenManager) refreshFailed(err error) (stop bool) {
	tm.m.TokenRefresh(false)
	tm.mu.Lock()
	tm.failures++
	revoked := errors.Is(err, ErrTokenRevoked)
	tm.revoked = tm.revoked || revoked
	tm.mu.Unlock()
	if revoked {
		tm.log.Error("token revoked; refreshing stops (the live session keeps serving until it ends)", slog.Any("error", err))
		return true
	}
	tm.log.Warn("token refresh failed; will retry", slog.Any("error", err))
	return false
}

// Claims are the claims of a Plugboard telephone token, an HS256 JWT that Plugboard issues for
// one path (docs/PROTOCOL.md §4.1).
type Claims struct {
	Subject   string    // sub: the account the token was issued to
	ID        string    // jti: the token's id, which Plugboard can revoke; logged as token_id
	PathID    string    // path_id: the path the token joins, as the topic "telephone:<PathID>"
	IssuedAt  time.Time // iat: when it was issued; at most the clock skew (WithClockSkew) ahead
	ExpiresAt time.Time // exp: when it expires; the Client refreshes it at half-life
}

// ParseToken reads a token's claims without verifying its signature (Plugboard's secret is
// needed for that: see WithPlugboardSecret). It checks the token's shape, not its times.
func ParseToken(jwt string) (Claims, error) {
	c, err := plugtoken.Parse(jwt)
	if err != nil {
		return Claims{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	return Claims{Subject: c.Subject, ID: c.ID, PathID: c.PathID, IssuedAt: c.IssuedAt, ExpiresAt: c.ExpiresAt}, nil
}
