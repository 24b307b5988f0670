package credential_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/controllers/credential"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer/issuertest"
	"github.com/tokenkeeper/tokenkeeper/internal/metrics"
)

// revokeBound is how long a deleted Credential may stay Terminating: the whole revocation is
// bounded by twice the 10-s revoke timeout, plus a few seconds for the watch and the patches.
const revokeBound = 25 * time.Second

// stateSecret returns the fixture's state Secret, nil when it is gone (the Credential may be).
func (f *fixture) stateSecret() *corev1.Secret {
	s := &corev1.Secret{}
	name := credential.StateSecretName(&v1alpha1.Credential{ObjectMeta: metav1.ObjectMeta{Name: f.key.Name}})
	err := env.Client.Get(f.t.Context(), types.NamespacedName{Namespace: f.ns, Name: name}, s)
	if apierrors.IsNotFound(err) {
		return nil
	}
	must(f.t, err)
	return s
}

// logged reports whether a manager log line about the fixture's namespace contains msg.
func (f *fixture) logged(msg string) bool {
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, f.ns) && strings.Contains(l, msg) {
			return true
		}
	}
	return false
}

// deleteNamespace starts deleting the fixture's namespace. envtest runs no namespace controller:
// the namespace stays Terminating (nothing can be created in it, Events included) and the test
// deletes its objects itself, in the order it wants.
func (f *fixture) deleteNamespace() {
	f.t.Helper()
	must(f.t, env.Client.Delete(f.t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: f.ns}}))
}

// deleteCredentialWithin deletes the Credential and waits for it to be gone within bound.
func (f *fixture) deleteCredentialWithin(bound time.Duration) {
	f.t.Helper()
	start := time.Now()
	must(f.t, env.Client.Delete(f.t.Context(), f.cred()))
	waitFor(f.t, bound, "the Credential gone", func() (bool, string) {
		err := env.Client.Get(f.t.Context(), f.key, &v1alpha1.Credential{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
	f.t.Logf("the Credential was gone %s after its deletion", time.Since(start).Round(100*time.Millisecond))
}

// deleteIssuerAndInputs deletes the Credential's input Secret and its issuer (seed 000's is a
// ClusterIssuer: a cluster being cleaned up may delete it too) and the issuer's header Secret.
func (f *fixture) deleteIssuerAndInputs() {
	f.t.Helper()
	ctx := f.t.Context()
	objs := []client.Object{f.input(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: issuertest.HeaderSecretName}}}
	if ref := f.cred().Spec.IssuerRef; ref.Kind == v1alpha1.IssuerKindCluster {
		objs = append(objs, &v1alpha1.ClusterIssuer{ObjectMeta: metav1.ObjectMeta{Name: ref.Name}})
	} else {
		objs = append(objs, &v1alpha1.Issuer{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: ref.Name}})
	}
	for _, o := range objs {
		if err := env.Client.Delete(ctx, o); !apierrors.IsNotFound(err) {
			must(f.t, err)
		}
	}
}

// Deleting a namespace deletes its objects in no particular order (no garbage-collection
// ordering): each order still revokes the Credential's session at the issuer, and the Credential
// never holds the namespace in Terminating longer than the revocation deadline. Seed 000 revokes
// with the token alone; OAuth2 (RFC 7009) needs the client's authentication, from the input
// Secret that may be gone.
func TestNamespaceDeletionRevokes(t *testing.T) {
	t.Parallel()
	for _, flavor := range []issuertest.Flavor{issuertest.Seed000, issuertest.OAuth2} {
		t.Run(string(flavor), func(t *testing.T) {
			t.Parallel()
			t.Run("IssuerAndInputsFirst", func(t *testing.T) {
				t.Parallel()
				f := setup(t, flavor, nil)
				f.waitReady(30 * time.Second)
				tok := f.token()
				st := f.stateSecret()
				if !controllerutil.ContainsFinalizer(st, credential.Finalizer) || len(st.Data["revocation"]) == 0 {
					t.Fatalf("state Secret: finalizers %v, revocation copy %d bytes; want the revoke finalizer and a copy", st.Finalizers, len(st.Data["revocation"]))
				}
				f.deleteNamespace()
				f.deleteIssuerAndInputs()
				time.Sleep(2 * time.Second) // the manager sees them gone
				f.deleteCredentialWithin(revokeBound)
				if f.srv.Valid(tok) || f.srv.Calls(issuertest.OpRevoke) != 1 {
					t.Fatalf("session not revoked: valid=%t (%s), revoke calls=%d", f.srv.Valid(tok), f.srv.Why(tok), f.srv.Calls(issuertest.OpRevoke))
				}
				if !f.logged("revoking with the state Secret's copy of the issuer and inputs") {
					t.Errorf("the revocation did not use the state Secret's copy")
				}
			})
			t.Run("StateSecretFirst", func(t *testing.T) {
				t.Parallel()
				f := setup(t, flavor, nil)
				f.waitReady(30 * time.Second)
				tok := f.token()
				f.deleteNamespace()
				must(t, env.Client.Delete(t.Context(), f.stateSecret()))
				time.Sleep(2 * time.Second) // the manager sees it deleted, and keeps it
				st := f.stateSecret()
				if st == nil || st.DeletionTimestamp.IsZero() || !controllerutil.ContainsFinalizer(st, credential.Finalizer) {
					t.Fatalf("the state Secret did not stay, Terminating with its finalizer: %v", st)
				}
				f.deleteCredentialWithin(revokeBound)
				if f.srv.Valid(tok) || f.srv.Calls(issuertest.OpRevoke) != 1 {
					t.Fatalf("session not revoked: valid=%t (%s), revoke calls=%d", f.srv.Valid(tok), f.srv.Why(tok), f.srv.Calls(issuertest.OpRevoke))
				}
				waitFor(t, 5*time.Second, "the state Secret gone", func() (bool, string) { return f.stateSecret() == nil, "still there" })
			})
			t.Run("IssuerDown", func(t *testing.T) {
				t.Parallel()
				f := setup(t, flavor, nil)
				f.waitReady(30 * time.Second)
				ref := f.cred().Spec.IssuerRef
				abandoned := metrics.RevocationsAbandoned.WithLabelValues(f.ns, string(ref.Kind), ref.Name)
				f.srv.Close()
				f.deleteNamespace()
				f.deleteCredentialWithin(revokeBound)
				if n := testutil.ToFloat64(abandoned); n != 1 {
					t.Errorf("tokenkeeper_revocations_abandoned_total{namespace=%q,issuer_kind=%q,issuer_name=%q} = %v, want 1", f.ns, ref.Kind, ref.Name, n)
				}
				if !f.logged("session not revoked: it stays open at the issuer until it expires") {
					t.Errorf("no log line reports the session left open")
				}
				waitFor(t, 5*time.Second, "the state Secret let go", func() (bool, string) {
					st := f.stateSecret()
					return st == nil || len(st.Finalizers) == 0, "still held"
				})
			})
		})
	}
}
