package credential

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer"
	"github.com/tokenkeeper/tokenkeeper/internal/login"
	"github.com/tokenkeeper/tokenkeeper/internal/metrics"
	"github.com/tokenkeeper/tokenkeeper/internal/names"
	"github.com/tokenkeeper/tokenkeeper/internal/resolve"
)

// revokeDeadline bounds the whole revocation of one deleted Credential, all its sessions: its
// finalizer (and so its namespace, when that is being deleted) is let go within it.
const revokeDeadline = 2 * revokeTimeout

// maxRevocationSnapshot bounds the copy of the issuer and inputs kept in the state Secret (input
// Secrets are at most 16 KiB each); a larger one is not kept.
const maxRevocationSnapshot = 64 << 10

// revocationSnapshot is what revoking needs besides the tokens, kept in the state Secret (key
// "revocation") while deleting the Credential revokes: deleting a namespace deletes the Issuer
// and the input Secret in no particular order, possibly before the Credential.
type revocationSnapshot struct {
	// Issuer is the issuer's key ("Issuer/name", "ClusterIssuer/name"); a copy of another
	// issuer than the Credential names is not used.
	Issuer string `json:"issuer"`
	// Spec is the issuer's spec with its CA bundle resolved.
	Spec v1alpha1.IssuerSpec `json:"spec"`
	// Headers are the issuer's extra headers, resolved (they travel in the token Secret too).
	Headers map[string]string `json:"headers,omitempty"`
	// Request holds the resolved inputs (client authentication, the revoke body's template data).
	Request issuer.Request `json:"request"`
}

// keepForRevocation makes the state Secret carry what deleting the Credential needs to revoke its
// sessions, whatever is deleted first: the revoke finalizer, so that the tokens outlive any order
// of deletion, and a copy of the issuer and the inputs. Neither is kept when the Credential does
// not revoke. It writes the state Secret only when either changed; a state Secret not written yet
// gets them with its first write.
func (r *Reconciler) keepForRevocation(ctx context.Context, cred *v1alpha1.Credential, e *env, st *state) error {
	revokes := e.Policy.RevokeOnDelete && e.Client.CanRevoke()
	var snap []byte
	if revokes {
		b, err := json.Marshal(revocationSnapshot{Issuer: e.IssuerKey, Spec: e.Spec, Headers: e.Headers, Request: e.Request})
		switch {
		case err == nil && len(b) <= maxRevocationSnapshot:
			snap = b
		case len(st.revocation) > 0 || !st.revokes: // said once, when the state Secret changes
			logf.FromContext(ctx).Info("not keeping a copy of the issuer and inputs in the state Secret: it is larger than 64 KiB; "+
				"deleting the Credential revokes its sessions only while its issuer and input Secret exist", "bytes", len(b))
		}
	}
	if st.revokes == revokes && bytes.Equal(st.revocation, snap) {
		return nil
	}
	st.revokes, st.revocation = revokes, snap
	if st.resourceVersion == "" {
		return nil
	}
	return r.store.commit(ctx, cred, st)
}

// sessionsOf are the sessions of states to revoke: current, retired, each once.
func sessionsOf(states ...*state) []*issuer.Token {
	seen := map[string]bool{}
	var out []*issuer.Token
	for _, s := range states {
		if s == nil {
			continue
		}
		tokens := []*issuer.Token{s.token}
		for _, old := range s.retired {
			tokens = append(tokens, old.Token)
		}
		for _, tok := range tokens {
			if tok != nil && !seen[tok.AccessToken] {
				seen[tok.AccessToken] = true
				out = append(out, tok)
			}
		}
	}
	return out
}

// fromSnapshot is the env a revocation uses when prepare failed (cause): the issuer and inputs
// as the state Secret kept them. The policies in force still decide whether and where to revoke
// (they are cluster-wide and outlive the namespace).
func (r *Reconciler) fromSnapshot(ctx context.Context, cred *v1alpha1.Credential, st *state, cause error) (*env, error) {
	if st == nil || len(st.revocation) == 0 {
		return nil, fmt.Errorf("%w (the state Secret holds no copy of the issuer and inputs)", cause)
	}
	var snap revocationSnapshot
	if err := json.Unmarshal(st.revocation, &snap); err != nil {
		return nil, fmt.Errorf("%w (the state Secret's copy of the issuer and inputs is unreadable)", cause)
	}
	ref := cred.Spec.IssuerRef
	if snap.Issuer != resolve.IssuerKey(ref) {
		return nil, fmt.Errorf("%w (the state Secret's copy is of %s)", cause, snap.Issuer)
	}
	var iss v1alpha1.GenericIssuer = &v1alpha1.Issuer{ObjectMeta: metav1.ObjectMeta{Namespace: cred.Namespace, Name: ref.Name}, Spec: snap.Spec}
	if resolve.Kind(ref) == v1alpha1.IssuerKindCluster {
		iss = &v1alpha1.ClusterIssuer{ObjectMeta: metav1.ObjectMeta{Name: ref.Name}, Spec: snap.Spec}
	}
	pol, err := r.resolver.Policy(ctx, cred.Namespace, &cred.Spec)
	if err != nil {
		return nil, fmt.Errorf("%w (and the policy: %w)", cause, err)
	}
	if err := resolve.CheckIssuer(pol, iss); err != nil {
		return nil, fmt.Errorf("%w (and the state Secret's copy: %w)", cause, err)
	}
	c, err := issuer.New(issuer.Config{Spec: snap.Spec, Headers: snap.Headers, CheckURL: pol.CheckURL, Clock: r.Clock,
		Transport: r.Transport, Egress: r.Egress})
	if err != nil {
		return nil, fmt.Errorf("%w (and the state Secret's copy: %w)", cause, err)
	}
	logf.FromContext(ctx).Info("revoking with the state Secret's copy of the issuer and inputs", "issuer", snap.Issuer, "reason", cause.Error())
	return &env{Env: &login.Env{Issuer: iss, IssuerKey: snap.Issuer, Policy: pol, Request: snap.Request, Client: c, Headers: snap.Headers, Spec: snap.Spec},
		labels: append([]string{cred.Namespace}, metrics.IssuerLabelValues(cred)...)}, nil
}

// abandon reports sessions a deleted Credential leaves open: counted and logged (a namespace
// being deleted takes no Events), by fingerprint only.
func (r *Reconciler) abandon(ctx context.Context, cred *v1alpha1.Credential, sessions []*issuer.Token, err error) {
	ref := cred.Spec.IssuerRef
	metrics.RevocationsAbandoned.WithLabelValues(cred.Namespace, string(resolve.Kind(ref)), ref.Name).Add(float64(len(sessions)))
	for _, tok := range sessions {
		logf.FromContext(ctx).Info("session not revoked: it stays open at the issuer until it expires",
			"issuer", resolve.IssuerKey(ref), "fingerprint", tok.Fingerprint(), "expiresAt", tok.ExpiresAt.UTC().Format(time.RFC3339), "reason", err.Error())
	}
}

// letDeletedStateGo lets a state Secret someone deleted go while its Credential stays (without
// it would stay Terminating as long as the Credential): the manager carries on from its own copy
// or the token Secret, as when a state Secret is lost. In a namespace being deleted it stays: the
// Credential goes too and revokes from it.
func (r *Reconciler) letDeletedStateGo(ctx context.Context, cred *v1alpha1.Credential) error {
	sec := &corev1.Secret{}
	if err := r.Get(ctx, stateKey(cred), sec); err != nil || sec.DeletionTimestamp.IsZero() || !controllerutil.ContainsFinalizer(sec, Finalizer) {
		return client.IgnoreNotFound(err)
	}
	ns := &corev1.Namespace{}
	if err := r.APIReader.Get(ctx, types.NamespacedName{Name: cred.Namespace}, ns); err != nil || !ns.DeletionTimestamp.IsZero() {
		return client.IgnoreNotFound(err)
	}
	logf.FromContext(ctx).Info("the state Secret was deleted while its Credential stays: letting it go", "secret", sec.Name)
	return r.store.release(ctx, stateKey(cred), sec)
}

// letOrphanedStateGo lets the state Secret of a Credential that is gone without revoking (its
// finalizer removed by hand) go when it is being deleted: nothing else would.
func (r *Reconciler) letOrphanedStateGo(ctx context.Context, key types.NamespacedName) error {
	k := types.NamespacedName{Namespace: key.Namespace, Name: names.StateSecret(key.Name)}
	sec := &corev1.Secret{}
	if err := r.Get(ctx, k, sec); err != nil || sec.DeletionTimestamp.IsZero() || !controllerutil.ContainsFinalizer(sec, Finalizer) {
		return client.IgnoreNotFound(err)
	}
	if err := r.APIReader.Get(ctx, k, sec); err != nil || !controllerutil.ContainsFinalizer(sec, Finalizer) { // the cache may lag
		return client.IgnoreNotFound(err)
	}
	logf.FromContext(ctx).Info("the state Secret of a Credential deleted without revoking is let go; its sessions were not revoked", "secret", k.Name)
	return r.store.release(ctx, k, sec)
}
