package main

import (
	"net/http"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestMisspeltVariables(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"BACKEND_PROT":     "8080", // transposition
		"HEALTHCHECK_PORT": "8081", // missing underscore
		"backend_host":     "x",    // case
		"PLUGBOARD_URI":    "ws://x",
		"PATH":             "/bin", "HOME": "/root", "HOSTNAME": "h", "KUBERNETES_PORT": "tcp://10.0.0.1:443",
		"NO_COLOR": "1", "TERM": "xterm", "LANG": "C.UTF-8", "SHLVL": "1", "token": "t", "LOG_LEVEL": "info",
	}
	dotenv := map[string]string{"REQUEST_TIMOUT": "5s", "MY_APP_SETTING": "1"}
	got := misspelt(env, dotenv, "app.env")
	want := []string{
		"BACKEND_PROT (from environment) is not a telephone variable and is ignored: did you mean BACKEND_PORT?",
		"HEALTHCHECK_PORT (from environment) is not a telephone variable and is ignored: did you mean HEALTH_CHECK_PORT?",
		"PLUGBOARD_URI (from environment) is not a telephone variable and is ignored: did you mean PLUGBOARD_URL?",
		"backend_host (from environment) is not a telephone variable and is ignored: did you mean BACKEND_HOST?",
		"REQUEST_TIMOUT (from app.env) is not a telephone variable and is ignored: did you mean REQUEST_TIMEOUT?",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("warnings:\n got %q\nwant %q", got, want)
	}
}

func TestEditDistance(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"A", "", 1}, {"", "AB", 2}, {"ABC", "ABC", 0},
		{"BACKEND_PROT", "BACKEND_PORT", 1}, {"KITTEN", "SITTING", 3}, {"CA", "ABC", 3},
	} {
		if got := editDistance(tt.a, tt.b); got != tt.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

// TestRunLogging checks what run logs: the misspelt-variable warning, an info access line per
// request with ACCESS_LOG (and no other debug line), and durations as text in JSON.
func TestRunLogging(t *testing.T) {
	t.Parallel()
	srv := newPlugboard(t)
	env, tok := runEnv(t, srv, okBackend(t, "hello").URL, "BACKEND_PROT", "9", "ACCESS_LOG", "true", "LOG_FORMAT", "json")
	tc := newTestCLI(env, nil)
	code := tc.start("run")
	warn := tc.errOut.waitLine(t, "did you mean BACKEND_PORT?")
	if logField(t, warn, "level") != "WARN" {
		t.Errorf("warning line %q", warn)
	}
	waitJoined(t, srv, tok.PathID)
	if c, _, body := get(t, http.MethodGet, srv.CallURL(tok.PathID)+"/a/b?q=1", nil); c != 200 || body != "hello" {
		t.Fatalf("call: %d %q", c, body)
	}
	line := tc.errOut.waitLine(t, accessMessage)
	for k, want := range map[string]any{"level": "INFO", "method": "GET", "path": "/a/b", "status": 200.0, "bytes": 5.0} {
		if got := logField(t, line, k); got != want {
			t.Errorf("access line %s = %v, want %v (%s)", k, got, want, line)
		}
	}
	if _, err := time.ParseDuration(logField(t, line, "elapsed").(string)); err != nil || logField(t, line, "request_id") == nil {
		t.Errorf("access line %q: elapsed must be a duration string, request_id set (%v)", line, err)
	}
	tc.sigs <- syscall.SIGTERM
	if c := waitCode(t, code); c != 0 {
		t.Fatalf("exit %d\n%s", c, tc.errOut)
	}
	if grace := logField(t, tc.errOut.waitLine(t, "shutting down"), "grace"); grace != "30s" {
		t.Errorf("grace = %#v, want \"30s\"", grace)
	}
	if strings.Contains(tc.errOut.String(), `"level":"DEBUG"`) {
		t.Errorf("a debug line was logged at level info:\n%s", tc.errOut)
	}
}
