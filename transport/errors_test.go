package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestUpgradeError(t *testing.T) {
	t.Parallel()
	cause := errors.New("cause")
	tests := []struct {
		name      string
		err       *UpgradeError
		permanent bool
		text      []string
	}{
		{"403", &UpgradeError{StatusCode: 403, URL: "wss://h/p?token=REDACTED", Err: cause}, true,
			[]string{"HTTP 403 Forbidden", "token refused", "wss://h/p?token=REDACTED"}},
		{"401", &UpgradeError{StatusCode: 401, Err: cause}, true, []string{"HTTP 401 Unauthorized"}},
		{"503", &UpgradeError{StatusCode: 503, RetryAfter: time.Second}, false, []string{"HTTP 503 Service Unavailable"}},
		{"308", &UpgradeError{StatusCode: 308, Location: "wss://other/"}, false, []string{"redirected to wss://other/"}},
		{"unknown status", &UpgradeError{StatusCode: 599}, false, []string{"HTTP 599"}},
		{"404 hints at the socket path", &UpgradeError{StatusCode: 404, URL: "wss://h/socket"}, false,
			[]string{"HTTP 404 Not Found", "/telephone/websocket"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.err.Permanent() != tt.permanent || errors.Is(tt.err, ErrUnauthorized) != tt.permanent {
				t.Fatalf("Permanent/Is(ErrUnauthorized) = %v/%v, want %v", tt.err.Permanent(), errors.Is(tt.err, ErrUnauthorized), tt.permanent)
			}
			if errors.Is(tt.err, ErrBadURL) {
				t.Fatal("UpgradeError matches an unrelated sentinel")
			}
			if errors.Unwrap(tt.err) != tt.err.Err {
				t.Fatal("Unwrap does not return Err")
			}
			wrapped := fmt.Errorf("session: %w", tt.err)
			if IsPermanent(wrapped) != tt.permanent {
				t.Fatalf("IsPermanent(wrapped) = %v", IsPermanent(wrapped))
			}
			for _, want := range tt.text {
				if !strings.Contains(tt.err.Error(), want) {
					t.Fatalf("Error() = %q, want it to contain %q", tt.err.Error(), want)
				}
			}
		})
	}
}

func TestCloseCodeAndError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		code int
		text string
	}{
		{"nil", nil, -1, ""},
		{"other", errors.New("x"), -1, "x"},
		{"direct", &CloseError{Code: 1012, Reason: "restart"}, 1012, `code 1012 ("restart")`},
		{"wrapped", fmt.Errorf("read: %w", &CloseError{Code: 1000}), 1000, "code 1000"},
	}
	for _, tt := range tests {
		if got := CloseCode(tt.err); got != tt.code {
			t.Errorf("%s: CloseCode = %d, want %d", tt.name, got, tt.code)
		}
		if tt.err != nil && !strings.Contains(tt.err.Error(), tt.text) {
			t.Errorf("%s: Error() = %q, want %q inside", tt.name, tt.err.Error(), tt.text)
		}
	}
}

func TestDialErrorNeverPermanent(t *testing.T) {
	t.Parallel()
	err := &DialError{URL: "wss://h/", Err: context.DeadlineExceeded}
	if err.Permanent() || IsPermanent(err) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatal("DialError must be non-permanent and unwrap to its cause")
	}
	if IsPermanent(nil) || IsPermanent(errors.New("plain")) {
		t.Fatal("IsPermanent of a plain error")
	}
}

func TestScrub(t *testing.T) {
	t.Parallel()
	secret := "s3cr3t/t+k"
	opErr := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	ue := &url.Error{Op: "Get", URL: "http://h/?token=" + url.QueryEscape(secret), Err: opErr}
	err := scrub(fmt.Errorf("outer %s: %w", secret, ue), []string{"", secret})
	assertNoToken(t, err, secret)
	assertNoToken(t, err, url.QueryEscape(secret))
	if !errors.Is(err, opErr) {
		t.Fatal("scrubbed error lost its cause")
	}
	if !strings.Contains(err.Error(), "outer REDACTED") {
		t.Fatalf("Error() = %q", err.Error())
	}
	if clean := errors.New("clean"); scrub(clean, []string{secret}) != clean {
		t.Fatal("a clean error must be returned unchanged")
	}
	if scrub(nil, []string{secret}) != nil {
		t.Fatal("scrub(nil) != nil")
	}
	// No layer of the chain is clean: the cause is dropped rather than leaked.
	leaky := fmt.Errorf("a %s: %w", secret, errors.New("b "+secret))
	got := scrub(leaky, []string{secret})
	assertNoToken(t, got, secret)
	if errors.Unwrap(got) != nil {
		t.Fatal("leaky cause kept")
	}
}
