package resolve_test

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/resolve"
	"github.com/tokenkeeper/tokenkeeper/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, &env) }

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Against a real API server (uncached reads, as the webhooks make them): every "cannot proceed
// until someone changes something" comes back as one *Blocked error with its condition reason and
// the field, whoever asks — a Credential, a TokenValidator (spec nil) or admission.
func TestBlockedReasons(t *testing.T) {
	ctx := t.Context()
	c := env.Client
	for _, ns := range []string{"shop", "tokenkeeper-system"} {
		must(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"team": "a"}}}))
	}
	r := &resolve.Resolver{Client: c, APIReader: c, ClusterResourceNamespace: "tokenkeeper-system"}
	blocked := func(t *testing.T, err error, reason v1alpha1.ConditionReason, msg string) {
		t.Helper()
		b, ok := resolve.AsBlocked(err)
		if !ok || b.Reason != reason || b.Message != msg {
			t.Fatalf("got %v, want Blocked %s %q", err, reason, msg)
		}
	}

	_, err := r.Issuer(ctx, "shop", v1alpha1.IssuerReference{Name: "nope"})
	blocked(t, err, v1alpha1.ReasonIssuerNotFound, `Issuer "nope" not found`)
	_, err = r.Issuer(ctx, "shop", v1alpha1.IssuerReference{Kind: v1alpha1.IssuerKindCluster, Name: "nope"})
	blocked(t, err, v1alpha1.ReasonIssuerNotFound, `ClusterIssuer "nope" not found`)

	// A ClusterIssuer's CA ConfigMap defaults to the cluster resource namespace; binaryData is
	// read as well as data; headers name their field when their Secret is missing.
	must(t, c.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "tokenkeeper-system", Name: "roots"},
		BinaryData: map[string][]byte{"ca.crt": []byte("PEM")}}))
	iss := &v1alpha1.ClusterIssuer{ObjectMeta: metav1.ObjectMeta{Name: "corp"}, Spec: v1alpha1.IssuerSpec{
		CABundleFrom: &v1alpha1.CABundleSource{ConfigMapKeyRef: &v1alpha1.ConfigMapKeySelector{Name: "roots", Key: "ca.crt"}},
	}}
	in, err := r.IssuerInputs(ctx, iss)
	if err != nil || in.CABundle != "PEM" || len(in.Versions) != 1 {
		t.Fatalf("IssuerInputs = %+v, %v; want the ConfigMap's binaryData and its version", in, err)
	}
	if refs := resolve.IssuerReferences(iss, "tokenkeeper-system"); len(refs) != 1 || refs[0] != "ConfigMap/tokenkeeper-system/roots" {
		t.Errorf("IssuerReferences = %v", refs)
	}
	iss.Spec.Headers = []v1alpha1.Header{{Name: "Api-Key", ValueFrom: &v1alpha1.HeaderValueSource{SecretKeyRef: v1alpha1.SecretKeySelector{Name: "key", Key: "k"}}}}
	_, err = r.IssuerInputs(ctx, iss)
	blocked(t, err, v1alpha1.ReasonSecretNotFound, "headers[Api-Key]: Secret tokenkeeper-system/key not found")

	// A policy whose namespaceSelector cannot be read (possible when it was written while the
	// webhook was down) blocks everyone it might apply to, naming it; a limit broken by a
	// Credential's spec names the policy and field.
	must(t, c.Create(ctx, &v1alpha1.TokenPolicy{ObjectMeta: metav1.ObjectMeta{Name: "strict"}, Spec: v1alpha1.TokenPolicySpec{
		SessionDuration: &v1alpha1.SessionDurationPolicy{Max: &metav1.Duration{Duration: 3600e9}}}}))
	_, err = r.Policy(ctx, "shop", &v1alpha1.CredentialSpec{SessionDuration: &metav1.Duration{Duration: 7200e9}})
	if b, ok := resolve.AsBlocked(err); !ok || b.Reason != v1alpha1.ReasonPolicyViolation {
		t.Fatalf("a session over the maximum: %v, want PolicyViolation", err)
	}
	must(t, c.Create(ctx, &v1alpha1.TokenPolicy{ObjectMeta: metav1.ObjectMeta{Name: "broken"}, Spec: v1alpha1.TokenPolicySpec{
		NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "team", Operator: metav1.LabelSelectorOpIn}}}}}))
	for _, spec := range []*v1alpha1.CredentialSpec{nil, {}} {
		_, err = r.Policy(ctx, "shop", spec)
		b, ok := resolve.AsBlocked(err)
		if !ok || b.Reason != v1alpha1.ReasonPolicyViolation || b.Message[:len(`TokenPolicy "broken": namespaceSelector`)] != `TokenPolicy "broken": namespaceSelector` {
			t.Fatalf("a policy with an unreadable selector: %v, want PolicyViolation naming it", err)
		}
	}
}
