package podrefresh

import (
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
)

func TestMountedSecrets(t *testing.T) {
	pod := &corev1.Pod{Spec: corev1.PodSpec{
		Volumes: []corev1.Volume{
			{Name: "a", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "tok"}}},
			{Name: "b", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
				{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "proj"}}},
				{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}}},
				{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "tok"}}},
			}}}},
			{Name: "c", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "x"}}}},
		},
		Containers: []corev1.Container{{Name: "app", EnvFrom: []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: "env-only"}}}}}},
	}}
	if got, want := mountedSecrets(pod), []string{"proj", "tok"}; !slices.Equal(got, want) {
		t.Errorf("mountedSecrets = %v, want %v (volumes and projected sources, once each; never env)", got, want)
	}
}

func TestStripPod(t *testing.T) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u", Labels: map[string]string{"app": "x"},
			Annotations: map[string]string{v1alpha1.AnnotationSyncedToken: "tok=1", "other": "big"}},
		Spec: corev1.PodSpec{
			Volumes:    []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "tok"}}}},
			Containers: []corev1.Container{{Name: "app", Image: "img", Env: []corev1.EnvVar{{Name: "A", Value: "b"}}}},
		},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.1"},
	}
	o, err := stripPod(pod)
	if err != nil {
		t.Fatal(err)
	}
	got := o.(*corev1.Pod)
	if got.Name != "p" || got.UID != "u" || got.Status.Phase != corev1.PodRunning || got.Labels != nil || len(got.Spec.Containers) != 0 ||
		len(got.Annotations) != 1 || got.Annotations[v1alpha1.AnnotationSyncedToken] != "tok=1" || got.Status.PodIP != "" {
		t.Errorf("stripPod kept too much or too little: %+v", got)
	}
	if !slices.Equal(mountedSecrets(got), []string{"tok"}) {
		t.Errorf("stripped pod mounts %v, want [tok]", mountedSecrets(got))
	}
}

func TestSyncedAnnotation(t *testing.T) {
	cases := map[string]struct {
		reason                    string
		current, secret, fp, want string
		mounted                   []string
	}{
		"First": {reason: "a pod without the annotation gets one entry", secret: "tok", fp: "f1", want: "tok=f1"},
		"Replace": {reason: "a Secret's entry is replaced, others kept, sorted", current: "z=9,tok=f0", secret: "tok", fp: "f1",
			mounted: []string{"tok", "z"}, want: "tok=f1,z=9"},
		"DropUnmounted": {reason: "entries of Secrets the pod does not mount go, so the value stays bounded", current: "gone=1,tok=f0",
			secret: "tok", fp: "f1", mounted: []string{"tok"}, want: "tok=f1"},
		"Malformed": {reason: "garbage someone wrote is dropped, not kept or failed on", current: "x,=y,tok=", secret: "tok", fp: "f1",
			want: "tok=f1"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if got := SyncedAnnotation(tc.current, tc.secret, tc.fp, tc.mounted); got != tc.want {
				t.Errorf("%s: got %q, want %q", tc.reason, got, tc.want)
			}
		})
	}
}

func TestPlanRotation(t *testing.T) {
	at := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	pod := func(name string, mutate ...func(*corev1.Pod)) corev1.Pod {
		p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID(name), CreationTimestamp: metav1.NewTime(at.Add(-time.Hour))},
			Status: corev1.PodStatus{Phase: corev1.PodRunning}}
		for _, m := range mutate {
			m(&p)
		}
		return p
	}
	synced := func(v string) func(*corev1.Pod) {
		return func(p *corev1.Pod) { p.Annotations = map[string]string{v1alpha1.AnnotationSyncedToken: v} }
	}
	cases := map[string]struct {
		reason  string
		pods    []corev1.Pod
		patched []types.UID
		bound   int
		want    []string
		bounded int
		done    int
	}{
		"All": {reason: "every running pod started before the rotation is patched, by name", bound: 10,
			pods: []corev1.Pod{pod("b"), pod("a")}, want: []string{"a", "b"}},
		"Synced": {reason: "a pod carrying the fingerprint is done: a second pass or a new manager patches nothing", bound: 10,
			pods: []corev1.Pod{pod("a", synced("tok=fp")), pod("b", synced("other=x,tok=fp"))}, done: 2},
		"OldFingerprint": {reason: "a pod carrying an older token's fingerprint is patched", bound: 10,
			pods: []corev1.Pod{pod("a", synced("tok=old"))}, want: []string{"a"}},
		"PatchedNotYetSeen": {reason: "a pod patched in this rotation counts as done before the cache shows it", bound: 10,
			pods: []corev1.Pod{pod("a"), pod("b")}, patched: []types.UID{"a"}, want: []string{"b"}, done: 1},
		"Skipped": {reason: "pods created after the rotation mounted the new token; deleting or not running pods are left", bound: 10,
			pods: []corev1.Pod{
				pod("new", func(p *corev1.Pod) { p.CreationTimestamp = metav1.NewTime(at.Add(time.Second)) }),
				pod("deleting", func(p *corev1.Pod) { p.DeletionTimestamp = &metav1.Time{Time: at} }),
				pod("pending", func(p *corev1.Pod) { p.Status.Phase = corev1.PodPending }),
			}},
		"Bound": {reason: "beyond the bound pods are left to the kubelet's periodic sync, and counted", bound: 2,
			pods: []corev1.Pod{pod("d"), pod("c"), pod("b"), pod("a")}, want: []string{"a", "b"}, bounded: 2},
		"BoundCountsDone": {reason: "pods already synced for this token use up the bound: a restart never exceeds it", bound: 2,
			pods: []corev1.Pod{pod("a", synced("tok=fp")), pod("b"), pod("c")}, want: []string{"b"}, bounded: 1, done: 1},
		"BoundReached": {reason: "more synced pods than the bound (it was lowered) leaves nothing negative", bound: 1,
			pods: []corev1.Pod{pod("a", synced("tok=fp")), pod("b", synced("tok=fp")), pod("c")}, bounded: 1, done: 2},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			rot := &rotation{fp: "fp", at: at, patched: map[types.UID]struct{}{}}
			for _, uid := range tc.patched {
				rot.patched[uid] = struct{}{}
			}
			p := planRotation(tc.pods, "tok", rot, tc.bound)
			var got []string
			for _, pod := range p.patch {
				got = append(got, pod.Name)
			}
			if !slices.Equal(got, tc.want) || p.bounded != tc.bounded || p.done != tc.done {
				t.Errorf("%s: patch %v bounded %d done %d, want %v %d %d", tc.reason, got, p.bounded, p.done, tc.want, tc.bounded, tc.done)
			}
		})
	}
}

func TestRotationsWindow(t *testing.T) {
	at := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	r := newRotations()
	r.record("ns", "b", "f2", at)
	r.record("ns", "a", "f1", at.Add(-time.Minute))
	if got := r.active("ns", at.Add(30*time.Second), time.Minute); len(got) != 1 || got[0].name != "b" {
		t.Errorf("active after a's window = %v, want only b", got)
	}
	if r.has("ns", "a", at, time.Minute) {
		t.Error("a rotation past its window is dropped")
	}
	r.forget("ns", "b")
	if len(r.byNS) != 0 {
		t.Errorf("forgetting the last rotation of a namespace keeps %v", r.byNS)
	}
}
