package credential_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer/issuertest"
	"github.com/tokenkeeper/tokenkeeper/internal/metrics"
)

// Ways a pod template reads Secret "token", for the workloads of these tests.
func volumeOf(secret string) corev1.PodSpec {
	return corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "busybox"}},
		Volumes: []corev1.Volume{{Name: "t", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: secret}}}}}
}

func projectedOf(secret string) corev1.PodSpec {
	return corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "busybox"}},
		Volumes: []corev1.Volume{{Name: "t", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: secret}}}}}}}}}
}

func envOf(secret string) corev1.PodSpec {
	return corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "busybox", Env: []corev1.EnvVar{{Name: "TOKEN",
		ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Key: "token"}}}}}}}
}

func envFromOf(secret string) corev1.PodSpec {
	return corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "busybox", EnvFrom: []corev1.EnvFromSource{
		{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: secret}}}}}}}
}

func plain() corev1.PodSpec {
	return corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "busybox"}}}
}

func objMeta(ns, name string, labels map[string]string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels}
}

func template(name string, spec corev1.PodSpec) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}}, Spec: spec}
}

func createDeployment(t *testing.T, ns, name string, labels map[string]string, spec corev1.PodSpec) {
	t.Helper()
	must(t, env.Client.Create(t.Context(), &appsv1.Deployment{ObjectMeta: objMeta(ns, name, labels), Spec: appsv1.DeploymentSpec{
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}}, Template: template(name, spec)}}))
}

func deployment(t *testing.T, ns, name string) *appsv1.Deployment {
	t.Helper()
	d := &appsv1.Deployment{}
	must(t, env.Client.Get(t.Context(), types.NamespacedName{Namespace: ns, Name: name}, d))
	return d
}

func restartedFor(t *testing.T, ns, name string) string {
	t.Helper()
	return deployment(t, ns, name).Spec.Template.Annotations[v1alpha1.AnnotationRestartedFor]
}

func consumersString(c *v1alpha1.Credential) string {
	return fmt.Sprintf("%v (count %d)", c.Status.Consumers, c.Status.ConsumerCount)
}

func hasConsumer(c *v1alpha1.Credential, kind v1alpha1.WorkloadKind, name string, via ...v1alpha1.SecretUse) bool {
	return slices.ContainsFunc(c.Status.Consumers, func(s v1alpha1.SecretConsumer) bool {
		return s.Kind == kind && s.Name == name && slices.Equal(s.Via, via)
	})
}

// status.consumers lists the workloads whose pod templates read the target Secret, and how, and
// follows the workloads as they change.
func TestConsumers(t *testing.T) {
	t.Parallel()
	f := setup(t, issuertest.Seed004, nil)
	ns := f.ns
	createDeployment(t, ns, "mounts", nil, volumeOf("token"))
	createDeployment(t, ns, "env", nil, envOf("token"))
	createDeployment(t, ns, "envfrom", nil, envFromOf("token"))
	createDeployment(t, ns, "other", nil, envOf("another-secret"))
	must(t, env.Client.Create(t.Context(), &appsv1.StatefulSet{ObjectMeta: objMeta(ns, "projected", nil), Spec: appsv1.StatefulSetSpec{
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "projected"}}, Template: template("projected", projectedOf("token"))}}))
	both := envOf("token")
	both.Volumes = volumeOf("token").Volumes
	must(t, env.Client.Create(t.Context(), &appsv1.DaemonSet{ObjectMeta: objMeta(ns, "agent", nil), Spec: appsv1.DaemonSetSpec{
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "agent"}}, Template: template("agent", both)}}))
	waitFor(t, 20*time.Second, "every consumer listed", func() (bool, string) {
		c := f.cred()
		return c.Status.ConsumerCount == 5 && len(c.Status.Consumers) == 5 &&
			hasConsumer(c, "Deployment", "mounts", v1alpha1.SecretUseVolume) &&
			hasConsumer(c, "Deployment", "env", v1alpha1.SecretUseEnv) &&
			hasConsumer(c, "Deployment", "envfrom", v1alpha1.SecretUseEnvFrom) &&
			hasConsumer(c, "StatefulSet", "projected", v1alpha1.SecretUseProjected) &&
			hasConsumer(c, "DaemonSet", "agent", v1alpha1.SecretUseVolume, v1alpha1.SecretUseEnv), consumersString(c)
	})
	// A workload that stops reading the Secret leaves the list; one that starts joins it.
	editDeployment(t, ns, "mounts", func(d *appsv1.Deployment) { d.Spec.Template.Spec = plain() })
	editDeployment(t, ns, "other", func(d *appsv1.Deployment) { d.Spec.Template.Spec = envFromOf("token") })
	must(t, env.Client.Delete(t.Context(), &appsv1.StatefulSet{ObjectMeta: objMeta(ns, "projected", nil)}))
	waitFor(t, 20*time.Second, "the consumers to follow the workloads", func() (bool, string) {
		c := f.cred()
		return c.Status.ConsumerCount == 4 && !hasConsumer(c, "Deployment", "mounts", v1alpha1.SecretUseVolume) &&
				hasConsumer(c, "Deployment", "other", v1alpha1.SecretUseEnvFrom) && !hasConsumer(c, "StatefulSet", "projected", v1alpha1.SecretUseProjected),
			consumersString(c)
	})
}

func editDeployment(t *testing.T, ns, name string, edit func(*appsv1.Deployment)) {
	t.Helper()
	must(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		d := deployment(t, ns, name)
		edit(d)
		return env.Client.Update(t.Context(), d)
	}))
}

// rolloutRestart auto restarts the workloads that read the token through env or envFrom (they
// see a new token only when they start), not those that mount it (the kubelet updates the files).
func TestRolloutRestartAuto(t *testing.T) {
	t.Parallel()
	f := setupWith(t, issuertest.Seed004, nil, func(c *v1alpha1.Credential) {
		createDeployment(t, c.Namespace, "env", nil, envOf("token"))
		createDeployment(t, c.Namespace, "envfrom", nil, envFromOf("token"))
		createDeployment(t, c.Namespace, "mounts", nil, volumeOf("token"))
		createDeployment(t, c.Namespace, "unrelated", nil, plain())
		// Wait for the manager to see them, so the first token's restart finds them.
		for _, n := range []string{"env", "envfrom", "mounts", "unrelated"} {
			waitSeen(t, &appsv1.Deployment{ObjectMeta: objMeta(c.Namespace, n, nil)})
		}
		c.Spec.RolloutRestart = []v1alpha1.WorkloadReference{{Auto: true}}
	})
	f.waitReady(30 * time.Second)
	waitFor(t, 20*time.Second, "the env and envFrom readers restarted for the token", func() (bool, string) {
		want := "cred=" + f.cred().Status.TokenFingerprint
		a, b := restartedFor(t, f.ns, "env"), restartedFor(t, f.ns, "envfrom")
		return a == want && b == want, fmt.Sprintf("env %q, envFrom %q, want %q", a, b, want)
	})
	for _, n := range []string{"mounts", "unrelated"} {
		if d := deployment(t, f.ns, n); d.Generation != 1 || d.Spec.Template.Annotations[v1alpha1.AnnotationRestartedFor] != "" {
			t.Errorf("Deployment %s restarted (generation %d, annotations %v): it does not read the token at start", n, d.Generation, d.Spec.Template.Annotations)
		}
	}
	waitFor(t, 10*time.Second, "status to count the restarts", func() (bool, string) {
		rr := f.cred().Status.RolloutRestart
		return rr != nil && rr.Restarted == 2 && rr.QueuedCount == 0, fmt.Sprintf("%+v", rr)
	})
	if n := testutil.ToFloat64(metrics.RolloutRestarts.WithLabelValues(f.ns, "Deployment")); n != 2 {
		t.Errorf("tokenkeeper_rollout_restarts_total{namespace=%q,kind=Deployment} = %v, want 2", f.ns, n)
	}
}

// Two Credentials whose tokens a workload reads rotate together: the workload restarts once,
// for both tokens.
func TestRolloutRestartCoalesced(t *testing.T) {
	t.Parallel()
	var second *v1alpha1.Credential
	f := setupWith(t, issuertest.Seed004, nil, func(c *v1alpha1.Credential) {
		spec := envOf("token")
		spec.Containers[0].EnvFrom = envFromOf("token-2").Containers[0].EnvFrom
		createDeployment(t, c.Namespace, "shared", map[string]string{"tier": "api"}, spec)
		waitSeen(t, &appsv1.Deployment{ObjectMeta: objMeta(c.Namespace, "shared", nil)})
		c.Spec.RolloutRestart = []v1alpha1.WorkloadReference{{Kind: "Deployment", Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "api"}}}}
		second = c.DeepCopy()
		second.Name, second.Spec.SecretName = "cred-2", "token-2"
		second.Spec.RolloutRestart = []v1alpha1.WorkloadReference{{Auto: true}}
	})
	must(t, env.Client.Create(t.Context(), second))
	f.waitReady(30 * time.Second)
	key2 := client.ObjectKeyFromObject(second)
	waitFor(t, 30*time.Second, "the second Credential Ready", func() (bool, string) {
		c := &v1alpha1.Credential{}
		must(t, env.Client.Get(t.Context(), key2, c))
		return ready(c)
	})
	c2 := &v1alpha1.Credential{}
	must(t, env.Client.Get(t.Context(), key2, c2))
	want := "cred=" + f.cred().Status.TokenFingerprint + ",cred-2=" + c2.Status.TokenFingerprint
	waitFor(t, 20*time.Second, "the shared Deployment restarted for both tokens", func() (bool, string) {
		v := restartedFor(t, f.ns, "shared")
		return v == want, fmt.Sprintf("%q, want %q", v, want)
	})
	time.Sleep(defaultRestartOpts.Window + time.Second) // any second restart would be done by now
	if d := deployment(t, f.ns, "shared"); d.Generation != 2 {
		t.Errorf("shared Deployment at generation %d, want 2: one restart for two rotations within the window", d.Generation)
	}
	if n := testutil.ToFloat64(metrics.RolloutRestarts.WithLabelValues(f.ns, "Deployment")); n != 1 {
		t.Errorf("tokenkeeper_rollout_restarts_total{namespace=%q} = %v, want 1", f.ns, n)
	}
}

// A restart is stamped with the token's fingerprint: re-reconciles and manager restarts between
// rotations restart nothing (the pod template is never patched again for the same token).
// Not parallel: it restarts the suite's manager.
func TestRolloutRestartOncePerToken(t *testing.T) {
	f := setupWith(t, issuertest.Seed004, nil, func(c *v1alpha1.Credential) {
		createDeployment(t, c.Namespace, "app", nil, envOf("token"))
		waitSeen(t, &appsv1.Deployment{ObjectMeta: objMeta(c.Namespace, "app", nil)})
		c.Spec.RolloutRestart = []v1alpha1.WorkloadReference{{Kind: "Deployment", Name: "app"}}
	})
	f.waitReady(30 * time.Second)
	fp := f.cred().Status.TokenFingerprint
	waitFor(t, 20*time.Second, "the Deployment restarted", func() (bool, string) {
		v := restartedFor(t, f.ns, "app")
		return v == "cred="+fp, v
	})
	before := deployment(t, f.ns, "app")
	for i := range 10 { // the manager killed 10 times between rotations
		stopManager()
		must(t, startManager())
		// A re-reconcile too: an annotation change brings the Credential back.
		must(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
			c := f.cred()
			if c.Annotations == nil {
				c.Annotations = map[string]string{}
			}
			c.Annotations["example.com/touched"] = fmt.Sprint(i)
			return env.Client.Update(t.Context(), c)
		}))
		time.Sleep(defaultRestartOpts.Window + time.Second)
	}
	after := deployment(t, f.ns, "app")
	if after.Generation != before.Generation || after.ResourceVersion != before.ResourceVersion {
		t.Errorf("the Deployment changed across manager restarts and re-reconciles: generation %d → %d, resourceVersion %s → %s",
			before.Generation, after.Generation, before.ResourceVersion, after.ResourceVersion)
	}
	if c := f.cred(); c.Status.TokenFingerprint != fp {
		t.Fatalf("the token rotated (%s → %s): the test proves nothing", fp, c.Status.TokenFingerprint)
	}
}

// At most Budget workloads restart at once, cluster-wide: the rest wait, and status shows them,
// until rollouts finish. Not parallel: it runs its own manager with a budget of 2.
func TestRolloutRestartBudget(t *testing.T) {
	stopManager()
	restartOpts = defaultRestartOpts
	restartOpts.Budget, restartOpts.Window, restartOpts.Timeout = 2, time.Second, time.Minute
	must(t, startManager())
	t.Cleanup(func() {
		stopManager()
		restartOpts = defaultRestartOpts
		must(t, startManager())
	})
	names := []string{"a", "b", "c", "d"}
	f := setupWith(t, issuertest.Seed004, nil, func(c *v1alpha1.Credential) {
		for _, n := range names {
			createDeployment(t, c.Namespace, n, map[string]string{"restart": "yes"}, plain())
			waitSeen(t, &appsv1.Deployment{ObjectMeta: objMeta(c.Namespace, n, nil)})
		}
		c.Spec.RolloutRestart = []v1alpha1.WorkloadReference{{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"restart": "yes"}}}}
	})
	f.waitReady(30 * time.Second)
	restarted := func() []string {
		var out []string
		for _, n := range names {
			if restartedFor(t, f.ns, n) != "" {
				out = append(out, n)
			}
		}
		return out
	}
	waitFor(t, 20*time.Second, "two restarted, two queued in status", func() (bool, string) {
		rr := f.cred().Status.RolloutRestart
		return len(restarted()) == 2 && rr != nil && rr.Restarted == 2 && rr.QueuedCount == 2 && len(rr.Queued) == 2,
			fmt.Sprintf("restarted %v, status %+v", restarted(), rr)
	})
	time.Sleep(2 * time.Second)
	if r := restarted(); len(r) != 2 {
		t.Fatalf("restarted %v while the first two are still rolling out: the budget is 2", r)
	}
	// envtest runs no Deployment controller: say the first two rolled out.
	for _, n := range restarted() {
		must(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
			d := deployment(t, f.ns, n)
			d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: 1, UpdatedReplicas: 1, ReadyReplicas: 1, AvailableReplicas: 1}
			return env.Client.Status().Update(t.Context(), d)
		}))
	}
	waitFor(t, 20*time.Second, "the queued two restarted once slots are free", func() (bool, string) {
		rr := f.cred().Status.RolloutRestart
		return len(restarted()) == 4 && rr != nil && rr.Restarted == 4 && rr.QueuedCount == 0, fmt.Sprintf("restarted %v, status %+v", restarted(), rr)
	})
}
