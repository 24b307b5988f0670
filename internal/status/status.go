// Package status writes a reconciled object's status the one way every tokenkeeper reconciler
// does: through the status subresource (never touching spec), only when it changed as the API
// server stores it, and with an optimistic lock.
package status

import (
	"bytes"
	"context"
	"encoding/json"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
)

// Patch writes obj's status when it differs from before's. The statuses are compared as the API
// server stores them (JSON: times keep whole seconds, so a time that differs only below the
// second, the same renewal time computed again, is no change), and the patch carries before's
// resourceVersion: a reconcile that started from a stale cached copy must not write its view
// over a newer status, so it conflicts and runs again from the fresh copy. An object deleted
// meanwhile is no error.
func Patch[T client.Object](ctx context.Context, c client.StatusClient, before, obj T, statusOf func(T) any) error {
	old, err := json.Marshal(statusOf(before))
	if err != nil {
		return err
	}
	now, err := json.Marshal(statusOf(obj))
	if err != nil {
		return err
	}
	if bytes.Equal(old, now) {
		return nil
	}
	return client.IgnoreNotFound(c.Status().Patch(ctx, obj, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})))
}

// SetCondition sets one condition, typed as the API declares types and reasons, with the
// object's generation (meta.SetStatusCondition: the transition time moves only when the status
// does).
func SetCondition(conds *[]metav1.Condition, typ v1alpha1.ConditionType, s metav1.ConditionStatus, reason v1alpha1.ConditionReason, msg string, generation int64) {
	meta.SetStatusCondition(conds, metav1.Condition{Type: string(typ), Status: s, Reason: string(reason), Message: msg, ObservedGeneration: generation})
}

// Condition is the condition of type typ, or nil.
func Condition(conds []metav1.Condition, typ v1alpha1.ConditionType) *metav1.Condition {
	return meta.FindStatusCondition(conds, string(typ))
}
