package tokenpolicy

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
)

func TestDescribe(t *testing.T) {
	ns := func(name string, l map[string]string) corev1.Namespace {
		return corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}}
	}
	pol := func(name string, prio int32, sel *metav1.LabelSelector) v1alpha1.TokenPolicy {
		return v1alpha1.TokenPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.TokenPolicySpec{Priority: prio, NamespaceSelector: sel}}
	}
	team := func(v string) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchLabels: map[string]string{"team": v}}
	}
	namespaces := []corev1.Namespace{ns("shop", map[string]string{"team": "a"}), ns("billing", map[string]string{"team": "a"}), ns("ops", map[string]string{"team": "b"})}
	var many []corev1.Namespace
	for i := range 12 {
		many = append(many, ns(fmt.Sprintf("ns-%02d", i), nil))
	}
	for name, tc := range map[string]struct {
		reason     string
		p          v1alpha1.TokenPolicy
		others     []v1alpha1.TokenPolicy
		namespaces []corev1.Namespace
		status     metav1.ConditionStatus
		want       string
		not        string
	}{
		"Selects": {reason: "The namespaces its selector matches, sorted.", p: pol("team-a", 0, team("a")), namespaces: namespaces,
			status: metav1.ConditionTrue, want: "in force in 2 namespaces: billing, shop", not: "also select"},
		"SelectsNone": {reason: "A policy that selects nothing says so.", p: pol("nobody", 0, team("z")), namespaces: namespaces,
			status: metav1.ConditionTrue, want: "in force in 0 namespaces"},
		"Overlap": {reason: "Same priority, some namespaces in common: defaults by name order.", p: pol("team-a", 5, team("a")),
			others: []v1alpha1.TokenPolicy{pol("everyone", 5, nil), pol("higher", 9, nil), pol("team-b", 5, team("b"))}, namespaces: namespaces,
			status: metav1.ConditionTrue, want: "TokenPolicy everyone also selects some of them at the same priority 5", not: "higher"},
		"Bounded": {reason: "Twelve namespaces: ten named and the count.", p: pol("all", 0, nil), namespaces: many,
			status: metav1.ConditionTrue, want: "in force in 12 namespaces: ns-00, ns-01, ns-02, ns-03, ns-04, ns-05, ns-06, ns-07, ns-08, ns-09 and 2 more"},
		"InvalidSelector": {reason: "A selector the API cannot evaluate (admitted before the webhook, say).",
			p:          pol("bad", 0, &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: "In"}}}),
			namespaces: namespaces, status: metav1.ConditionFalse, want: "spec.namespaceSelector: "},
	} {
		t.Run(name, func(t *testing.T) {
			c := Describe(&tc.p, append([]v1alpha1.TokenPolicy{tc.p}, tc.others...), tc.namespaces)
			if c.Status != tc.status || !strings.Contains(c.Message, tc.want) || tc.not != "" && strings.Contains(c.Message, tc.not) {
				t.Errorf("%s\ngot %s %s: %s\nwant %s containing %q", tc.reason, c.Status, c.Reason, c.Message, tc.status, tc.want)
			}
		})
	}
}
