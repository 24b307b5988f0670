package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestPluginLinksNoController keeps the plugin on the login engine (internal/login) rather than
// the controllers: a reconciler half-built for a terminal turned each new field into a nil
// dereference in the CLI, and the metrics package's init registered collectors in it.
func TestPluginLinksNoController(t *testing.T) {
	out, err := exec.CommandContext(t.Context(), "go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	forbidden := []struct{ pkg, why string }{
		{"github.com/tokenkeeper/tokenkeeper/controllers/", "controllers are the manager's; the plugin calls internal/login"},
		{"sigs.k8s.io/controller-runtime/pkg/manager", "the plugin runs no manager"},
		{"github.com/tokenkeeper/tokenkeeper/internal/metrics", "its init registers the manager's collectors"},
		{"github.com/tokenkeeper/tokenkeeper/internal/failpoint", "crash points are the manager's tests'"},
	}
	for _, d := range deps {
		for _, f := range forbidden {
			if d == f.pkg || strings.HasSuffix(f.pkg, "/") && strings.HasPrefix(d, f.pkg) {
				t.Errorf("kubectl-tokenkeeper links %s: %s", d, f.why)
			}
		}
	}
	if !slices.Contains(deps, "github.com/tokenkeeper/tokenkeeper/internal/login") {
		t.Errorf("kubectl-tokenkeeper does not link internal/login: the test-issuer and validate commands must run the engine")
	}
}
