//go:build e2e

package e2e_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/demo"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer"
	"github.com/tokenkeeper/tokenkeeper/internal/testenv"
)

// podRefresh: the installed manager asked the kubelet to rewrite the application pod's Secret
// volumes after the rotations: the pod's tokenkeeper.io/synced-token names the current token of
// every Secret it mounts (docs/concepts/delivery.md).
func (s *suite) podRefresh(t *testing.T) {
	testenv.WaitFor(t, 30*time.Second, "the application pod to name every mounted token", func() (bool, string) {
		pod := &corev1.Pod{}
		if err := s.c.Get(t.Context(), types.NamespacedName{Namespace: appNS, Name: demo.AppPod}, pod); err != nil {
			return false, err.Error()
		}
		synced := strings.Split(pod.Annotations[v1alpha1.AnnotationSyncedToken], ",")
		var missing []string
		for _, srv := range s.issuers.Servers {
			name := demo.TokenSecret(srv.Flavor)
			sec := &corev1.Secret{}
			if err := s.c.Get(t.Context(), types.NamespacedName{Namespace: appNS, Name: name}, sec); err != nil {
				return false, err.Error()
			}
			if !slices.Contains(synced, name+"="+issuer.Fingerprint(string(sec.Data[v1alpha1.SecretKeyToken]))) {
				missing = append(missing, name)
			}
		}
		return len(missing) == 0, fmt.Sprintf("%s is %v; not the current token of %v", v1alpha1.AnnotationSyncedToken, synced, missing)
	})
}
