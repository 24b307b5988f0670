package podrefresh_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/controllers"
	"github.com/tokenkeeper/tokenkeeper/controllers/podrefresh"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer"
	"github.com/tokenkeeper/tokenkeeper/internal/metrics"
	"github.com/tokenkeeper/tokenkeeper/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, &env) }

var nsCount atomic.Int32

// namespace creates a namespace of its own for a test.
func namespace(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("podrefresh-%d", nsCount.Add(1))
	if err := env.Client.Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		t.Fatal(err)
	}
	return name
}

// startManager runs a manager with the pod refresher alone, as controllers.Setup wires it, until
// the test ends or stop is called; it returns the manager's cache.
func startManager(t *testing.T, opts podrefresh.Options) (c client.Reader, stop func()) {
	return startManagerWorkers(t, opts, 8)
}

// startManagerWorkers is startManager with workers reconciles at once.
func startManagerWorkers(t *testing.T, opts podrefresh.Options, workers int) (c client.Reader, stop func()) {
	t.Helper()
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
		Cache:      cache.Options{ByObject: controllers.CacheByObject()},
		Controller: config.Controller{SkipNameValidation: ptr.To(true), MaxConcurrentReconciles: workers},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := (&podrefresh.Reconciler{Client: mgr.GetClient(), Options: opts}).SetupWithManager(ctx, mgr); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			t.Errorf("manager: %v", err)
		}
	}()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		t.Fatal("the manager's cache did not sync")
	}
	return mgr.GetCache(), stop
}

// tokenSecret creates a token Secret as the Credential controller writes it.
func tokenSecret(t *testing.T, ns, name, token string) *corev1.Secret {
	t.Helper()
	return secretWithLabels(t, ns, name, token, map[string]string{
		v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue, v1alpha1.LabelRole: "token", v1alpha1.LabelCredential: name})
}

func secretWithLabels(t *testing.T, ns, name, token string, labels map[string]string) *corev1.Secret {
	t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Data: map[string][]byte{v1alpha1.SecretKeyToken: []byte(token)}}
	if err := env.Client.Create(t.Context(), s); err != nil {
		t.Fatal(err)
	}
	return s
}

// rotate writes a new token into the Secret and returns its fingerprint.
func rotate(t *testing.T, s *corev1.Secret, token string) string {
	t.Helper()
	s.Data[v1alpha1.SecretKeyToken] = []byte(token)
	if err := env.Client.Update(t.Context(), s); err != nil {
		t.Fatal(err)
	}
	return issuer.Fingerprint(token)
}

type mount int

const (
	volume mount = iota
	projected
	envOnly
)

// runningPod creates a pod reading Secret secret the way m says and marks it Running (envtest
// runs no kubelet).
func runningPod(t *testing.T, ns, name, secret string, m mount) *corev1.Pod {
	t.Helper()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PodSpec{AutomountServiceAccountToken: ptr.To(false), Containers: []corev1.Container{{Name: "app", Image: "app"}}}}
	switch m {
	case volume:
		pod.Spec.Volumes = []corev1.Volume{{Name: "t", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: secret}}}}
	case projected:
		pod.Spec.Volumes = []corev1.Volume{{Name: "t", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: secret}}}}}}}}
	case envOnly:
		pod.Spec.Containers[0].EnvFrom = []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: secret}}}}
	}
	if err := env.Client.Create(t.Context(), pod); err != nil {
		t.Fatal(err)
	}
	pod.Status.Phase = corev1.PodRunning
	if err := env.Client.Status().Update(t.Context(), pod); err != nil {
		t.Fatal(err)
	}
	return pod
}

// synced returns the pods of ns whose annotation names fingerprint fp for secret, by name.
func synced(t *testing.T, ns, secret, fp string) []string {
	t.Helper()
	var pods corev1.PodList
	if err := env.Client.List(t.Context(), &pods, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range pods.Items {
		if slices.Contains(strings.Split(p.Annotations[v1alpha1.AnnotationSyncedToken], ","), secret+"="+fp) {
			out = append(out, p.Name)
		}
	}
	slices.Sort(out)
	return out
}

// versions are the resourceVersions of the pods of ns, by name: a pod written to changes its own.
func versions(t *testing.T, ns string) map[string]string {
	t.Helper()
	var pods corev1.PodList
	if err := env.Client.List(t.Context(), &pods, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, p := range pods.Items {
		out[p.Name] = p.ResourceVersion
	}
	return out
}

// waitCached waits until the cache holds the Secret and n running pods of ns.
func waitCached(t *testing.T, c client.Reader, s *corev1.Secret, n int) {
	t.Helper()
	testenv.WaitFor(t, 30*time.Second, "the cache to see the Secret and the pods", func() (bool, string) {
		var pods corev1.PodList
		if err := c.List(t.Context(), &pods, client.InNamespace(s.Namespace)); err != nil {
			return false, err.Error()
		}
		got := &corev1.Secret{}
		err := c.Get(t.Context(), client.ObjectKeyFromObject(s), got)
		return err == nil && got.ResourceVersion == s.ResourceVersion && len(pods.Items) == n, fmt.Sprintf("%d pods, %v", len(pods.Items), err)
	})
}

// TestRotationRefreshesMountingPods: a rotation patches exactly the running pods that mount the
// Secret (a Secret volume or a projected one) in its namespace; pods that read it through env,
// mount another Secret, or live in another namespace are left alone; nothing is patched twice,
// neither by the same manager nor by a new one.
func TestRotationRefreshesMountingPods(t *testing.T) {
	ns, other := namespace(t), namespace(t)
	c, stop := startManager(t, podrefresh.Options{MaxPodsPerRotation: 100})
	sec := tokenSecret(t, ns, "tok", "token-1")
	otherSec := tokenSecret(t, other, "tok", "token-1") // same name, another tenant
	tokenSecret(t, ns, "unrelated", "token-x")
	runningPod(t, ns, "vol", "tok", volume)
	runningPod(t, ns, "proj", "tok", projected)
	runningPod(t, ns, "env", "tok", envOnly)
	runningPod(t, ns, "unrelated", "unrelated", volume)
	runningPod(t, other, "vol", "tok", volume)
	waitCached(t, c, sec, 4)
	waitCached(t, c, otherSec, 1)
	time.Sleep(1100 * time.Millisecond) // creation times have a resolution of a second: the rotation comes after them

	before := versions(t, ns)
	fp := rotate(t, sec, "token-2")
	testenv.WaitFor(t, 20*time.Second, "the mounting pods to carry the fingerprint", func() (bool, string) {
		got := synced(t, ns, "tok", fp)
		return slices.Equal(got, []string{"proj", "vol"}), fmt.Sprint(got)
	})
	if n := testutil.ToFloat64(metrics.PodRefreshes.WithLabelValues(ns)); n != 2 {
		t.Errorf("tokenkeeper_pod_refreshes_total{namespace=%s} = %v, want 2", ns, n)
	}
	time.Sleep(2 * time.Second) // anything else would have been patched by now
	after := versions(t, ns)
	for _, name := range []string{"env", "unrelated"} {
		if after[name] != before[name] {
			t.Errorf("pod %s (not mounting the rotated Secret) was written to", name)
		}
	}
	if got := synced(t, other, "tok", fp); len(got) != 0 {
		t.Errorf("pods of another namespace were patched: %v", got)
	}

	// A change of the Secret that is no new token (a label): no write.
	sec.Labels["extra"] = "x"
	if err := env.Client.Update(t.Context(), sec); err != nil {
		t.Fatal(err)
	}
	waitCached(t, c, sec, 4)
	// A new manager (a restart, a new leader): no write either.
	stop()
	c2, _ := startManager(t, podrefresh.Options{MaxPodsPerRotation: 100})
	waitCached(t, c2, sec, 4)
	time.Sleep(3 * time.Second)
	if got := versions(t, ns); !maps.Equal(got, after) {
		t.Errorf("a Secret change without a new token, or a new manager, wrote to pods: before %v, after %v", after, got)
	}
	if n := testutil.ToFloat64(metrics.PodRefreshes.WithLabelValues(ns)); n != 2 {
		t.Errorf("tokenkeeper_pod_refreshes_total{namespace=%s} = %v after no rotation, want still 2", ns, n)
	}

	// The new manager refreshes the same pods for the next rotation.
	fp3 := rotate(t, sec, "token-3")
	testenv.WaitFor(t, 20*time.Second, "the next rotation to reach the pods", func() (bool, string) {
		got := synced(t, ns, "tok", fp3)
		return slices.Equal(got, []string{"proj", "vol"}), fmt.Sprint(got)
	})
}

// TestCopiesAndOthers: a ClusterCredential's copy is a token Secret too; a Secret that is not
// tokenkeeper's token Secret (its state Secret, anyone's Secret) never leads to a patch.
func TestCopiesAndOthers(t *testing.T) {
	ns := namespace(t)
	c, _ := startManager(t, podrefresh.Options{MaxPodsPerRotation: 100})
	copied := secretWithLabels(t, ns, "copy", "token-1", map[string]string{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue,
		v1alpha1.LabelRole: v1alpha1.RoleCopy, v1alpha1.LabelClusterCredential: "shared"})
	state := secretWithLabels(t, ns, "state", "token-1", map[string]string{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue,
		v1alpha1.LabelRole: "state"})
	runningPod(t, ns, "reads-copy", "copy", volume)
	runningPod(t, ns, "reads-state", "state", volume)
	waitCached(t, c, copied, 2)
	waitCached(t, c, state, 2)
	time.Sleep(1100 * time.Millisecond)
	rotate(t, state, "token-2")
	fp := rotate(t, copied, "token-2")
	testenv.WaitFor(t, 20*time.Second, "the pod mounting the copy to be patched", func() (bool, string) {
		got := synced(t, ns, "copy", fp)
		return slices.Equal(got, []string{"reads-copy"}), fmt.Sprint(got)
	})
	time.Sleep(time.Second)
	if n := testutil.ToFloat64(metrics.PodRefreshes.WithLabelValues(ns)); n != 1 {
		t.Errorf("tokenkeeper_pod_refreshes_total = %v, want 1 (the state Secret's pod is not patched)", n)
	}
}

// TestBound: a tenant with more pods than the bound gets the bound's worth of patches per
// rotation; the rest are counted, and never patched later for that rotation.
func TestBound(t *testing.T) {
	const bound, extra = 5, 3
	ns := namespace(t)
	c, _ := startManager(t, podrefresh.Options{MaxPodsPerRotation: bound})
	sec := tokenSecret(t, ns, "tok", "token-1")
	for i := range bound + extra {
		runningPod(t, ns, fmt.Sprintf("p%02d", i), "tok", volume)
	}
	waitCached(t, c, sec, bound+extra)
	time.Sleep(1100 * time.Millisecond)
	fp := rotate(t, sec, "token-2")
	testenv.WaitFor(t, 20*time.Second, "the bound's worth of pods to be patched", func() (bool, string) {
		got := synced(t, ns, "tok", fp)
		return len(got) == bound, fmt.Sprint(got)
	})
	time.Sleep(3 * time.Second)
	if got := synced(t, ns, "tok", fp); len(got) != bound {
		t.Errorf("%d pods patched, want the bound %d", len(got), bound)
	}
	if n := testutil.ToFloat64(metrics.PodRefreshesBounded.WithLabelValues(ns)); n != extra {
		t.Errorf("tokenkeeper_pod_refreshes_bounded_total = %v, want %d", n, extra)
	}
	if n := testutil.ToFloat64(metrics.PodRefreshes.WithLabelValues(ns)); n != bound {
		t.Errorf("tokenkeeper_pod_refreshes_total = %v, want %d", n, bound)
	}
}

// TestHostileTenantDelaysNoOther: a namespace with many pods to patch under a slow rate limit
// does not hold up another namespace's single pod, even with every worker busy (one worker
// here; hostile namespaces could occupy all of them): namespaces take turns, a few patches each.
func TestHostileTenantDelaysNoOther(t *testing.T) {
	const many = 40
	big, small := namespace(t), namespace(t)
	c, _ := startManagerWorkers(t, podrefresh.Options{MaxPodsPerRotation: 100, QPS: 10}, 1)
	bigSec, smallSec := tokenSecret(t, big, "tok", "big-1"), tokenSecret(t, small, "tok", "small-1")
	for i := range many {
		runningPod(t, big, fmt.Sprintf("p%02d", i), "tok", volume)
	}
	runningPod(t, small, "app", "tok", volume)
	waitCached(t, c, bigSec, many)
	waitCached(t, c, smallSec, 1)
	time.Sleep(1100 * time.Millisecond)
	bigFP := rotate(t, bigSec, "big-2")
	time.Sleep(100 * time.Millisecond) // the big namespace is queued first
	smallFP := rotate(t, smallSec, "small-2")
	testenv.WaitFor(t, 20*time.Second, "the small namespace's pod to be patched", func() (bool, string) {
		return len(synced(t, small, "tok", smallFP)) == 1, ""
	})
	// At 10 patches a second the big namespace needs 4 s; the small one waited for one pass.
	if n := len(synced(t, big, "tok", bigFP)); n >= many {
		t.Errorf("the small namespace's pod was patched only after all %d of the big one's", n)
	}
	testenv.WaitFor(t, 30*time.Second, "every pod of the big namespace to be patched", func() (bool, string) {
		n := len(synced(t, big, "tok", bigFP))
		return n == many, fmt.Sprint(n)
	})
}
