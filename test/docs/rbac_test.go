package docs_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

// TestEveryPermissionDocumented: every verb the manager's ClusterRole grants (config/rbac/role.yaml,
// generated from the code's markers) has its row in docs/security.md ("What each permission is
// for"), naming the API group, the resource and the verb, so that a new permission cannot ship
// without saying why.
func TestEveryPermissionDocumented(t *testing.T) {
	root := filepath.Join("..", "..")
	raw, err := os.ReadFile(filepath.Join(root, "config", "rbac", "role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var role rbacv1.ClusterRole
	if err := yaml.Unmarshal(raw, &role); err != nil {
		t.Fatal(err)
	}
	page, err := os.ReadFile(filepath.Join(root, "docs", "security.md"))
	if err != nil {
		t.Fatal(err)
	}
	// The table's rows: | group | resources | verbs | why |
	var rows [][]string
	for _, line := range strings.Split(string(page), "\n") {
		cells := strings.Split(line, "|")
		if len(cells) >= 5 && strings.HasPrefix(line, "|") {
			rows = append(rows, cells[1:4])
		}
	}
	n := 0
	for _, rule := range role.Rules {
		for _, group := range rule.APIGroups {
			want := "`" + group + "`"
			if group == "" {
				want = "core"
			}
			for _, res := range rule.Resources {
				for _, verb := range rule.Verbs {
					n++
					found := false
					for _, r := range rows {
						if strings.TrimSpace(r[0]) == want && strings.Contains(r[1], "`"+res+"`") && strings.Contains(r[2], "`"+verb+"`") {
							found = true
							break
						}
					}
					if !found {
						t.Errorf("docs/security.md has no row for %s %s %s (config/rbac/role.yaml)", want, res, verb)
					}
				}
			}
		}
	}
	if n < 20 {
		t.Fatalf("found only %d permissions in config/rbac/role.yaml", n)
	}
}
