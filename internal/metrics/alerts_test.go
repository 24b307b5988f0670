package metrics_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// The chart's alert rules, rendered as `helm install` would, do what each alert says: promtool
// evaluates them over the series in testdata/alerts, which reproduce issue #27's findings (one
// tenant's failures paging another's healthy token at a same-named Issuer, an expired token
// unseen after a restart, a policy decision blamed on the manager, a Credential that never got a
// token). Every alert is exercised by some test file.
func TestAlertRules(t *testing.T) {
	promtool := os.Getenv("PROMTOOL")
	if promtool == "" {
		t.Skip("PROMTOOL is not set: `make test` builds promtool into bin/ and runs this test with it")
	}
	helm := os.Getenv("HELM")
	if helm == "" {
		t.Fatal("HELM is not set: run the tests with `make test`, which builds helm into bin/")
	}
	out, err := exec.CommandContext(t.Context(), helm, "template", "tokenkeeper", "../../charts/tokenkeeper", "--namespace", "tokenkeeper-system",
		"--set", "metrics.prometheusRule.enabled=true", "--show-only", "templates/monitoring.yaml").CombinedOutput()
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, out)
	}
	var rule struct {
		Kind string `json:"kind"`
		Spec struct {
			Groups json.RawMessage `json:"groups"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(out, &rule); err != nil || rule.Kind != "PrometheusRule" {
		t.Fatalf("the chart rendered no PrometheusRule (%v):\n%s", err, out)
	}
	var groups []struct {
		Rules []struct {
			Alert string `json:"alert"`
		} `json:"rules"`
	}
	if err := json.Unmarshal(rule.Spec.Groups, &groups); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	rules, _ := json.Marshal(map[string]json.RawMessage{"groups": rule.Spec.Groups})
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), rules, 0o600); err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob("testdata/alerts/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no test files in testdata/alerts (%v)", err)
	}
	var names, all []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, string(data))
		names = append(names, filepath.Base(f))
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, g := range groups {
		for _, r := range g.Rules {
			if r.Alert != "" && !strings.Contains(strings.Join(all, "\n"), "alertname: "+r.Alert+"\n") {
				t.Errorf("alert %s is tested by no file in testdata/alerts", r.Alert)
			}
		}
	}

	cmd := exec.CommandContext(t.Context(), promtool, append([]string{"test", "rules"}, names...)...)
	cmd.Dir = dir
	out, err = cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
	t.Logf("promtool test rules:\n%s", out)
}
