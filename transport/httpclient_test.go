package transport

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestNewHTTPClientKeepsRedirectsAndTLSRules(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.RedirectHandler("https://elsewhere.example/", http.StatusFound))
	defer srv.Close()
	c, err := NewHTTPClient(Options{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusFound {
		t.Fatalf("redirect followed: %d", res.StatusCode)
	}
	if _, err := NewHTTPClient(Options{CAFile: "/nonexistent/ca.pem"}); !errors.Is(err, ErrTLSConfig) {
		t.Fatalf("bad CA file: %v", err)
	}
	own := &http.Client{}
	if c, _ := NewHTTPClient(Options{HTTPClient: own}); c != own {
		t.Fatal("HTTPClient option not returned")
	}
}
