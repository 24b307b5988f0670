package install_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/testenv"
)

// The default TokenPolicy is created by a post-install/post-upgrade hook (the CRDs are templates
// of the release and the webhook must be up to validate it), which helm uninstall never deletes;
// a pre-delete hook of the same name deletes it, unless defaultPolicy.keep.
func TestHelmDefaultPolicyHooks(t *testing.T) {
	hooks := func(objs []*unstructured.Unstructured) []string {
		var out []string
		for _, o := range objs {
			if o.GetKind() == "TokenPolicy" && o.GetName() == "default" {
				out = append(out, o.GetAnnotations()["helm.sh/hook"]+" "+o.GetAnnotations()["helm.sh/hook-delete-policy"])
			}
		}
		slices.Sort(out)
		return out
	}
	cases := map[string]struct {
		reason string
		set    []string
		want   []string
	}{
		"Disabled": {
			reason: "no default policy unless asked for",
			want:   nil,
		},
		"Enabled": {
			reason: "created after install and upgrade, deleted on uninstall by the pre-delete hook",
			set:    []string{"defaultPolicy.enabled=true"},
			want: []string{"post-install,post-upgrade before-hook-creation",
				"pre-delete before-hook-creation,hook-succeeded,hook-failed"},
		},
		"Kept": {
			reason: "defaultPolicy.keep leaves the policy behind on uninstall: no pre-delete hook",
			set:    []string{"defaultPolicy.enabled=true", "defaultPolicy.keep=true"},
			want:   []string{"post-install,post-upgrade before-hook-creation"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if got := hooks(helm(t, tc.set...)); !slices.Equal(got, tc.want) {
				t.Errorf("%s: default TokenPolicy hooks %q, want %q", tc.reason, got, tc.want)
			}
		})
	}
}

// The default memory limit covers the measured RSS at 10,000 Credentials (301 to 321 MiB,
// docs/operations/scale.md) with half as much again, as the chart README's formula says (96 MiB
// + 40 KiB per Credential), and the 342 MiB seen while 20,000 unrelated Secrets arrived.
func TestHelmMemoryLimit(t *testing.T) {
	dep := find[appsv1.Deployment](t, helm(t), "Deployment", "tokenkeeper")
	limit := dep.Spec.Template.Spec.Containers[0].Resources.Limits.Memory()
	const rss10k, peak10k = 321 << 20, 342 << 20
	sized := resource.NewQuantity(96<<20+10_000*40<<10, resource.BinarySI)
	if limit.Value() < sized.Value() || limit.Value() < rss10k*3/2 || limit.Value() < peak10k+64<<20 {
		t.Errorf("memory limit %s is below the sizing formula's %s for 10,000 Credentials (measured RSS %d MiB, %d MiB at peak)",
			limit, sized, rss10k>>20, peak10k>>20)
	}
	if cpu := dep.Spec.Template.Spec.Containers[0].Resources.Limits.Cpu(); !cpu.IsZero() {
		t.Errorf("cpu limit %s: it throttles TLS handshakes", cpu)
	}
}

// helm uninstall against a real API server deletes the default TokenPolicy (the pre-delete
// hook), or leaves it with defaultPolicy.keep. The API server runs no pods, so the release is
// installed without hooks, the webhook configuration (whose Service has no endpoints here) is
// removed, and the policy is created as the post-install hook would.
func TestHelmUninstallDeletesDefaultPolicy(t *testing.T) {
	kc, err := env.AdminKubeconfig()
	if err != nil {
		t.Fatal(err)
	}
	kcPath := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kcPath, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(t *testing.T, args ...string) {
		t.Helper()
		cmd := exec.CommandContext(t.Context(), os.Getenv("HELM"), append(args, "--kubeconfig", kcPath)...)
		cmd.Dir = testenv.RepoRoot()
		cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("helm %v: %v\n%s", args, err, out)
		}
	}
	for _, keep := range []bool{false, true} {
		t.Run(map[bool]string{false: "Deleted", true: "Kept"}[keep], func(t *testing.T) {
			ctx, c := t.Context(), env.Client
			set := "crds.enabled=false,defaultPolicy.enabled=true,defaultPolicy.keep=" + map[bool]string{false: "false", true: "true"}[keep]
			run(t, "install", "uninstall-test", "charts/tokenkeeper", "-n", "uninstall-test", "--create-namespace", "--no-hooks", "--set", set)
			if err := c.Delete(ctx, &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "tokenkeeper"}}); err != nil {
				t.Fatal(err)
			}
			pol := &v1alpha1.TokenPolicy{ObjectMeta: metav1.ObjectMeta{Name: "default"}}
			if err := c.Create(ctx, pol); err != nil {
				t.Fatal(err)
			}
			run(t, "uninstall", "uninstall-test", "-n", "uninstall-test", "--wait")
			err := c.Get(ctx, types.NamespacedName{Name: "default"}, &v1alpha1.TokenPolicy{})
			switch {
			case keep && err != nil:
				t.Errorf("with defaultPolicy.keep the policy is gone after uninstall: %v", err)
			case !keep && !apierrors.IsNotFound(err):
				t.Errorf("the default TokenPolicy is still there after uninstall (%v): a reinstall would keep its durations", err)
			}
			_ = c.Delete(ctx, &v1alpha1.TokenPolicy{ObjectMeta: metav1.ObjectMeta{Name: "default"}})
		})
	}
}
