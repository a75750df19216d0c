package transport

import (
	"errors"
	"net/url"
	"strings"
	"testing"
)

func TestSocketURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, token, want string
	}{
		{"plain wss", "wss://pb.example.com/telephone/websocket", "abc", "wss://pb.example.com/telephone/websocket?token=abc&vsn=2.0.0"},
		{"plain ws with port", "ws://127.0.0.1:4000/telephone/websocket", "abc", "ws://127.0.0.1:4000/telephone/websocket?token=abc&vsn=2.0.0"},
		{"keeps other params", "wss://h/p?region=eu&debug=1", "abc", "wss://h/p?debug=1&region=eu&token=abc&vsn=2.0.0"},
		{"keeps repeated params", "wss://h/p?a=1&a=2", "abc", "wss://h/p?a=1&a=2&token=abc&vsn=2.0.0"},
		{"replaces existing token", "wss://h/p?token=old&x=y", "new", "wss://h/p?token=new&vsn=2.0.0&x=y"},
		{"replaces repeated token", "wss://h/p?token=old1&token=old2", "new", "wss://h/p?token=new&vsn=2.0.0"},
		{"no double vsn", "wss://h/p?vsn=2.0.0", "abc", "wss://h/p?token=abc&vsn=2.0.0"},
		{"replaces other vsn", "wss://h/p?vsn=1.0.0&vsn=3", "abc", "wss://h/p?token=abc&vsn=2.0.0"},
		{"escapes token", "wss://h/p", "a+b/c=d&e", "wss://h/p?token=a%2Bb%2Fc%3Dd%26e&vsn=2.0.0"},
		{"empty token keeps embedded token", "wss://h/p?token=inurl", "", "wss://h/p?token=inurl&vsn=2.0.0"},
		{"empty token adds none", "wss://h/p", "", "wss://h/p?vsn=2.0.0"},
		{"http maps to ws", "http://h/p", "t", "ws://h/p?token=t&vsn=2.0.0"},
		{"https maps to wss", "HTTPS://h/p", "t", "wss://h/p?token=t&vsn=2.0.0"},
		{"empty query marker", "wss://h/p?", "t", "wss://h/p?token=t&vsn=2.0.0"},
		{"ipv6 host", "wss://[::1]:443/p", "t", "wss://[::1]:443/p?token=t&vsn=2.0.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := SocketURL(tt.in, tt.token)
			if err != nil {
				t.Fatalf("SocketURL(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("SocketURL(%q, %q) = %q, want %q", tt.in, tt.token, got, tt.want)
			}
			u, err := url.Parse(got)
			if err != nil {
				t.Fatal(err)
			}
			if v := u.Query()["vsn"]; len(v) != 1 || v[0] != "2.0.0" {
				t.Fatalf("vsn values %q, want exactly [2.0.0]", v)
			}
		})
	}
}

func TestSocketURLErrors(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, in string }{
		{"ftp scheme", "ftp://h/p?token=" + testToken},
		{"no scheme", "h/p?token=" + testToken},
		{"no host", "wss:///p?token=" + testToken},
		{"opaque", "wss:h?token=" + testToken},
		{"fragment", "wss://h/p?token=" + testToken + "#frag"},
		{"empty fragment", "wss://h/p?token=" + testToken + "#"},
		{"unparsable", "wss://h/%zz?token=" + testToken},
		{"bad host", "wss://h h/p?token=" + testToken},
		{"malformed query escape", "wss://h/p?a=%zz&token=" + testToken},
		{"semicolon query", "wss://h/p?a=1;token=" + testToken},
		{"empty", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := SocketURL(tt.in, "other")
			if !errors.Is(err, ErrBadURL) {
				t.Fatalf("SocketURL(%q) error = %v, want ErrBadURL", tt.in, err)
			}
			assertNoToken(t, err, testToken)
		})
	}
}

func TestRedact(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, in, want string }{
		{"token", "wss://h/p?token=secret&vsn=2.0.0", "wss://h/p?token=REDACTED&vsn=2.0.0"},
		{"order kept", "wss://h/p?vsn=2.0.0&token=secret&a=b", "wss://h/p?vsn=2.0.0&token=REDACTED&a=b"},
		{"repeated", "wss://h/p?token=s1&token=s2", "wss://h/p?token=REDACTED&token=REDACTED"},
		{"case", "wss://h/p?Token=secret", "wss://h/p?Token=REDACTED"},
		{"escaped key", "wss://h/p?tok%65n=secret", "wss://h/p?tok%65n=REDACTED"},
		{"semicolon separator", "wss://h/p?a=1;token=secret", "wss://h/p?a=1;token=REDACTED"},
		{"empty value", "wss://h/p?token=", "wss://h/p?token=REDACTED"},
		{"key without value", "wss://h/p?token", "wss://h/p?token"},
		{"other keys kept", "wss://h/p?vsn=2.0.0&path_id=x", "wss://h/p?vsn=2.0.0&path_id=x"},
		{"token-like keys", "wss://h/p?access_token=secret&API_KEY=secret;Client_Secret=secret&X-Amz-Signature=secret&password=secret&jwt=secret&auth=secret&mytoken=secret&vsn=2",
			"wss://h/p?access_token=REDACTED&API_KEY=REDACTED;Client_Secret=REDACTED&X-Amz-Signature=REDACTED&password=REDACTED&jwt=REDACTED&auth=REDACTED&mytoken=REDACTED&vsn=2"},
		{"no query", "wss://h/p", "wss://h/p"},
		{"password", "wss://user:pw@h/p", "wss://user:REDACTED@h/p"},
		{"user only", "wss://user@h/p", "wss://user@h/p"},
		{"fragment", "https://h/cb#token=secret", "https://h/cb#token=REDACTED"},
		{"unparsable", "wss://h/%zz?token=secret&a=1", "wss://h/%zz?token=REDACTED&a=1"},
		{"unparsable password", "wss://u:pw@h h/?x=1", "wss://u:REDACTED@h h/?x=1"},
		{"unparsable no path", "wss://u:pw@h h", "wss://u:REDACTED@h h"},
		{"bare query", "token=secret&a=1", "token=REDACTED&a=1"},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := Redact(tt.in)
			if got != tt.want {
				t.Fatalf("Redact(%q) = %q, want %q", tt.in, got, tt.want)
			}
			for _, secret := range []string{"secret", "s1", "s2", "pw"} {
				if strings.Contains(got, secret) {
					t.Fatalf("Redact(%q) = %q leaks %q", tt.in, got, secret)
				}
			}
		})
	}
}

func TestTokenValues(t *testing.T) {
	t.Parallel()
	got := tokenValues("wss://h/p?a=1&token=a%2Bb;Token=c#token=frag")
	want := []string{"a%2Bb", "a+b", "c", "c"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("tokenValues = %q, want %q", got, want)
	}
}

// FuzzRedact checks that Redact never panics, that every token parameter of
// a parsable result is redacted, and that the redacted socket URL does not
// depend on the token at all.
func FuzzRedact(f *testing.F) {
	for _, s := range []string{
		"wss://h/p?token=x", "wss://u:p@h/p?Tok%65n=x;a=b", "wss://h/%zz?token=x", "token=x", "",
		"wss://h/p?token=a&token=b#token=c", "ws://[::1]:1/?a=%20&token",
	} {
		f.Add(s, testToken)
	}
	f.Fuzz(func(t *testing.T, raw, token string) {
		out := Redact(raw)
		if u, err := url.Parse(out); err == nil {
			if q, err := url.ParseQuery(u.RawQuery); err == nil {
				for _, v := range q["token"] {
					if v != redacted && v != "" {
						t.Fatalf("Redact(%q) = %q keeps token value %q", raw, out, v)
					}
				}
			}
		}
		if token == "" {
			return
		}
		withToken, err := SocketURL(raw, token)
		if err != nil {
			return
		}
		withOther, err := SocketURL(raw, "placeholder-token")
		if err != nil {
			t.Fatalf("SocketURL accepted %q with one token and not another: %v", raw, err)
		}
		got, want := Redact(withToken), Redact(withOther)
		if got != want {
			t.Fatalf("redacted socket URL depends on the token: %q vs %q", got, want)
		}
		if len(token) >= 12 && !strings.Contains(want, token) && strings.Contains(got, token) {
			t.Fatalf("Redact(%q) = %q leaks the token", withToken, got)
		}
	})
}

// FuzzSocketURL checks that SocketURL never panics and that a URL it returns
// has ws/wss, exactly one vsn=2.0.0, the token, and every other parameter.
func FuzzSocketURL(f *testing.F) {
	for _, s := range []string{
		"wss://h/p", "ws://h:1/p?a=1&a=2", "https://h/p?token=old&vsn=1", "wss://h/%zz", "ftp://x", "wss://h/p#f",
	} {
		f.Add(s, "tok")
	}
	f.Fuzz(func(t *testing.T, raw, token string) {
		out, err := SocketURL(raw, token)
		if err != nil {
			if !errors.Is(err, ErrBadURL) {
				t.Fatalf("SocketURL(%q) error %v does not wrap ErrBadURL", raw, err)
			}
			return
		}
		u, err := url.Parse(out)
		if err != nil {
			t.Fatalf("SocketURL(%q) = %q does not parse: %v", raw, out, err)
		}
		if u.Scheme != "ws" && u.Scheme != "wss" {
			t.Fatalf("scheme %q", u.Scheme)
		}
		q := u.Query()
		if v := q["vsn"]; len(v) != 1 || v[0] != protocolVersion {
			t.Fatalf("vsn %q in %q", v, out)
		}
		if token != "" {
			if v := q["token"]; len(v) != 1 || v[0] != token {
				t.Fatalf("token %q in %q, want %q", v, out, token)
			}
		}
		in, _ := url.Parse(raw)
		for k, vs := range in.Query() {
			if k == "token" || k == "vsn" {
				continue
			}
			if strings.Join(q[k], "\x00") != strings.Join(vs, "\x00") {
				t.Fatalf("param %q: %q, want %q", k, q[k], vs)
			}
		}
	})
}
