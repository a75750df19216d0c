package jsonstr

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzAppend checks the escaping against encoding/json, with and without HTML escaping.
func FuzzAppend(f *testing.F) {
	for _, s := range []string{"", "a", "<&>", "\u2028", "\u2029", "\xff", "\x00\"\\", "\b\f\n\r\t\x01", "héllo wörld"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := Append(nil, s, true); !bytes.Equal(got, want) {
			t.Fatalf("Append(%q, true) = %s, want %s", s, got, want)
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(s); err != nil {
			t.Fatal(err)
		}
		if got := Append(nil, s, false); !bytes.Equal(got, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))) {
			t.Fatalf("Append(%q, false) = %s, want %s", s, got, buf.Bytes())
		}
	})
}

func TestAppendKeepsPrefix(t *testing.T) {
	if got := string(Append([]byte("x:"), "a<b", false)); got != `x:"a<b"` {
		t.Fatalf("got %s", got)
	}
}
