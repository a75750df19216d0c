package plugtoken

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// goldenSecret is a fixed 67-byte secret_key_base for the key-derivation golden test.
const goldenSecret = "telephone-test-secret-key-base-0123456789abcdef0123456789abcdef0123"

// goldenKey is base64(HMAC-SHA256(goldenSecret, "plugboard_telephone_jwt_v1")), computed outside
// Go with `openssl dgst -sha256 -hmac ... -binary | base64`.
const goldenKey = "WBx+QkX1hxC4zeEffLBCMhPAlwdmZoAvxq/NVhPzUGw="

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func testClaims() Claims {
	return Claims{
		Subject:   "7f0c5a8e-3c1d-4b7a-9d2e-1a2b3c4d5e6f",
		ID:        "0b9e8d7c-6f5a-4e3d-8c2b-1a0f9e8d7c6b",
		PathID:    "5d4c3b2a-1908-4776-8554-433221100fff",
		IssuedAt:  t0,
		ExpiresAt: t0.Add(time.Hour),
	}
}

func TestDeriveKeyGolden(t *testing.T) {
	t.Parallel()
	got := string(DeriveKey(goldenSecret))
	if got != goldenKey {
		t.Fatalf("DeriveKey = %q, want %q", got, goldenKey)
	}
	// Independent computation with the standard library.
	mac := hmac.New(sha256.New, []byte(goldenSecret))
	mac.Write([]byte("plugboard_telephone_jwt_v1"))
	if want := base64.StdEncoding.EncodeToString(mac.Sum(nil)); got != want {
		t.Fatalf("DeriveKey = %q, independent HMAC gives %q", got, want)
	}
	if len(got) != 44 || !strings.HasSuffix(got, "=") {
		t.Fatalf("key %q is not 44 bytes of padded base64 text", got)
	}
}

func TestSignVerifyRoundTrip(t *testing.T) {
	t.Parallel()
	key := DeriveKey(goldenSecret)
	c := testClaims()
	c.IssuedAt = c.IssuedAt.Add(700 * time.Millisecond) // dropped: integer seconds on the wire
	tok, err := Sign(c, key)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Verify(tok, key)
	if err != nil {
		t.Fatal(err)
	}
	want := testClaims()
	if got.Subject != want.Subject || got.ID != want.ID || got.PathID != want.PathID ||
		!got.IssuedAt.Equal(want.IssuedAt) || !got.ExpiresAt.Equal(want.ExpiresAt) {
		t.Fatalf("claims = %+v, want %+v", got, want)
	}
	if got.IssuedAt.Location() != time.UTC {
		t.Fatalf("IssuedAt location = %v, want UTC", got.IssuedAt.Location())
	}
	parsed, err := Parse(tok)
	if err != nil || parsed != got {
		t.Fatalf("Parse = %+v, %v; want %+v", parsed, err, got)
	}
}

func TestSignWireFormat(t *testing.T) {
	t.Parallel()
	tok, err := Sign(testClaims(), []byte("k"))
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q has %d parts", tok, len(parts))
	}
	var hdr map[string]any
	decodePart(t, parts[0], &hdr)
	if len(hdr) != 2 || hdr["alg"] != "HS256" || hdr["typ"] != "JWT" {
		t.Fatalf("header = %v, want exactly alg HS256 and typ JWT", hdr)
	}
	var raw map[string]json.RawMessage
	decodePart(t, parts[1], &raw)
	want := map[string]string{
		"sub": `"7f0c5a8e-3c1d-4b7a-9d2e-1a2b3c4d5e6f"`, "jti": `"0b9e8d7c-6f5a-4e3d-8c2b-1a0f9e8d7c6b"`,
		"path_id": `"5d4c3b2a-1908-4776-8554-433221100fff"`, "iat": "1772366400", "exp": "1772370000",
	}
	if len(raw) != len(want) {
		t.Fatalf("payload has %d claims, want %d: %v", len(raw), len(want), raw)
	}
	for k, v := range want {
		if string(raw[k]) != v {
			t.Errorf("claim %s = %s, want %s", k, raw[k], v)
		}
	}
	// The signature is plain HMAC-SHA256 over header.payload.
	mac := hmac.New(sha256.New, []byte("k"))
	mac.Write([]byte(parts[0] + "." + parts[1]))
	if sig := base64.RawURLEncoding.EncodeToString(mac.Sum(nil)); sig != parts[2] {
		t.Fatalf("signature %q, independent HMAC gives %q", parts[2], sig)
	}
}

func decodePart(t *testing.T, part string, v any) {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(part)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

// handToken builds an HS256 token from raw header and payload JSON without this package, the way
// any other JWT library (Joken) would.
func handToken(header, payload string, key []byte) string {
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload))
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(signing))
	return signing + "." + enc.EncodeToString(mac.Sum(nil))
}

const goodPayload = `{"exp":1772370000,"iat":1772366400,"jti":"j","path_id":"p","sub":"s"}`

func TestVerifyIndependentToken(t *testing.T) {
	t.Parallel()
	key := DeriveKey(goldenSecret)
	tok := handToken(`{"alg":"HS256","typ":"JWT"}`, goodPayload, key)
	c, err := Verify(tok, key)
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject != "s" || c.ID != "j" || c.PathID != "p" || c.ExpiresAt.Unix() != 1772370000 {
		t.Fatalf("claims = %+v", c)
	}
	// A header without typ is accepted too (typ is optional in JWS).
	if _, err := Verify(handToken(`{"alg":"HS256"}`, goodPayload, key), key); err != nil {
		t.Fatalf("no typ: %v", err)
	}
}

func TestVerifyRefusals(t *testing.T) {
	t.Parallel()
	key := []byte("right key")
	good, err := Sign(testClaims(), key)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, ".")
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(
		[]byte(strings.Replace(goodPayload, `"p"`, `"q"`, 1))) + "." + parts[2]
	otherPath := strings.Replace(goodPayload, `"p"`, `"other"`, 1)
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." +
		base64.RawURLEncoding.EncodeToString([]byte(goodPayload)) + ".c2ln"
	tests := []struct {
		name  string
		token string
		key   []byte
		want  []error
	}{
		{"wrong key", good, []byte("wrong key"), []error{ErrSignature}},
		{"tampered payload", tampered, key, []error{ErrSignature}},
		{"payload of another token", parts[0] + "." + strings.Split(handToken(`{}`, otherPath, key), ".")[1] + "." + parts[2], key, []error{ErrSignature}},
		{"tampered signature", parts[0] + "." + parts[1] + "." + parts[2][:len(parts[2])-2] + "AA", key, []error{ErrSignature}},
		{"alg none", none, key, []error{ErrMalformed, ErrAlgorithm}},
		{"alg HS512", handToken(`{"alg":"HS512","typ":"JWT"}`, goodPayload, key), key, []error{ErrMalformed, ErrAlgorithm}},
		{"empty key", good, nil, []error{ErrSignature, ErrEmptyKey}},
		{"garbage", "not a token", key, []error{ErrMalformed}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Verify(tc.token, tc.key)
			for _, w := range tc.want {
				if !errors.Is(err, w) {
					t.Errorf("Verify error = %v, want it to wrap %v", err, w)
				}
			}
		})
	}
}

func TestSignatureErrorText(t *testing.T) {
	t.Parallel()
	tok, _ := Sign(testClaims(), []byte("a"))
	_, err := Verify(tok, []byte("b"))
	if err == nil || !strings.Contains(err.Error(), "signature check failed") {
		t.Fatalf("error %v does not say the signature check failed", err)
	}
}

func TestVerifyAny(t *testing.T) {
	t.Parallel()
	derived, direct := DeriveKey(goldenSecret), []byte(goldenSecret)
	for name, signKey := range map[string][]byte{"derived": derived, "direct": direct} {
		tok, err := Sign(testClaims(), signKey)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := VerifyAny(tok, derived, direct); err != nil {
			t.Errorf("%s: VerifyAny: %v", name, err)
		}
	}
	tok, _ := Sign(testClaims(), []byte("third"))
	if _, err := VerifyAny(tok, derived, direct); !errors.Is(err, ErrSignature) {
		t.Fatalf("unknown key: err = %v, want ErrSignature", err)
	}
	if _, err := VerifyAny(tok); !errors.Is(err, ErrSignature) || !errors.Is(err, ErrEmptyKey) {
		t.Fatalf("no keys: err = %v, want ErrSignature and ErrEmptyKey", err)
	}
	if _, err := VerifyAny("x.y", []byte("k")); !errors.Is(err, ErrMalformed) {
		t.Fatalf("malformed: err = %v, want ErrMalformed", err)
	}
}

func TestParseClaimErrors(t *testing.T) {
	t.Parallel()
	key := []byte("k")
	tests := []struct {
		name, payload, mention string
	}{
		{"missing sub", `{"jti":"j","path_id":"p","iat":1,"exp":2}`, "sub is missing"},
		{"missing jti", `{"sub":"s","path_id":"p","iat":1,"exp":2}`, "jti is missing"},
		{"missing path_id", `{"sub":"s","jti":"j","iat":1,"exp":2}`, "path_id is missing"},
		{"missing iat", `{"sub":"s","jti":"j","path_id":"p","exp":2}`, "iat is missing"},
		{"missing exp", `{"sub":"s","jti":"j","path_id":"p","iat":1}`, "exp is missing"},
		{"empty path_id", `{"sub":"s","jti":"j","path_id":"","iat":1,"exp":2}`, "path_id is empty"},
		{"numeric sub", `{"sub":5,"jti":"j","path_id":"p","iat":1,"exp":2}`, "sub is a number"},
		{"null jti", `{"sub":"s","jti":null,"path_id":"p","iat":1,"exp":2}`, "jti is null"},
		{"array path_id", `{"sub":"s","jti":"j","path_id":["p"],"iat":1,"exp":2}`, "path_id is an array"},
		{"object sub", `{"sub":{},"jti":"j","path_id":"p","iat":1,"exp":2}`, "sub is an object"},
		{"bool jti", `{"sub":"s","jti":true,"path_id":"p","iat":1,"exp":2}`, "jti is a boolean"},
		{"string iat", `{"sub":"s","jti":"j","path_id":"p","iat":"1","exp":2}`, "iat is a string"},
		{"fractional exp", `{"sub":"s","jti":"j","path_id":"p","iat":1,"exp":2.5}`, "not integer Unix seconds"},
		{"huge exp", `{"sub":"s","jti":"j","path_id":"p","iat":1,"exp":1e300}`, "not integer Unix seconds"},
		{"huge integer iat", `{"sub":"s","jti":"j","path_id":"p","iat":99999999999999999,"exp":2}`, "not integer Unix seconds"},
		{"array payload", `[1,2]`, "not a JSON object"},
		{"null payload", `null`, "sub is missing"},
		{"trailing data", goodPayload + `{}`, "data after"},
		{"not json", `sub=s`, "not a JSON object"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tok := handToken(`{"alg":"HS256","typ":"JWT"}`, tc.payload, key)
			for fn, f := range map[string]func() (Claims, error){
				"Parse":  func() (Claims, error) { return Parse(tok) },
				"Verify": func() (Claims, error) { return Verify(tok, key) },
			} {
				_, err := f()
				if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.mention) {
					t.Errorf("%s error = %v, want ErrMalformed mentioning %q", fn, err, tc.mention)
				}
			}
		})
	}
}

func TestParseIntegralFloat(t *testing.T) {
	t.Parallel()
	tok := handToken(`{"alg":"HS256"}`, `{"sub":"s","jti":"j","path_id":"p","iat":1.7e9,"exp":1700003600.0}`, []byte("k"))
	c, err := Parse(tok)
	if err != nil {
		t.Fatal(err)
	}
	if c.IssuedAt.Unix() != 1700000000 || c.ExpiresAt.Unix() != 1700003600 {
		t.Fatalf("claims = %+v", c)
	}
}

func TestParseShapeErrors(t *testing.T) {
	t.Parallel()
	enc := base64.RawURLEncoding.EncodeToString
	body := enc([]byte(goodPayload))
	tests := []struct {
		name, token, mention string
		alsoAlg              bool
	}{
		{"empty", "", "1 dot-separated parts", false},
		{"two parts", "a.b", "2 dot-separated parts", false},
		{"four parts", "a.b.c.d", "4 dot-separated parts", false},
		{"empty signature", enc([]byte(`{"alg":"HS256"}`)) + "." + body + ".", "signature part is empty", false},
		{"empty header", "." + body + ".c2ln", "header part is empty", false},
		{"padding", enc([]byte(`{"alg":"HS256"}`)) + "=." + body + ".c2ln", "not base64url", false},
		{"std alphabet", enc([]byte(`{"alg":"HS256"}`)) + "." + body + ".c2+n", "not base64url", false},
		{"header not json", enc([]byte(`nope`)) + "." + body + ".c2ln", "cannot decode JWS", false},
		{"alg none", enc([]byte(`{"alg":"none"}`)) + "." + body + ".c2ln", `alg is "none"`, true},
		{"no alg", enc([]byte(`{"typ":"JWT"}`)) + "." + body + ".c2ln", `alg is ""`, true},
		{"alg RS256", enc([]byte(`{"alg":"RS256"}`)) + "." + body + ".c2ln", `alg is "RS256"`, true},
		{"typ other", enc([]byte(`{"alg":"HS256","typ":"JOSE+JSON"}`)) + "." + body + ".c2ln", "typ", false},
		{"b64 false", enc([]byte(`{"alg":"HS256","b64":false,"crit":["b64"]}`)) + "." + body + ".c2ln", "b64", false},
		{"crit", enc([]byte(`{"alg":"HS256","crit":["exp"],"exp":1}`)) + "." + body + ".c2ln", "crit", false},
		{"too long", strings.Repeat("a", MaxTokenLen+1), "longer than", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse(tc.token)
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.mention) {
				t.Fatalf("Parse error = %v, want ErrMalformed mentioning %q", err, tc.mention)
			}
			if tc.alsoAlg != errors.Is(err, ErrAlgorithm) {
				t.Fatalf("errors.Is(err, ErrAlgorithm) = %v, want %v", !tc.alsoAlg, tc.alsoAlg)
			}
		})
	}
}

func TestSignRefusals(t *testing.T) {
	t.Parallel()
	mod := func(f func(*Claims)) Claims { c := testClaims(); f(&c); return c }
	tests := []struct {
		name string
		c    Claims
		key  []byte
		want error
	}{
		{"empty key", testClaims(), nil, ErrEmptyKey},
		{"empty sub", mod(func(c *Claims) { c.Subject = "" }), []byte("k"), ErrMalformed},
		{"empty jti", mod(func(c *Claims) { c.ID = "" }), []byte("k"), ErrMalformed},
		{"empty path_id", mod(func(c *Claims) { c.PathID = "" }), []byte("k"), ErrMalformed},
		{"zero iat", mod(func(c *Claims) { c.IssuedAt = time.Time{} }), []byte("k"), ErrMalformed},
		{"zero exp", mod(func(c *Claims) { c.ExpiresAt = time.Time{} }), []byte("k"), ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tok, err := Sign(tc.c, tc.key); !errors.Is(err, tc.want) || tok != "" {
				t.Fatalf("Sign = %q, %v; want error wrapping %v", tok, err, tc.want)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	c := testClaims() // iat t0, exp t0+1h
	skew := 2 * time.Minute
	tests := []struct {
		name string
		now  time.Time
		skew time.Duration
		want error
	}{
		{"valid", t0.Add(time.Minute), skew, nil},
		{"one second before exp", t0.Add(time.Hour - time.Second), skew, nil},
		{"at exp", t0.Add(time.Hour), skew, ErrExpired},
		{"after exp", t0.Add(2 * time.Hour), skew, ErrExpired},
		{"iat in future within skew", t0.Add(-skew), skew, nil},
		{"iat in future beyond skew", t0.Add(-skew - time.Second), skew, ErrIssuedInFuture},
		{"iat one second ahead, no skew", t0.Add(-time.Second), 0, ErrIssuedInFuture},
		{"negative skew counts as zero", t0, -time.Hour, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := c.Check(tc.now, tc.skew)
			if tc.want == nil && err != nil {
				t.Fatalf("Check = %v, want nil", err)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("Check = %v, want %v", err, tc.want)
			}
		})
	}
	err := c.Check(t0.Add(2*time.Hour), skew)
	if !strings.Contains(err.Error(), "exp 2026-03-01T13:00:00Z") {
		t.Fatalf("expiry error %q does not name exp", err)
	}
}

func FuzzParse(f *testing.F) {
	key := []byte("fuzz key")
	good, _ := Sign(testClaims(), key)
	f.Add(good)
	f.Add(handToken(`{"alg":"none"}`, goodPayload, key))
	f.Add(handToken(`{"alg":"HS256"}`, `{"sub":1}`, key))
	f.Add("a.b.c")
	f.Add("")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := Parse(tok)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if c.Subject == "" || c.ID == "" || c.PathID == "" {
			t.Fatalf("Parse accepted empty string claims: %+v", c)
		}
		vc, verr := Verify(tok, key)
		if verr == nil && vc != c {
			t.Fatalf("Verify claims %+v differ from Parse %+v", vc, c)
		}
		if verr != nil && !errors.Is(verr, ErrSignature) {
			t.Fatalf("Verify error %v for a parsable token does not wrap ErrSignature", verr)
		}
	})
}

func BenchmarkVerify(b *testing.B) {
	key := DeriveKey(goldenSecret)
	tok, err := Sign(testClaims(), key)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := Verify(tok, key); err != nil {
			b.Fatal(err)
		}
	}
}
