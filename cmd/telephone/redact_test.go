package main

import (
	"strings"
	"testing"

	"github.com/verastack/telephone/telephonetest"
)

// secretEnv is a .env body whose secrets must never appear in an error or a log line.
const secretEnv = "TELEPHONE_TOKEN=eyJ.secret-token.sig\nSECRET_KEY_BASE=secret-key-base-0123456789abcdef0123\n"

// TestDotenvErrorsNeverShowContent checks that a malformed .env line is reported by its line
// number and the kind of problem, never with the file's content.
func TestDotenvErrorsNeverShowContent(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, file, want string
	}{
		{"unterminated quote", "A=1\nB=\"open\n" + secretEnv, "--env: parse .env: line 2: unterminated quoted value"},
		{"bad name", "A=1\n" + secretEnv + "BAD-NAME=x\n" + secretEnv, "--env: parse .env: line 4: unexpected character in variable name"},
		{"quote on the first line", "X='never closed\n" + secretEnv, "--env: parse .env: line 1: unterminated quoted value"},
		{"after a multi-line value", "M=\"a\nb\"\n" + secretEnv + "PASSWORD-=x\n", "--env: parse .env: line 5: unexpected character in variable name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, errs := load(base(), map[string]string{".env": tt.file})
			if got := errStrings(errs); len(got) != 1 || got[0] != tt.want {
				t.Fatalf("errors = %q, want %q", got, tt.want)
			}
			if msg := errs[0].Error(); strings.Contains(msg, "secret") || strings.Contains(msg, "open") {
				t.Errorf("the error shows the file's content: %s", msg)
			}
		})
	}
}

// TestReloadDotenvErrorNeverShowsContent checks the same on a SIGHUP reload: the log line
// names the line, not the secrets after it.
func TestReloadDotenvErrorNeverShowsContent(t *testing.T) {
	t.Parallel()
	r, logs, _, env := newTestRunner(t, nil)
	r.reload(load(env, map[string]string{".env": "A=\"open\n" + secretEnv}))
	line := logs.waitLine(t, "reload: invalid configuration")
	if !strings.Contains(line, "line 1: unterminated quoted value") || strings.Contains(logs.String(), "secret") {
		t.Errorf("reload logged %s", logs.String())
	}
}

// TestStartLogRedactsURLs checks that the start-up log line shows neither a userinfo password
// nor a token-like query parameter of PLUGBOARD_URL or BACKEND_URL.
func TestStartLogRedactsURLs(t *testing.T) {
	t.Parallel()
	_, logs, _, _ := newTestRunner(t, func(srv *telephonetest.Server, env map[string]string) {
		env["PLUGBOARD_URL"] = strings.Replace(srv.SocketURL(), "ws://", "ws://user:pw-secret@", 1) + "?vsn=2.0.0&access_token=at-secret&api_key=key-secret"
		env["BACKEND_URL"] = "http://admin:backend-secret@127.0.0.1:1"
	})
	line := logs.waitLine(t, "telephone starting")
	if strings.Contains(line, "secret") || !strings.Contains(line, "vsn=2.0.0") {
		t.Errorf("start-up log line: %s", line)
	}
}
