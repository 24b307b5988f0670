//go:build e2e

package e2e_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/testenv"
)

// plugin: kubectl finds kubectl-tokenkeeper on PATH; `kubectl tokenkeeper status` shows every
// Credential Ready, `renew --wait` brings a new token, `inspect` describes its Secret without the
// token, and `policy` answers for the namespace.
func (s *suite) plugin(t *testing.T) {
	dir := t.TempDir()
	build := exec.CommandContext(t.Context(), "go", "build", "-o", filepath.Join(dir, "kubectl-tokenkeeper"), "./cmd/kubectl-tokenkeeper")
	build.Dir = testenv.RepoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the plugin: %v\n%s", err, out)
	}
	plugin := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(t.Context(), "kubectl", append([]string{"tokenkeeper"}, args...)...)
		cmd.Env = append(os.Environ(), "PATH="+dir+string(os.PathListSeparator)+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl tokenkeeper %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	list := &v1alpha1.CredentialList{}
	if err := s.c.List(t.Context(), list, client.InNamespace(appNS)); err != nil || len(list.Items) == 0 {
		t.Fatalf("listing Credentials: %v (%d)", err, len(list.Items))
	}
	out := plugin("status", "-n", appNS)
	for _, cr := range list.Items {
		if !strings.Contains(out, cr.Name) {
			t.Errorf("status lacks %s:\n%s", cr.Name, out)
		}
	}
	if strings.Contains(out, "False") {
		t.Errorf("a Credential is not Ready:\n%s", out)
	}
	cred := list.Items[0]
	out = plugin("renew", cred.Name, "-n", appNS, "--wait", "--timeout", "90s")
	if !strings.Contains(out, "credential/"+cred.Name+" renewed: token expires") {
		t.Errorf("renew --wait:\n%s", out)
	}
	sec := &corev1.Secret{}
	if err := s.c.Get(t.Context(), types.NamespacedName{Namespace: appNS, Name: cred.Spec.SecretName}, sec); err != nil {
		t.Fatal(err)
	}
	out = plugin("inspect", cred.Spec.SecretName, "-n", appNS)
	if !strings.Contains(out, "FINGERPRINT") || !strings.Contains(out, "Credential:  "+cred.Name) {
		t.Errorf("inspect:\n%s", out)
	}
	for k, v := range sec.Data {
		if len(v) >= 32 && strings.Contains(out, string(v)) { // tokens, not timestamps
			t.Errorf("inspect shows the value of %s:\n%s", k, out)
		}
	}
	if out = plugin("policy", appNS); !strings.Contains(out, "sessionDuration.max") {
		t.Errorf("policy:\n%s", out)
	}
}
