package telephonetest

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"time"

	"github.com/google/uuid"
)

// ServiceAccount is a service account of a Server: an API key bound to one
// path, with which the token vending endpoint issues one token per call
// (docs/PROTOCOL.md §4.5).
type ServiceAccount struct {
	ID     string // the service account's UUID
	Name   string // used in the names of the tokens it vends
	PathID string // the only path it can vend tokens for
	APIKey string // "sa_live_" + base64url of 32 random bytes, shown once, as by Plugboard
}

// serviceAccount is the server-side row. Like Plugboard, only the SHA-256 of the
// key is kept. Its fields are guarded by Server.mu.
type serviceAccount struct {
	id, name, pathID string
	revoked          bool
}

// VendPath is where Plugboard serves its token vending API.
const VendPath = "/api/token-vending/generate"

// NewServiceAccount creates a service account for pathID (a canonical UUID; ""
// means a new random path) named name ("" gives "service-account-<n>").
func (s *Server) NewServiceAccount(pathID, name string) (ServiceAccount, error) {
	if pathID == "" {
		pathID = NewPathID()
	}
	if !validPathID(pathID) {
		return ServiceAccount{}, fmt.Errorf("%w: %q", ErrInvalidPathID, pathID)
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	key := "sa_live_" + base64.RawURLEncoding.EncodeToString(b)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ServiceAccount{}, ErrClosed
	}
	if name == "" {
		name = fmt.Sprintf("service-account-%d", len(s.accounts)+1)
	}
	sa := &serviceAccount{id: uuid.NewString(), name: name, pathID: pathID}
	s.accounts[hashKey(key)] = sa
	return ServiceAccount{ID: sa.id, Name: name, PathID: pathID, APIKey: key}, nil
}

// RevokeServiceAccount revokes a service account: its key is refused from then
// on (401). Tokens it vended stay valid, as with Plugboard. An unknown id is
// ignored.
func (s *Server) RevokeServiceAccount(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sa := range s.accounts {
		if sa.id == id {
			sa.revoked = true
		}
	}
}

// TokenInfo describes a token record: what the vending endpoint named it.
type TokenInfo struct {
	ID          string
	PathID      string
	Name        string
	Description string
	ExpiresAt   time.Time
	Revoked     bool
}

// TokenInfo returns the record of tokenID; false for an unknown id.
func (s *Server) TokenInfo(tokenID string) (TokenInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.tokens[tokenID]
	if rec == nil {
		return TokenInfo{}, false
	}
	return TokenInfo{ID: rec.id, PathID: rec.pathID, Name: rec.name, Description: rec.desc,
		ExpiresAt: rec.expiresAt, Revoked: rec.revoked}, true
}

func hashKey(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])
}

// vendResponse is the 201 body of the vending endpoint.
type vendResponse struct {
	Token     string `json:"token"`
	TokenID   string `json:"token_id"`
	Path      string `json:"path"`
	ExpiresAt string `json:"expires_at"`
	ExpiresIn int64  `json:"expires_in"`
}

// serveVend is POST /api/token-vending/generate, answered exactly like
// Plugboard's TokenVendingController: the key from "Authorization: Bearer <key>"
// (or "bearer <key>"), optional JSON parameters path_id, description and
// instance_id, 201 with the new token, 401 for a missing or malformed header or
// an unknown or revoked key, 403 when path_id is not the account's path. Every
// call creates a new token record. Other methods get Phoenix's 404.
func (s *Server) serveVend(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeJSON(w, http.StatusNotFound, map[string]any{"errors": map[string]string{"detail": "Not Found"}})
		return
	}
	params, ok := vendParams(r)
	if !ok {
		writeJSON(w, http.StatusBadRequest, map[string]any{"errors": map[string]string{"detail": "Bad Request"}})
		return
	}
	key, msg := bearerKey(r.Header.Values("Authorization"))
	if msg != "" {
		writeJSON(w, http.StatusUnauthorized, errorBody(msg))
		return
	}
	sa, ok := s.useKey(key)
	if !ok {
		s.cfg.logger.Warn("telephonetest: token vending failed: invalid or revoked key")
		writeJSON(w, http.StatusUnauthorized, errorBody("Invalid or revoked service account API key"))
		return
	}
	if p := params["path_id"]; p != nil && p != false && p != any(sa.pathID) { // Elixir: path_id && path_id != path.id
		writeJSON(w, http.StatusForbidden, map[string]any{
			"error":             "Service account does not have access to this path",
			"allowed_path_id":   sa.pathID,
			"requested_path_id": p,
		})
		return
	}
	name, desc := tokenName(sa.name, params["description"], params["instance_id"])
	tok, err := s.mint(sa.pathID, time.Now(), 0, name, desc)
	if err != nil {
		writeJSON(w, http.StatusUnprocessableEntity, errorBody(err.Error()))
		return
	}
	s.cfg.logger.Info("telephonetest: token vended", "service_account", sa.name, "token_id", tok.ID, "path_id", sa.pathID)
	writeJSON(w, http.StatusCreated, vendResponse{
		Token: tok.Token, TokenID: tok.ID, Path: "/" + sa.pathID,
		ExpiresAt: tok.ExpiresAt.UTC().Truncate(time.Second).Format(time.RFC3339),
		ExpiresIn: s.lifetimeSeconds(),
	})
}

// vendParams reads the JSON body the way Plug.Parsers does: a JSON content type
// must carry a JSON object (else 400); other bodies are ignored.
func vendParams(r *http.Request) (map[string]any, bool) {
	params := map[string]any{}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "application/json" {
		return params, true
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, MaxBodySize))
	if err != nil {
		return nil, false
	}
	if len(b) == 0 {
		return params, true
	}
	if err := json.Unmarshal(b, &params); err != nil {
		return nil, false
	}
	return params, true
}

// bearerKey extracts the key like Plugboard's get_api_key_from_header: exactly
// one header starting with "Bearer " or "bearer ". msg is the 401 error.
func bearerKey(h []string) (key, msg string) {
	switch {
	case len(h) == 0:
		return "", "Missing Authorization header"
	case len(h) == 1 && len(h[0]) >= 7 && (h[0][:7] == "Bearer " || h[0][:7] == "bearer "):
		return h[0][7:], ""
	default:
		return "", "Invalid Authorization header format. Use: Bearer <api_key>"
	}
}

// useKey returns the account of a valid, unrevoked key.
func (s *Server) useKey(key string) (serviceAccount, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sa := s.accounts[hashKey(key)]
	if sa == nil || sa.revoked {
		return serviceAccount{}, false
	}
	return *sa, true
}

// tokenName names a vended token as Plugboard does: with neither parameter
// "Auto-generated for <account>"; description only: the description is the
// name; instance_id only: "<account> - <instance_id>"; both: the instance id
// is the name and the description the description.
func tokenName(account string, desc, instance any) (name, description string) {
	str := func(v any) string {
		if s, ok := v.(string); ok {
			return s
		}
		b, _ := json.Marshal(v)
		return string(b)
	}
	switch {
	case desc == nil && instance == nil:
		return "Auto-generated for " + account, ""
	case instance == nil:
		return str(desc), ""
	case desc == nil:
		return account + " - " + str(instance), ""
	default:
		return str(instance), str(desc)
	}
}

// serviceAccountResponse is the answer of GET /admin/service-account.
type serviceAccountResponse struct {
	APIKey           string `json:"api_key"`
	PathID           string `json:"path_id"`
	ServiceAccountID string `json:"service_account_id"`
}

// adminServiceAccount serves GET /admin/service-account?path_id=<uuid>: a new
// service account for the path (a missing path_id gets a random one).
func (s *Server) adminServiceAccount(w http.ResponseWriter, r *http.Request) {
	sa, err := s.NewServiceAccount(r.URL.Query().Get("path_id"), r.URL.Query().Get("name"))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody(err.Error()))
		return
	}
	writeJSON(w, http.StatusOK, serviceAccountResponse{APIKey: sa.APIKey, PathID: sa.PathID, ServiceAccountID: sa.ID})
}
