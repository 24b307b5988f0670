// Package credential reconciles Credentials: it logs in at the issuer, keeps the token fresh in
// the target Secret and the session in a state Secret, and reports what it does in status.
package credential

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/egress"
	"github.com/tokenkeeper/tokenkeeper/internal/failpoint"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer"
	"github.com/tokenkeeper/tokenkeeper/internal/login"
	"github.com/tokenkeeper/tokenkeeper/internal/metrics"
	"github.com/tokenkeeper/tokenkeeper/internal/renewal"
	"github.com/tokenkeeper/tokenkeeper/internal/resolve"
	"github.com/tokenkeeper/tokenkeeper/internal/status"
)

// Finalizer lets a Credential revoke its session at the issuer before it goes.
const Finalizer = v1alpha1.FinalizerRevokeSession

// statusConflictRetry is how soon a pass whose status patch met a newer status runs again.
const statusConflictRetry = time.Second

// revokeTimeout bounds each best-effort revocation.
const revokeTimeout = login.RevokeTimeout

// Reconciler reconciles Credentials.
type Reconciler struct {
	client.Client
	// APIReader reads input Secrets without caching them.
	APIReader client.Reader
	Scheme    *runtime.Scheme
	Recorder  events.EventRecorder
	Clock     clock.PassiveClock
	// ClusterResourceNamespace holds the Secrets ClusterIssuers refer to without a namespace.
	ClusterResourceNamespace string
	// Transport replaces the issuer HTTP transport, for tests. Optional.
	Transport http.RoundTripper
	// Egress refuses issuer connections to addresses tenants must not reach; nil checks nothing.
	Egress *egress.Policy
	// Refs watch the Secrets, ConfigMaps and ServiceAccounts Credentials and issuers refer to,
	// keeping only those; created when nil.
	Refs *resolve.Refs
	// CallsPerNamespace bounds the issuer calls in flight per namespace and per issuer (each holds
	// a worker); DefaultCallsPerNamespace when 0.
	CallsPerNamespace int
	// Restarts bound the rollout restarts of spec.rolloutRestart manager-wide.
	Restarts RestartOptions

	store          *stateStore
	slots          *callSlots
	resolver       *resolve.Resolver
	clients        *issuer.Pool
	inputs         *resolve.VersionedReader
	engine         *login.Engine
	echoes         *echoes
	rotationEvents *eventGate
	restarts       *restarter
}

// issuerClients bounds the issuer clients kept between reconciles (one per issuer configuration
// and URL rules in use).
const issuerClients = 1024

// +kubebuilder:rbac:groups=tokenkeeper.io,resources=credentials,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=tokenkeeper.io,resources=credentials/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=tokenkeeper.io,resources=credentials/finalizers,verbs=update
// +kubebuilder:rbac:groups=tokenkeeper.io,resources=issuers;clusterissuers;tokenpolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// get: read input Secrets (uncached); list/watch: cache tokenkeeper's own labelled Secrets and the
// metadata of input Secrets; create/update/patch: write the target and state Secrets. No delete:
// owner references let garbage collection remove them.
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;patch
// get: read issuers' CA bundles (uncached); list/watch: their names only, to notice changes.
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=apps,resources=deployments;statefulsets;daemonsets,verbs=get;patch

// Reconcile brings one Credential's token Secret up to date.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (res ctrl.Result, reterr error) {
	cred := &v1alpha1.Credential{}
	if err := r.Get(ctx, req.NamespacedName, cred); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(req.NamespacedName)
			return ctrl.Result{}, r.letOrphanedStateGo(ctx, req.NamespacedName)
		}
		return ctrl.Result{}, err
	}
	if !cred.DeletionTimestamp.IsZero() {
		return r.reconcileDelete(ctx, cred)
	}
	if r.slots.stillWaiting(req.String(), slotKeys(cred)...) {
		return ctrl.Result{RequeueAfter: busyRetry(string(cred.UID))}, nil // no API request while waiting
	}
	before := cred.DeepCopy()
	defer func() {
		err := r.patchStatus(ctx, before, cred)
		if apierrors.IsConflict(err) && reterr == nil {
			// This pass started from a cached copy older than the status now stored (the cache
			// had not seen the previous pass's patch): nothing is lost, look again shortly.
			res, err = ctrl.Result{RequeueAfter: statusConflictRetry}, nil
		}
		reterr = errors.Join(reterr, err)
	}()
	cred.Status.ObservedGeneration = cred.Generation

	if err := r.letDeletedStateGo(ctx, cred); err != nil {
		return ctrl.Result{}, err
	}
	st, err := r.store.load(ctx, cred)
	if err != nil {
		return ctrl.Result{}, err
	}
	e, err := r.prepare(ctx, cred)
	if e != nil { // with a policy violation too: the policy the message names, and its limits
		cred.Status.EffectivePolicy = e.Policy.EffectiveStatus()
	}
	if err != nil {
		return r.blocked(cred, st, err)
	}
	if err := r.ensureFinalizer(ctx, cred, before, e); err != nil {
		return ctrl.Result{}, err
	}
	if err := r.keepForRevocation(ctx, cred, e, st); err != nil {
		return ctrl.Result{}, err
	}
	if err := r.recover(ctx, cred, e, st); err != nil {
		return ctrl.Result{}, err
	}
	if err := r.revokeRetired(ctx, cred, e, st); err != nil {
		return ctrl.Result{}, err
	}

	in := r.decisionInput(cred, e, st)
	d := renewal.Decide(in)
	if d.Probe {
		probed, rejected, err := r.probeCurrent(ctx, cred, e, st)
		if err != nil {
			return ctrl.Result{}, err
		}
		if probed { // decide again on the probe's answer, now in status and the state Secret
			in = r.decisionInput(cred, e, st)
			in.ProbeRejected = rejected
			d = renewal.Decide(in)
		}
	}
	if d.AnswersRenewRequest {
		cred.Status.LastRenewRequest = cred.Annotations[AnnotationRenewRequestedAt]
	}
	logf.FromContext(ctx).V(1).Info("decided", "action", d.Action, "reason", d.Reason, "at", d.At)
	switch d.Action {
	case renewal.Wait:
		return r.wait(ctx, cred, e, st, d)
	case renewal.Stop:
		return r.blocked(cred, st, errRefreshTokenSpent(cred))
	}
	return r.renew(ctx, cred, e, st, d)
}

// AnnotationRenewRequestedAt asks for a renewal now (kubectl tokenkeeper renew, or kubectl
// annotate): each new value renews the token once, even a fresh one.
const AnnotationRenewRequestedAt = v1alpha1.AnnotationRenewRequestedAt

// decisionInput is everything renewal.Decide looks at, from status, the state Secret and the
// issuer.
func (r *Reconciler) decisionInput(cred *v1alpha1.Credential, e *env, st *state) renewal.Input {
	asked := cred.Annotations[AnnotationRenewRequestedAt]
	in := renewal.Input{
		Now: r.Clock.Now(), Session: st.session(), Failure: lastFailure(cred, st), InputsVersion: e.InputsVersion,
		Policy: e.Policy, CanRefresh: e.Client.CanRefresh(), JitterKey: string(cred.UID),
		Failing:        cred.Status.FailedAttempts > 0,
		RenewRequested: asked != "" && len(asked) <= 256 && asked != cred.Status.LastRenewRequest,
		InputSpent:     e.InputToken() != "" && st.spentInput == e.InputToken(),
	}
	if e.Client.CanProbe() {
		in.Probe = &renewal.Probe{Interval: e.Client.ProbeInterval()}
		if t := cred.Status.LastProbeTime; t != nil {
			in.Probe.Last = t.Time
		}
	}
	for _, s := range st.retired {
		in.Revocations = append(in.Revocations, s.At)
	}
	return in
}

// probeCurrent asks the issuer's probe whether it still accepts the current token. A rejection
// is recorded (a failure, and how long the session lived) in status and the state Secret before
// the caller decides again. When the issuer's calls are all in flight it does not probe (probed
// is false) and the probe is due again at the next wake.
func (r *Reconciler) probeCurrent(ctx context.Context, cred *v1alpha1.Credential, e *env, st *state) (probed, rejected bool, err error) {
	release, ok := r.slots.acquire(slotKeys(cred)...)
	if !ok {
		return false, false, nil
	}
	alive := lastAccepted(cred) // before this probe's answer replaces it
	perr := r.probe(ctx, cred, e, st.token)
	release()
	if !errors.Is(perr, issuer.ErrTokenRejected) {
		return true, false, nil
	}
	r.endedEarly(cred, e, st, alive, perr)
	return true, true, r.store.commit(ctx, cred, st)
}

// wait keeps the target Secret in line with the current token until the next renewal.
func (r *Reconciler) wait(ctx context.Context, cred *v1alpha1.Credential, e *env, st *state, d renewal.Decision) (ctrl.Result, error) {
	if st.token != nil {
		changed, err := r.syncTarget(ctx, cred, e, st.token)
		if err != nil {
			return r.blocked(cred, nil, err) // the Secret does not hold the token
		}
		if changed {
			r.Recorder.Eventf(cred, nil, corev1.EventTypeNormal, string(v1alpha1.ReasonSecretRestored), "Restore", "Secret %s restored from the current session", cred.Spec.SecretName)
		}
		r.observeToken(cred, e, st, d.At)
	}
	cred.Status.RenewalTime = nil // no token: nothing to renew (a retry is in nextRetryTime)
	if st.token != nil {
		cred.Status.RenewalTime = &metav1.Time{Time: d.At} // the next attempt, renewal or retry
	}
	wake := d.Wake.Sub(r.Clock.Now())
	if wake <= 0 { // a probe that found no free issuer call slot: look again shortly
		wake = busyRetry(string(cred.UID))
	}
	return ctrl.Result{RequeueAfter: wake}, nil
}

// endedEarly records a session the issuer ended before the expiry it stated: a failure
// (counted, Ready=False until a new token passes the probe), and how long the session lived,
// which later tokens of the same inputs are taken to live at most (renewed before that).
func (r *Reconciler) endedEarly(cred *v1alpha1.Credential, e *env, st *state, alive time.Time, err error) {
	now := r.Clock.Now()
	st.rejected = st.token.Fingerprint()
	// The session ended between the last probe that accepted it and now: take the earlier end,
	// so later tokens are renewed before the issuer ends them, when it leaves a usable lifetime.
	lived := now.Sub(st.token.IssuedAt).Round(time.Second)
	if known := alive.Sub(st.token.IssuedAt).Round(time.Second); known >= issuer.MinLifetime*2 {
		lived = known
	}
	if lived >= issuer.MinLifetime && now.Before(st.token.ExpiresAt) && (st.endedAfter == 0 || lived < st.endedAfter) {
		st.endedAfter = lived
	}
	cred.Status.FailedAttempts++
	cred.Status.LastFailureReason, cred.Status.LastFailureTime = string(v1alpha1.ReasonTokenRejected), &metav1.Time{Time: now}
	metrics.RenewalFailures.WithLabelValues(e.metricLabels(string(v1alpha1.ReasonTokenRejected))...).Inc()
	setCondition(cred, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonTokenRejected, fmt.Sprintf(
		"the issuer rejected token %s %s after it was issued, %s before its stated expiry (%v): logging in again",
		st.token.Fingerprint(), now.Sub(st.token.IssuedAt).Round(time.Second), st.token.ExpiresAt.Sub(now).Round(time.Second), err))
}

// lastAccepted is when the issuer's probe last accepted the current token, or zero.
func lastAccepted(cred *v1alpha1.Credential) time.Time {
	if t := cred.Status.LastProbeTime; t != nil && cred.Status.LastProbeResult == "Accepted" {
		return t.Time
	}
	return time.Time{}
}

// probe sends the issuer's probe with tok and records what it said. A rejection (401/403) is
// an Event; the caller logs in again.
func (r *Reconciler) probe(ctx context.Context, cred *v1alpha1.Credential, e *env, tok *issuer.Token) error {
	start := time.Now()
	err := e.Client.Probe(ctx, tok)
	metrics.IssuerRequestDuration.WithLabelValues(e.metricLabels("probe")...).Observe(time.Since(start).Seconds())
	cred.Status.LastProbeTime = &metav1.Time{Time: r.Clock.Now()}
	switch {
	case err == nil:
		cred.Status.LastProbeResult = "Accepted"
	case errors.Is(err, issuer.ErrTokenRejected):
		cred.Status.LastProbeResult = "Rejected: " + err.Error()
		r.Recorder.Eventf(cred, nil, corev1.EventTypeWarning, string(v1alpha1.ReasonTokenRejected), "Probe",
			"the issuer rejected token %s before its expiry (%v): logging in again", tok.Fingerprint(), err)
	default:
		msg := "Inconclusive: " + err.Error()
		if len(msg) > 256 {
			msg = msg[:253] + "..."
		}
		cred.Status.LastProbeResult = msg
	}
	return err
}

// renew logs in or refreshes. The call is recorded in the state Secret before it is sent (so a
// refresh token is only sent from a state known to be current, and never again once it may have
// been spent), and its outcome is written there before anything else, the target Secret last.
func (r *Reconciler) renew(ctx context.Context, cred *v1alpha1.Credential, e *env, st *state, d renewal.Decision) (ctrl.Result, error) {
	log := logf.FromContext(ctx)
	release, ok := r.slots.take(client.ObjectKeyFromObject(cred).String(), slotKeys(cred)...)
	if !ok {
		log.V(1).Info("issuer calls of this namespace or issuer are all in flight; waiting", "issuer", e.IssuerKey)
		setCondition(cred, v1alpha1.ConditionIssuing, metav1.ConditionTrue, v1alpha1.ReasonRenewing,
			d.Reason+": waiting for one of the issuer calls of this namespace or issuer to finish")
		return ctrl.Result{RequeueAfter: busyRetry(string(cred.UID))}, nil
	}
	defer release()
	wasReady := meta.IsStatusConditionTrue(cred.Status.Conditions, string(v1alpha1.ConditionReady))
	// A refreshToken login sends the input Secret's refresh token, which works once.
	sends := ""
	if d.Action == renewal.Login {
		sends = e.InputToken()
	}
	// A serviceAccount login gets a fresh ServiceAccount token (a refresh may fall back to a login),
	// before anything is recorded: nothing is sent if that fails.
	if err := r.withServiceAccountToken(ctx, cred, e, st); err != nil {
		if _, blocked := isBlocked(err); blocked {
			return r.blocked(cred, st, err)
		}
		return ctrl.Result{}, err
	}
	// A call that sends something single-use (a refresh token) is recorded before it is sent, so
	// that a crash can never lead to sending it twice. A login that sends only reusable inputs (a
	// password, a client secret) spends nothing: interrupted, it is simply made again, so it
	// needs no record and a rotation costs one API write less.
	if d.Action == renewal.Refresh || sends != "" {
		if err := r.store.begin(ctx, cred, st, d.Action.Verb(), e.IssuerKey, sends); err != nil {
			return ctrl.Result{}, err // nothing was sent
		}
	}
	failpoint.Inject("call-recorded")
	o := r.obtain(ctx, e, st, d)
	prev := st.clone()
	prev.pending, prev.basedOn = nil, ""
	if st.pending != nil {
		prev.basedOn = st.pending.ID
	}
	if o.refreshSpent {
		prev.dropRefreshToken()
	}
	if o.inputSpent {
		prev.spentInput = sends
	}
	// The refresh could not fall back to a login (it would resend the spent input refresh token).
	if o.err != nil && errors.Is(o.err, issuer.ErrRefreshRejected) && !d.Fallback {
		if prev.token != nil { // the issuer refused the session's refresh token: the session is over
			prev.rejected = prev.token.Fingerprint()
		}
		if err := r.store.commit(ctx, cred, prev); err != nil {
			return ctrl.Result{}, err
		}
		return r.blocked(cred, prev, errRefreshTokenSpent(cred))
	}
	if o.err != nil {
		return r.failed(ctx, cred, e, prev, o.err)
	}
	failpoint.Inject("issuer-answered")
	tok := o.tok
	next := prev.clone()
	if next.inputsVersion != e.InputsVersion {
		next.endedAfter = 0 // new inputs or issuer: what an earlier session did says nothing
	}
	if next.endedAfter > 0 && tok.ExpiresAt.Sub(tok.IssuedAt) > next.endedAfter {
		tok.ExpiresAt, tok.ExpirySource = tok.IssuedAt.Add(next.endedAfter), issuer.ExpiryObserved
	}
	next.token, next.inputsVersion, next.first = tok, e.InputsVersion, prev.token == nil
	if o.method == renewal.Login {
		next.sessionStart = tok.IssuedAt
		r.retire(ctx, cred, e, prev, next)
	}
	if err := r.store.commit(ctx, cred, next); err != nil {
		return ctrl.Result{}, fmt.Errorf("saving the new token (kept in memory, saved first at the next attempt): %w", err)
	}
	failpoint.Inject("state-saved")
	if _, err := r.syncTarget(ctx, cred, e, tok); err != nil {
		return r.blocked(cred, nil, err) // the Secret does not hold the new token
	}
	failpoint.Inject("target-written")
	if e.Client.CanProbe() {
		if err := r.probe(ctx, cred, e, tok); errors.Is(err, issuer.ErrTokenRejected) {
			next.rejected = tok.Fingerprint()
			return r.failed(ctx, cred, e, next, err)
		}
	}
	now := r.Clock.Now()
	renewAt := renewal.RenewalTime(*next.session(), e.Policy, string(cred.UID))
	cred.Status.LastRotationTime = &metav1.Time{Time: now}
	cred.Status.FailedAttempts, cred.Status.LastFailureReason, cred.Status.LastFailureTime, cred.Status.NextRetryTime = 0, "", nil, nil
	cred.Status.RenewalTime = &metav1.Time{Time: renewAt}
	r.observeToken(cred, e, next, renewAt)
	reason := v1alpha1.ReasonIssued
	if o.method == renewal.Refresh {
		reason = v1alpha1.ReasonRefreshed
	}
	metrics.Renewals.WithLabelValues(e.metricLabels(o.method.Verb())...).Inc()
	if r.rotationEvents.allow(client.ObjectKeyFromObject(cred), now, !wasReady) {
		r.Recorder.Eventf(cred, nil, corev1.EventTypeNormal, string(reason), o.method.Verb(), "New token %s from %s (%s), expires %s",
			tok.Fingerprint(), e.IssuerKey, d.Reason, tok.ExpiresAt.UTC().Format(time.RFC3339))
	}
	log.Info("token rotated", "method", o.method.Verb(), "fingerprint", tok.Fingerprint(), "expiresAt", tok.ExpiresAt, "renewAt", renewAt)
	r.rolloutRestart(cred)
	return ctrl.Result{RequeueAfter: renewal.Wake(renewAt, r.decisionInput(cred, e, next)).Sub(now)}, nil
}

func errRefreshTokenSpent(cred *v1alpha1.Credential) error {
	return block(v1alpha1.ReasonRefreshTokenSpent, "the session's refresh token is gone and the one in Secret %s was already sent to the "+
		"issuer, which tokenkeeper never does twice: put a new refresh token in the Secret to start a new session", cred.Spec.RefreshToken.SecretRef.Name)
}

// slotKeys are the call slots a Credential's issuer calls take: its namespace's and its issuer's
// (across namespaces).
func slotKeys(cred *v1alpha1.Credential) []string {
	issuer := "Issuer/" + cred.Namespace + "/" + cred.Spec.IssuerRef.Name
	if cred.Spec.IssuerRef.Kind == v1alpha1.IssuerKindCluster {
		issuer = "ClusterIssuer/" + cred.Spec.IssuerRef.Name
	}
	return []string{"namespace/" + cred.Namespace, "issuer/" + issuer}
}

// retire schedules the revocation of a session that a fresh login replaced while it was still
// valid (seed 000 keeps every session alive for 10 h otherwise), after the minimum lead so that
// pods have read the new token first. Issuers without revocation let it expire.
func (r *Reconciler) retire(ctx context.Context, cred *v1alpha1.Credential, e *env, old, next *state) {
	now := r.Clock.Now()
	if old.token == nil || !now.Before(old.token.ExpiresAt) || !e.Client.CanRevoke() {
		return
	}
	at := now.Add(max(e.Policy.MinimumLead, time.Second))
	if !at.Before(old.token.ExpiresAt) {
		return // it expires before pods would stop using it anyway
	}
	// Each replaced session keeps its own grace however many logins follow; only past the
	// bound does the oldest go early.
	next.retired = append(next.retired, retiredSession{Token: old.token, At: at})
	if n := len(next.retired) - maxRetired; n > 0 {
		for _, gone := range next.retired[:n] {
			r.revokeNow(ctx, cred, e, gone.Token)
		}
		next.retired = slices.Clone(next.retired[n:])
	}
}

// revokeRetired revokes the retired sessions whose grace period is over.
func (r *Reconciler) revokeRetired(ctx context.Context, cred *v1alpha1.Credential, e *env, st *state) error {
	now := r.Clock.Now()
	due := slices.IndexFunc(st.retired, func(s retiredSession) bool { return !now.Before(s.At) })
	if due < 0 {
		return nil
	}
	release, ok := r.slots.acquire(slotKeys(cred)...)
	if !ok { // the issuer's calls are all in flight: try again in a moment
		st.retired[due].At = now.Add(busyRetry(string(cred.UID)))
		return nil
	}
	defer release()
	st.retired = slices.DeleteFunc(st.retired, func(s retiredSession) bool {
		if now.Before(s.At) {
			return false
		}
		r.revokeNow(ctx, cred, e, s.Token)
		return true
	})
	return r.store.commit(ctx, cred, st)
}

// outcome is what one renewal got from the issuer, and what it may have used up.
type outcome struct {
	tok    *issuer.Token
	method renewal.Action // Login or Refresh: the call that answered
	err    error
	// refreshSpent: the session's refresh token may have been consumed; never send it again.
	refreshSpent bool
	// inputSpent: the input Secret's refresh token (refreshToken logins) may have been consumed.
	inputSpent bool
}

// obtain carries out a Login or Refresh decision: a refresh the issuer rejects or cannot make is
// followed by a login when the decision allows it (d.Fallback).
func (r *Reconciler) obtain(ctx context.Context, e *env, st *state, d renewal.Decision) outcome {
	var o outcome
	if d.Action == renewal.Refresh {
		tok, err := timed(e, renewal.Refresh, func() (*issuer.Token, error) { return e.Client.Refresh(ctx, e.Request, st.token) })
		o.refreshSpent = issuer.MayHaveSpent(err)
		if !d.Fallback || !errors.Is(err, issuer.ErrRefreshRejected) && !errors.Is(err, issuer.ErrUnsupported) {
			o.tok, o.method, o.err = tok, renewal.Refresh, err
			return o
		}
	}
	o.tok, o.err = timed(e, renewal.Login, func() (*issuer.Token, error) { return e.Client.Login(ctx, e.Request) })
	o.method = renewal.Login
	o.inputSpent = e.Request.Kind == issuer.LoginRefreshToken && issuer.MayHaveSpent(o.err)
	return o
}

func timed(e *env, op renewal.Action, f func() (*issuer.Token, error)) (*issuer.Token, error) {
	start := time.Now()
	tok, err := f()
	metrics.IssuerRequestDuration.WithLabelValues(e.metricLabels(op.Verb())...).Observe(time.Since(start).Seconds())
	return tok, err
}

// failed records a failed renewal: the last good token stays, status and an Event say why, and
// the next attempt waits for the backoff (or a change of inputs).
func (r *Reconciler) failed(ctx context.Context, cred *v1alpha1.Credential, e *env, st *state, err error) (ctrl.Result, error) {
	now := r.Clock.Now()
	reason := login.IssuerReason(err)
	cred.Status.FailedAttempts++
	cred.Status.LastFailureReason = string(reason)
	cred.Status.LastFailureTime = &metav1.Time{Time: now}
	f := renewal.Failure{At: now, Attempts: cred.Status.FailedAttempts, Kind: kindOf(reason), RetryAfter: issuer.RetryAfterOf(err)}
	next := now.Add(renewal.Backoff(f, string(cred.UID)))
	cred.Status.NextRetryTime = &metav1.Time{Time: next}
	cred.Status.RenewalTime = nil // no token: nothing to renew, only a retry
	if st.token != nil {
		cred.Status.RenewalTime = &metav1.Time{Time: next}
	}
	st.failedInputs = e.InputsVersion
	if serr := r.store.commit(ctx, cred, st); serr != nil {
		return ctrl.Result{}, serr
	}
	metrics.RenewalFailures.WithLabelValues(e.metricLabels(string(reason))...).Inc()
	msg := err.Error()
	setCondition(cred, v1alpha1.ConditionIssuing, metav1.ConditionFalse, reason, "waiting to retry at "+next.UTC().Format(time.RFC3339)+": "+msg)
	if !servesValidToken(now, st) {
		setCondition(cred, v1alpha1.ConditionReady, metav1.ConditionFalse, reason, msg+"; next attempt at "+next.UTC().Format(time.RFC3339))
	}
	r.Recorder.Eventf(cred, nil, corev1.EventTypeWarning, string(reason), "Renew", "%s; next attempt at %s", msg, next.UTC().Format(time.RFC3339))
	logf.FromContext(ctx).Info("renewal failed", "reason", reason, "error", msg, "attempts", cred.Status.FailedAttempts, "nextRetry", next)
	in := r.decisionInput(cred, e, st)
	in.Probe = nil // no probe while a failure is retried
	return ctrl.Result{RequeueAfter: renewal.Wake(next, in).Sub(now)}, nil
}

// blocked reports a configuration the Credential cannot work with. The existing Secret is left
// alone. st is the state whose token the target Secret holds, nil when it does not hold it (the
// failure was writing it). The rule for Ready is failed's: a token still valid keeps the
// Credential Ready until it expires (the reason is on Issuing), anything else is Ready=False.
// It returns a terminal error (a watch brings the Credential back when something changes), or
// wakes at the token's expiry to say Ready=False then.
func (r *Reconciler) blocked(cred *v1alpha1.Credential, st *state, err error) (ctrl.Result, error) {
	b, ok := isBlocked(err)
	if !ok {
		return ctrl.Result{}, err
	}
	now := r.Clock.Now()
	valid := servesValidToken(now, st)
	if !valid {
		setCondition(cred, v1alpha1.ConditionReady, metav1.ConditionFalse, b.Reason, b.Message)
	} else {
		reason := v1alpha1.ReasonIssued
		if c := meta.FindStatusCondition(cred.Status.Conditions, string(v1alpha1.ConditionReady)); c != nil && c.Status == metav1.ConditionTrue {
			reason = v1alpha1.ConditionReason(c.Reason)
		}
		setCondition(cred, v1alpha1.ConditionReady, metav1.ConditionTrue, reason,
			"token valid until "+st.token.ExpiresAt.UTC().Format(time.RFC3339)+"; not renewing until the configuration is fixed: "+string(b.Reason)+" (see Issuing)")
	}
	setCondition(cred, v1alpha1.ConditionIssuing, metav1.ConditionFalse, b.Reason, "waiting for the configuration to be fixed: "+b.Message)
	if cred.Status.LastFailureReason != string(b.Reason) {
		r.Recorder.Eventf(cred, nil, corev1.EventTypeWarning, string(b.Reason), "Configure", "%s", b.Message)
	}
	cred.Status.LastFailureReason = string(b.Reason)
	// Nothing renews until the configuration changes: no renewal time, no retry time (status
	// said "renews 62s ago" of a Credential a policy blocks).
	cred.Status.RenewalTime, cred.Status.NextRetryTime = nil, nil
	if b.Reason == v1alpha1.ReasonSecretRejected { // another webhook or a quota may let it through later
		cred.Status.NextRetryTime = &metav1.Time{Time: now.Add(secretRejectedRetry)}
		return ctrl.Result{RequeueAfter: secretRejectedRetry}, nil
	}
	if valid { // look again when it expires, to say so
		return ctrl.Result{RequeueAfter: st.token.ExpiresAt.Add(time.Second).Sub(now)}, nil
	}
	return ctrl.Result{}, reconcile.TerminalError(err)
}

// servesValidToken is the one rule for Ready after a failure of any kind: the target Secret holds
// (st is not nil) a token that has not expired and that the issuer has not rejected.
func servesValidToken(now time.Time, st *state) bool {
	return st != nil && st.token != nil && now.Before(st.token.ExpiresAt) && !st.session().Rejected
}

// secretRejectedRetry is how often a token Secret the API server refused is written again.
const secretRejectedRetry = 5 * time.Minute

// observeToken reports the current token in status (its metrics follow from status).
func (r *Reconciler) observeToken(cred *v1alpha1.Credential, e *env, st *state, renewAt time.Time) {
	tok := st.token
	cred.Status.ExpiresAt = &metav1.Time{Time: tok.ExpiresAt}
	cred.Status.TokenFingerprint = tok.Fingerprint()
	if !st.sessionStart.IsZero() {
		cred.Status.SessionStartTime = &metav1.Time{Time: st.sessionStart}
	}
	setLifetimeCondition(cred, tok)
	if p := cred.Status.EffectivePolicy; p != nil {
		plan := renewal.Schedule(*st.session(), e.Policy, string(cred.UID))
		if len(plan.Rule) > 512 {
			plan.Rule = plan.Rule[:509] + "..."
		}
		p.RenewalLead, p.RenewalRule = &metav1.Duration{Duration: plan.Lead.Round(100 * time.Millisecond)}, plan.Rule
	}
	if now := r.Clock.Now(); !now.Before(tok.ExpiresAt) {
		// However it came to this (failures, a backlog, a manager that was down), an expired
		// token is never Ready; after failures the reason is the last failure's.
		reason := v1alpha1.ReasonExpired
		if cred.Status.FailedAttempts > 0 && cred.Status.LastFailureReason != "" {
			reason = v1alpha1.ConditionReason(cred.Status.LastFailureReason)
		}
		setCondition(cred, v1alpha1.ConditionReady, metav1.ConditionFalse, reason,
			"the token in Secret "+cred.Spec.SecretName+" expired at "+tok.ExpiresAt.UTC().Format(time.RFC3339)+" and was not renewed yet; Issuing and the Events say why")
	} else if cred.Status.FailedAttempts == 0 {
		reason := v1alpha1.ReasonIssued
		if tok.IssuedAt.After(st.sessionStart) {
			reason = v1alpha1.ReasonRefreshed
		}
		setCondition(cred, v1alpha1.ConditionReady, metav1.ConditionTrue, reason, "token valid until "+tok.ExpiresAt.UTC().Format(time.RFC3339)+"; renews at "+renewAt.UTC().Format(time.RFC3339))
		setCondition(cred, v1alpha1.ConditionIssuing, metav1.ConditionFalse, v1alpha1.ReasonIdle, "next renewal at "+renewAt.UTC().Format(time.RFC3339))
	}
}

// setLifetimeCondition says whether the token's expiry is known or assumed, and if assumed, what
// was assumed and how to map the real expiry.
func setLifetimeCondition(cred *v1alpha1.Credential, tok *issuer.Token) {
	lifetime := tok.ExpiresAt.Sub(tok.IssuedAt).Round(time.Second)
	switch tok.ExpirySource {
	case issuer.ExpiryFromDefault, issuer.ExpiryAssumed:
		from := "the Issuer's defaultLifetime"
		if tok.ExpirySource == issuer.ExpiryAssumed {
			from = "the session duration asked for"
		}
		setCondition(cred, v1alpha1.ConditionLifetimeAssumed, metav1.ConditionTrue, v1alpha1.ReasonNoExpiryInResponse, fmt.Sprintf(
			"the issuer's response names no expiry (looked for %s) and the token is not a JWT with exp: assuming %s from %s. "+
				"If the token lives shorter, map the field that holds its expiry in the Issuer's spec.json.response.expiresAt (a time) or expiresIn (seconds)",
			issuer.ExpiryFields(), lifetime, from))
	case issuer.ExpiryObserved:
		setCondition(cred, v1alpha1.ConditionLifetimeAssumed, metav1.ConditionTrue, v1alpha1.ReasonSessionsEndEarly, fmt.Sprintf(
			"the issuer ended an earlier session %s after it was issued, before the expiry it stated (its probe rejected the token): "+
				"tokens are taken to live %s and renewed before that, until the inputs or the issuer change", lifetime, lifetime))
	case issuer.ExpiryFromSecret:
		// Recovered after the state was lost: keep whatever was said of the original token.
	default:
		from := map[issuer.ExpirySource]string{issuer.ExpiryFromResponse: "the response's expiry", issuer.ExpiryFromLifetime: "the response's lifetime",
			issuer.ExpiryFromJWT: "the token's exp claim"}[tok.ExpirySource]
		if tok.ExpiryField != "" {
			from += " (" + tok.ExpiryField + ")"
		}
		setCondition(cred, v1alpha1.ConditionLifetimeAssumed, metav1.ConditionFalse, v1alpha1.ReasonExpiryKnown,
			fmt.Sprintf("expiry read from %s: the token lives %s", from, lifetime))
	}
}

// reconcileDelete revokes the Credential's sessions, then lets its state Secret and itself go:
// within revokeDeadline, whether revoking worked or not.
func (r *Reconciler) reconcileDelete(ctx context.Context, cred *v1alpha1.Credential) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(cred, Finalizer) {
		return ctrl.Result{}, r.store.release(ctx, stateKey(cred), nil)
	}
	release, ok := r.slots.acquire(slotKeys(cred)...)
	if !ok { // revocation is an issuer call too: wait for a slot
		return ctrl.Result{RequeueAfter: busyRetry(string(cred.UID))}, nil
	}
	err := r.revoke(ctx, cred)
	release()
	if err != nil {
		return ctrl.Result{}, err
	}
	if err := r.store.release(ctx, stateKey(cred), nil); err != nil {
		return ctrl.Result{}, err
	}
	if err := r.patchFinalizers(ctx, cred, func(c *v1alpha1.Credential) { controllerutil.RemoveFinalizer(c, Finalizer) }); err != nil {
		return ctrl.Result{}, err
	}
	r.forget(client.ObjectKeyFromObject(cred))
	return ctrl.Result{}, nil
}

// ensureFinalizer adds the finalizer before any issuer call when deleting the Credential will
// revoke its session: the policy says so and the issuer has a revocation endpoint. Without one
// there is nothing to do at deletion (owner references remove the Secrets), and the write is
// spared. A policy that turns revokeOnDelete on reaches every Credential it selects, which then
// gets the finalizer at that reconcile.
func (r *Reconciler) ensureFinalizer(ctx context.Context, cred, before *v1alpha1.Credential, e *env) error {
	if !e.Policy.RevokeOnDelete || !e.Client.CanRevoke() || controllerutil.ContainsFinalizer(cred, Finalizer) {
		return nil
	}
	obj := before.DeepCopy() // metadata only: status changes of this pass are patched at its end
	if err := r.patchFinalizers(ctx, obj, func(c *v1alpha1.Credential) { controllerutil.AddFinalizer(c, Finalizer) }); err != nil {
		return err
	}
	for _, c := range []*v1alpha1.Credential{cred, before} {
		c.Finalizers, c.ResourceVersion = obj.Finalizers, obj.ResourceVersion
	}
	return nil
}

// patchFinalizers changes cred's finalizers with a merge patch that holds only them (and the
// resourceVersion it was read at). An update would send the whole object back, re-encoding the
// user's spec (sessionDuration "60s" becomes "1m0s", generation 2, fields owned by the manager):
// GitOps tools would see drift forever. The manager never writes a Credential's spec.
func (r *Reconciler) patchFinalizers(ctx context.Context, cred *v1alpha1.Credential, change func(*v1alpha1.Credential)) error {
	before := cred.DeepCopy()
	change(cred)
	return r.Patch(ctx, cred, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{}))
}

// forget drops what the manager keeps in memory for a Credential that is gone.
func (r *Reconciler) forget(key types.NamespacedName) {
	r.store.drop(key)
	r.slots.forget(key.String())
	r.rotationEvents.forget(key)
}

// revoke ends the Credential's sessions at the issuer — the current one, the retired ones, and
// one obtained but not yet saved — best effort and within revokeDeadline in all. The issuer and
// inputs come from the cluster or, when they are gone (a namespace being deleted removes them in
// no particular order), from the state Secret's copy. A session it cannot revoke is reported
// (abandon) and let go: the Credential must not hold its namespace in Terminating.
func (r *Reconciler) revoke(ctx context.Context, cred *v1alpha1.Credential) error {
	ctx, cancel := context.WithTimeout(ctx, revokeDeadline)
	defer cancel()
	held := r.store.unsavedOf(cred)
	st, err := r.store.read(ctx, cred)
	if err != nil {
		return err
	}
	if st == nil {
		st = r.store.lastOf(cred) // the state Secret is gone: the manager's own copy, if it has one
	}
	sessions := sessionsOf(st, held)
	if len(sessions) == 0 {
		return nil
	}
	e, err := r.prepare(ctx, cred)
	if err != nil {
		if e, err = r.fromSnapshot(ctx, cred, st, err); err != nil {
			r.abandon(ctx, cred, sessions, err)
			return nil
		}
		defer e.Client.Close()
	}
	if !e.Policy.RevokeOnDelete || !e.Client.CanRevoke() {
		return nil
	}
	for _, tok := range sessions {
		if err := r.revokeSession(ctx, cred, e, tok); err != nil {
			r.abandon(ctx, cred, []*issuer.Token{tok}, err)
		}
	}
	return nil
}

// revokeNow ends one session at the issuer, best effort and bounded in time.
func (r *Reconciler) revokeNow(ctx context.Context, cred *v1alpha1.Credential, e *env, tok *issuer.Token) {
	_ = r.revokeSession(ctx, cred, e, tok) // the Event says how it went
}

// revokeSession ends one session at the issuer within revokeTimeout, with an Event either way.
// Its error is nil when the issuer has no revocation endpoint.
func (r *Reconciler) revokeSession(ctx context.Context, cred *v1alpha1.Credential, e *env, tok *issuer.Token) error {
	ctx, cancel := context.WithTimeout(ctx, revokeTimeout)
	defer cancel()
	start := time.Now()
	err := e.Client.Revoke(ctx, e.Request, tok)
	metrics.IssuerRequestDuration.WithLabelValues(e.metricLabels("revoke")...).Observe(time.Since(start).Seconds())
	switch {
	case errors.Is(err, issuer.ErrUnsupported):
		return nil
	case err != nil:
		r.Recorder.Eventf(cred, nil, corev1.EventTypeWarning, string(v1alpha1.ReasonRevokeFailed), "Revoke", "revoking session %s failed: %v", tok.Fingerprint(), err)
		return err
	default:
		r.Recorder.Eventf(cred, nil, corev1.EventTypeNormal, string(v1alpha1.ReasonRevoked), "Revoke", "session %s revoked at %s", tok.Fingerprint(), e.IssuerKey)
		return nil
	}
}

// rolloutRestart asks for the restart of the workloads spec.rolloutRestart selects, for the token
// just written. The restarter does them (restart.go): coalesced per workload, within the
// manager-wide budget, once per token (the pod template records the fingerprint).
func (r *Reconciler) rolloutRestart(cred *v1alpha1.Credential) {
	if len(cred.Spec.RolloutRestart) == 0 || cred.Status.TokenFingerprint == "" {
		return
	}
	if cred.Status.RolloutRestart == nil {
		cred.Status.RolloutRestart = &v1alpha1.RolloutRestartStatus{}
	}
	cred.Status.RolloutRestart.Fingerprint = cred.Status.TokenFingerprint
	r.restarts.requested(client.ObjectKeyFromObject(cred), cred.Status.TokenFingerprint)
}

func (r *Reconciler) patchStatus(ctx context.Context, before, cred *v1alpha1.Credential) error {
	return status.Patch(ctx, r.Client, before, cred, func(c *v1alpha1.Credential) any { return c.Status })
}

func setCondition(cred *v1alpha1.Credential, typ v1alpha1.ConditionType, s metav1.ConditionStatus, reason v1alpha1.ConditionReason, msg string) {
	status.SetCondition(&cred.Status.Conditions, typ, s, reason, msg, cred.Generation)
}

// lastFailure rebuilds the last failure from status and the state Secret.
func lastFailure(cred *v1alpha1.Credential, st *state) *renewal.Failure {
	s := cred.Status
	if s.FailedAttempts == 0 || s.LastFailureTime == nil || s.NextRetryTime == nil {
		return nil
	}
	return &renewal.Failure{At: s.LastFailureTime.Time, Attempts: s.FailedAttempts, Kind: kindOf(v1alpha1.ConditionReason(s.LastFailureReason)),
		RetryAfter: s.NextRetryTime.Sub(s.LastFailureTime.Time), InputsVersion: st.failedInputs}
}

func kindOf(reason v1alpha1.ConditionReason) renewal.FailureKind {
	if reason == v1alpha1.ReasonInvalidCredentials || reason == v1alpha1.ReasonInvalidConfig {
		return renewal.Persistent
	}
	return renewal.Transient
}
