package transport

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImports enforces the layering: transport knows nothing of
// Phoenix, tokens or the root package.
func TestImports(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	forbidden := map[string]bool{
		"github.com/verastack/telephone":            true,
		"github.com/verastack/telephone/phoenix":    true,
		"github.com/verastack/telephone/tokenstore": true,
	}
	deps := strings.Fields(string(out))
	if len(deps) == 0 || deps[len(deps)-1] != "github.com/verastack/telephone/transport" {
		t.Fatalf("unexpected go list output: %q", deps)
	}
	for _, d := range deps {
		if forbidden[d] {
			t.Errorf("transport depends on %s", d)
		}
	}
}
