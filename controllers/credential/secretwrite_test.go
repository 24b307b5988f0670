package credential_test

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer/issuertest"
)

// A token Secret that can never be written is visible: the reason in Ready, an Event, and no
// hot retry. (v0.2: no condition, no Event, only manager log lines, retried for ever.)
func TestSecretThatCannotBeWritten(t *testing.T) {
	t.Parallel()
	t.Run("InvalidLabelKey", func(t *testing.T) {
		t.Parallel()
		// Admitted without the webhook (or before it knew better): the controller refuses to send
		// a write the API server would refuse, naming the field.
		f := setupWith(t, issuertest.Seed004, nil, func(c *v1alpha1.Credential) {
			c.Spec.SecretTemplate = &v1alpha1.SecretTemplate{Labels: map[string]string{"team name": "payments"}}
		})
		cond := f.waitCondition(string(v1alpha1.ReasonInvalidConfig))
		if !strings.Contains(cond.Message, "spec.secretTemplate.labels") {
			t.Errorf("Ready message %q does not name the field", cond.Message)
		}
		f.waitEvent(string(v1alpha1.ReasonInvalidConfig))
	})
	t.Run("RefusedByQuota", func(t *testing.T) {
		t.Parallel()
		// The API server refuses the write itself (here a quota: room for the state Secret, not
		// for the token Secret).
		var ns string
		f := setupCreated(t, issuertest.Seed004, nil, nil, func(c *v1alpha1.Credential) error {
			ns = c.Namespace
			setSecretQuota(t, ns, 2, 1) // the input Secret is there; the state Secret fits
			return env.Client.Create(t.Context(), c)
		})
		cond := f.waitCondition(string(v1alpha1.ReasonSecretRejected))
		if !strings.Contains(cond.Message, "exceeded quota") || !strings.Contains(cond.Message, "Secret token") {
			t.Errorf("Ready message %q does not say what the API server refused", cond.Message)
		}
		f.waitEvent(string(v1alpha1.ReasonSecretRejected))
		logins := f.srv.Calls(issuertest.OpLogin)
		time.Sleep(3 * time.Second)
		if n := f.srv.Calls(issuertest.OpLogin); n != logins || logins != 1 {
			t.Errorf("%d logins, want 1: the token is kept in the state Secret and only its write is retried", n)
		}
		// Room made and the Credential touched: the kept token is written, no new login.
		setSecretQuota(t, ns, 3, 2)
		patch := []byte(`{"metadata":{"annotations":{"example.com/touched":"1"}}}`)
		must(t, env.Client.Patch(t.Context(), f.cred(), client.RawPatch(types.MergePatchType, patch)))
		f.waitReady(15 * time.Second)
		if n := f.srv.Calls(issuertest.OpLogin); n != 1 {
			t.Errorf("%d logins, want 1", n)
		}
	})
}

// setSecretQuota puts a quota of hard Secrets on ns with used already counted (no quota
// controller runs beside envtest's API server: the status is set by hand).
func setSecretQuota(t *testing.T, ns string, hard, used int64) {
	t.Helper()
	q := &corev1.ResourceQuota{}
	err := env.Client.Get(t.Context(), types.NamespacedName{Namespace: ns, Name: "secrets"}, q)
	if err != nil {
		q = &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "secrets"},
			Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourceSecrets: *resource.NewQuantity(hard, resource.DecimalSI)}}}
		must(t, env.Client.Create(t.Context(), q))
	} else {
		q.Spec.Hard = corev1.ResourceList{corev1.ResourceSecrets: *resource.NewQuantity(hard, resource.DecimalSI)}
		must(t, env.Client.Update(t.Context(), q))
	}
	q.Status = corev1.ResourceQuotaStatus{Hard: q.Spec.Hard, Used: corev1.ResourceList{corev1.ResourceSecrets: *resource.NewQuantity(used, resource.DecimalSI)}}
	must(t, env.Client.Status().Update(t.Context(), q))
}

// waitCondition waits for Ready=False with reason and returns the condition.
func (f *fixture) waitCondition(reason string) metav1.Condition {
	f.t.Helper()
	var cond metav1.Condition
	waitFor(f.t, 30*time.Second, "Ready=False "+reason, func() (bool, string) {
		c := meta.FindStatusCondition(f.cred().Status.Conditions, string(v1alpha1.ConditionReady))
		if c == nil {
			return false, "no Ready condition"
		}
		cond = *c
		return c.Status == metav1.ConditionFalse && c.Reason == reason, c.Reason + ": " + c.Message
	})
	return cond
}
