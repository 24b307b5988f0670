package credential_test

import (
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/controllers/credential"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer/issuertest"
)

// A renewal on demand: each new value of tokenkeeper.io/renew-requested-at renews a fresh token
// exactly once (one issuer request), the value is recorded in status, and a repeat does nothing.
func TestRenewRequested(t *testing.T) {
	t.Parallel()
	f := setup(t, issuertest.OAuth2, nil) // 1-h tokens: nothing renews on its own
	f.waitReady(30 * time.Second)
	annotate := func(k, v string) {
		patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, k, v)
		must(t, env.Client.Patch(t.Context(), f.cred(), client.RawPatch(types.MergePatchType, []byte(patch))))
	}
	logins := func() int { return f.srv.Calls(issuertest.OpLogin) }
	for i, value := range []string{"2026-11-23T05:00:00Z", "2026-11-23T05:00:01Z"} {
		before, tok := logins(), f.token()
		annotate(credential.AnnotationRenewRequestedAt, value)
		waitFor(t, 20*time.Second, "a new token", func() (bool, string) {
			return f.token() != tok && f.cred().Status.LastRenewRequest == value, "still the old token"
		})
		// The same value again (any other edit brings the Credential back): nothing happens.
		annotate("example.com/touched", fmt.Sprint(i))
		time.Sleep(3 * time.Second)
		if n := logins() - before; n != 1 {
			t.Fatalf("request %d: %d issuer requests, want exactly 1", i+1, n)
		}
	}
}

// Every replaced session keeps its full grace however many logins follow: three renewals on
// demand in quick succession (seed 000: each is a fresh login, sessions revocable) and each old
// session is revoked no sooner than the minimum lead after the login that replaced it, by the
// issuer's own clock. (v0.2 revoked the first one at once when a second login came within its
// grace: 5–21 s after it was replaced, with pods still using it.)
func TestEveryReplacedSessionKeepsItsGrace(t *testing.T) {
	t.Parallel()
	const lead = 8 * time.Second
	f := setup(t, issuertest.Seed000, nil)
	f.waitReady(30 * time.Second)
	must(t, env.Client.Create(t.Context(), &v1alpha1.TokenPolicy{ObjectMeta: metav1.ObjectMeta{Name: f.ns}, Spec: v1alpha1.TokenPolicySpec{
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": f.ns}},
		Renewal:           &v1alpha1.RenewalPolicy{MinimumLead: &metav1.Duration{Duration: lead}},
	}}))
	waitFor(t, 10*time.Second, "the policy in effect", func() (bool, string) {
		eff := f.cred().Status.EffectivePolicy
		return eff != nil && eff.MinimumLead != nil && eff.MinimumLead.Duration == lead, "not yet"
	})
	for i := range 3 {
		tok := f.token()
		patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:"2026-12-04T12:00:0%dZ"}}}`, credential.AnnotationRenewRequestedAt, i)
		must(t, env.Client.Patch(t.Context(), f.cred(), client.RawPatch(types.MergePatchType, []byte(patch))))
		waitFor(t, 15*time.Second, "renewal "+fmt.Sprint(i+1), func() (bool, string) { return f.token() != tok, "still the old token" })
	}
	grants := f.srv.Grants()
	if len(grants) != 4 {
		t.Fatalf("%d logins, want 4 (the first and three on demand)", len(grants))
	}
	if spread := grants[3].At.Sub(grants[1].At); spread > 15*time.Second {
		t.Logf("the three renewals took %s", spread)
	}
	for i, g := range grants[:3] {
		replaced := grants[i+1].At
		waitFor(t, 30*time.Second, fmt.Sprintf("session %d revoked", i+1), func() (bool, string) {
			return !f.srv.RevokedAt(g.Token).IsZero(), f.srv.Why(g.Token)
		})
		if grace := f.srv.RevokedAt(g.Token).Sub(replaced); grace < lead {
			t.Errorf("session %d revoked %s after it was replaced, want at least the minimum lead %s", i+1, grace.Round(time.Millisecond), lead)
		}
	}
	if !f.srv.Valid(grants[3].Token) {
		t.Errorf("the current session is not valid: %s", f.srv.Why(grants[3].Token))
	}
}
