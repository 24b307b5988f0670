// Package clustercredential reconciles ClusterCredentials: one child Credential in the
// cluster-credential namespace logs in (the Credential controller does login, refresh,
// crash-safety and revocation, with one state Secret), and this controller copies the child's
// token Secret into the target Secret of every namespace the selector picks and the TokenPolicies
// of that namespace allow.
package clustercredential

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/policy"
	"github.com/tokenkeeper/tokenkeeper/internal/resolve"
	"github.com/tokenkeeper/tokenkeeper/internal/status"
)

// DefaultMaxNamespaces bounds the namespaces one ClusterCredential copies into.
const DefaultMaxNamespaces = 1000

// maxListed bounds status.namespaces (the API's MaxItems).
const maxListed = 100

// writers bounds the copy writes in flight for one ClusterCredential.
const writers = 8

// staleRetry is when a pass that met the cache behind the API server runs again (the watch
// usually brings it back sooner).
const staleRetry = time.Second

// failedRetry is when a pass with failed writes runs again.
const failedRetry = 15 * time.Second

// Reconciler copies a ClusterCredential's token into the namespaces it selects.
type Reconciler struct {
	client.Client
	// APIReader reads what the cache does not hold: a Secret in the way of a copy.
	APIReader client.Reader
	Recorder  events.EventRecorder
	Clock     clock.PassiveClock
	// Namespace holds the child Credentials and their input Secrets.
	Namespace string
	// MaxNamespaces bounds the namespaces one ClusterCredential copies into; 0: DefaultMaxNamespaces.
	MaxNamespaces int

	resolver *resolve.Resolver
	writes   writes
}

// expectWindow is how long a pass trusts that the cache is behind a copy it wrote.
const expectWindow = 10 * time.Second

// maxMarks is the size of the write memory past which stale marks are dropped.
const maxMarks = 4096

// writes remembers, per copy ("namespace/name"), the resourceVersion each copy had when this
// manager last wrote it ("" for a create), so that a pass which finds that version still in the
// cache knows the cache is behind its own write: it waits for the watch event rather than write
// again over a stale version (a conflict for each of hundreds of copies, and a retry).
type writes struct {
	mu sync.Mutex
	m  map[string]writeMark
}

type writeMark struct {
	before string
	at     time.Time
}

func (w *writes) mark(key, before string, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m == nil {
		w.m = map[string]writeMark{}
	}
	if len(w.m) >= maxMarks { // marks of copies never looked at again (their namespace went)
		for k, m := range w.m {
			if now.Sub(m.at) >= expectWindow {
				delete(w.m, k)
			}
		}
	}
	w.m[key] = writeMark{before: before, at: now}
}

// behind reports whether cur (nil: not in the cache) is the version this manager wrote over.
func (w *writes) behind(key string, cur *corev1.Secret, now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	m, ok := w.m[key]
	if !ok {
		return false
	}
	rv := ""
	if cur != nil {
		rv = cur.ResourceVersion
	}
	if rv == m.before && now.Sub(m.at) < expectWindow {
		return true
	}
	delete(w.m, key) // the cache caught up (or never will): judge by what it holds
	return false
}

// +kubebuilder:rbac:groups=tokenkeeper.io,resources=clustercredentials,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=tokenkeeper.io,resources=clustercredentials/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=tokenkeeper.io,resources=clustercredentials/finalizers,verbs=update
// create/patch/delete: the child Credential in the cluster-credential namespace.
// +kubebuilder:rbac:groups=tokenkeeper.io,resources=credentials,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// delete: copies in namespaces that leave the selector, and all of them with the ClusterCredential.
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;delete

// Reconcile makes the child Credential match the spec and the copies match its token Secret.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, reterr error) {
	cc := &v1alpha1.ClusterCredential{}
	if err := r.Get(ctx, req.NamespacedName, cc); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !cc.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.reconcileDelete(ctx, cc)
	}
	if err := r.ensureFinalizer(ctx, cc); err != nil {
		return ctrl.Result{}, err
	}
	before := cc.DeepCopy()
	defer func() {
		reterr = errors.Join(reterr, status.Patch(ctx, r.Client, before, cc,
			func(c *v1alpha1.ClusterCredential) any { return c.Status }))
	}()
	cc.Status.ObservedGeneration = cc.Generation
	child, err := r.ensureChild(ctx, cc)
	if b, ok := resolve.AsBlocked(err); ok {
		setReady(cc, metav1.ConditionFalse, b.Reason, b.Message)
		return ctrl.Result{}, nil
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	cc.Status.Credential = child.Namespace + "/" + child.Name
	src, err := r.source(ctx, child)
	if err != nil {
		return ctrl.Result{}, err
	}
	p, err := r.plan(ctx, cc, child, src)
	if b, ok := resolve.AsBlocked(err); ok {
		setReady(cc, metav1.ConditionFalse, b.Reason, b.Message)
		return ctrl.Result{}, nil // until the spec changes
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	res := r.apply(ctx, cc, p)
	r.report(cc, child, src, p, res)
	switch {
	case res.stale:
		return ctrl.Result{RequeueAfter: staleRetry}, nil
	case cc.Status.Failed > 0:
		return ctrl.Result{RequeueAfter: failedRetry}, nil
	}
	return ctrl.Result{}, nil
}

// ChildName is the name of a ClusterCredential's Credential (and of its token Secret).
func ChildName(cc string) string { return v1alpha1.ClusterCredentialPrefix + cc }

// childSpec is the Credential the ClusterCredential logs in with.
func childSpec(cc *v1alpha1.ClusterCredential) v1alpha1.CredentialSpec {
	t := cc.Spec.Credential.DeepCopy()
	return v1alpha1.CredentialSpec{
		IssuerRef: t.IssuerRef, Password: t.Password, APIKey: t.APIKey, ClientCredentials: t.ClientCredentials,
		RefreshToken: t.RefreshToken, JWTBearer: t.JWTBearer, PrivateKey: t.PrivateKey, GitHubApp: t.GitHubApp,
		ServiceAccount: t.ServiceAccount, SessionDuration: t.SessionDuration, Scopes: t.Scopes, Renewal: t.Renewal,
		SecretName: ChildName(cc.Name), SecretTemplate: t.SecretTemplate, RevokeOnDelete: t.RevokeOnDelete,
	}
}

// ensureChild creates or patches the child Credential: spec, label, owner and the renewal a
// user asked of the ClusterCredential (tokenkeeper.io/renew-requested-at). A Credential of that
// name that is not the ClusterCredential's is left alone and reported.
func (r *Reconciler) ensureChild(ctx context.Context, cc *v1alpha1.ClusterCredential) (*v1alpha1.Credential, error) {
	key := types.NamespacedName{Namespace: r.Namespace, Name: ChildName(cc.Name)}
	child := &v1alpha1.Credential{}
	err := r.Get(ctx, key, child)
	if apierrors.IsNotFound(err) {
		child = &v1alpha1.Credential{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
		r.desire(cc, child)
		if err := controllerutil.SetControllerReference(cc, child, r.Scheme()); err != nil {
			return nil, err
		}
		err = r.Create(ctx, child)
		if apierrors.IsAlreadyExists(err) {
			err = r.APIReader.Get(ctx, key, child)
		} else {
			return child, refused(key, err)
		}
	}
	if err != nil {
		return nil, err
	}
	if owner := metav1.GetControllerOf(child); owner == nil || owner.UID != cc.UID {
		return nil, resolve.Block(v1alpha1.ReasonCredentialConflict,
			"Credential %s already exists and is not this ClusterCredential's: delete it, or rename the ClusterCredential", key)
	}
	orig := child.DeepCopy()
	r.desire(cc, child)
	if equality.Semantic.DeepEqual(orig.Spec, child.Spec) && maps.Equal(orig.Labels, child.Labels) && maps.Equal(orig.Annotations, child.Annotations) {
		return child, nil
	}
	return child, refused(key, r.Patch(ctx, child, client.MergeFrom(orig)))
}

// refused turns the API server's refusal of the child Credential (its schema, or the admission
// webhook enforcing the cluster-credential namespace's TokenPolicies) into a blocked state that
// waits for the spec to change, quoting the API server; other errors are retried.
func refused(key types.NamespacedName, err error) error {
	if apierrors.IsInvalid(err) || apierrors.IsForbidden(err) && !strings.Contains(err.Error(), "cannot ") {
		return resolve.Block(v1alpha1.ReasonInvalidConfig, "the API server refused Credential %s: %s", key, bounded(err.Error()))
	}
	return err
}

// desire sets what the ClusterCredential decides of its child.
func (r *Reconciler) desire(cc *v1alpha1.ClusterCredential, child *v1alpha1.Credential) {
	child.Spec = childSpec(cc)
	if child.Labels == nil {
		child.Labels = map[string]string{}
	}
	child.Labels[v1alpha1.LabelClusterCredential] = cc.Name
	if at := cc.Annotations[v1alpha1.AnnotationRenewRequestedAt]; at != "" {
		if child.Annotations == nil {
			child.Annotations = map[string]string{}
		}
		child.Annotations[v1alpha1.AnnotationRenewRequestedAt] = at
	}
}

// source is the child's token Secret, nil before the first token. Only a Secret the child
// controls is copied.
func (r *Reconciler) source(ctx context.Context, child *v1alpha1.Credential) (*corev1.Secret, error) {
	sec := &corev1.Secret{}
	err := r.Get(ctx, types.NamespacedName{Namespace: child.Namespace, Name: child.Spec.SecretName}, sec)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if owner := metav1.GetControllerOf(sec); owner == nil || owner.UID != child.UID || len(sec.Data[v1alpha1.SecretKeyToken]) == 0 {
		return nil, nil
	}
	return sec, nil
}

// target is one selected namespace and what it gets.
type target struct {
	ns      string
	forbids string // why a policy keeps the copy out; "" allowed
	state   v1alpha1.NamespaceCopyState
	message string
}

// plan is what a pass does: the selected namespaces (at most MaxNamespaces, by name), the copies
// that exist, and the Secret to copy.
type plan struct {
	targets  []*target
	selected int // all that match, beyond MaxNamespaces too
	copies   map[string]*corev1.Secret
	data     map[string][]byte
	labels   map[string]string
	annots   map[string]string
}

func (r *Reconciler) max() int {
	if r.MaxNamespaces > 0 {
		return r.MaxNamespaces
	}
	return DefaultMaxNamespaces
}

// plan lists the selected namespaces and the copies, and applies each namespace's policies.
func (r *Reconciler) plan(ctx context.Context, cc *v1alpha1.ClusterCredential, child *v1alpha1.Credential, src *corev1.Secret) (*plan, error) {
	sel, err := metav1.LabelSelectorAsSelector(&cc.Spec.NamespaceSelector)
	if err != nil {
		return nil, resolve.Block(v1alpha1.ReasonInvalidSelector, "spec.namespaceSelector: %v", err)
	}
	var nss corev1.NamespaceList
	if err := r.List(ctx, &nss, client.MatchingLabelsSelector{Selector: sel}); err != nil {
		return nil, err
	}
	var policies v1alpha1.TokenPolicyList
	if err := r.List(ctx, &policies); err != nil {
		return nil, err
	}
	iss, err := r.resolver.Issuer(ctx, r.Namespace, cc.Spec.Credential.IssuerRef)
	if _, blocked := resolve.AsBlocked(err); err != nil && !blocked {
		return nil, err
	}
	spec := childSpec(cc)
	lifetime := tokenLifetime(child)
	p := &plan{copies: map[string]*corev1.Secret{}}
	slices.SortFunc(nss.Items, func(a, b corev1.Namespace) int { return strings.Compare(a.Name, b.Name) })
	for i := range nss.Items {
		ns := &nss.Items[i]
		if !ns.DeletionTimestamp.IsZero() {
			continue // no Secret can be created there; its copy goes with it
		}
		if p.selected++; p.selected > r.max() {
			continue
		}
		t := &target{ns: ns.Name}
		if selecting, err := policy.Selecting(policies.Items, ns.Labels); err != nil {
			t.forbids = err.Error() // nobody can tell whether it applies: no copy
		} else {
			t.forbids = forbids(selecting, &spec, iss, lifetime)
		}
		p.targets = append(p.targets, t)
	}
	var copies corev1.SecretList
	if err := r.List(ctx, &copies, client.MatchingLabels{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue,
		v1alpha1.LabelClusterCredential: cc.Name}); err != nil {
		return nil, err
	}
	for i := range copies.Items {
		c := &copies.Items[i]
		if !isCopy(cc, c) {
			continue
		}
		if c.Name != cc.Spec.Target {
			p.copies[c.Namespace+"/"+c.Name] = c // an old target name: deleted below
			continue
		}
		p.copies[c.Namespace] = c
	}
	if src != nil {
		p.data = src.Data
		p.labels, p.annots = map[string]string{}, map[string]string{}
		if t := spec.SecretTemplate; t != nil {
			maps.Copy(p.labels, t.Labels)
			maps.Copy(p.annots, t.Annotations)
		}
		p.labels[v1alpha1.LabelManagedBy] = v1alpha1.ManagedByValue
		p.labels[v1alpha1.LabelClusterCredential] = cc.Name
		p.labels[v1alpha1.LabelRole] = v1alpha1.RoleCopy
		if at := src.Annotations[v1alpha1.AnnotationExpiresAt]; at != "" {
			p.annots[v1alpha1.AnnotationExpiresAt] = at
		}
	}
	return p, nil
}

// tokenLifetime is the current token's lifetime from the child's status, 0 when unknown.
func tokenLifetime(child *v1alpha1.Credential) time.Duration {
	s := child.Status
	if s.ExpiresAt == nil || s.LastRotationTime == nil {
		return 0
	}
	return s.ExpiresAt.Sub(s.LastRotationTime.Time)
}

// isCopy reports whether sec is one of cc's copies: our labels and no owner. A tenant can forge
// these labels only on a Secret of a namespace it writes to, which then is overwritten or deleted
// by the ClusterCredential: nothing it could not do itself.
func isCopy(cc *v1alpha1.ClusterCredential, sec *corev1.Secret) bool {
	l := sec.Labels
	return l[v1alpha1.LabelManagedBy] == v1alpha1.ManagedByValue && l[v1alpha1.LabelClusterCredential] == cc.Name &&
		l[v1alpha1.LabelRole] == v1alpha1.RoleCopy && len(sec.OwnerReferences) == 0
}

// result is what a pass did.
type result struct {
	written int  // copies created or updated
	stale   bool // the cache was behind: run again
}

// apply writes the copies the plan allows and deletes every other copy of cc.
func (r *Reconciler) apply(ctx context.Context, cc *v1alpha1.ClusterCredential, p *plan) result {
	var (
		mu  sync.Mutex
		res result
		wg  sync.WaitGroup
		sem = make(chan struct{}, writers)
	)
	keep := map[string]bool{}
	for _, t := range p.targets {
		if t.forbids != "" {
			t.state, t.message = v1alpha1.NamespaceForbidden, bounded(t.forbids)
			continue
		}
		keep[t.ns] = true
		if p.data == nil {
			t.state, t.message = v1alpha1.NamespacePending, "waiting for the first token"
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func(t *target) {
			defer func() { <-sem; wg.Done() }()
			wrote, stale, err := r.writeCopy(ctx, cc, p, t.ns)
			mu.Lock()
			defer mu.Unlock()
			res.stale = res.stale || stale
			if wrote {
				res.written++
			}
			t.state = v1alpha1.NamespaceCopied
			var conflict *conflictError
			switch {
			case errors.As(err, &conflict):
				t.state, t.message = v1alpha1.NamespaceConflict, conflict.Error()
			case err != nil:
				t.state, t.message = v1alpha1.NamespaceFailed, bounded(err.Error())
			}
		}(t)
	}
	wg.Wait()
	for key, c := range p.copies {
		if keep[key] {
			continue
		}
		if err := r.Delete(ctx, c, client.Preconditions{UID: &c.UID}); client.IgnoreNotFound(err) != nil {
			logf.FromContext(ctx).Error(err, "deleting a copy", "namespace", c.Namespace, "secret", c.Name)
			res.stale = true
		}
	}
	return res
}

// conflictError: a Secret of the target's name that is not a copy is in the way.
type conflictError struct{ msg string }

func (e *conflictError) Error() string { return e.msg }

// writeCopy makes namespace ns's copy hold the plan's data, creating it when missing; a
// Secret of that name that is not a copy is never touched.
func (r *Reconciler) writeCopy(ctx context.Context, cc *v1alpha1.ClusterCredential, p *plan, ns string) (wrote, stale bool, err error) {
	cur := p.copies[ns]
	key, now := ns+"/"+cc.Spec.Target, r.Clock.Now()
	if r.writes.behind(key, cur, now) {
		return false, true, nil // look again soon, should the event never come
	}
	if cur == nil {
		// Not among the cached copies: usually a new namespace, so create it; a Secret that
		// exists answers AlreadyExists and is read from the API server then.
		sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: cc.Spec.Target}}
		fill(sec, p)
		err := r.Create(ctx, sec)
		if err == nil {
			r.writes.mark(key, "", now)
		}
		if !apierrors.IsAlreadyExists(err) {
			return err == nil, false, err
		}
		cur = &corev1.Secret{}
		if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: ns, Name: cc.Spec.Target}, cur); err != nil {
			return false, true, err
		}
		if !isCopy(cc, cur) {
			return false, false, &conflictError{msg: fmt.Sprintf("Secret %s/%s exists and is not this ClusterCredential's copy: "+
				"it is left alone (delete it to receive the token, or remove the namespace from the selector)", ns, cc.Spec.Target)}
		}
	}
	sec := cur.DeepCopy()
	fill(sec, p)
	if equality.Semantic.DeepEqual(cur.Data, sec.Data) && equality.Semantic.DeepEqual(cur.ObjectMeta, sec.ObjectMeta) && cur.Type == sec.Type {
		return false, false, nil
	}
	err = r.Update(ctx, sec)
	if err == nil {
		r.writes.mark(key, cur.ResourceVersion, now)
	}
	if apierrors.IsConflict(err) {
		return false, true, nil // the cache is behind: the watch brings the newer copy back
	}
	return err == nil, false, err
}

// fill sets a copy's data, type, labels and annotations (those tokenkeeper sets; others kept).
func fill(sec *corev1.Secret, p *plan) {
	if sec.Labels == nil {
		sec.Labels = map[string]string{}
	}
	if sec.Annotations == nil {
		sec.Annotations = map[string]string{}
	}
	maps.Copy(sec.Labels, p.labels)
	maps.Copy(sec.Annotations, p.annots)
	sec.Type = corev1.SecretTypeOpaque
	sec.Data = p.data
}

// report fills status: counts, the namespaces (those without a copy first), the token's
// fingerprint and expiry, Ready.
func (r *Reconciler) report(cc *v1alpha1.ClusterCredential, child *v1alpha1.Credential, src *corev1.Secret, p *plan, res result) {
	s := &cc.Status
	s.Selected = int32(min(p.selected, math.MaxInt32)) //nolint:gosec // bounded just before
	s.Copied, s.Pending, s.Forbidden, s.Conflicts, s.Failed = 0, 0, 0, 0, 0
	entries := make([]v1alpha1.ClusterCredentialNamespace, 0, len(p.targets))
	for _, t := range p.targets {
		switch t.state {
		case v1alpha1.NamespaceCopied:
			s.Copied++
		case v1alpha1.NamespacePending:
			s.Pending++
		case v1alpha1.NamespaceForbidden:
			s.Forbidden++
		case v1alpha1.NamespaceConflict:
			s.Conflicts++
		case v1alpha1.NamespaceFailed:
			s.Failed++
		}
		entries = append(entries, v1alpha1.ClusterCredentialNamespace{Name: t.ns, State: t.state, Message: t.message})
	}
	slices.SortStableFunc(entries, func(a, b v1alpha1.ClusterCredentialNamespace) int {
		ac, bc := a.State == v1alpha1.NamespaceCopied, b.State == v1alpha1.NamespaceCopied
		switch {
		case ac == bc:
			return strings.Compare(a.Name, b.Name)
		case bc:
			return -1
		}
		return 1
	})
	s.Namespaces = entries[:min(len(entries), maxListed)]
	if src != nil {
		fp := fingerprint(src.Data[v1alpha1.SecretKeyToken])
		if fp != s.TokenFingerprint && res.written > 0 {
			now := metav1.NewTime(r.Clock.Now())
			s.LastCopyTime = &now
			r.Recorder.Eventf(cc, nil, corev1.EventTypeNormal, string(v1alpha1.ReasonCopiesRotated), "Copy",
				"token %s copied to %d namespaces", fp, res.written)
		}
		if s.Copied > 0 || fp == s.TokenFingerprint {
			s.TokenFingerprint = fp
		}
		if at, err := time.Parse(time.RFC3339, src.Annotations[v1alpha1.AnnotationExpiresAt]); err == nil {
			s.ExpiresAt = &metav1.Time{Time: at}
		}
	}
	r.setReadiness(cc, child, p)
}

func (r *Reconciler) setReadiness(cc *v1alpha1.ClusterCredential, child *v1alpha1.Credential, p *plan) {
	s := &cc.Status
	ready := meta.FindStatusCondition(child.Status.Conditions, string(v1alpha1.ConditionReady))
	switch {
	case p.selected > r.max():
		setReady(cc, metav1.ConditionFalse, v1alpha1.ReasonTooManyNamespaces, fmt.Sprintf(
			"the selector picks %d namespaces, more than the %d the manager copies into (--cluster-credential-max-namespaces): "+
				"the first %d by name get a copy", p.selected, r.max(), r.max()))
	case ready == nil || ready.Status != metav1.ConditionTrue || p.data == nil:
		reason, msg := "Pending", "waiting for the first login"
		if ready != nil {
			reason, msg = ready.Reason, ready.Message
		}
		setReady(cc, metav1.ConditionFalse, v1alpha1.ReasonCredentialNotReady, bounded(fmt.Sprintf(
			"Credential %s/%s: %s: %s", child.Namespace, child.Name, reason, msg)))
	case s.Conflicts+s.Failed > 0:
		var names []string
		for _, n := range s.Namespaces {
			if n.State == v1alpha1.NamespaceConflict || n.State == v1alpha1.NamespaceFailed {
				names = append(names, n.Name)
			}
		}
		setReady(cc, metav1.ConditionFalse, v1alpha1.ReasonCopiesIncomplete, bounded(fmt.Sprintf(
			"%d conflicting and %d failed of %d selected namespaces (status.namespaces): %s",
			s.Conflicts, s.Failed, s.Selected, strings.Join(names[:min(len(names), 10)], ", "))))
	default:
		setReady(cc, metav1.ConditionTrue, v1alpha1.ReasonCopied, fmt.Sprintf(
			"copied to %d of %d selected namespaces; %d forbidden by TokenPolicy", s.Copied, s.Selected, s.Forbidden))
	}
}

func setReady(cc *v1alpha1.ClusterCredential, st metav1.ConditionStatus, reason v1alpha1.ConditionReason, msg string) {
	status.SetCondition(&cc.Status.Conditions, v1alpha1.ConditionReady, st, reason, msg, cc.Generation)
}

// fingerprint is the first 16 hex digits of the token's SHA-256, as on a Credential's status.
func fingerprint(tok []byte) string {
	sum := sha256.Sum256(tok)
	return hex.EncodeToString(sum[:8])
}

// bounded cuts a message (never a secret) to what status holds.
func bounded(msg string) string {
	if len(msg) > 512 {
		return msg[:509] + "..."
	}
	return msg
}

// ensureFinalizer adds the finalizer before any copy exists.
func (r *Reconciler) ensureFinalizer(ctx context.Context, cc *v1alpha1.ClusterCredential) error {
	if controllerutil.ContainsFinalizer(cc, v1alpha1.FinalizerClusterCredentialCopies) {
		return nil
	}
	return r.patchFinalizers(ctx, cc, func(c *v1alpha1.ClusterCredential) {
		controllerutil.AddFinalizer(c, v1alpha1.FinalizerClusterCredentialCopies)
	})
}

// patchFinalizers changes only the finalizers, with a merge patch at the resourceVersion read:
// the manager never writes a ClusterCredential's spec.
func (r *Reconciler) patchFinalizers(ctx context.Context, cc *v1alpha1.ClusterCredential, change func(*v1alpha1.ClusterCredential)) error {
	before := cc.DeepCopy()
	change(cc)
	return r.Patch(ctx, cc, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{}))
}

// reconcileDelete deletes every copy and the child Credential (which revokes its session, as
// its policy says), then lets the ClusterCredential go.
func (r *Reconciler) reconcileDelete(ctx context.Context, cc *v1alpha1.ClusterCredential) error {
	if !controllerutil.ContainsFinalizer(cc, v1alpha1.FinalizerClusterCredentialCopies) {
		return nil
	}
	var copies corev1.SecretList
	// From the API server: a copy the cache has yet to see must not survive.
	if err := r.APIReader.List(ctx, &copies, client.MatchingLabels{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue,
		v1alpha1.LabelClusterCredential: cc.Name}); err != nil {
		return err
	}
	var errs []error
	for i := range copies.Items {
		if c := &copies.Items[i]; isCopy(cc, c) {
			errs = append(errs, client.IgnoreNotFound(r.Delete(ctx, c, client.Preconditions{UID: &c.UID})))
		}
	}
	child := &v1alpha1.Credential{}
	err := r.Get(ctx, types.NamespacedName{Namespace: r.Namespace, Name: ChildName(cc.Name)}, child)
	if err == nil {
		if owner := metav1.GetControllerOf(child); owner != nil && owner.UID == cc.UID && child.DeletionTimestamp.IsZero() {
			errs = append(errs, client.IgnoreNotFound(r.Delete(ctx, child, client.Preconditions{UID: &child.UID})))
		}
	} else {
		errs = append(errs, client.IgnoreNotFound(err))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return r.patchFinalizers(ctx, cc, func(c *v1alpha1.ClusterCredential) {
		controllerutil.RemoveFinalizer(c, v1alpha1.FinalizerClusterCredentialCopies)
	})
}
