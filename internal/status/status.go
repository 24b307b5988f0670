// Package status writes a reconciled object's status the one way every tokenkeeper reconciler
// does: through the status subresource (never touching spec), only when it changed as the API
// server stores it, and with an optimistic lock.
package status

import (
	"bytes"
	"context"
	"encoding/json"

	"sigs.k8s.io/controller-runtime/pkg/client"
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
