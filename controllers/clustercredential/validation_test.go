package clustercredential_test

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
)

// TestSchemaRefusesBadInput sends ClusterCredentials to the real API server (dry run): the CRD's
// schema and CEL rules, and the admission webhook, refuse what could never work, naming the rule.
func TestSchemaRefusesBadInput(t *testing.T) {
	valid := func() *v1alpha1.ClusterCredential {
		return &v1alpha1.ClusterCredential{ObjectMeta: metav1.ObjectMeta{Name: "ci"}, Spec: v1alpha1.ClusterCredentialSpec{
			NamespaceSelector: metav1.LabelSelector{MatchLabels: map[string]string{"ci": "true"}},
			Target:            "ci-token",
			Credential: v1alpha1.CredentialTemplate{
				IssuerRef: v1alpha1.IssuerReference{Kind: v1alpha1.IssuerKindCluster, Name: "github"},
				APIKey:    &v1alpha1.APIKeyLogin{SecretRef: v1alpha1.LocalSecretReference{Name: "login"}},
			},
		}}
	}
	for name, tc := range map[string]struct {
		reason string
		edit   func(*v1alpha1.ClusterCredential)
		want   string // "" accepted
	}{
		"Valid": {reason: "The smallest ClusterCredential.", edit: func(*v1alpha1.ClusterCredential) {}},
		"ByName": {reason: "kubernetes.io/metadata.name names namespaces outright.", edit: func(c *v1alpha1.ClusterCredential) {
			c.Spec.NamespaceSelector = metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpIn, Values: []string{"ci-a", "ci-b"}}}}
		}},
		"EmptySelector": {reason: "An empty selector would copy the token into every namespace.", want: "namespaceSelector must have matchLabels or matchExpressions",
			edit: func(c *v1alpha1.ClusterCredential) { c.Spec.NamespaceSelector = metav1.LabelSelector{} }},
		"NoTarget": {reason: "The Secret name is required.", want: "spec.target",
			edit: func(c *v1alpha1.ClusterCredential) { c.Spec.Target = "" }},
		"BadTarget": {reason: "Not a Secret name: every write would fail.", want: "spec.target",
			edit: func(c *v1alpha1.ClusterCredential) { c.Spec.Target = "CI_Token" }},
		"StateSuffix": {reason: "The suffix names tokenkeeper's state Secrets.", want: "tokenkeeper-state",
			edit: func(c *v1alpha1.ClusterCredential) { c.Spec.Target = "x.tokenkeeper-state" }},
		"TwoLogins": {reason: "One login, as for a Credential.", want: "set exactly one login",
			edit: func(c *v1alpha1.ClusterCredential) {
				c.Spec.Credential.Password = &v1alpha1.PasswordLogin{SecretRef: v1alpha1.LocalSecretReference{Name: "login"}}
			}},
		"NoLogin": {reason: "One login, as for a Credential.", want: "set exactly one login",
			edit: func(c *v1alpha1.ClusterCredential) { c.Spec.Credential.APIKey = nil }},
		"ShortSession": {reason: "The Credential's bounds apply.", want: "sessionDuration must be between",
			edit: func(c *v1alpha1.ClusterCredential) {
				c.Spec.Credential.SessionDuration = &metav1.Duration{Duration: time.Second}
			}},
		"BadOperator": {reason: "The schema takes any operator; the webhook refuses one the manager cannot evaluate.", want: "spec.namespaceSelector",
			edit: func(c *v1alpha1.ClusterCredential) {
				c.Spec.NamespaceSelector = metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "ci", Operator: "Near"}}}
			}},
		"BadTemplate": {reason: "A template that can never render is refused now, not at every renewal.", want: "spec.credential.secretTemplate.data[loop]",
			edit: func(c *v1alpha1.ClusterCredential) {
				c.Spec.Credential.SecretTemplate = &v1alpha1.SecretTemplate{Data: map[string]v1alpha1.BodyTemplate{"loop": "{{ range 6000000 }}{{ .token }}{{ end }}"}}
			}},
		"BadTemplateLabel": {reason: "A label the API server would refuse on every copy.", want: "spec.credential.secretTemplate.labels",
			edit: func(c *v1alpha1.ClusterCredential) {
				c.Spec.Credential.SecretTemplate = &v1alpha1.SecretTemplate{Labels: map[string]string{"bad key!": "x"}}
			}},
		"LongName": {reason: "The name is a label value on every copy.", want: "at most 63 characters",
			edit: func(c *v1alpha1.ClusterCredential) { c.Name = strings.Repeat("n", 64) }},
	} {
		t.Run(name, func(t *testing.T) {
			cc := valid()
			tc.edit(cc)
			err := env.Client.Create(t.Context(), cc, client.DryRunAll)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("%s: refused: %v", tc.reason, err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("%s: got %v, want a refusal naming %q", tc.reason, err, tc.want)
			}
		})
	}
}
