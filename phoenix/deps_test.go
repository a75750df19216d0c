package phoenix

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies: phoenix uses the standard library only, and in particular neither
// net/http nor any WebSocket library. The one exception is internal/jsonstr, the JSON string
// escaper phoenix shares with the root package; its own imports are checked here as well.
func TestDependencies(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}} {{.Standard}}", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) < 10 {
		t.Fatalf("go list returned too little to be trusted: %q", out)
	}
	const self = "github.com/verastack/telephone/phoenix"
	for _, line := range lines {
		path, std, _ := strings.Cut(line, " ")
		switch {
		case path == self, path == "github.com/verastack/telephone/internal/jsonstr":
		case path == "net/http" || strings.HasPrefix(path, "net/http/"):
			t.Errorf("phoenix imports %s", path)
		case strings.Contains(strings.ToLower(path), "websocket"):
			t.Errorf("phoenix imports a WebSocket library: %s", path)
		case std != "true":
			t.Errorf("phoenix imports %s, which is outside the standard library", path)
		}
	}
}
