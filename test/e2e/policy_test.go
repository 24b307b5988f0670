//go:build e2e

package e2e_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/testenv"
)

// policy: a TokenPolicy caps session durations in one namespace; kubectl apply of a Credential
// asking for more is refused with a message naming the field, and one within the cap is accepted.
func (s *suite) policy(t *testing.T) {
	const ns = "e2e-policy"
	labels := map[string]string{"tokenkeeper.io/e2e": "policy"}
	s.create(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: labels}})
	pol := &v1alpha1.TokenPolicy{ObjectMeta: metav1.ObjectMeta{Name: "e2e-max-1h"}, Spec: v1alpha1.TokenPolicySpec{
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: labels},
		SessionDuration:   &v1alpha1.SessionDurationPolicy{Max: &metav1.Duration{Duration: time.Hour}},
	}}
	s.create(t, pol)
	t.Cleanup(func() {
		_ = s.c.Delete(t.Context(), pol)
		_ = s.c.Delete(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	})

	manifest := func(session time.Duration) string {
		cred := &v1alpha1.Credential{
			TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "Credential"},
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reports"},
			Spec: v1alpha1.CredentialSpec{IssuerRef: v1alpha1.IssuerReference{Name: "crm"}, SecretName: "reports-token",
				Password:        &v1alpha1.PasswordLogin{SecretRef: v1alpha1.LocalSecretReference{Name: "crm-login"}},
				SessionDuration: &metav1.Duration{Duration: session}},
		}
		b, err := json.Marshal(cred)
		if err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(t.TempDir(), "credential.json")
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}

	tooLong := manifest(2 * time.Hour)
	var refusal string
	// Each replica's webhook sees the new policy within seconds.
	testenv.WaitFor(t, 30*time.Second, "kubectl apply refused", func() (bool, string) {
		out, err := kubectl(t, "apply", "-f", tooLong)
		if err == nil {
			_, _ = kubectl(t, "delete", "-f", tooLong, "--wait=false")
			return false, "accepted: " + out
		}
		refusal = out
		return strings.Contains(out, "spec.sessionDuration") && strings.Contains(out, "denied the request"), out
	})
	t.Logf("kubectl apply of a 2h session: %s", refusal)
	if out, err := kubectl(t, "apply", "--dry-run=server", "-f", manifest(30*time.Minute)); err != nil {
		t.Errorf("a 30m session within the policy was refused: %s", out)
	}
	cred := &v1alpha1.Credential{}
	if err := s.c.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "reports"}, cred); err == nil {
		t.Error("the refused Credential exists")
	}
}
