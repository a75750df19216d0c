package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

func TestBuildInfo(t *testing.T) {
	t.Parallel()
	vcs := []debug.BuildSetting{
		{Key: "vcs.revision", Value: "0123456789abcdef0123"},
		{Key: "vcs.time", Value: "2025-01-01T00:00:00Z"},
		{Key: "vcs.modified", Value: "true"},
	}
	tests := []struct {
		name     string
		ld, ldc  string
		bi       debug.BuildInfo
		want     buildInfo
		wantText string
	}{
		{"ldflags", "v1.2.3", "fedcba9876543210", debug.BuildInfo{GoVersion: "go1.26", Main: debug.Module{Version: "v0.9.0"}},
			buildInfo{Version: "v1.2.3", Module: modulePath, Commit: "fedcba9876543210", GoVersion: "go1.26"}, "telephone v1.2.3 (commit fedcba987654) go1.26"},
		{"go install", "dev", "", debug.BuildInfo{GoVersion: "go1.26", Main: debug.Module{Path: "example.com/fork", Version: "v0.9.0"}},
			buildInfo{Version: "v0.9.0", Module: "example.com/fork", GoVersion: "go1.26"}, "telephone v0.9.0 (commit unknown) go1.26"},
		{"go install pseudo-version", "dev", "", debug.BuildInfo{GoVersion: "go1.26", Main: debug.Module{Version: "v0.0.0-20261130103000-0123456789ab"}},
			buildInfo{Version: "v0.0.0-20261130103000-0123456789ab", Module: modulePath, Commit: "0123456789ab", GoVersion: "go1.26"},
			"telephone v0.0.0-20261130103000-0123456789ab (commit 0123456789ab) go1.26"},
		{"checkout", "dev", "", debug.BuildInfo{GoVersion: "go1.26", Main: debug.Module{Version: "(devel)"}, Settings: vcs},
			buildInfo{Version: "dev", Module: modulePath, Commit: "0123456789abcdef0123", CommitAt: "2025-01-01T00:00:00Z", Modified: true, GoVersion: "go1.26"},
			"telephone dev (commit 0123456789ab-dirty) go1.26"},
		{"short commit", "dev", "", debug.BuildInfo{GoVersion: "go1.26", Settings: vcs[:1:1]},
			buildInfo{Version: "dev", Module: modulePath, Commit: "0123456789abcdef0123", GoVersion: "go1.26"}, "telephone dev (commit 0123456789ab) go1.26"},
		{"nothing recorded", "dev", "", debug.BuildInfo{GoVersion: "go1.26", Main: debug.Module{Version: "(devel)"}},
			buildInfo{Version: "dev", Module: modulePath, GoVersion: "go1.26"}, "telephone dev (commit unknown) go1.26"},
	}
	for _, tt := range tests {
		got := fromBuildInfo(tt.ld, tt.ldc, &tt.bi)
		if got != tt.want {
			t.Errorf("%s: %+v, want %+v", tt.name, got, tt.want)
		}
		if got.String() != tt.wantText {
			t.Errorf("%s: %q, want %q", tt.name, got.String(), tt.wantText)
		}
	}
	if v := readBuildInfo(); v.GoVersion == "" || v.Version == "" {
		t.Errorf("readBuildInfo = %+v", v)
	}
}

func TestVersionBinary(t *testing.T) {
	t.Parallel()
	// TestMain builds the binary with -buildvcs=false and the ldflags that make build uses.
	for _, arg := range []string{"version", "--version", "-v"} {
		p := startBinary(t, nil, arg)
		want := "telephone " + testBuildVersion + " (commit " + testBuildCommit[:12] + ") go"
		if c := p.wait(t); c != 0 || !strings.HasPrefix(p.out.String(), want) {
			t.Errorf("%s: %d %q, want prefix %q", arg, c, p.out, want)
		}
	}
}

func TestLoggerFormats(t *testing.T) {
	t.Parallel()
	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if isTerminal(f) {
		t.Fatal("a regular file is not a terminal")
	}
	level := new(slog.LevelVar)
	for _, tt := range []struct{ format, want string }{
		{"json", `"msg":"hello"`},
		{"auto", `"msg":"hello"`},
		{"text", "INF hello"},
	} {
		buf := newLineBuf()
		newLogger(buf, logConfig{Format: tt.format, Level: level}).Info("hello")
		if !strings.Contains(buf.String(), tt.want) {
			t.Errorf("%s: %q lacks %q", tt.format, buf, tt.want)
		}
	}
}

// TestLoggerColour checks that text logs on a terminal are coloured unless NO_COLOR is set.
func TestLoggerColour(t *testing.T) {
	t.Parallel()
	level := new(slog.LevelVar)
	for _, tt := range []struct {
		lc     logConfig
		colour bool
	}{
		{logConfig{Level: level, Terminal: true}, true},
		{logConfig{Level: level, Terminal: true, NoColor: true}, false},
		{logConfig{Format: "text", Level: level}, false},
	} {
		buf := newLineBuf()
		newLogger(buf, tt.lc).Warn("hello")
		if got := strings.Contains(buf.String(), "\x1b["); got != tt.colour || !strings.Contains(buf.String(), "hello") {
			t.Errorf("%+v: %q, want colour %v", tt.lc, buf, tt.colour)
		}
	}
	tc := newTestCLI(map[string]string{"NO_COLOR": "1"}, nil)
	if !tc.noColor() {
		t.Error("NO_COLOR=1 not honoured")
	}
	if newTestCLI(map[string]string{"NO_COLOR": ""}, nil).noColor() {
		t.Error("an empty NO_COLOR must not turn colours off (no-color.org)")
	}
}
