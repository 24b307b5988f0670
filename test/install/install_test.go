// Package install_test renders the Helm chart and the kustomize overlay and has the real API
// server accept every object (server-side dry run), then checks what a platform engineer relies
// on: two replicas with leader election, a locked-down pod, webhooks wired to their Service, and
// least-privilege RBAC.
package install_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tokenkeeper/tokenkeeper/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, &env) }

func render(t *testing.T, name string, args ...string) []*unstructured.Unstructured {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), name, args...)
	cmd.Dir = testenv.RepoRoot()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, stderr.String())
	}
	var objs []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(out), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return objs
			}
			t.Fatal(err)
		}
		if len(u.Object) > 0 {
			objs = append(objs, u)
		}
	}
}

func helm(t *testing.T, set ...string) []*unstructured.Unstructured {
	t.Helper()
	bin := os.Getenv("HELM")
	if bin == "" {
		t.Fatal("HELM is not set: run the tests with `make test`, which builds helm into bin/")
	}
	args := []string{"template", "tokenkeeper", "charts/tokenkeeper", "--namespace", "tokenkeeper-system", "--include-crds"}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	return render(t, bin, args...)
}

// applyDryRun has the API server validate every object; kinds whose CRDs are not installed
// here (cert-manager, Prometheus operator) are returned instead.
func applyDryRun(t *testing.T, objs []*unstructured.Unstructured) (skipped []string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "tokenkeeper-system"}}
	if err := env.Client.Create(t.Context(), ns); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	for _, o := range objs {
		if o.GetKind() == "CustomResourceDefinition" || o.GetKind() == "Namespace" {
			continue // installed by envtest / above
		}
		err := env.Client.Create(t.Context(), o.DeepCopy(), client.DryRunAll)
		switch {
		case err == nil:
		case strings.Contains(err.Error(), "no matches for kind"):
			skipped = append(skipped, o.GetKind())
		default:
			t.Errorf("%s %s rejected by the API server: %v", o.GetKind(), o.GetName(), err)
		}
	}
	return skipped
}

func find[T any](t *testing.T, objs []*unstructured.Unstructured, kind, name string) *T {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			out := new(T)
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, out); err != nil {
				t.Fatal(err)
			}
			return out
		}
	}
	t.Fatalf("no %s %s rendered", kind, name)
	return nil
}

// checkInstall asserts the properties both install paths must have.
func checkInstall(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	dep := find[appsv1.Deployment](t, objs, "Deployment", "tokenkeeper")
	if dep.Namespace != "tokenkeeper-system" || dep.Spec.Replicas == nil || *dep.Spec.Replicas != 2 {
		t.Errorf("Deployment: namespace %q replicas %v, want tokenkeeper-system and 2", dep.Namespace, dep.Spec.Replicas)
	}
	pod := dep.Spec.Template.Spec
	c := pod.Containers[0]
	if !slices.Contains(c.Args, "--leader-elect=true") {
		t.Errorf("manager args %v lack --leader-elect=true", c.Args)
	}
	if pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot {
		t.Errorf("pod does not run as non-root")
	}
	if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("container is not locked down: %+v", c.SecurityContext)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
		t.Errorf("no resource requests")
	}
	for _, svc := range []string{"tokenkeeper", "tokenkeeper-webhook", "tokenkeeper-metrics"} {
		find[corev1.Service](t, objs, "Service", svc)
	}
	var hooks unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == "ValidatingWebhookConfiguration" {
			hooks = *o
		}
	}
	if hooks.GetName() != "tokenkeeper" {
		t.Fatalf("ValidatingWebhookConfiguration named %q, want tokenkeeper (the manager injects its CA there)", hooks.GetName())
	}
	webhooks, _, _ := unstructured.NestedSlice(hooks.Object, "webhooks")
	if len(webhooks) != 5 {
		t.Errorf("%d webhooks, want 5 (Credential, Issuer, ClusterIssuer, TokenPolicy, ClusterCredential)", len(webhooks))
	}
	for _, w := range webhooks {
		svc, _, _ := unstructured.NestedStringMap(w.(map[string]any), "clientConfig", "service")
		if svc["name"] != "tokenkeeper-webhook" || svc["namespace"] != "tokenkeeper-system" {
			t.Errorf("webhook points at %v, want tokenkeeper-webhook in tokenkeeper-system", svc)
		}
	}
	role := find[rbacv1.ClusterRole](t, objs, "ClusterRole", "tokenkeeper-manager")
	for _, r := range role.Rules {
		for _, v := range r.Verbs {
			// delete on Secrets is for ClusterCredentials' copies (they have no owner in their
			// namespace to be collected with); never a whole collection.
			if v == "*" || (slices.Contains(r.Resources, "secrets") && v == "deletecollection") {
				t.Errorf("ClusterRole grants %q on %v: more than least privilege", v, r.Resources)
			}
		}
		if slices.Contains(r.Resources, "*") {
			t.Errorf("ClusterRole grants every resource in %v", r.APIGroups)
		}
	}
}

func TestHelmChart(t *testing.T) {
	objs := helm(t)
	if skipped := applyDryRun(t, objs); len(skipped) > 0 {
		t.Errorf("default values render kinds the cluster does not know: %v", skipped)
	}
	checkInstall(t, objs)
}

func TestHelmChartAllOptions(t *testing.T) {
	objs := helm(t, "certificates.mode=cert-manager", "metrics.serviceMonitor.enabled=true",
		"metrics.prometheusRule.enabled=true", "defaultPolicy.enabled=true", `defaultPolicy.allowedIssuers={https://*.example.com}`,
		"networkPolicy.enabled=true", "metrics.dashboard.enabled=true", "metrics.readers[0].name=prometheus",
		"metrics.readers[0].namespace=monitoring", "priorityClassName=system-cluster-critical", "podLabels.team=platform")
	skipped := applyDryRun(t, objs)
	slices.Sort(skipped)
	if want := []string{"Certificate", "Issuer", "PrometheusRule", "ServiceMonitor"}; !slices.Equal(slices.Compact(skipped), want) {
		t.Errorf("kinds left to their operators' CRDs: %v, want %v", skipped, want)
	}
	checkInstall(t, objs)
	if !slices.ContainsFunc(objs, func(o *unstructured.Unstructured) bool {
		return o.GetKind() == "TokenPolicy" && o.GetName() == "default"
	}) {
		t.Errorf("no default TokenPolicy rendered")
	}
	dep := find[appsv1.Deployment](t, objs, "Deployment", "tokenkeeper")
	if !slices.Contains(dep.Spec.Template.Spec.Containers[0].Args, "--webhook-cert-mode=external") {
		t.Errorf("with cert-manager the manager must not manage its own certificate")
	}
	if dep.Spec.Template.Spec.PriorityClassName != "system-cluster-critical" || dep.Spec.Template.Labels["team"] != "platform" {
		t.Errorf("priorityClassName or podLabels not applied to the pod template")
	}
	for _, kind := range [][2]string{{"NetworkPolicy", "tokenkeeper"}, {"ConfigMap", "tokenkeeper-dashboard"}, {"ClusterRoleBinding", "tokenkeeper-metrics-reader"}} {
		if !slices.ContainsFunc(objs, func(o *unstructured.Unstructured) bool { return o.GetKind() == kind[0] && o.GetName() == kind[1] }) {
			t.Errorf("no %s %s rendered", kind[0], kind[1])
		}
	}
	pr := slices.IndexFunc(objs, func(o *unstructured.Unstructured) bool { return o.GetKind() == "PrometheusRule" })
	groups, _, _ := unstructured.NestedSlice(objs[pr].Object, "spec", "groups")
	var alerts []string
	for _, r := range groups[0].(map[string]any)["rules"].([]any) {
		alerts = append(alerts, r.(map[string]any)["alert"].(string))
	}
	for _, want := range []string{"TokenkeeperTokenExpired", "TokenkeeperRenewalOverdue", "TokenkeeperTokenExpiringWhileRenewalsFail"} {
		if !slices.Contains(alerts, want) {
			t.Errorf("PrometheusRule lacks %s: %v", want, alerts)
		}
	}
	sm := slices.IndexFunc(objs, func(o *unstructured.Unstructured) bool { return o.GetKind() == "ServiceMonitor" })
	if eps, _, _ := unstructured.NestedSlice(objs[sm].Object, "spec", "endpoints"); len(eps) != 1 || eps[0].(map[string]any)["scheme"] != "https" {
		t.Errorf("the ServiceMonitor does not scrape the secure metrics endpoint over https: %v", eps)
	}
}

// The defaults: a PodDisruptionBudget with two replicas, replicas spread over nodes, secure
// metrics and the metrics reader role.
func TestHelmChartAvailabilityDefaults(t *testing.T) {
	objs := helm(t)
	dep := find[appsv1.Deployment](t, objs, "Deployment", "tokenkeeper")
	if !slices.Contains(dep.Spec.Template.Spec.Containers[0].Args, "--metrics-secure=true") {
		t.Errorf("metrics are not secure by default: %v", dep.Spec.Template.Spec.Containers[0].Args)
	}
	if tsc := dep.Spec.Template.Spec.TopologySpreadConstraints; len(tsc) != 1 || tsc[0].LabelSelector == nil || tsc[0].TopologyKey != "kubernetes.io/hostname" {
		t.Errorf("topology spread: %+v", tsc)
	}
	for _, kind := range [][2]string{{"PodDisruptionBudget", "tokenkeeper"}, {"ClusterRole", "tokenkeeper-metrics-reader"}} {
		if !slices.ContainsFunc(objs, func(o *unstructured.Unstructured) bool { return o.GetKind() == kind[0] && o.GetName() == kind[1] }) {
			t.Errorf("no %s %s rendered", kind[0], kind[1])
		}
	}
	if slices.ContainsFunc(helm(t, "replicaCount=1"), func(o *unstructured.Unstructured) bool { return o.GetKind() == "PodDisruptionBudget" }) {
		t.Errorf("a PodDisruptionBudget with one replica would block every drain")
	}
	// The CRDs are templates (upgraded with the release) and kept on uninstall; crds.enabled=false
	// leaves them to whoever manages them.
	crds := 0
	for _, o := range objs {
		if o.GetKind() == "CustomResourceDefinition" {
			crds++
			if o.GetAnnotations()["helm.sh/resource-policy"] != "keep" || o.GetLabels()["app.kubernetes.io/managed-by"] != "Helm" {
				t.Errorf("CRD %s: annotations %v, labels %v", o.GetName(), o.GetAnnotations(), o.GetLabels())
			}
		}
	}
	if crds != 6 {
		t.Errorf("%d CRDs rendered, want 6", crds)
	}
	if slices.ContainsFunc(helm(t, "crds.enabled=false"), func(o *unstructured.Unstructured) bool { return o.GetKind() == "CustomResourceDefinition" }) {
		t.Errorf("crds.enabled=false still renders CRDs")
	}
}

// values.schema.json refuses a mistyped or misspelt value with a message naming it, instead of
// the chart ignoring it.
func TestHelmSchemaRejectsBadValues(t *testing.T) {
	for set, want := range map[string]string{
		"replicaCount=two":                "/replicaCount",
		"metrics.scure=false":             "additional properties 'scure' not allowed",
		"certificates.mode=vault":         "/certificates/mode",
		"leaderElection.leaseDuration=15": "/leaderElection/leaseDuration",
	} {
		cmd := exec.CommandContext(t.Context(), os.Getenv("HELM"), "template", "tokenkeeper", "charts/tokenkeeper", "--set", set)
		cmd.Dir = testenv.RepoRoot()
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), want) {
			t.Errorf("--set %s: %v, output %q; want a schema error naming %q", set, err, out, want)
		}
	}
}

func TestKustomizeDefault(t *testing.T) {
	objs := render(t, "kubectl", "kustomize", filepath.Join("config", "default"))
	if skipped := applyDryRun(t, objs); len(skipped) > 0 {
		t.Errorf("config/default renders kinds the cluster does not know: %v", skipped)
	}
	checkInstall(t, objs)
}
