package secretkey

import "testing"

func TestIs(t *testing.T) {
	for _, n := range []string{"token", "TOKEN", "access_token", "api_key", "X-Amz-Signature", "private_key", "x-api-key",
		"authorization", "sessionid", "client_secret", "password", "my%5Fsecret", "code", "sid", "pass", " jwt "} {
		if !Is(n) {
			t.Errorf("Is(%q) = false, want true", n)
		}
	}
	for _, n := range []string{"page", "q", "sort", "codec", "side", "passenger", "%zz", ""} {
		if Is(n) {
			t.Errorf("Is(%q) = true, want false", n)
		}
	}
}
