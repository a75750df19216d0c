package binframe

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestLayouts(t *testing.T) {
	t.Parallel()
	p := []byte{0xCA, 0xFE}
	for name, c := range map[string]struct {
		got  func() ([]byte, error)
		want []byte
	}{
		"push":        {func() ([]byte, error) { return Push("1", "22", "t", "ev", p) }, append([]byte{0, 1, 2, 1, 2}, "122tev\xca\xfe"...)},
		"server push": {func() ([]byte, error) { return ServerPush("1", "t", "ev", p) }, append([]byte{0, 1, 1, 2}, "1tev\xca\xfe"...)},
		"reply":       {func() ([]byte, error) { return Reply("1", "7", "t", "ok", p) }, append([]byte{1, 1, 1, 1, 2}, "17tok\xca\xfe"...)},
		"broadcast":   {func() ([]byte, error) { return Broadcast("t", "ev", nil) }, append([]byte{2, 1, 2}, "tev"...)},
	} {
		got, err := c.got()
		if err != nil || !bytes.Equal(got, c.want) {
			t.Errorf("%s: % x, %v; want % x", name, got, err, c.want)
		}
	}
}

func TestFieldTooLong(t *testing.T) {
	t.Parallel()
	if _, err := Push("", "", strings.Repeat("x", 256), "e", nil); !errors.Is(err, ErrFieldTooLong) {
		t.Fatalf("256-byte topic: %v", err)
	}
	if _, err := Push("", "", strings.Repeat("x", 255), "e", nil); err != nil {
		t.Fatalf("255-byte topic: %v", err)
	}
}
