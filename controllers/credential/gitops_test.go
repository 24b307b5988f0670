package credential_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/controllers/credential"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer/issuertest"
)

// gitopsManager is the field manager of the user's tool in these tests (Argo CD, Flux, kubectl).
const gitopsManager = "gitops"

// TestManagerNeverWritesSpec applies Credentials as GitOps tools and kubectl do, with durations
// spelled as people write them ("60s", not Go's "1m0s"), lets the manager make them Ready (with
// the revoke finalizer, which it adds), and finds the spec byte for byte as applied: generation 1,
// no field of spec owned by any other manager, and a dry-run re-apply (what `kubectl diff` does)
// changes nothing.
func TestManagerNeverWritesSpec(t *testing.T) {
	appliers := map[string]func(t *testing.T, u *unstructured.Unstructured) error{
		"ssa": func(t *testing.T, u *unstructured.Unstructured) error {
			return env.Client.Apply(t.Context(), client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(gitopsManager), client.ForceOwnership)
		},
		"csa": func(t *testing.T, u *unstructured.Unstructured) error { // kubectl apply (client-side): a create with the last-applied annotation
			last, err := json.Marshal(u.Object)
			if err != nil {
				return err
			}
			u.SetAnnotations(map[string]string{"kubectl.kubernetes.io/last-applied-configuration": string(last)})
			return env.Client.Create(t.Context(), u, client.FieldOwner(gitopsManager))
		},
	}
	revokes := map[issuertest.Flavor]bool{issuertest.Seed000: true, issuertest.Seed002: true, issuertest.OAuth2: true}
	for _, f := range []issuertest.Flavor{issuertest.Seed000, issuertest.Seed001, issuertest.Seed002, issuertest.Seed003, issuertest.Seed004, issuertest.OAuth2} {
		for how, apply := range appliers {
			t.Run(string(f)+"/"+how, func(t *testing.T) {
				t.Parallel()
				var applied map[string]any
				fx := setupCreated(t, f, nil, nil, func(cred *v1alpha1.Credential) error {
					u := asWritten(t, cred)
					applied = u.Object["spec"].(map[string]any)
					return apply(t, u)
				})
				fx.waitReady(30 * time.Second)
				u := &unstructured.Unstructured{}
				u.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind("Credential"))
				waitFor(t, 10*time.Second, "the revoke finalizer", func() (bool, string) {
					must(t, env.Client.Get(t.Context(), fx.key, u))
					// Only issuers that can revoke get it (seeds 001, 003 and 004 cannot).
					return controllerutil.ContainsFinalizer(u, credential.Finalizer) || !revokes[f], fmt.Sprint(u.GetFinalizers())
				})
				if got := u.Object["spec"]; !reflect.DeepEqual(got, applied) {
					t.Errorf("spec changed by the manager:\napplied %v\nstored  %v", applied, got)
				}
				if u.GetGeneration() != 1 {
					t.Errorf("generation %d, want 1: something wrote the spec", u.GetGeneration())
				}
				for _, m := range u.GetManagedFields() {
					if m.Manager != gitopsManager && m.FieldsV1 != nil && strings.Contains(m.FieldsV1.GetRawString(), `"f:spec"`) {
						t.Errorf("manager %q (%s %s) owns fields of spec: %s", m.Manager, m.Operation, m.Subresource, m.FieldsV1.GetRawString())
					}
				}
				// kubectl diff: the same manifest applied again as a server-side dry run.
				again := asWritten(t, fx.cred())
				again.Object["spec"] = applied
				must(t, env.Client.Apply(t.Context(), client.ApplyConfigurationFromUnstructured(again), client.FieldOwner(gitopsManager),
					client.ForceOwnership, client.DryRunAll))
				got := &unstructured.Unstructured{}
				got.SetGroupVersionKind(u.GroupVersionKind())
				must(t, env.Client.Get(t.Context(), fx.key, got))
				if got.GetGeneration() != 1 || !reflect.DeepEqual(got.Object["spec"], applied) {
					t.Errorf("re-applying the same manifest would change the object (generation %d)", got.GetGeneration())
				}
			})
		}
	}
}

// asWritten is cred as a user's manifest has it: durations in a person's spelling.
func asWritten(t *testing.T, cred *v1alpha1.Credential) *unstructured.Unstructured {
	t.Helper()
	b, err := json.Marshal(cred)
	must(t, err)
	u := &unstructured.Unstructured{}
	must(t, json.Unmarshal(b, &u.Object))
	u.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind("Credential"))
	spec := u.Object["spec"].(map[string]any)
	spec["sessionDuration"] = "60s"
	unstructured.RemoveNestedField(u.Object, "status")
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	unstructured.RemoveNestedField(u.Object, "metadata", "managedFields")
	unstructured.RemoveNestedField(u.Object, "metadata", "resourceVersion")
	unstructured.RemoveNestedField(u.Object, "metadata", "uid")
	unstructured.RemoveNestedField(u.Object, "metadata", "generation")
	unstructured.RemoveNestedField(u.Object, "metadata", "finalizers")
	return u
}
