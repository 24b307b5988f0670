//go:build e2e

package e2e_test

import (
	"encoding/json"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer/issuertest"
)

// noLeaks: no password, API secret or token any issuer granted appears in the managers' logs
// (every container, and the one killed above), in any Event, or in any status.
func (s *suite) noLeaks(t *testing.T) {
	var haystack strings.Builder
	pods := &corev1.PodList{}
	if err := s.c.List(t.Context(), pods, client.InNamespace(systemNS)); err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		for _, cs := range p.Status.ContainerStatuses {
			opts := []corev1.PodLogOptions{{Container: cs.Name}}
			if cs.RestartCount > 0 {
				opts = append(opts, corev1.PodLogOptions{Container: cs.Name, Previous: true})
			}
			for _, o := range opts {
				raw, err := s.cs.CoreV1().Pods(systemNS).GetLogs(p.Name, &o).DoRaw(t.Context())
				if err != nil {
					t.Fatalf("logs of %s: %v", p.Name, err)
				}
				haystack.Write(raw)
			}
		}
	}
	logBytes := haystack.Len()
	events, err := s.cs.CoreV1().Events(metav1.NamespaceAll).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events.Items {
		haystack.WriteString(e.Message + "\n")
	}
	for _, list := range []client.ObjectList{&v1alpha1.CredentialList{}, &v1alpha1.IssuerList{}, &v1alpha1.TokenValidatorList{}} {
		if err := s.c.List(t.Context(), list); err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(list)
		haystack.Write(b)
	}
	secrets := append([]string(nil), issuertest.Secrets...)
	for _, srv := range s.issuers.Servers {
		secrets = append(secrets, srv.IssuedTokens()...)
	}
	if s.exchange != nil {
		secrets = append(secrets, s.exchange.IssuedTokens()...)
	}
	all := haystack.String()
	for _, sec := range secrets {
		if i := strings.Index(all, sec); i >= 0 {
			// Show where, not what.
			t.Errorf("a secret or token appears near: %q", all[max(0, i-120):i])
		}
	}
	if logBytes == 0 || len(events.Items) == 0 {
		t.Fatalf("too little to check: %d bytes of logs, %d Events", logBytes, len(events.Items))
	}
	t.Logf("%d secrets and tokens absent from %d bytes of manager logs, %d Events and every status", len(secrets), logBytes, len(events.Items))
}
