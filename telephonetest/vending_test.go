package telephonetest

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

// vend posts to the vending endpoint and decodes the JSON answer.
func vend(t *testing.T, s *Server, auth []string, contentType, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.URL()+VendPath, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range auth {
		req.Header.Add("Authorization", a)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	res := doHTTP(req)
	if res.err != nil {
		t.Fatal(res.err)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(res.body), &m); err != nil {
		t.Fatalf("vend: %d %q: %v", res.status, res.body, err)
	}
	return res.status, m
}

var apiKeyShape = regexp.MustCompile(`^sa_live_[A-Za-z0-9_-]{43}$`)

func TestVendIssuesOneWorkingTokenPerCall(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, WithTokenLifetime(90*time.Second))
	sa, err := s.NewServiceAccount("", "workers")
	if err != nil {
		t.Fatal(err)
	}
	if !apiKeyShape.MatchString(sa.APIKey) || !validPathID(sa.PathID) {
		t.Fatalf("service account %+v", sa)
	}
	const js = "application/json"
	status, m := vend(t, s, []string{"Bearer " + sa.APIKey}, js, `{"path_id":"`+sa.PathID+`","instance_id":"pod-1"}`)
	if status != http.StatusCreated || m["path"] != "/"+sa.PathID || m["expires_in"] != float64(90) {
		t.Fatalf("vend: %d %v", status, m)
	}
	exp, err := time.Parse(time.RFC3339, m["expires_at"].(string))
	if err != nil || !strings.HasSuffix(m["expires_at"].(string), "Z") || time.Until(exp) < 80*time.Second {
		t.Fatalf("expires_at %v: %v", m["expires_at"], err)
	}
	info, ok := s.TokenInfo(m["token_id"].(string))
	if !ok || info.Name != "workers - pod-1" || info.PathID != sa.PathID {
		t.Fatalf("token record %+v", info)
	}
	c := dial(t, s, m["token"].(string))
	c.join(sa.PathID, "1")
	// A second call (lower-case bearer, no body) vends a different token.
	status, m2 := vend(t, s, []string{"bearer " + sa.APIKey}, "", "")
	if status != http.StatusCreated || m2["token_id"] == m["token_id"] || m2["token"] == m["token"] {
		t.Fatalf("second vend: %d %v", status, m2)
	}
	info, _ = s.TokenInfo(m2["token_id"].(string))
	if info.Name != "Auto-generated for workers" {
		t.Errorf("name without parameters: %q", info.Name)
	}
}

func TestVendNamesTokensLikePlugboard(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ body, name, desc string }{
		{`{}`, "Auto-generated for sa", ""},
		{`{"description":"blue"}`, "blue", ""},
		{`{"instance_id":"pod-7"}`, "sa - pod-7", ""},
		{`{"instance_id":"pod-7","description":"blue"}`, "pod-7", "blue"},
		{`{"instance_id":7}`, "sa - 7", ""},
		{`{"path_id":null}`, "Auto-generated for sa", ""},
	} {
		s := newTestServer(t)
		sa, _ := s.NewServiceAccount("", "sa")
		status, m := vend(t, s, []string{"Bearer " + sa.APIKey}, "application/json", tc.body)
		if status != http.StatusCreated {
			t.Errorf("%s: %d %v", tc.body, status, m)
			continue
		}
		if info, _ := s.TokenInfo(m["token_id"].(string)); info.Name != tc.name || info.Description != tc.desc {
			t.Errorf("%s: name %q desc %q, want %q %q", tc.body, info.Name, info.Description, tc.name, tc.desc)
		}
	}
}

func TestVendRefusalsMatchPlugboard(t *testing.T) {
	t.Parallel()
	s := newTestServer(t)
	sa, _ := s.NewServiceAccount("", "")
	revoked, _ := s.NewServiceAccount(sa.PathID, "old")
	s.RevokeServiceAccount(revoked.ID)
	other := NewPathID()
	const js = "application/json"
	for _, tc := range []struct {
		name   string
		auth   []string
		ctype  string
		body   string
		status int
		want   map[string]any
	}{
		{"no header", nil, js, `{}`, 401, map[string]any{"error": "Missing Authorization header"}},
		{"bad scheme", []string{"Token " + sa.APIKey}, js, `{}`, 401, map[string]any{"error": "Invalid Authorization header format. Use: Bearer <api_key>"}},
		{"two headers", []string{"Bearer " + sa.APIKey, "Bearer " + sa.APIKey}, js, `{}`, 401, map[string]any{"error": "Invalid Authorization header format. Use: Bearer <api_key>"}},
		{"upper-case scheme", []string{"BEARER " + sa.APIKey}, js, `{}`, 401, map[string]any{"error": "Invalid Authorization header format. Use: Bearer <api_key>"}},
		{"unknown key", []string{"Bearer sa_live_invalid_key"}, js, `{}`, 401, map[string]any{"error": "Invalid or revoked service account API key"}},
		{"revoked key", []string{"Bearer " + revoked.APIKey}, js, `{}`, 401, map[string]any{"error": "Invalid or revoked service account API key"}},
		{"other path", []string{"Bearer " + sa.APIKey}, js, `{"path_id":"` + other + `"}`, 403, map[string]any{
			"error": "Service account does not have access to this path", "allowed_path_id": sa.PathID, "requested_path_id": other}},
		{"malformed JSON", []string{"Bearer " + sa.APIKey}, js, `{"path_id":`, 400, map[string]any{"errors": map[string]any{"detail": "Bad Request"}}},
	} {
		status, m := vend(t, s, tc.auth, tc.ctype, tc.body)
		if status != tc.status || !jsonEqual(m, tc.want) {
			t.Errorf("%s: %d %v, want %d %v", tc.name, status, m, tc.status, tc.want)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, s.URL()+VendPath, nil)
	if res := doHTTP(req); res.status != http.StatusNotFound {
		t.Errorf("GET: %d", res.status)
	}
}

func jsonEqual(a, b map[string]any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func TestAdminServiceAccount(t *testing.T) {
	t.Parallel()
	s := newTestServer(t)
	path := NewPathID()
	status, m := getJSON(t, s.URL()+"/admin/service-account?path_id="+path)
	key, _ := m["api_key"].(string)
	if status != 200 || m["path_id"] != path || !apiKeyShape.MatchString(key) {
		t.Fatalf("admin service account: %d %v", status, m)
	}
	if status, v := vend(t, s, []string{"Bearer " + key}, "", ""); status != http.StatusCreated || v["path"] != "/"+path {
		t.Fatalf("vend with the admin key: %d %v", status, v)
	}
	if _, m := getJSON(t, s.URL()+"/admin/service-account"); !validPathID(m["path_id"].(string)) {
		t.Errorf("random path: %v", m)
	}
	if status, m := getJSON(t, s.URL()+"/admin/service-account?path_id=nope"); status != 400 || m["error"] == "" {
		t.Errorf("bad path: %d %v", status, m)
	}
	if _, err := s.NewServiceAccount("nope", ""); err == nil {
		t.Error("NewServiceAccount accepted a bad path id")
	}
	if _, ok := s.TokenInfo("unknown"); ok {
		t.Error("TokenInfo of an unknown id")
	}
}

func TestJoinedTokens(t *testing.T) {
	t.Parallel()
	s := newTestServer(t)
	_, a := joinedClient(t, s, "")
	_, b := joinedClient(t, s, a.PathID)
	if got := s.JoinedTokens(a.PathID); len(got) != 2 || got[0] != a.ID || got[1] != b.ID {
		t.Fatalf("JoinedTokens = %v, want [%s %s]", got, a.ID, b.ID)
	}
	if got := s.JoinedTokens(NewPathID()); len(got) != 0 {
		t.Fatalf("JoinedTokens of an empty path = %v", got)
	}
}
