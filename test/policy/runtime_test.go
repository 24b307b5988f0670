package policy_test

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer/issuertest"
)

// A Credential that says nothing gets the policy's default session, asked of the issuer.
func TestDefaultsApplied(t *testing.T) {
	t.Parallel()
	ns := namespace(t, &v1alpha1.TokenPolicySpec{SessionDuration: &v1alpha1.SessionDurationPolicy{Default: dur(30 * time.Minute), Max: dur(2 * time.Hour)}})
	srv := issuertest.Start(issuertest.Seed000)
	defer srv.Close()
	key := credential(t, ns, srv, true, nil)
	waitFor(t, 20*time.Second, "Ready", func() (bool, string) { return readyState(get(t, key)) })
	c := get(t, key)
	eff := c.Status.EffectivePolicy
	if eff == nil || eff.SessionDuration == nil || eff.SessionDuration.Duration != 30*time.Minute || strings.Join(eff.Policies, ",") != "default,"+ns {
		t.Fatalf("effective policy %+v, want a 30m session from policies default,%s", eff, ns)
	}
	if srv.SessionAsked() != 30*time.Minute {
		t.Fatalf("issuer was asked for %s, want the policy default 30m", srv.SessionAsked())
	}
	if left := time.Until(c.Status.ExpiresAt.Time); left < 29*time.Minute || left > 31*time.Minute {
		t.Fatalf("token lives %s, want about 30m", left)
	}
}

// Editing a policy changes the effective values on existing Credentials within seconds.
func TestPolicyEditReachesCredentials(t *testing.T) {
	t.Parallel()
	ns := namespace(t, &v1alpha1.TokenPolicySpec{Renewal: &v1alpha1.RenewalPolicy{BeforeExpiryPercent: ptrTo(int32(33))}})
	srv := issuertest.Start(issuertest.Seed004)
	defer srv.Close()
	key := credential(t, ns, srv, true, func(c *v1alpha1.Credential) {
		c.Spec.Password, c.Spec.APIKey = nil, &v1alpha1.APIKeyLogin{SecretRef: v1alpha1.LocalSecretReference{Name: "login"}}
	})
	waitFor(t, 20*time.Second, "Ready", func() (bool, string) { return readyState(get(t, key)) })
	before := get(t, key).Status.RenewalTime.Time
	p := &v1alpha1.TokenPolicy{}
	must(t, env.Client.Get(t.Context(), client.ObjectKey{Name: ns}, p))
	p.Spec.Renewal.BeforeExpiryPercent = ptrTo(int32(60))
	p.Spec.MaxSessionAge = dur(12 * time.Hour)
	must(t, env.Client.Update(t.Context(), p))
	edited := time.Now()
	waitFor(t, 10*time.Second, "the new renewal share in status", func() (bool, string) {
		eff := get(t, key).Status.EffectivePolicy
		return eff != nil && eff.BeforeExpiryPercent == 60 && eff.MaxSessionAge != nil, "still the old values"
	})
	t.Logf("effective policy updated %s after the edit", time.Since(edited).Round(100*time.Millisecond))
	// 1-h token: planned 40 min after issue at 33%, 24 min at 60% (each ±10% of its margin); a
	// first token's renewal is spread over the last three quarters of that wait, so it moves at
	// least a quarter of 16 min less the jitter: 3.6 minutes.
	if after := get(t, key).Status.RenewalTime.Time; !after.Before(before.Add(-3 * time.Minute)) {
		t.Fatalf("renewal time %s did not move earlier from %s with a larger share", after, before)
	}
}

// The maximum session age forces a fresh login even though refreshing keeps working.
func TestMaxSessionAgeForcesLogin(t *testing.T) {
	t.Parallel()
	ns := namespace(t, &v1alpha1.TokenPolicySpec{MaxSessionAge: dur(time.Minute)})
	srv := issuertest.Start(issuertest.Seed001)
	defer srv.Close()
	srv.SetLifetime(20 * time.Second)
	key := credential(t, ns, srv, true, nil)
	waitFor(t, 20*time.Second, "Ready", func() (bool, string) { return readyState(get(t, key)) })
	waitFor(t, 100*time.Second, "a second login", func() (bool, string) {
		return srv.Calls(issuertest.OpLogin) >= 2, "logins: " + strconv.Itoa(srv.Calls(issuertest.OpLogin))
	})
	if r := srv.Calls(issuertest.OpRefresh); r < 3 {
		t.Fatalf("only %d refreshes before the forced login: refresh should run until the session is a minute old", r)
	}
	if !srv.Valid(token(t, ns)) {
		t.Fatalf("the Secret does not hold a valid token after the forced login")
	}
}

// An issuer the policies do not allow never receives a request, and a Credential that becomes
// non-compliant keeps its Secret, says PolicyViolation and sends nothing until it complies again.
func TestDisallowedIssuerNeverCalled(t *testing.T) {
	t.Parallel()
	srv := issuertest.Start(issuertest.Seed001)
	defer srv.Close()
	srv.SetLifetime(20 * time.Second)
	ns := namespace(t, nil)
	// Phase 1: no input Secret yet, so nothing can be sent; then a policy locks the namespace.
	key := credential(t, ns, srv, false, nil)
	waitFor(t, 10*time.Second, "SecretNotFound", func() (bool, string) {
		_, s := readyState(get(t, key))
		return strings.HasPrefix(s, string(v1alpha1.ReasonSecretNotFound)), s
	})
	locked := &v1alpha1.TokenPolicy{ObjectMeta: metav1.ObjectMeta{Name: ns + "-locked"}, Spec: v1alpha1.TokenPolicySpec{
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"locked": "true"}},
		AllowedIssuers:    []v1alpha1.IssuerPattern{"https://127.0.0.1:1"},
	}}
	must(t, env.Client.Create(t.Context(), locked))
	nsObj := &corev1.Namespace{}
	must(t, env.Client.Get(t.Context(), client.ObjectKey{Name: ns}, nsObj))
	nsObj.Labels["locked"] = "true"
	must(t, env.Client.Update(t.Context(), nsObj))
	// The input Secret's event must not overtake the manager's view of the lock.
	waitSeen(t, &v1alpha1.TokenPolicy{ObjectMeta: metav1.ObjectMeta{Name: locked.Name}})
	waitSeen(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, func(n *corev1.Namespace) bool { return n.Labels["locked"] == "true" })
	must(t, env.Client.Create(t.Context(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "login"}, StringData: srv.InputSecretData()}))
	waitFor(t, 10*time.Second, "PolicyViolation", func() (bool, string) {
		_, s := readyState(get(t, key))
		return strings.HasPrefix(s, string(v1alpha1.ReasonPolicyViolation)) && strings.Contains(s, `TokenPolicy "`+locked.Name+`"`), s
	})
	time.Sleep(3 * time.Second)
	if n := srv.Calls(issuertest.OpLogin) + srv.Calls(issuertest.OpRefresh); n != 0 {
		t.Fatalf("the disallowed issuer received %d requests, want 0", n)
	}
	// Phase 2: allowed again, it logs in (so the count above could have caught a request).
	nsObj.Labels["locked"] = "false"
	must(t, env.Client.Update(t.Context(), nsObj))
	waitFor(t, 15*time.Second, "Ready once allowed", func() (bool, string) { return readyState(get(t, key)) })
	good := token(t, ns)
	// Phase 3: locked while holding a token: PolicyViolation, the Secret kept, no renewal sent
	// although one falls due within the wait.
	nsObj.Labels["locked"] = "true"
	must(t, env.Client.Update(t.Context(), nsObj))
	calls := srv.Calls(issuertest.OpLogin) + srv.Calls(issuertest.OpRefresh)
	// The token in the Secret stays valid a while: Ready until it expires, the reason on Issuing.
	waitFor(t, 10*time.Second, "Issuing=False PolicyViolation", func() (bool, string) {
		c := meta.FindStatusCondition(get(t, key).Status.Conditions, string(v1alpha1.ConditionIssuing))
		return c != nil && c.Status == metav1.ConditionFalse && c.Reason == string(v1alpha1.ReasonPolicyViolation), fmt.Sprint(c)
	})
	// Nothing renews while the policy forbids it: status shows no renewal or retry time (v0.2
	// said "renews 62s ago"), and names the policy in force (v0.2 said "none" beside the
	// violation).
	st := get(t, key).Status
	if st.RenewalTime != nil || st.NextRetryTime != nil {
		t.Errorf("a blocked Credential shows renewalTime %v, nextRetryTime %v; want neither", st.RenewalTime, st.NextRetryTime)
	}
	if st.EffectivePolicy == nil || !slices.Contains(st.EffectivePolicy.Policies, locked.Name) {
		t.Errorf("status.effectivePolicy %+v does not name %s, the policy the violation names", st.EffectivePolicy, locked.Name)
	}
	time.Sleep(22 * time.Second)
	if n := srv.Calls(issuertest.OpLogin) + srv.Calls(issuertest.OpRefresh); n != calls {
		t.Fatalf("%d requests reached the issuer while disallowed", n-calls)
	}
	// The 20-s token has expired meanwhile: Ready=False with the policy's reason.
	if ok, s := readyState(get(t, key)); ok || !strings.HasPrefix(s, string(v1alpha1.ReasonPolicyViolation)) {
		t.Errorf("after the token expired: %s, want Ready=False PolicyViolation", s)
	}
	if token(t, ns) != good {
		t.Fatalf("the Secret was changed or blanked while the Credential was non-compliant")
	}
}

func ptrTo[T any](v T) *T { return &v }

// A TokenPolicy's status says where it is in force: Ready with the namespaces it selects, kept
// up to date as namespaces gain its label (nothing wrote TokenPolicy status in v0.2).
func TestPolicyStatusNamesItsNamespaces(t *testing.T) {
	t.Parallel()
	ns := namespace(t, nil)
	label := "reach-" + ns
	p := &v1alpha1.TokenPolicy{ObjectMeta: metav1.ObjectMeta{Name: label}, Spec: v1alpha1.TokenPolicySpec{Priority: 7,
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{label: "yes"}}}}
	must(t, env.Client.Create(t.Context(), p))
	ready := func(want string) {
		t.Helper()
		waitFor(t, 15*time.Second, "TokenPolicy Ready: "+want, func() (bool, string) {
			got := &v1alpha1.TokenPolicy{}
			must(t, env.Client.Get(t.Context(), client.ObjectKeyFromObject(p), got))
			c := meta.FindStatusCondition(got.Status.Conditions, string(v1alpha1.ConditionReady))
			return c != nil && c.Status == metav1.ConditionTrue && c.Message == want && got.Status.ObservedGeneration == got.Generation, fmt.Sprint(c)
		})
	}
	ready("in force in 0 namespaces")
	nsObj := &corev1.Namespace{}
	must(t, env.Client.Get(t.Context(), client.ObjectKey{Name: ns}, nsObj))
	nsObj.Labels[label] = "yes"
	must(t, env.Client.Update(t.Context(), nsObj))
	ready("in force in 1 namespace: " + ns)
}
