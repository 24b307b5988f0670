//go:build e2e

package e2e_test

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/tokenkeeper/tokenkeeper/internal/testenv"
)

const (
	leaseName    = "tokenkeeper.tokenkeeper.io"
	managerImage = "docker.io/local/tokenkeeper:dev"
	// retryPeriod is how often a standby tries to take the Lease (the chart's default); client-go
	// jitters each wait up to 2.2 times it.
	retryPeriod  = 2 * time.Second
	maxRetryWait = retryPeriod * 22 / 10
)

// leader is the Lease's holder identity and the manager pod that holds it (controller-runtime
// names the holder hostname_uuid, and a pod's hostname is its name).
func (s *suite) leader(t *testing.T) (string, *corev1.Pod) {
	t.Helper()
	var holder string
	testenv.WaitFor(t, time.Minute, "a leader", func() (bool, string) {
		lease := &coordinationv1.Lease{}
		if err := s.c.Get(t.Context(), types.NamespacedName{Namespace: systemNS, Name: leaseName}, lease); err != nil {
			return false, err.Error()
		}
		holder = deref(lease.Spec.HolderIdentity)
		return holder != "", "the Lease has no holder"
	})
	pod := &corev1.Pod{}
	name, _, _ := strings.Cut(holder, "_")
	if err := s.c.Get(t.Context(), types.NamespacedName{Namespace: systemNS, Name: name}, pod); err != nil {
		t.Fatalf("the leader's pod: %v", err)
	}
	return holder, pod
}

// leaseDuration is the Lease's declared duration.
func (s *suite) leaseDuration(t *testing.T) time.Duration {
	lease := &coordinationv1.Lease{}
	if err := s.c.Get(t.Context(), types.NamespacedName{Namespace: systemNS, Name: leaseName}, lease); err != nil {
		t.Fatal(err)
	}
	if lease.Spec.LeaseDurationSeconds == nil {
		t.Fatal("the Lease has no duration")
	}
	return time.Duration(*lease.Spec.LeaseDurationSeconds) * time.Second
}

// newLeader waits for a holder other than old and says how long it took from since.
func (s *suite) newLeader(t *testing.T, old string, since time.Time) (string, time.Duration) {
	t.Helper()
	var holder string
	var took time.Duration
	testenv.WaitFor(t, time.Minute, "a new leader", func() (bool, string) {
		lease := &coordinationv1.Lease{}
		if err := s.c.Get(t.Context(), types.NamespacedName{Namespace: systemNS, Name: leaseName}, lease); err != nil {
			return false, err.Error()
		}
		holder, took = deref(lease.Spec.HolderIdentity), time.Since(since)
		return holder != "" && holder != old, "holder " + holder
	})
	return holder, took
}

// leaderDeleted: deleting the leader's pod (SIGTERM) stops it cleanly and releases the Lease;
// the standby (or the replacement pod) takes it at its next try, well within the lease duration.
func (s *suite) leaderDeleted(t *testing.T) {
	duration := s.leaseDuration(t)
	old, pod := s.leader(t)
	start := time.Now()
	if err := s.c.Delete(t.Context(), pod); err != nil {
		t.Fatal(err)
	}
	holder, took := s.newLeader(t, old, start)
	t.Logf("deleted leader %s; %s took over after %s (lease duration %s)", pod.Name, holder, took.Round(100*time.Millisecond), duration)
	if took > duration {
		t.Errorf("takeover took %s, longer than the lease duration %s: the Lease was not released", took, duration)
	}
	s.waitReplicas(t)
}

// leaderKilled: SIGKILL to the leader's process, which cannot release the Lease. The manager
// image is removed from the node first, so neither the kubelet's restart of the killed container
// nor a new pod can start: the standby replica must take over. It takes the Lease once the lease
// duration has passed since it saw the last renewal (seen at its next try) and at its next try
// after that: within the lease duration plus two jittered retry waits.
func (s *suite) leaderKilled(t *testing.T) {
	duration := s.leaseDuration(t)
	old, pod := s.leader(t)
	if len(pod.Status.ContainerStatuses) == 0 {
		t.Fatalf("pod %s has no container status", pod.Name)
	}
	s.ctr(t, "images", "rm", managerImage)
	// Whatever happens next, the node gets the image back (a second import changes nothing).
	t.Cleanup(func() { _ = s.ctrCmd(context.Background(), "images", "import", s.imageTar).Run() })
	id := strings.TrimPrefix(pod.Status.ContainerStatuses[0].ContainerID, "containerd://")
	start := time.Now()
	s.ctr(t, "tasks", "kill", "-s", "SIGKILL", id)
	holder, took := s.newLeader(t, old, start)
	limit := duration + 2*maxRetryWait
	t.Logf("killed leader %s; %s took over after %s (lease duration %s, bound %s)", pod.Name, holder, took.Round(100*time.Millisecond), duration, limit)
	if took > limit {
		t.Errorf("takeover took %s, more than the lease duration plus two retry waits (%s)", took, limit)
	}
	if strings.HasPrefix(holder, pod.Name+"_") {
		t.Errorf("the killed pod %s leads again: the image was not removed", pod.Name)
	}
	s.ctr(t, "images", "import", s.imageTar)
	s.waitReplicas(t)
}

// ctr runs containerd's client against the node's containerd, in the kubelet's namespace.
func (s *suite) ctr(t *testing.T, args ...string) {
	t.Helper()
	if out, err := s.ctrCmd(t.Context(), args...).CombinedOutput(); err != nil {
		t.Fatalf("ctr %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (s *suite) ctrCmd(ctx context.Context, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ctr", append([]string{"-a", s.sock, "-n", "k8s.io"}, args...)...)
}

// waitReplicas waits for both manager replicas to be Ready again.
func (s *suite) waitReplicas(t *testing.T) {
	t.Helper()
	testenv.WaitFor(t, 2*time.Minute, "2 manager replicas Ready", func() (bool, string) {
		dep := &appsv1.Deployment{}
		if err := s.c.Get(t.Context(), types.NamespacedName{Namespace: systemNS, Name: deployment}, dep); err != nil {
			return false, err.Error()
		}
		st := dep.Status
		return st.ReadyReplicas == 2 && st.UpdatedReplicas == 2 && st.Replicas == 2, fmt.Sprintf("%d/%d Ready", st.ReadyReplicas, st.Replicas)
	})
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
