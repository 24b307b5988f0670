package docs_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestWellKnownNamesDocumented: every name tokenkeeper writes on objects (the constants of
// api/v1alpha1/wellknown.go) is in the Credentials concept page, so the documented API cannot
// fall behind the code.
func TestWellKnownNamesDocumented(t *testing.T) {
	root := filepath.Join("..", "..")
	page, err := os.ReadFile(filepath.Join(root, "docs", "concepts", "credentials.md"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(root, "api", "v1alpha1", "wellknown.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	ast.Inspect(f, func(node ast.Node) bool {
		lit, ok := node.(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			return true
		}
		v, _ := strconv.Unquote(lit.Value)
		n++
		if !strings.Contains(string(page), "`"+v) && !strings.Contains(string(page), v+"`") && !strings.Contains(string(page), " "+v+"`") {
			t.Errorf("%q (api/v1alpha1/wellknown.go) is not in docs/concepts/credentials.md", v)
		}
		return true
	})
	if n < 10 {
		t.Fatalf("found only %d names in wellknown.go", n)
	}
}
