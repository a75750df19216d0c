package telephonetest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/verastack/telephone/internal/plugtoken"
)

// getJSON performs a GET and decodes a JSON object answer.
func getJSON(t *testing.T, rawURL string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	res := doHTTP(req)
	if res.err != nil {
		t.Fatal(res.err)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(res.body), &m); err != nil {
		t.Fatalf("GET %s: %d %q: %v", rawURL, res.status, res.body, err)
	}
	return res.status, m
}

func TestAdminMint(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, WithTokenLifetime(2*time.Hour))
	status, m := getJSON(t, s.URL()+"/mint")
	pathID, _ := m["path_id"].(string)
	if status != 200 || !validPathID(pathID) || m["expires_in"] != float64(7200) ||
		m["socket_url"] != s.SocketURL() || m["call_url"] != s.CallURL(pathID) || m["token_id"] == "" {
		t.Fatalf("mint: %d %v", status, m)
	}
	c := dial(t, s, m["token"].(string))
	c.join(pathID, "1")

	fixed := NewPathID()
	_, m = getJSON(t, s.URL()+"/mint?path_id="+fixed+"&ttl=60")
	if m["path_id"] != fixed || m["expires_in"] != float64(60) {
		t.Errorf("mint with path and ttl: %v", m)
	}
	_, m = getJSON(t, s.URL()+"/mint?ttl=-5")
	if m["expires_in"] != float64(-5) {
		t.Errorf("negative ttl: %v", m)
	}
	if status, _ := upgradeStatus(t, socketURLFor(s, m["token"].(string))); status != http.StatusForbidden {
		t.Errorf("expired token from /mint: %d, want 403", status)
	}
	for _, bad := range []string{"?ttl=abc", "?path_id=not-a-uuid", "?path_id=AAAAAAAA-BBBB-4CCC-8DDD-EEEEEEEEEEEE"} {
		if status, m := getJSON(t, s.URL()+"/mint"+bad); status != 400 || m["error"] == "" {
			t.Errorf("mint%s: %d %v", bad, status, m)
		}
	}
}

func TestAdminRevokeDisconnectStats(t *testing.T) {
	t.Parallel()
	s := newTestServer(t)
	c, tok := joinedClient(t, s, "")
	if _, m := getJSON(t, s.URL()+"/admin/stats"); m[tok.PathID] != float64(1) {
		t.Errorf("stats %v", m)
	}
	if status, m := getJSON(t, s.URL()+"/admin/revoke?token_id="+tok.ID); status != 200 || m["revoked"] != true {
		t.Errorf("revoke: %d %v", status, m)
	}
	c.expectNothing("alive") // revocation keeps live sockets, like Plugboard
	if status, _ := upgradeStatus(t, socketURLFor(s, tok.Token)); status != http.StatusForbidden {
		t.Errorf("revoked token: %d, want 403", status)
	}
	d, tok2 := joinedClient(t, s, "")
	code := make(chan websocket.StatusCode, 1)
	go func() { code <- d.closeStatus() }()
	if status, m := getJSON(t, s.URL()+"/admin/disconnect?token_id="+tok2.ID); status != 200 || m["closed_sockets"] != float64(1) {
		t.Errorf("disconnect: %d %v", status, m)
	}
	if got := <-code; got != websocket.StatusInternalError {
		t.Errorf("disconnected socket closed with %d, want 1011", got)
	}
	if status, _ := upgradeStatus(t, socketURLFor(s, tok2.Token)); status != http.StatusForbidden {
		t.Errorf("disconnect must revoke: %d", status)
	}
	tests := []struct {
		path   string
		status int
	}{
		{"/admin/revoke", 400},
		{"/admin/revoke?token_id=" + url.QueryEscape("nope"), 404},
		{"/admin/disconnect?token_id=nope", 404},
		{"/admin/other", 404},
	}
	for _, tt := range tests {
		if status, m := getJSON(t, s.URL()+tt.path); status != tt.status || m["error"] == "" {
			t.Errorf("%s: %d %v", tt.path, status, m)
		}
	}
}

func TestAdminRefusals(t *testing.T) {
	t.Parallel()
	s := newTestServer(t)
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/mint", nil) // RemoteAddr 192.0.2.1:1234
	s.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden {
		t.Errorf("non-loopback client: %d, want 403", rec.Code)
	}
	rec = httptest.NewRecorder()
	req = httptest.NewRequest(http.MethodPost, "/admin/stats", nil)
	req.RemoteAddr = "[::1]:5000"
	s.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d, want 405", rec.Code)
	}
	if isLoopback("garbage") || !isLoopback("127.0.0.1") {
		t.Error("isLoopback")
	}
}

func TestMintAndTokens(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, WithSecret("short secret"))
	if s.SecretKeyBase() != "short secret" {
		t.Errorf("SecretKeyBase %q", s.SecretKeyBase())
	}
	if len(newServer([]Option{WithSecret("")}).SecretKeyBase()) < 64 {
		t.Error("default secret shorter than 64 bytes")
	}
	tok, err := s.Mint("", time.Minute)
	if err != nil || !validPathID(tok.PathID) || time.Until(tok.ExpiresAt) > time.Minute || s.CurrentToken(tok.ID) != tok.Token {
		t.Fatalf("Mint: %+v %v", tok, err)
	}
	if s.CurrentToken("nope") != "" {
		t.Error("CurrentToken of an unknown id")
	}
	iat := time.Now().Add(-time.Hour).Truncate(time.Second)
	aged, err := s.MintIssuedAt(tok.PathID, iat, 2*time.Hour)
	if err != nil || !aged.ExpiresAt.Equal(iat.Add(2*time.Hour)) {
		t.Fatalf("MintIssuedAt: %+v %v", aged, err)
	}
	if c, err := plugtoken.Verify(aged.Token, s.key); err != nil || !c.IssuedAt.Equal(iat) || !c.ExpiresAt.Equal(aged.ExpiresAt) {
		t.Errorf("MintIssuedAt claims %+v, %v; want iat %v", c, err, iat)
	}
	s.Revoke("nope") // ignored
	if _, err := s.Mint("x", 0); err == nil {
		t.Error("Mint with a bad path id must fail")
	}
	other := newTestServer(t)
	if status, _ := upgradeStatus(t, socketURLFor(other, tok.Token)); status != http.StatusForbidden {
		t.Errorf("token of another server: %d, want 403", status)
	}
}

// TestAdminRevokeByLoggedID revokes with the id a telephone logs: the JWT's jti.
func TestAdminRevokeByLoggedID(t *testing.T) {
	t.Parallel()
	s := newTestServer(t)
	tok, err := s.Mint("", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	claims, err := plugtoken.Parse(tok.Token)
	if err != nil {
		t.Fatal(err)
	}
	if claims.ID == tok.ID {
		t.Fatal("a minted JWT's jti is a fresh UUID, not the record id (as Plugboard issues it)")
	}
	if status, m := getJSON(t, s.URL()+"/admin/revoke?token_id="+claims.ID); status != 200 || m["token_id"] != tok.ID || m["revoked"] != true {
		t.Fatalf("revoke by jti: %d %v", status, m)
	}
	if status, _ := upgradeStatus(t, socketURLFor(s, tok.Token)); status != http.StatusForbidden {
		t.Errorf("revoked by jti: %d, want 403", status)
	}
}
