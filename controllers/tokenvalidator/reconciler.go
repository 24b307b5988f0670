// Package tokenvalidator reconciles TokenValidators: it builds a validator from the trusted
// issuers (key sets by JWKS or OIDC discovery, HMAC secrets, introspection), installs it in the
// validation server, refreshes keys periodically and reports Ready with the key count. Every
// replica serves validations, so every replica reconciles TokenValidators; only the leader writes
// their status.
package tokenvalidator

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/egress"
	"github.com/tokenkeeper/tokenkeeper/internal/login"
	"github.com/tokenkeeper/tokenkeeper/internal/resolve"
	"github.com/tokenkeeper/tokenkeeper/internal/status"
	"github.com/tokenkeeper/tokenkeeper/internal/validation"
)

// keyRefresh is how often key sets are fetched again (unknown key IDs also trigger a fetch).
const keyRefresh = 10 * time.Minute

// Reconciler reconciles TokenValidators.
type Reconciler struct {
	client.Client
	// APIReader reads Secrets without caching them.
	APIReader                client.Reader
	Server                   *validation.Server
	ClusterResourceNamespace string
	Clock                    clock.PassiveClock
	// Elected is closed once this replica leads (the manager's Elected()); nil: always leads.
	Elected <-chan struct{}
	// Egress refuses key-set and introspection connections to addresses tenants must not reach.
	Egress *egress.Policy
	// Refs watch the names and versions of the Secrets and ConfigMaps referred to, to notice
	// rotated HMAC and introspection Secrets. Optional.
	Refs *resolve.Refs

	resolver   *resolve.Resolver
	validators *login.Validators
	mu         sync.Mutex
	built      map[types.NamespacedName]*built
}

// built is an installed validator and what it was built from.
type built struct {
	*login.Built
	version string
	// refreshed is when the key sets were last fetched; zero until the first fetch.
	refreshed time.Time
}

// +kubebuilder:rbac:groups=tokenkeeper.io,resources=tokenvalidators,verbs=get;list;watch
// +kubebuilder:rbac:groups=tokenkeeper.io,resources=tokenvalidators/status,verbs=get;update;patch

// Reconcile builds or refreshes one TokenValidator.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, reterr error) {
	tv := &v1alpha1.TokenValidator{}
	if err := r.Get(ctx, req.NamespacedName, tv); err != nil {
		if client.IgnoreNotFound(err) == nil {
			r.forget(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	before := tv.DeepCopy()
	defer func() { reterr = errors.Join(reterr, r.patchStatus(ctx, before, tv)) }()
	tv.Status.ObservedGeneration = tv.Generation

	b, err := r.ensure(ctx, tv, req.NamespacedName)
	if err != nil {
		return r.notReady(tv, req.NamespacedName, err)
	}
	// Key sets are fetched when the validator is (re)built and every keyRefresh, never because
	// some watched object changed: events from other tenants' objects cost no fetches.
	if due := b.refreshed.Add(keyRefresh); b.refreshed.IsZero() || !r.Clock.Now().Before(due) {
		for _, ks := range b.Keys {
			if err := ks.Refresh(ctx); err != nil {
				return r.notReady(tv, req.NamespacedName, resolve.Block(v1alpha1.ReasonKeysUnavailable, "%v", err))
			}
		}
		b.refreshed = r.Clock.Now()
		tv.Status.LastKeyRefresh = &metav1.Time{Time: b.refreshed}
	}
	keys := 0
	for _, ks := range b.Keys {
		keys += ks.Len()
	}
	tv.Status.Keys = int32(min(keys, 1<<20))
	setReady(tv, metav1.ConditionTrue, v1alpha1.ReasonKeysLoaded,
		fmt.Sprintf("%d keys from %d issuers; serving /validate/%s/%s and /tokenreview/%s/%s", keys, len(tv.Spec.Issuers), tv.Namespace, tv.Name, tv.Namespace, tv.Name))
	return ctrl.Result{RequeueAfter: b.refreshed.Add(keyRefresh).Sub(r.Clock.Now())}, nil
}

// ensure builds and installs the validator when the TokenValidator or its issuers changed.
func (r *Reconciler) ensure(ctx context.Context, tv *v1alpha1.TokenValidator, key types.NamespacedName) (*built, error) {
	eff, issuers, err := r.validators.Issuers(ctx, tv)
	if err != nil {
		return nil, err
	}
	// The version covers everything the validator is built from: the spec, each issuer, the
	// policy's validation rules, and every Secret it reads (an HMAC secret rotated takes effect
	// at once; the old one stops working).
	version := []string{strconv.FormatInt(tv.Generation, 10), fmt.Sprintf("policy:%v:%s", ptrString(eff.Leeway), eff.MaxTokenAge)}
	for _, iss := range issuers {
		version = append(version, string(iss.GetUID())+":"+strconv.FormatInt(iss.GetGeneration(), 10))
	}
	secrets, err := r.secretVersions(ctx, tv, issuers)
	if err != nil {
		return nil, err
	}
	version = append(version, secrets...)
	r.mu.Lock()
	old := r.built[key]
	r.mu.Unlock()
	if old != nil && old.version == strings.Join(version, ";") {
		return old, nil
	}
	cfg, parts, err := r.validators.Build(ctx, tv, issuers, eff)
	if err != nil {
		return nil, err
	}
	b := &built{Built: parts}
	b.version = strings.Join(version, ";")
	r.Server.Set(key, validation.New(cfg))
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.built == nil {
		r.built = map[types.NamespacedName]*built{}
	}
	if old != nil {
		old.Close()
	}
	r.built[key] = b
	return b, nil
}

func ptrString(d *time.Duration) string {
	if d == nil {
		return "unset"
	}
	return d.String()
}

// secretVersions reads the version of every Secret and ConfigMap a validator uses.
func (r *Reconciler) secretVersions(ctx context.Context, tv *v1alpha1.TokenValidator, issuers []v1alpha1.GenericIssuer) ([]string, error) {
	var versions []string
	if ref := tv.Spec.IntrospectionSecretRef; ref != nil {
		v, err := r.metaVersion(ctx, types.NamespacedName{Namespace: tv.Namespace, Name: ref.Name})
		if err != nil {
			return nil, err
		}
		versions = append(versions, v)
	}
	for _, iss := range issuers {
		if ref := iss.GetSpec().HMACSecretRef; ref != nil {
			v, err := r.metaVersion(ctx, types.NamespacedName{Namespace: r.resolver.Namespace(iss, ref.Namespace), Name: ref.Name})
			if err != nil {
				return nil, err
			}
			versions = append(versions, v)
		}
		in, err := r.resolver.IssuerInputs(ctx, iss)
		if err != nil {
			return nil, err
		}
		versions = append(versions, in.Versions...)
	}
	return versions, nil
}

// metaVersion reads the resourceVersion of a Secret, not its data.
func (r *Reconciler) metaVersion(ctx context.Context, key types.NamespacedName) (string, error) {
	s := &metav1.PartialObjectMetadata{}
	s.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	if err := r.APIReader.Get(ctx, key, s); err != nil {
		if apierrors.IsNotFound(err) {
			return "", resolve.Block(v1alpha1.ReasonSecretNotFound, "Secret %s not found", key)
		}
		return "", err
	}
	return key.String() + ":" + s.ResourceVersion, nil
}

// notReady reports why the validator cannot work. A validator that worked before keeps serving.
func (r *Reconciler) notReady(tv *v1alpha1.TokenValidator, key types.NamespacedName, err error) (ctrl.Result, error) {
	nf, ok := resolve.AsBlocked(err)
	if !ok {
		return ctrl.Result{}, err
	}
	setReady(tv, metav1.ConditionFalse, nf.Reason, nf.Message)
	if nf.Reason == v1alpha1.ReasonKeysUnavailable {
		return ctrl.Result{RequeueAfter: time.Minute}, nil
	}
	r.forget(key)
	return ctrl.Result{}, reconcile.TerminalError(err)
}

func (r *Reconciler) forget(key types.NamespacedName) {
	r.Server.Delete(key)
	r.mu.Lock()
	defer r.mu.Unlock()
	if b := r.built[key]; b != nil {
		b.Close()
	}
	delete(r.built, key)
}

func setReady(tv *v1alpha1.TokenValidator, s metav1.ConditionStatus, reason v1alpha1.ConditionReason, msg string) {
	status.SetCondition(&tv.Status.Conditions, v1alpha1.ConditionReady, s, reason, msg, tv.Generation)
}

// leading reports whether this replica writes status.
func (r *Reconciler) leading() bool {
	if r.Elected == nil {
		return true
	}
	select {
	case <-r.Elected:
		return true
	default:
		return false
	}
}

func (r *Reconciler) patchStatus(ctx context.Context, before, tv *v1alpha1.TokenValidator) error {
	if !r.leading() {
		return nil
	}
	return status.Patch(ctx, r.Client, before, tv, func(v *v1alpha1.TokenValidator) any { return v.Status })
}
