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

// TestEveryReasonDocumented: every condition and Event reason of the API (the Reason constants
// of api/v1alpha1) has its row in docs/troubleshooting.md, saying what it means and what to do.
func TestEveryReasonDocumented(t *testing.T) {
	root := filepath.Join("..", "..")
	page, err := os.ReadFile(filepath.Join(root, "docs", "troubleshooting.md"))
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(root, "api", "v1alpha1", "*_types.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no API types found: %v", err)
	}
	n := 0
	for _, path := range files {
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(node ast.Node) bool {
			spec, ok := node.(*ast.ValueSpec)
			if !ok || len(spec.Names) != 1 || len(spec.Values) != 1 || !strings.HasPrefix(spec.Names[0].Name, "Reason") {
				return true
			}
			if spec.Doc == nil || !strings.HasPrefix(spec.Doc.Text(), spec.Names[0].Name) {
				t.Errorf("%s (%s) has no doc comment starting with its name: say when it is set and what to do", spec.Names[0].Name, filepath.Base(path))
			}
			lit, ok := spec.Values[0].(*ast.BasicLit)
			if !ok {
				return true
			}
			v, _ := strconv.Unquote(lit.Value)
			n++
			if !strings.Contains(string(page), "| `"+v+"` |") {
				t.Errorf("reason %s (%s) has no row in docs/troubleshooting.md", v, filepath.Base(path))
			}
			return true
		})
	}
	if n < 20 {
		t.Fatalf("found only %d reasons", n)
	}
}
