package credential

import (
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
)

func TestSecretUses(t *testing.T) {
	envRef := func(name string) corev1.EnvVar {
		return corev1.EnvVar{Name: "T", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: "token"}}}
	}
	cases := map[string]struct {
		reason string
		spec   corev1.PodSpec
		want   map[string][]v1alpha1.SecretUse
	}{
		"Volume": {
			reason: "a secret volume is updated in place by the kubelet",
			spec:   corev1.PodSpec{Volumes: []corev1.Volume{{Name: "t", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "a"}}}}},
			want:   map[string][]v1alpha1.SecretUse{"a": {v1alpha1.SecretUseVolume}},
		},
		"Projected": {
			reason: "a projected volume's secret sources count, its other sources do not",
			spec: corev1.PodSpec{Volumes: []corev1.Volume{{Name: "p", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
				Sources: []corev1.VolumeProjection{{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "a"}}},
					{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}}}}}}}}},
			want: map[string][]v1alpha1.SecretUse{"a": {v1alpha1.SecretUseProjected}},
		},
		"EnvAndEnvFromInInitContainers": {
			reason: "init containers read Secrets at start too; each way is listed once, in a fixed order",
			spec: corev1.PodSpec{
				InitContainers: []corev1.Container{{Name: "i", EnvFrom: []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "a"}}}}}},
				Containers:     []corev1.Container{{Name: "c", Env: []corev1.EnvVar{envRef("a"), envRef("a"), envRef("b"), {Name: "PLAIN", Value: "x"}}}},
				Volumes:        []corev1.Volume{{Name: "t", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "a"}}}},
			},
			want: map[string][]v1alpha1.SecretUse{"a": {v1alpha1.SecretUseVolume, v1alpha1.SecretUseEnv, v1alpha1.SecretUseEnvFrom}, "b": {v1alpha1.SecretUseEnv}},
		},
		"NoSecrets": {
			reason: "ConfigMaps and literal values are no Secret use",
			spec:   corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Env: []corev1.EnvVar{{Name: "A", Value: "b"}}}}},
			want:   map[string][]v1alpha1.SecretUse{},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got := secretUses(&tc.spec)
			if len(got) != len(tc.want) {
				t.Fatalf("%s: got %v, want %v", tc.reason, got, tc.want)
			}
			for s, w := range tc.want {
				if !slices.Equal(got[s], w) {
					t.Errorf("%s: Secret %s: got %v, want %v", tc.reason, s, got[s], w)
				}
			}
			// What the cache keeps of a workload must still say the same.
			d := &appsv1.Deployment{Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: tc.spec}}}
			stripped, _ := stripWorkload(d)
			if again := secretUses(&stripped.(*appsv1.Deployment).Spec.Template.Spec); len(again) != len(got) {
				t.Errorf("after stripWorkload: %v, before: %v", again, got)
			}
		})
	}
}

func TestRestartedForRoundTrip(t *testing.T) {
	entries := map[string]string{"b": "22", "a": "11"}
	v := formatRestartedFor(entries)
	if v != "a=11,b=22" {
		t.Fatalf("formatRestartedFor = %q, want sorted a=11,b=22 (the same tokens must give the same pod template)", v)
	}
	d := &appsv1.Deployment{}
	d.Spec.Template.Annotations = map[string]string{v1alpha1.AnnotationRestartedFor: v}
	got := restartedFor(d)
	if len(got) != 2 || got["a"] != "11" || got["b"] != "22" {
		t.Fatalf("restartedFor = %v", got)
	}
}
