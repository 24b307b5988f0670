package install_test

import (
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
)

// TestHelmChartPodRefresh: the podRefresh values reach the manager's flags (docs/concepts/delivery.md);
// maxPods 0 turns the pod refresh off.
func TestHelmChartPodRefresh(t *testing.T) {
	cases := map[string]struct {
		set  []string
		want []string
	}{
		"Defaults": {want: []string{"--pod-refresh-max-pods=100", "--pod-refresh-qps=20"}},
		"Off":      {set: []string{"podRefresh.maxPods=0", "podRefresh.qps=5"}, want: []string{"--pod-refresh-max-pods=0", "--pod-refresh-qps=5"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			dep := find[appsv1.Deployment](t, helm(t, tc.set...), "Deployment", "tokenkeeper")
			args := dep.Spec.Template.Spec.Containers[0].Args
			for _, w := range tc.want {
				if !slices.Contains(args, w) {
					t.Errorf("manager args %v lack %s", args, w)
				}
			}
		})
	}
}
