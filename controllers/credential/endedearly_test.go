package credential_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer/issuertest"
	"github.com/tokenkeeper/tokenkeeper/internal/metrics"
)

// An issuer that ends every session 15 s after login although it states an hour: the probe's
// first rejection is a counted failure (Ready=False TokenRejected naming when and why), and from
// then on tokens are taken to live as long as that session did (LifetimeAssumed=True
// SessionsEndEarly) and renewed before the issuer ends them, so the Secret never holds a token
// the issuer rejects for longer than a probe interval, once. (v0.2: Ready=True, failures 0,
// "the token lives 1h0m0s", and apps got 401 every cycle.)
func TestSessionsEndedEarly(t *testing.T) {
	t.Parallel()
	f := setup(t, issuertest.Seed004, func(s *issuertest.Server, _ map[string]string) {
		s.SetLifetime(time.Hour)
		s.EndSessionsAfter(15 * time.Second)
	})
	f.editIssuer(func(s *v1alpha1.IssuerSpec) {
		s.Probe = &v1alpha1.TokenProbe{URL: v1alpha1.EndpointURL(f.srv.URL() + f.srv.ProtectedPath()), Interval: &metav1.Duration{Duration: 10 * time.Second}}
	})
	failures := func() float64 {
		return testutil.ToFloat64(metrics.RenewalFailures.WithLabelValues(f.ns, f.ns, "Issuer", "issuer", string(v1alpha1.ReasonTokenRejected)))
	}
	before := failures()
	waitFor(t, 60*time.Second, "LifetimeAssumed=True SessionsEndEarly", func() (bool, string) {
		c := meta.FindStatusCondition(f.cred().Status.Conditions, string(v1alpha1.ConditionLifetimeAssumed))
		if c == nil {
			return false, "no condition"
		}
		return c.Status == metav1.ConditionTrue && c.Reason == string(v1alpha1.ReasonSessionsEndEarly), c.Reason + ": " + c.Message
	})
	f.waitEvent(string(v1alpha1.ReasonTokenRejected))
	if failures() <= before {
		t.Errorf("the rejection was not counted in tokenkeeper_renewal_failures_total")
	}
	c := f.cred()
	if lived := c.Status.ExpiresAt.Sub(c.Status.LastRotationTime.Time); lived > 26*time.Second {
		t.Errorf("status says the token lives %s; the issuer ends sessions after 15 s", lived)
	}
	// From now on the Secret holds a token the issuer accepts.
	rejected, samples := 0, 0
	for end := time.Now().Add(40 * time.Second); time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
		samples++
		if tok := f.token(); !f.srv.Valid(tok) {
			rejected++
			t.Logf("the Secret holds a rejected token: %s", f.srv.Why(tok))
		}
	}
	if rejected > 1 {
		t.Errorf("%d of %d samples found a token the issuer rejects", rejected, samples)
	}
	if ok, state := ready(f.cred()); !ok {
		t.Errorf("not Ready after the renewals: %s", state)
	}
	t.Logf("%s logins over the run", fmt.Sprint(f.srv.Calls(issuertest.OpLogin)))
}
