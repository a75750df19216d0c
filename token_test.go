package telephone

import (
	"testing"
	"time"

	"github.com/verastack/telephone/internal/plugtoken"
)

func TestParseTokenCopiesEveryClaim(t *testing.T) {
	t.Parallel()
	iat := time.Unix(1_700_000_000, 0)
	want := plugtoken.Claims{Subject: "sub-1", ID: "jti-1", PathID: "path-1", IssuedAt: iat, ExpiresAt: iat.Add(time.Hour)}
	jwt, err := plugtoken.Sign(want, []byte("key"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseToken(jwt)
	if err != nil {
		t.Fatal(err)
	}
	if got.Subject != want.Subject || got.ID != want.ID || got.PathID != want.PathID ||
		!got.IssuedAt.Equal(want.IssuedAt) || !got.ExpiresAt.Equal(want.ExpiresAt) {
		t.Fatalf("ParseToken = %+v, want %+v", got, want)
	}
}
