//go:build e2e

package e2e_test

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/demo"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer/issuertest"
	"github.com/tokenkeeper/tokenkeeper/internal/testenv"
)

// workloadIdentity: a Credential with no Secret input at all logs in with a token of its
// (pod-less) ServiceAccount at an exchange issuer on the node that verifies the cluster's real
// keys (the API server's discovery document and key set); an application pod mounts the issued
// token and calls the issuer's API with it, across two rotations, never refused.
func (s *suite) workloadIdentity(t *testing.T) {
	const aud = "https://sts.e2e.example.com"
	hc, err := rest.HTTPClientFor(s.cfg)
	if err != nil {
		t.Fatal(err)
	}
	x, err := issuertest.StartExchange(aud, lifetime, hc, s.cfg.Host, net.JoinHostPort(s.nodeIP, "0"), &s.issuers.Cert)
	if err != nil {
		t.Fatal(err)
	}
	s.exchange = x
	app := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: appNS, Name: "sa-app"}, Spec: corev1.PodSpec{
		Containers: []corev1.Container{{Name: "app", Image: demo.AppImage, ImagePullPolicy: corev1.PullNever,
			Env: []corev1.EnvVar{{Name: "CA_FILE", Value: "/etc/demo-ca/ca.crt"}, {Name: "TARGETS", Value: "sts=" + x.URL() + "/use=/var/run/secrets/sts"}},
			VolumeMounts: []corev1.VolumeMount{{Name: "ca", MountPath: "/etc/demo-ca", ReadOnly: true},
				{Name: "sts", MountPath: "/var/run/secrets/sts", ReadOnly: true}}}},
		Volumes: []corev1.Volume{
			{Name: "ca", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: demo.CAConfigMap}}}},
			{Name: "sts", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "sts-token"}}}}}}
	s.create(t, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: appNS, Name: "orders-bot"}})
	s.create(t, &v1alpha1.Issuer{ObjectMeta: metav1.ObjectMeta{Namespace: appNS, Name: "sts"}, Spec: v1alpha1.IssuerSpec{
		URL: v1alpha1.EndpointURL(x.URL() + "/token"), OAuth2: &v1alpha1.OAuth2{}, CABundle: x.CABundle(), ServiceAccountAudience: aud}})
	s.create(t, &v1alpha1.Credential{ObjectMeta: metav1.ObjectMeta{Namespace: appNS, Name: "sts"}, Spec: v1alpha1.CredentialSpec{
		IssuerRef: v1alpha1.IssuerReference{Name: "sts"}, SecretName: "sts-token",
		ServiceAccount: &v1alpha1.ServiceAccountLogin{Name: "orders-bot", TargetAudience: "orders-api"}}})
	s.create(t, app)
	testenv.WaitFor(t, time.Minute, "the ServiceAccount Credential Ready", func() (bool, string) {
		c := &v1alpha1.Credential{}
		if err := s.c.Get(t.Context(), types.NamespacedName{Namespace: appNS, Name: "sts"}, c); err != nil {
			return false, err.Error()
		}
		r := meta.FindStatusCondition(c.Status.Conditions, string(v1alpha1.ConditionReady))
		return r != nil && r.Status == metav1.ConditionTrue, fmt.Sprintf("%+v", r)
	})
	subjects, _ := x.Subjects()
	if want := "system:serviceaccount:" + appNS + ":orders-bot"; !slices.Contains(subjects, want) {
		t.Fatalf("the issuer accepted %v, want %s", subjects, want)
	}
	// Two rotations (three tokens used by the app), every call answered 200.
	testenv.WaitFor(t, 2*lifetime+time.Minute, "the app using three successive tokens", func() (bool, string) {
		raw, err := s.cs.CoreV1().Pods(appNS).GetLogs("sa-app", &corev1.PodLogOptions{}).DoRaw(t.Context())
		if err != nil {
			return false, err.Error()
		}
		a := parseAppLog(string(raw))["sts"]
		if a == nil {
			return false, "no calls yet"
		}
		if len(a.failures) > 0 {
			t.Fatalf("the app's calls with the exchanged token failed:\n%s", strings.Join(a.failures, "\n"))
		}
		return len(a.tokens) >= 3, fmt.Sprintf("%d tokens, %d calls ok", len(a.tokens), a.ok)
	})
}
