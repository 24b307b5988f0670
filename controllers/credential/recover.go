package credential

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer"
	"github.com/tokenkeeper/tokenkeeper/internal/metrics"
)

// recover settles what a crash, an unreachable API server or a hand edit left behind, before any
// new call to the issuer: a call whose outcome was never recorded, a state Secret that was
// deleted, a token that was obtained but superseded before it could be saved.
func (r *Reconciler) recover(ctx context.Context, cred *v1alpha1.Credential, e *env, st *state) error {
	if t := st.orphaned; t != nil {
		r.revokeNow(ctx, cred, e, t)
		st.orphaned = nil
	}
	clearSupersededFailure(cred, st)
	changed := false
	if p := st.pending; p != nil {
		r.interrupted(cred, e, st, p)
		changed = true
	}
	if st.restored || (st.resourceVersion == "" && st.token == nil && r.adopt(ctx, cred, e, st)) {
		r.Recorder.Eventf(cred, nil, corev1.EventTypeNormal, string(v1alpha1.ReasonStateRestored), "Restore",
			"state Secret %s was missing: recreated from the current session", StateSecretName(cred))
		changed = true
	}
	if !changed {
		return nil
	}
	return r.store.commit(ctx, cred, st)
}

// interrupted handles a call that was recorded but whose outcome never was: the manager died, or
// lost the API server, after sending it. The issuer may have answered, so whatever refresh token
// the call sent may be spent: it is dropped and never sent again. The session's access token
// stays in use until its renewal time, which then is a fresh login.
func (r *Reconciler) interrupted(cred *v1alpha1.Credential, e *env, st *state, p *attempt) {
	consequence := "a session the issuer may have opened for it stays unknown and expires on its own"
	if p.Op != "login" {
		st.dropRefreshToken()
		consequence = "its refresh token is never sent again; the next renewal logs in afresh"
	}
	if p.Op != "refresh" && e.Request.Kind == issuer.LoginRefreshToken {
		st.spentInput = p.InputToken
		if st.spentInput == "" { // unreadable record: assume the current input token was sent
			st.spentInput = e.InputToken()
		}
		consequence = "the input refresh token it sent is never sent again"
	}
	st.pending = nil
	metrics.InterruptedCalls.WithLabelValues(e.metricLabels(p.Op)...).Inc()
	r.Recorder.Eventf(cred, nil, corev1.EventTypeWarning, string(v1alpha1.ReasonInterrupted), "Recover",
		"a %s sent to %s at %s was interrupted before its outcome was saved: %s", p.Op, p.Issuer, p.At.UTC().Format(time.RFC3339), consequence)
}

// adopt rebuilds a missing state from the target Secret, when it holds this Credential's token
// and that token has not expired: the session carries on (without its refresh token, which only
// the state Secret held) instead of a new login that would leave the old session open.
func (r *Reconciler) adopt(ctx context.Context, cred *v1alpha1.Credential, e *env, st *state) bool {
	sec := &corev1.Secret{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: cred.Namespace, Name: cred.Spec.SecretName}, sec); err != nil {
		return false
	}
	owner := metav1.GetControllerOf(sec)
	expires, err := time.Parse(time.RFC3339, string(sec.Data[KeyExpiresAt]))
	if owner == nil || owner.UID != cred.UID || len(sec.Data[KeyToken]) == 0 || err != nil || !r.Clock.Now().Before(expires) {
		return false
	}
	issued := r.Clock.Now()
	if t := cred.Status.LastRotationTime; t != nil && t.Before(&metav1.Time{Time: issued}) {
		issued = t.Time
	}
	st.token = &issuer.Token{AccessToken: string(sec.Data[KeyToken]), Scheme: string(sec.Data[KeyTokenType]),
		IssuedAt: issued, ExpiresAt: expires, ExpirySource: issuer.ExpiryFromSecret}
	st.sessionStart = issued
	if t := cred.Status.SessionStartTime; t != nil {
		st.sessionStart = t.Time
	}
	st.inputsVersion = e.InputsVersion
	return true
}

// clearSupersededFailure forgets a failure in status that a later token in the state Secret
// superseded: the renewal after the failure succeeded and was committed, but its status patch was
// lost (it started from a cached copy older than the failure's status and conflicted, or the
// manager stopped first). The state Secret, written first, has the last word: without this the
// Credential would wait out the old failure's backoff with a fresh token, Issuing=False with a
// reason that is over. A token the issuer's probe rejected is no success.
func clearSupersededFailure(cred *v1alpha1.Credential, st *state) {
	s := &cred.Status
	if s.FailedAttempts == 0 || st.token == nil || st.token.Fingerprint() == s.TokenFingerprint || st.rejected == st.token.Fingerprint() {
		return
	}
	s.FailedAttempts, s.LastFailureReason, s.LastFailureTime, s.NextRetryTime = 0, "", nil, nil
	if s.LastRotationTime == nil || s.LastRotationTime.Before(&metav1.Time{Time: st.token.IssuedAt}) {
		s.LastRotationTime = &metav1.Time{Time: st.token.IssuedAt}
	}
}
