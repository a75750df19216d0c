package telephonetest

import (
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/verastack/telephone/internal/plugtoken"
)

// Token is a telephone token minted by a Server.
type Token struct {
	Token     string    // the compact HS256 JWT (changes on refresh; see Server.CurrentToken)
	ID        string    // the token record id (token_id), stable across refreshes
	PathID    string    // the path the token opens
	ExpiresAt time.Time // server-side expiry of the record at minting time
}

// tokenRecord is the server-side token row (docs/PROTOCOL.md §4.3). Its fields are
// guarded by Server.mu.
type tokenRecord struct {
	id        string
	pathID    string
	jwt       string // the only JWT that opens sockets (rotated by refresh)
	expiresAt time.Time
	revoked   bool
	name      string // set by token vending (vending.go)
	desc      string
}

// NewPathID returns a random path id: a canonical lower-case UUID v4.
func NewPathID() string { return uuid.NewString() }

// validPathID reports whether p is a canonical lower-case UUID.
func validPathID(p string) bool {
	u, err := uuid.Parse(p)
	return err == nil && u.String() == p
}

// Mint creates a token for pathID (a canonical UUID; "" means a new random
// path) valid for ttl: zero means the configured token lifetime, a negative ttl
// gives a token that is already expired (both in the JWT and server-side). The
// JWT's jti is a fresh UUID, as Plugboard issues it.
func (s *Server) Mint(pathID string, ttl time.Duration) (Token, error) {
	return s.mint(pathID, time.Now(), ttl, "", "")
}

// MintIssuedAt is Mint for a token issued at iat (its JWT's iat) and expiring ttl after iat.
// A past iat lets a test reach a token's half-life, where telephone refreshes it, without
// waiting in real time: MintIssuedAt(p, time.Now().Add(-time.Hour), 2*time.Hour) is due for
// refresh at once and stays valid for an hour.
func (s *Server) MintIssuedAt(pathID string, iat time.Time, ttl time.Duration) (Token, error) {
	return s.mint(pathID, iat, ttl, "", "")
}

// mint creates a token record issued at iat with a name and description.
func (s *Server) mint(pathID string, iat time.Time, ttl time.Duration, name, desc string) (Token, error) {
	if pathID == "" {
		pathID = NewPathID()
	}
	if !validPathID(pathID) {
		return Token{}, fmt.Errorf("%w: %q", ErrInvalidPathID, pathID)
	}
	if ttl == 0 {
		ttl = s.cfg.tokenLifetime
	}
	rec := &tokenRecord{id: uuid.NewString(), pathID: pathID, expiresAt: iat.Add(ttl), name: name, desc: desc}
	jti := uuid.NewString()
	jwt, err := s.sign(jti, pathID, iat, rec.expiresAt)
	if err != nil {
		return Token{}, err
	}
	rec.jwt = jwt
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return Token{}, ErrClosed
	}
	s.tokens[rec.id] = rec
	s.byJWT[jwt] = rec
	s.byJTI[jti] = rec
	return Token{Token: jwt, ID: rec.id, PathID: pathID, ExpiresAt: rec.expiresAt}, nil
}

// sign signs the claims of one token. JWT times are whole seconds.
func (s *Server) sign(jti, pathID string, iat, exp time.Time) (string, error) {
	c := plugtoken.Claims{Subject: s.subject, ID: jti, PathID: pathID, IssuedAt: iat, ExpiresAt: exp}
	tok, err := plugtoken.Sign(c, s.key)
	if err != nil {
		return "", fmt.Errorf("telephonetest: sign token: %w", err)
	}
	return tok, nil
}

// Revoke revokes the token: new sockets and refreshes with it are refused.
// Like Plugboard, live sockets stay connected (use Disconnect to close them).
// An unknown id is ignored.
func (s *Server) Revoke(tokenID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rec := s.tokens[tokenID]; rec != nil {
		rec.revoked = true
	}
}

// recordFor returns the record whose id is id, or whose minted JWT has jti id (the id a
// telephone logs as token_id before its first refresh); nil when there is none. s.mu is held.
func (s *Server) recordFor(id string) *tokenRecord {
	if rec := s.tokens[id]; rec != nil {
		return rec
	}
	return s.byJTI[id]
}

// CurrentToken returns the JWT that currently opens sockets for tokenID (it
// changes on every refresh), or "" for an unknown id.
func (s *Server) CurrentToken(tokenID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rec := s.tokens[tokenID]; rec != nil {
		return rec.jwt
	}
	return ""
}

// authenticate does what Plugboard's socket connect/3 does (docs/PROTOCOL.md §1, §4):
// verify the HS256 signature (the JWT's own exp is not checked), find the record
// whose current JWT this is, and check it is neither revoked nor expired.
func (s *Server) authenticate(jwt string) (*tokenRecord, error) {
	if jwt == "" {
		return nil, errTokenMissing
	}
	claims, err := plugtoken.Verify(jwt, s.key)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.byJWT[jwt]
	switch {
	case rec == nil:
		return nil, errTokenUnknown
	case rec.revoked:
		return nil, errTokenRevoked
	case !time.Now().Before(rec.expiresAt):
		return nil, errTokenExpired
	case rec.pathID != claims.PathID:
		return nil, errTokenUnknown
	}
	return rec, nil
}

// refresh rotates the record's JWT like Plugboard's refresh_token/1: a new JWT
// (jti = record id), the record's expiry moved to now+lifetime, and the old JWT
// no longer opening sockets. The record's current expiry is not checked. The
// error reason is Elixir-inspect shaped (":token_revoked", ":not_found").
// As with Plugboard, HS256 is deterministic: two refreshes within the same
// second produce the same JWT (same claims), so the second one rotates nothing.
func (s *Server) refresh(tokenID string) (string, error) {
	now := time.Now()
	s.mu.Lock()
	rec := s.tokens[tokenID]
	var pathID string
	if rec != nil {
		pathID = rec.pathID
	}
	s.mu.Unlock()
	if rec == nil {
		return "", errRefreshNotFound
	}
	jwt, err := s.sign(rec.id, pathID, now, now.Add(s.cfg.tokenLifetime))
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if rec.revoked {
		return "", errRefreshRevoked
	}
	delete(s.byJWT, rec.jwt)
	rec.jwt = jwt
	rec.expiresAt = now.Add(s.cfg.tokenLifetime)
	s.byJWT[jwt] = rec
	return jwt, nil
}

// Reasons a socket or a refresh is refused. They appear only in the log and,
// for refresh, as the reply's reason.
var (
	errTokenMissing    = errors.New("no token parameter")
	errTokenUnknown    = errors.New("token not minted by this server or rotated by a refresh")
	errTokenRevoked    = errors.New("token revoked")
	errTokenExpired    = errors.New("token expired (server-side)")
	errRefreshNotFound = errors.New(":not_found")
	errRefreshRevoked  = errors.New(":token_revoked")
)
