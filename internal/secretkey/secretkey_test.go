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

func TestMaskQuery(t *testing.T) {
	for q, want := range map[string]string{
		"":                          "",
		"a=1&b=2":                   "a=1&b=2",
		"a=1&token=abc&API_KEY=k&x": "a=1&token=*&API_KEY=*&x",
		"a=1;token=abc;b=2":         "a=1;token=*;b=2",
		"token=a&sid=b;c=d&":        "token=*&sid=*;c=d&",
		"my%5Fsecret=1&page=2":      "my%5Fsecret=*&page=2",
		"token&password=":           "token&password=*",
		"&&;=x;token==y":            "&&;=x;token=*",
		"code=1&codec=2":            "code=*&codec=2",
	} {
		if got := MaskQuery(q, "*"); got != want {
			t.Errorf("MaskQuery(%q) = %q, want %q", q, got, want)
		}
	}
}
