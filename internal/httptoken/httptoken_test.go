package httptoken

import "testing"

func TestValid(t *testing.T) {
	for _, s := range []string{"X-Custom", "content-type", "a", "!#$%&'*+-.^_`|~09AZaz", "chat.v1"} {
		if !Valid(s) {
			t.Errorf("Valid(%q) = false, want true", s)
		}
	}
	for _, s := range []string{"", "a b", "a:b", "a\tb", "a\x00", "é", "a\x7f", `a"b`, "a(b)", "a/b", "a;b", "a=b", "a?b", "a@b", "a[b]", `a\b`, "a{b}", "a,b", "a<b>"} {
		if Valid(s) {
			t.Errorf("Valid(%q) = true, want false", s)
		}
	}
}
