package install_test

import (
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestHelmChartMeshPorts: the ext_authz and SDS ports (docs/validation/envoy-grpc.md,
// docs/delivery/envoy-sds.md) reach the manager's flags, its container ports, the Service the
// mesh snippets name and the NetworkPolicy, and the API server accepts them; by default none is
// rendered.
func TestHelmChartMeshPorts(t *testing.T) {
	ports := map[string]int32{"grpc-h2c": 9001, "grpc-tls": 9002, "sds": 9003}
	flags := map[string]string{"grpc-h2c": "--ext-authz-h2c-bind-address=:9001", "grpc-tls": "--ext-authz-bind-address=:9002",
		"sds": "--sds-bind-address=:9003"}
	objs := helm(t, "extAuthz.h2cPort=9001", "extAuthz.tlsPort=9002", "sds.port=9003", "networkPolicy.enabled=true")
	if skipped := applyDryRun(t, objs); len(skipped) > 0 {
		t.Errorf("kinds the cluster does not know: %v", skipped)
	}
	defaults := helm(t)
	for _, set := range []struct {
		name    string
		objs    []*unstructured.Unstructured
		enabled bool
	}{{"with the ports set", objs, true}, {"by default", defaults, false}} {
		dep := find[appsv1.Deployment](t, set.objs, "Deployment", "tokenkeeper")
		c := dep.Spec.Template.Spec.Containers[0]
		svc := find[corev1.Service](t, set.objs, "Service", "tokenkeeper")
		for name, port := range ports {
			hasFlag := slices.Contains(c.Args, flags[name])
			hasContainerPort := slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == name && p.ContainerPort == port })
			hasServicePort := slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool {
				return p.Name == name && p.Port == port && p.TargetPort.StrVal == name
			})
			if hasFlag != set.enabled || hasContainerPort != set.enabled || hasServicePort != set.enabled {
				t.Errorf("%s, port %s: flag %v, container port %v, Service port %v; want all %v",
					set.name, name, hasFlag, hasContainerPort, hasServicePort, set.enabled)
			}
		}
	}
	np := find[networkingv1.NetworkPolicy](t, objs, "NetworkPolicy", "tokenkeeper")
	for name := range ports {
		if !slices.ContainsFunc(np.Spec.Ingress[0].Ports, func(p networkingv1.NetworkPolicyPort) bool { return p.Port != nil && p.Port.StrVal == name }) {
			t.Errorf("the NetworkPolicy does not admit port %s: %v", name, np.Spec.Ingress[0].Ports)
		}
	}
}
