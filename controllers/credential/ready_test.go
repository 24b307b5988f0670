package credential

import (
	"errors"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer"
)

// TestOneRuleForReady: whatever stops a renewal — a configuration the Credential cannot work
// with, for every such reason — the Credential stays Ready while the target Secret holds a token
// that has not expired and that the issuer has not rejected, with the reason on Issuing; and is
// Ready=False with that reason otherwise. (v0.2: InvalidCredentials kept Ready=True until expiry
// while SecretNotFound turned it False at once with 92 s of valid token left.) failed, for issuer
// failures, applies the same servesValidToken.
func TestOneRuleForReady(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	tok := func(expiresIn time.Duration) *state {
		return &state{token: &issuer.Token{AccessToken: "abc", IssuedAt: now.Add(-time.Minute), ExpiresAt: now.Add(expiresIn)}}
	}
	rejected := tok(time.Hour)
	rejected.rejected = rejected.token.Fingerprint()
	states := map[string]struct {
		st   *state
		want bool
	}{
		"ValidToken":       {st: tok(92 * time.Second), want: true},
		"ExpiredToken":     {st: tok(-time.Second), want: false},
		"NoToken":          {st: &state{}, want: false},
		"RejectedToken":    {st: rejected, want: false},
		"SecretNotWritten": {st: nil, want: false},
	}
	for _, reason := range []string{string(v1alpha1.ReasonSecretNotFound), string(v1alpha1.ReasonPolicyViolation), string(v1alpha1.ReasonInvalidConfig),
		string(v1alpha1.ReasonIssuerNotFound), string(v1alpha1.ReasonServiceAccountNotFound), string(v1alpha1.ReasonRefreshTokenSpent), string(v1alpha1.ReasonSecretConflict)} {
		for name, tc := range states {
			t.Run(reason+"/"+name, func(t *testing.T) {
				r := &Reconciler{Recorder: events.NewFakeRecorder(10), Clock: clocktesting.NewFakeClock(now)}
				cred := &v1alpha1.Credential{}
				res, err := r.blocked(cred, tc.st, block(v1alpha1.ConditionReason(reason), "what is wrong"))
				ready := meta.FindStatusCondition(cred.Status.Conditions, string(v1alpha1.ConditionReady))
				issuing := meta.FindStatusCondition(cred.Status.Conditions, string(v1alpha1.ConditionIssuing))
				if got := ready.Status == metav1.ConditionTrue; got != tc.want {
					t.Errorf("Ready=%s (%s), want %t", ready.Status, ready.Message, tc.want)
				}
				if !tc.want && ready.Reason != reason {
					t.Errorf("Ready=False with reason %s, want %s", ready.Reason, reason)
				}
				if issuing.Status != metav1.ConditionFalse || issuing.Reason != reason {
					t.Errorf("Issuing %s %s, want False %s", issuing.Status, issuing.Reason, reason)
				}
				if cred.Status.RenewalTime != nil || cred.Status.NextRetryTime != nil {
					t.Errorf("a blocked Credential shows a renewal or retry time")
				}
				// Ready while valid means waking at expiry to say otherwise; else nothing to do
				// until something changes.
				switch {
				case tc.want && (err != nil || res.RequeueAfter != 92*time.Second+time.Second):
					t.Errorf("valid token: got %v, %v; want a wake at expiry", res, err)
				case !tc.want && !errors.Is(err, reconcile.TerminalError(nil)):
					t.Errorf("got %v, %v; want a terminal error", res, err)
				}
			})
		}
	}
	for name, tc := range states {
		if got := servesValidToken(now, tc.st); got != tc.want {
			t.Errorf("servesValidToken(%s) = %t, want %t (failed applies the same rule)", name, got, tc.want)
		}
	}
}
