package clustercredential

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/resolve"
	"github.com/tokenkeeper/tokenkeeper/internal/testenv"
)

// TestTooManyNamespaces: past MaxNamespaces, the first namespaces by name get a copy, the count
// covers them all, and Ready says why the rest have none.
func TestTooManyNamespaces(t *testing.T) {
	objs := []client.Object{}
	for i := range 5 {
		objs = append(objs, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("ci-%d", 4-i), Labels: map[string]string{"ci": "true"}}})
	}
	objs = append(objs, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "other"}})
	c := fake.NewClientBuilder().WithScheme(testenv.Scheme()).WithObjects(objs...).Build()
	r := &Reconciler{Client: c, APIReader: c, Clock: clocktesting.NewFakePassiveClock(metav1.Now().Time), Namespace: "tokenkeeper-system",
		MaxNamespaces: 3, resolver: &resolve.Resolver{Client: c, APIReader: c}}
	cc := &v1alpha1.ClusterCredential{ObjectMeta: metav1.ObjectMeta{Name: "ci"}, Spec: v1alpha1.ClusterCredentialSpec{
		NamespaceSelector: metav1.LabelSelector{MatchLabels: map[string]string{"ci": "true"}}, Target: "ci-token",
		Credential: v1alpha1.CredentialTemplate{IssuerRef: v1alpha1.IssuerReference{Kind: v1alpha1.IssuerKindCluster, Name: "idp"}},
	}}
	child := &v1alpha1.Credential{ObjectMeta: metav1.ObjectMeta{Namespace: "tokenkeeper-system", Name: ChildName("ci")}}
	p, err := r.plan(t.Context(), cc, child, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, tg := range p.targets {
		got = append(got, tg.ns)
	}
	if p.selected != 5 || fmt.Sprint(got) != "[ci-0 ci-1 ci-2]" {
		t.Fatalf("selected %d, targets %v; want 5 selected, the first 3 by name", p.selected, got)
	}
	r.report(cc, child, nil, p, r.apply(t.Context(), cc, p))
	ready := meta.FindStatusCondition(cc.Status.Conditions, string(v1alpha1.ConditionReady))
	if ready == nil || ready.Reason != string(v1alpha1.ReasonTooManyNamespaces) || cc.Status.Selected != 5 || cc.Status.Pending != 3 {
		t.Fatalf("Ready %+v, selected %d, pending %d; want TooManyNamespaces, 5, 3", ready, cc.Status.Selected, cc.Status.Pending)
	}
}
