package credential_test

import (
	"fmt"

	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	appsv1 "k8s.io/api/apps/v1"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/controllers/credential"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer/issuertest"
	"github.com/tokenkeeper/tokenkeeper/internal/metrics"
)

// fixture is one Credential at one conformance issuer, in its own namespace.
type fixture struct {
	t   *testing.T
	srv *issuertest.Server
	ns  string
	key types.NamespacedName
}

// setup creates a namespace, the input (and header) Secrets, the issuer — a ClusterIssuer for
// seed 000 so both scopes are exercised — and a Credential writing Secret "token".
func setup(t *testing.T, f issuertest.Flavor, tune func(*issuertest.Server, map[string]string)) *fixture {
	t.Helper()
	return setupWith(t, f, tune, nil)
}

// setupWith is setup with a chance to change the Credential before it is created.
func setupWith(t *testing.T, f issuertest.Flavor, tune func(*issuertest.Server, map[string]string), edit func(*v1alpha1.Credential)) *fixture {
	t.Helper()
	return setupCreated(t, f, tune, edit, func(c *v1alpha1.Credential) error { return env.Client.Create(t.Context(), c) })
}

// setupCreated is setupWith with the Credential created by create (applied as a user would).
func setupCreated(t *testing.T, f issuertest.Flavor, tune func(*issuertest.Server, map[string]string), edit func(*v1alpha1.Credential),
	create func(*v1alpha1.Credential) error) *fixture {
	t.Helper()
	srv := startServer(t, f)
	ns := strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
	if len(ns) > 50 {
		ns = ns[:50]
	}
	ns = strings.Trim(ns, "-") + "-" + fmt.Sprint(time.Now().UnixNano()%100000)
	c := env.Client
	ctx := t.Context()
	must(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	input := srv.InputSecretData()
	if tune != nil {
		tune(srv, input)
	}
	must(t, c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "login"}, StringData: input}))
	spec := srv.Spec()
	ref := v1alpha1.IssuerReference{Kind: v1alpha1.IssuerKindNamespaced, Name: "issuer"}
	if f == issuertest.Seed000 {
		ref = v1alpha1.IssuerReference{Kind: v1alpha1.IssuerKindCluster, Name: "wallet-" + ns}
		must(t, c.Create(ctx, &v1alpha1.ClusterIssuer{ObjectMeta: metav1.ObjectMeta{Name: ref.Name}, Spec: spec}))
	} else {
		if data := srv.HeaderSecretData(); data != nil {
			must(t, c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: issuertest.HeaderSecretName}, StringData: data}))
		}
		must(t, c.Create(ctx, &v1alpha1.Issuer{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "issuer"}, Spec: spec}))
	}
	cred := &v1alpha1.Credential{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cred"},
		Spec: v1alpha1.CredentialSpec{IssuerRef: ref, SecretName: "token"}}
	srv.SetLogin(&cred.Spec, "login")
	if edit != nil {
		edit(cred)
	}
	must(t, create(cred))
	t.Cleanup(func() {
		if t.Failed() { // the manager's log lines about this test's namespace
			var lines []string
			for _, l := range strings.Split(logs.String(), "\n") {
				if strings.Contains(l, ns) {
					lines = append(lines, l)
				}
			}
			t.Logf("manager log for namespace %s:\n%s", ns, strings.Join(lines[max(0, len(lines)-60):], "\n"))
		}
	})
	return &fixture{t: t, srv: srv, ns: ns, key: types.NamespacedName{Namespace: ns, Name: "cred"}}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// editIssuer changes the fixture's namespaced Issuer, retrying on conflicts.
func (f *fixture) editIssuer(edit func(*v1alpha1.IssuerSpec)) {
	f.t.Helper()
	must(f.t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		iss := &v1alpha1.Issuer{}
		must(f.t, env.Client.Get(f.t.Context(), types.NamespacedName{Namespace: f.ns, Name: "issuer"}, iss))
		edit(&iss.Spec)
		return env.Client.Update(f.t.Context(), iss)
	}))
}

func (f *fixture) cred() *v1alpha1.Credential {
	c := &v1alpha1.Credential{}
	must(f.t, env.Client.Get(f.t.Context(), f.key, c))
	return c
}

// secret returns the target Secret, or nil when it does not exist.
func (f *fixture) secret() *corev1.Secret {
	s := &corev1.Secret{}
	err := env.Client.Get(f.t.Context(), types.NamespacedName{Namespace: f.ns, Name: "token"}, s)
	if apierrors.IsNotFound(err) {
		return nil
	}
	must(f.t, err)
	return s
}

func (f *fixture) token() string {
	if s := f.secret(); s != nil {
		return string(s.Data[credential.KeyToken])
	}
	return ""
}

func ready(c *v1alpha1.Credential) (bool, string) {
	cond := meta.FindStatusCondition(c.Status.Conditions, string(v1alpha1.ConditionReady))
	if cond == nil {
		return false, "no Ready condition"
	}
	return cond.Status == metav1.ConditionTrue, cond.Reason + ": " + cond.Message
}

func (f *fixture) waitReady(timeout time.Duration) {
	f.t.Helper()
	waitFor(f.t, timeout, "Ready=True", func() (bool, string) { return ready(f.cred()) })
}

// 1. A Credential for each seed API and for OAuth2 becomes Ready, and the issuer accepts the
// token from its Secret, sent the way an application would send it.
func TestEverySeedBecomesReady(t *testing.T) {
	t.Parallel()
	for _, flavor := range issuertest.Flavors {
		t.Run(string(flavor), func(t *testing.T) {
			t.Parallel()
			f := setup(t, flavor, nil)
			f.waitReady(30 * time.Second)
			s := f.secret()
			for _, k := range []string{credential.KeyToken, credential.KeyAuthorization, credential.KeyTokenType, credential.KeyExpiresAt} {
				if len(s.Data[k]) == 0 {
					t.Errorf("Secret has no %q", k)
				}
			}
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, f.srv.URL()+f.srv.ProtectedPath(), nil)
			req.Header.Set("Authorization", string(s.Data[credential.KeyAuthorization]))
			if apiKey := s.Data["api-key"]; apiKey != nil {
				req.Header.Set("Api-Key", string(apiKey))
			}
			resp, err := f.srv.Client().Do(req)
			must(t, err)
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("issuer answered %d to the token from the Secret", resp.StatusCode)
			}
			c := f.cred()
			if c.Status.TokenFingerprint != issuer.Fingerprint(string(s.Data[credential.KeyToken])) || c.Status.ExpiresAt == nil || c.Status.RenewalTime == nil {
				t.Errorf("status does not describe the token: %+v", c.Status)
			}
			if owner := metav1.GetControllerOf(s); owner == nil || owner.UID != c.UID {
				t.Errorf("target Secret is not owned by its Credential")
			}
			// Seed 000 names no expiry: the 10 h defaultLifetime is an assumption, and status says
			// so; every other seed's expiry is read from its answer.
			assumed := meta.FindStatusCondition(c.Status.Conditions, string(v1alpha1.ConditionLifetimeAssumed))
			switch {
			case assumed == nil:
				t.Errorf("no %s condition", v1alpha1.ConditionLifetimeAssumed)
			case flavor == issuertest.Seed000 && (assumed.Status != metav1.ConditionTrue || !strings.Contains(assumed.Message, "assuming 10h0m0s from the Issuer's defaultLifetime")):
				t.Errorf("seed 000: %s=%s %q, want True naming the assumed 10h", assumed.Type, assumed.Status, assumed.Message)
			case flavor != issuertest.Seed000 && assumed.Status != metav1.ConditionFalse:
				t.Errorf("%s: %s=%s %q, want False", flavor, assumed.Type, assumed.Status, assumed.Message)
			}
			state := &corev1.Secret{}
			must(t, env.Client.Get(t.Context(), types.NamespacedName{Namespace: f.ns, Name: credential.StateSecretName(c)}, state))
			if flavor == issuertest.Seed000 && f.srv.SessionAsked() != 0 {
				t.Errorf("seed 000 was asked for a session although nothing requested one")
			}
		})
	}
}

// 2. With 20-second tokens the Secret rotates before expiry, by refresh, one issuer call each.
func TestRotatesBeforeExpiry(t *testing.T) {
	t.Parallel()
	for _, flavor := range []issuertest.Flavor{issuertest.Seed001, issuertest.Seed003} {
		t.Run(string(flavor), func(t *testing.T) {
			t.Parallel()
			f := setup(t, flavor, func(s *issuertest.Server, _ map[string]string) { s.SetLifetime(20 * time.Second) })
			f.waitReady(30 * time.Second)
			seen := []string{f.token()}
			deadline := time.Now().Add(40 * time.Second)
			for len(seen) < 4 && time.Now().Before(deadline) {
				tok := f.token()
				if !f.srv.Valid(tok) {
					t.Fatalf("the Secret held an expired or revoked token after %d rotations", len(seen)-1)
				}
				if tok != seen[len(seen)-1] {
					seen = append(seen, tok)
				}
				time.Sleep(200 * time.Millisecond)
			}
			// status says which rule applied: a 20 s token (19–20 s as the issuer rounds it) gets
			// half its life, not 2 minutes, ±10% jitter drawn per token.
			if p := f.cred().Status.EffectivePolicy; p == nil || p.RenewalLead == nil || p.RenewalLead.Duration < 8500*time.Millisecond || p.RenewalLead.Duration > 11500*time.Millisecond ||
				!strings.Contains(p.RenewalRule, "raised to half the lifetime (") || !strings.Contains(p.RenewalRule, "): the minimum lead 2m0s would leave less") {
				t.Errorf("effectivePolicy does not state the rule applied to a 20 s token: %+v", p)
			}
			rotations := len(seen) - 1
			if rotations < 2 {
				t.Fatalf("%d rotations in 40 s of 20 s tokens, want at least 2", rotations)
			}
			if l, r := f.srv.Calls(issuertest.OpLogin), f.srv.Calls(issuertest.OpRefresh); l != 1 || r != rotations {
				t.Errorf("issuer saw %d logins and %d refreshes for %d rotations, want 1 and %d", l, r, rotations, rotations)
			}
		})
	}
}

// 3. An issuer answering 5xx past expiry: the Secret keeps the last good token, status says
// why, and rotation resumes on its own when the issuer recovers.
func TestIssuerOutageKeepsLastToken(t *testing.T) {
	t.Parallel()
	f := setup(t, issuertest.Seed001, func(s *issuertest.Server, _ map[string]string) { s.SetLifetime(20 * time.Second) })
	f.waitReady(30 * time.Second)
	good := f.token()
	f.srv.Fail(-1, http.StatusServiceUnavailable, "")
	expires := f.cred().Status.ExpiresAt.Time
	waitFor(t, 40*time.Second, "Ready=False after expiry with the issuer's failure", func() (bool, string) {
		c := f.cred()
		ok, state := ready(c)
		return !ok && time.Now().After(expires) && c.Status.LastFailureReason == string(v1alpha1.ReasonIssuerUnavailable), state
	})
	if f.token() != good {
		t.Fatalf("the Secret's token changed or was blanked during the outage")
	}
	c := f.cred()
	if c.Status.FailedAttempts < 2 || c.Status.NextRetryTime == nil {
		t.Errorf("status: %d failed attempts, next retry %v; want at least 2 and a retry time", c.Status.FailedAttempts, c.Status.NextRetryTime)
	}
	// Waiting to retry is not issuing: Issuing=False with the failure's reason and the retry time.
	if is := meta.FindStatusCondition(c.Status.Conditions, string(v1alpha1.ConditionIssuing)); is == nil || is.Status != metav1.ConditionFalse ||
		is.Reason != string(v1alpha1.ReasonIssuerUnavailable) || !strings.HasPrefix(is.Message, "waiting to retry at ") {
		t.Errorf("Issuing while waiting to retry: %+v, want False IssuerUnavailable naming the retry time", is)
	}
	f.srv.Fail(0, 0, "")
	waitFor(t, 60*time.Second, "a new token after recovery", func() (bool, string) {
		ok, state := ready(f.cred())
		return ok && f.token() != good && f.srv.Valid(f.token()), state
	})
}

// A renewal that succeeded after a failure but whose status patch was lost (it started from a
// cached copy older than the failure's status, so its optimistic lock conflicted) left status
// naming the failure and the token before: the next pass believes the state Secret, which has the
// new token, instead of waiting out the old failure's backoff (TestRenewWaitFailure in
// internal/cli met this once in six runs).
func TestLostStatusOfSuccessAfterFailure(t *testing.T) {
	t.Parallel()
	f := setup(t, issuertest.Seed001, nil)
	f.waitReady(30 * time.Second)
	logins := f.srv.Calls(issuertest.OpLogin)
	// The status the conflicting pass left: the failure before its success, the token before its.
	must(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		c := f.cred()
		now := metav1.Now()
		c.Status.FailedAttempts, c.Status.LastFailureReason = 1, string(v1alpha1.ReasonIssuerUnavailable)
		c.Status.LastFailureTime, c.Status.NextRetryTime = &now, &metav1.Time{Time: now.Add(time.Hour)}
		c.Status.TokenFingerprint = "0123456789abcdef"
		meta.SetStatusCondition(&c.Status.Conditions, metav1.Condition{Type: string(v1alpha1.ConditionIssuing), Status: metav1.ConditionFalse,
			Reason: string(v1alpha1.ReasonIssuerUnavailable), Message: "waiting to retry"})
		return env.Client.Status().Update(t.Context(), c)
	}))
	must(t, retry.RetryOnConflict(retry.DefaultRetry, func() error { // a pass: an annotation, as a GitOps tool might add
		c := f.cred()
		if c.Annotations == nil {
			c.Annotations = map[string]string{}
		}
		c.Annotations["example.com/touched"] = "yes"
		return env.Client.Update(t.Context(), c)
	}))
	waitFor(t, 15*time.Second, "status without the superseded failure", func() (bool, string) {
		c := f.cred()
		is := meta.FindStatusCondition(c.Status.Conditions, string(v1alpha1.ConditionIssuing))
		return c.Status.FailedAttempts == 0 && c.Status.NextRetryTime == nil && c.Status.TokenFingerprint != "0123456789abcdef" &&
				is != nil && is.Reason == string(v1alpha1.ReasonIdle),
			fmt.Sprintf("failedAttempts %d, nextRetryTime %v, fingerprint %s, Issuing %v", c.Status.FailedAttempts, c.Status.NextRetryTime, c.Status.TokenFingerprint, is)
	})
	if n := f.srv.Calls(issuertest.OpLogin) - logins; n != 0 {
		t.Errorf("%d logins: the token in the state Secret is fresh, want none", n)
	}
}

// 4. A wrong password: Ready=False with the issuer's reason, no hot loop, and success within
// seconds of the input Secret being fixed.
func TestWrongPasswordThenFixed(t *testing.T) {
	t.Parallel()
	f := setup(t, issuertest.Seed001, func(_ *issuertest.Server, in map[string]string) { in["password"] = "wrong-password" })
	waitFor(t, 30*time.Second, "Ready=False InvalidCredentials", func() (bool, string) {
		ok, state := ready(f.cred())
		return !ok && strings.Contains(state, string(v1alpha1.ReasonInvalidCredentials)) && strings.Contains(state, "Invalid email or password"), state
	})
	// Status tells one story: no token, so no renewal time; the retry has its own field.
	if c := f.cred(); c.Status.RenewalTime != nil || c.Status.NextRetryTime == nil {
		t.Errorf("a Credential that never had a token shows renewalTime %v and nextRetryTime %v; want none and the retry", c.Status.RenewalTime, c.Status.NextRetryTime)
	}
	time.Sleep(10 * time.Second)
	if n := f.srv.Calls(issuertest.OpLogin); n > 2 {
		t.Fatalf("%d login attempts in about 10 s with a wrong password: a hot loop", n)
	}
	s := &corev1.Secret{}
	must(t, env.Client.Get(t.Context(), types.NamespacedName{Namespace: f.ns, Name: "login"}, s))
	s.Data["password"] = []byte(issuertest.Password)
	must(t, env.Client.Update(t.Context(), s))
	fixed := time.Now()
	f.waitReady(10 * time.Second)
	t.Logf("Ready %s after the Secret was fixed", time.Since(fixed).Round(100*time.Millisecond))
}

// 5. The target Secret deleted is recreated, edited is restored, without a new login.
func TestTargetSecretRestored(t *testing.T) {
	t.Parallel()
	f := setup(t, issuertest.Seed004, nil)
	f.waitReady(30 * time.Second)
	good := f.token()
	must(t, env.Client.Delete(t.Context(), f.secret()))
	waitFor(t, 15*time.Second, "the Secret recreated", func() (bool, string) { return f.token() == good, "token: " + issuer.Fingerprint(f.token()) })
	s := f.secret()
	s.Data[credential.KeyToken] = []byte("tampered")
	delete(s.Data, credential.KeyAuthorization)
	must(t, env.Client.Update(t.Context(), s))
	waitFor(t, 15*time.Second, "the Secret restored", func() (bool, string) {
		s := f.secret()
		return s != nil && string(s.Data[credential.KeyToken]) == good && len(s.Data[credential.KeyAuthorization]) > 0, "edited"
	})
	if n := f.srv.Calls(issuertest.OpLogin); n != 1 {
		t.Errorf("issuer saw %d logins, want 1", n)
	}
}

// 6. A restarted manager carries on from the state Secret: no new login while the token is valid.
// Not parallel: it restarts the suite's manager before the parallel tests start.
func TestManagerRestartKeepsSession(t *testing.T) {
	f := setup(t, issuertest.Seed003, nil)
	f.waitReady(30 * time.Second)
	good := f.token()
	stopManager()
	must(t, startManager())
	// Prove the new manager is at work: it must restore a deleted Secret from the state Secret.
	must(t, env.Client.Delete(t.Context(), f.secret()))
	waitFor(t, 20*time.Second, "the new manager to restore the Secret", func() (bool, string) { return f.token() == good, "missing" })
	if n := f.srv.Calls(issuertest.OpLogin); n != 1 {
		t.Fatalf("issuer saw %d logins across a manager restart, want 1", n)
	}
	if ok, state := ready(f.cred()); !ok {
		t.Fatalf("not Ready after restart: %s", state)
	}
}

// A Credential whose issuer has no revocation endpoint (seed 004), or whose policy says not to
// revoke, gets no finalizer: deletion has nothing to do, and the write is spared. When a policy
// turns revocation on, the finalizer comes with the next reconcile.
func TestFinalizerOnlyWhereDeleteRevokes(t *testing.T) {
	t.Parallel()
	t.Run("NoRevocationEndpoint", func(t *testing.T) {
		t.Parallel()
		f := setup(t, issuertest.Seed004, nil)
		f.waitReady(30 * time.Second)
		if fin := f.cred().Finalizers; len(fin) != 0 {
			t.Fatalf("finalizers %v on a Credential whose issuer cannot revoke", fin)
		}
		if fin := f.stateSecret().Finalizers; len(fin) != 0 {
			t.Fatalf("finalizers %v on the state Secret of a Credential whose issuer cannot revoke", fin)
		}
		must(t, env.Client.Delete(t.Context(), f.cred()))
		waitFor(t, 10*time.Second, "the Credential gone at once", func() (bool, string) {
			err := env.Client.Get(t.Context(), f.key, &v1alpha1.Credential{})
			return apierrors.IsNotFound(err), fmt.Sprint(err)
		})
	})
	t.Run("RevokeOnDeleteTurnedOn", func(t *testing.T) {
		t.Parallel()
		f := setupWith(t, issuertest.Seed002, nil, func(c *v1alpha1.Credential) { c.Spec.RevokeOnDelete = ptr.To(false) })
		f.waitReady(30 * time.Second)
		if fin := f.cred().Finalizers; len(fin) != 0 {
			t.Fatalf("finalizers %v on a Credential with revokeOnDelete: false", fin)
		}
		must(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
			c := f.cred()
			c.Spec.RevokeOnDelete = ptr.To(true)
			return env.Client.Update(t.Context(), c)
		}))
		waitFor(t, 20*time.Second, "the finalizer once revocation is on", func() (bool, string) {
			c := f.cred()
			return controllerutil.ContainsFinalizer(c, credential.Finalizer), fmt.Sprint(c.Finalizers)
		})
	})
}

// Deleting a Credential revokes its session at the issuer, then garbage collection can remove
// its Secrets.
func TestDeleteRevokesSession(t *testing.T) {
	t.Parallel()
	f := setup(t, issuertest.Seed002, nil)
	f.waitReady(30 * time.Second)
	if !controllerutil.ContainsFinalizer(f.cred(), credential.Finalizer) {
		t.Fatal("no finalizer on a Credential whose session is revoked on delete")
	}
	tok := f.token()
	must(t, env.Client.Delete(t.Context(), f.cred()))
	waitFor(t, 20*time.Second, "the Credential gone", func() (bool, string) {
		err := env.Client.Get(t.Context(), f.key, &v1alpha1.Credential{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
	if f.srv.Valid(tok) || f.srv.Calls(issuertest.OpRevoke) != 1 {
		t.Fatalf("session not revoked: valid=%t revoke calls=%d", f.srv.Valid(tok), f.srv.Calls(issuertest.OpRevoke))
	}
}

// A rotation restarts the workloads a Credential names, as `kubectl rollout restart` would.
func TestRolloutRestart(t *testing.T) {
	t.Parallel()
	f := setupWith(t, issuertest.Seed004, nil, func(c *v1alpha1.Credential) {
		dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: c.Namespace, Name: "app"}, Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "a"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "a"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "busybox"}}}},
		}}
		must(t, env.Client.Create(t.Context(), dep))
		c.Spec.RolloutRestart = []v1alpha1.WorkloadReference{{Kind: "Deployment", Name: "app"}}
	})
	f.waitReady(30 * time.Second)
	waitFor(t, 10*time.Second, "the Deployment restarted", func() (bool, string) {
		dep := &appsv1.Deployment{}
		must(t, env.Client.Get(t.Context(), types.NamespacedName{Namespace: f.ns, Name: "app"}, dep))
		v := dep.Spec.Template.Annotations["tokenkeeper.io/restartedAt"]
		return v != "", "no restartedAt annotation"
	})
}

// Renewals, failures, latency and expiry are exported as Prometheus metrics.
func TestMetrics(t *testing.T) {
	t.Parallel()
	f := setup(t, issuertest.Seed001, nil)
	f.waitReady(30 * time.Second)
	// Counted per namespace and issuer (namespace, kind, name): same-named Issuers of two
	// namespaces are two series.
	if n := testutil.ToFloat64(metrics.Renewals.WithLabelValues(f.ns, f.ns, "Issuer", "issuer", "login")); n != 1 {
		t.Errorf("tokenkeeper_renewals_total{namespace=%q,issuer_namespace=%q,issuer_kind=Issuer,issuer_name=issuer,method=login} = %v, want 1", f.ns, f.ns, n)
	}
	waitFor(t, 10*time.Second, "the expiry series at status.expiresAt", func() (bool, string) {
		exp := credentialSeries(t, f.ns, "cred")["tokenkeeper_credential_expiry_timestamp_seconds"]
		want := float64(f.cred().Status.ExpiresAt.Unix())
		return len(exp) == 1 && exp[0].value == want && exp[0].labels["issuer_namespace"] == f.ns && exp[0].labels["issuer_name"] == "issuer",
			fmt.Sprintf("%v, want %v", exp, want)
	})
	if testutil.CollectAndCount(metrics.IssuerRequestDuration) == 0 {
		t.Errorf("no issuer latency observed")
	}
}

// A fresh login that replaces a still-valid session revokes the old one, but only after the
// minimum lead, so that pods still reading the old token from their mounted Secret keep working.
func TestReplacedSessionRevokedAfterGrace(t *testing.T) {
	t.Parallel()
	f := setup(t, issuertest.Seed000, nil)
	f.waitReady(30 * time.Second)
	must(t, env.Client.Create(t.Context(), &v1alpha1.TokenPolicy{ObjectMeta: metav1.ObjectMeta{Name: f.ns}, Spec: v1alpha1.TokenPolicySpec{
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": f.ns}},
		Renewal:           &v1alpha1.RenewalPolicy{MinimumLead: &metav1.Duration{Duration: 4 * time.Second}},
	}}))
	waitFor(t, 10*time.Second, "the policy in effect", func() (bool, string) {
		eff := f.cred().Status.EffectivePolicy
		return eff != nil && eff.MinimumLead != nil && eff.MinimumLead.Duration == 4*time.Second, "not yet"
	})
	old := f.token()
	s := &corev1.Secret{}
	must(t, env.Client.Get(t.Context(), types.NamespacedName{Namespace: f.ns, Name: "login"}, s))
	s.Data["note"] = []byte("rotated by the security team") // any change to the inputs means a fresh login
	must(t, env.Client.Update(t.Context(), s))
	waitFor(t, 10*time.Second, "a new token", func() (bool, string) { return f.token() != old && f.token() != "", "same token" })
	if !f.srv.Valid(old) {
		t.Fatalf("the replaced session was revoked at once: pods still reading it would fail")
	}
	waitFor(t, 15*time.Second, "the replaced session revoked", func() (bool, string) { return !f.srv.Valid(old), "still valid" })
	if !f.srv.Valid(f.token()) || f.srv.Calls(issuertest.OpRevoke) != 1 || f.srv.Calls(issuertest.OpLogin) != 2 {
		t.Fatalf("want the new token valid, 1 revocation and 2 logins; got valid=%t revokes=%d logins=%d",
			f.srv.Valid(f.token()), f.srv.Calls(issuertest.OpRevoke), f.srv.Calls(issuertest.OpLogin))
	}
}

// secretTemplate shapes the target Secret, and a reconcile with nothing new never rewrites it.
func TestSecretTemplateAndNoNeedlessWrites(t *testing.T) {
	t.Parallel()
	f := setupWith(t, issuertest.Seed004, nil, func(c *v1alpha1.Credential) {
		c.Spec.SecretTemplate = &v1alpha1.SecretTemplate{
			Labels:      map[string]string{"team": "consent"},
			Annotations: map[string]string{"owner": "platform"},
			Data:        map[string]v1alpha1.BodyTemplate{"config.json": `{"token":"{{ .token }}","expires":"{{ .expiresAt }}"}`},
		}
	})
	f.waitReady(30 * time.Second)
	s := f.secret()
	if s.Labels["team"] != "consent" || s.Annotations["owner"] != "platform" || s.Labels[credential.LabelManagedBy] != credential.ManagedByValue {
		t.Fatalf("labels %v annotations %v", s.Labels, s.Annotations)
	}
	if want := `{"token":"` + f.token() + `","expires":"`; !strings.HasPrefix(string(s.Data["config.json"]), want) {
		t.Fatalf("config.json not rendered from the template")
	}
	rv := s.ResourceVersion
	for i := range 3 {
		must(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
			c := f.cred()
			if c.Annotations == nil {
				c.Annotations = map[string]string{}
			}
			c.Annotations["poke"] = fmt.Sprint(i) // an annotation change triggers a reconcile
			return env.Client.Update(t.Context(), c)
		}))
		time.Sleep(time.Second)
	}
	if got := f.secret().ResourceVersion; got != rv {
		t.Fatalf("the target Secret was rewritten (resourceVersion %s -> %s) although nothing changed", rv, got)
	}
}

// An issuer whose certificate tokenkeeper cannot verify is a configuration problem (retried
// when the configuration changes, not on the outage backoff); its CA can come from a ConfigMap,
// and creating that ConfigMap brings the Credential back within seconds.
func TestIssuerCAFromConfigMap(t *testing.T) {
	t.Parallel()
	f := setup(t, issuertest.Seed001, nil)
	f.waitReady(30 * time.Second)
	f.editIssuer(func(s *v1alpha1.IssuerSpec) { s.CABundle = "" })
	waitFor(t, 15*time.Second, "an InvalidConfiguration failure naming the untrusted authority", func() (bool, string) {
		c := f.cred()
		is := meta.FindStatusCondition(c.Status.Conditions, string(v1alpha1.ConditionIssuing))
		if is == nil {
			return false, "no Issuing condition"
		}
		return c.Status.LastFailureReason == string(v1alpha1.ReasonInvalidConfig) && strings.Contains(is.Message, "signed by an authority tokenkeeper does not trust"), is.Reason + ": " + is.Message
	})
	c := f.cred()
	if wait := c.Status.NextRetryTime.Sub(c.Status.LastFailureTime.Time); wait < 40*time.Second {
		t.Errorf("a TLS verification failure retries after %s: the outage backoff, not the configuration one", wait)
	}

	f.editIssuer(func(s *v1alpha1.IssuerSpec) {
		s.CABundleFrom = &v1alpha1.CABundleSource{ConfigMapKeyRef: &v1alpha1.ConfigMapKeySelector{Name: "issuer-ca", Key: "ca.crt"}}
	})
	// The token in the Secret is still valid: Ready stays True, Issuing says what blocks renewals.
	waitFor(t, 15*time.Second, "Issuing=False naming the missing ConfigMap, still Ready", func() (bool, string) {
		c := f.cred()
		ok, state := ready(c)
		is := meta.FindStatusCondition(c.Status.Conditions, string(v1alpha1.ConditionIssuing))
		return ok && is != nil && is.Status == metav1.ConditionFalse && strings.Contains(is.Message, "caBundleFrom: ConfigMap "+f.ns+"/issuer-ca not found"), state
	})
	before := f.token()
	must(t, env.Client.Create(t.Context(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "issuer-ca"},
		Data: map[string]string{"ca.crt": f.srv.CABundle()}}))
	created := time.Now()
	waitFor(t, 15*time.Second, "Ready=True with a new token once the ConfigMap exists", func() (bool, string) {
		ok, state := ready(f.cred())
		return ok && f.token() != before && f.srv.Valid(f.token()), state
	})
	t.Logf("Ready %s after the ConfigMap was created", time.Since(created).Round(100*time.Millisecond))
}

// An issuer that ends sessions early is caught by the probe within one interval: the Secret gets
// a new token at once, with an Event; when every new token is rejected too, logins back off
// instead of looping.
func TestProbeCatchesEndedSessions(t *testing.T) {
	t.Parallel()
	f := setup(t, issuertest.Seed001, func(s *issuertest.Server, _ map[string]string) { s.SetLifetime(time.Hour) })
	f.editIssuer(func(s *v1alpha1.IssuerSpec) {
		s.Probe = &v1alpha1.TokenProbe{URL: v1alpha1.EndpointURL(f.srv.URL() + f.srv.ProtectedPath()), Interval: &metav1.Duration{Duration: 10 * time.Second}}
	})
	waitFor(t, 30*time.Second, "Ready=True with a probed token", func() (bool, string) {
		c := f.cred()
		ok, state := ready(c)
		return ok && c.Status.LastProbeResult == "Accepted", state + "; probe: " + c.Status.LastProbeResult
	})
	first := f.token()
	f.srv.RevokeAll()
	ended := time.Now()
	waitFor(t, 25*time.Second, "a new, valid token after the issuer ended the session", func() (bool, string) {
		return f.token() != first && f.srv.Valid(f.token()), "token: " + f.srv.Why(f.token())
	})
	t.Logf("replaced %s after the session ended (probe interval 10s)", time.Since(ended).Round(100*time.Millisecond))
	if len(f.events(string(v1alpha1.ReasonTokenRejected))) == 0 {
		t.Errorf("no %s Event", v1alpha1.ReasonTokenRejected)
	}

	f.srv.KillNewSessions(true)
	f.srv.RevokeAll()
	waitFor(t, 25*time.Second, "Ready=False TokenRejected", func() (bool, string) {
		ok, state := ready(f.cred())
		return !ok && strings.HasPrefix(state, string(v1alpha1.ReasonTokenRejected)), state
	})
	logins := f.srv.Calls(issuertest.OpLogin)
	time.Sleep(20 * time.Second)
	if n := f.srv.Calls(issuertest.OpLogin) - logins; n > 4 {
		t.Errorf("%d logins in 20 s while every new token is rejected: a hot loop", n)
	}
	// The issuer is fixed and its configuration touched: that retries at once, whatever the backoff.
	f.srv.KillNewSessions(false)
	f.editIssuer(func(s *v1alpha1.IssuerSpec) { s.Probe.Interval = &metav1.Duration{Duration: 11 * time.Second} })
	waitFor(t, 15*time.Second, "Ready=True once the issuer keeps sessions again", func() (bool, string) { return ready(f.cred()) })
}

// One issuer call per rotation: the OIDC discovery document is read once and reused with the
// issuer client across reconciles, not fetched again for every renewal.
func TestDiscoveryReadOncePerIssuer(t *testing.T) {
	t.Parallel()
	f := setup(t, issuertest.OAuth2, func(s *issuertest.Server, _ map[string]string) { s.SetLifetime(20 * time.Second) })
	f.waitReady(30 * time.Second)
	// One for the Credential's client, one for the Issuer's status.tokenURL.
	atStart := f.srv.Calls(issuertest.OpDiscovery)
	if atStart > 2 {
		t.Errorf("%d discovery requests before the first token, want at most 2", atStart)
	}
	first := f.token()
	waitFor(t, 45*time.Second, "three rotations", func() (bool, string) {
		n := len(f.srv.Grants())
		return n >= 4 && f.token() != first, fmt.Sprintf("%d tokens issued", n)
	})
	if n := f.srv.Calls(issuertest.OpDiscovery); n != atStart {
		t.Errorf("%d more discovery requests over %d rotations, want none", n-atStart, len(f.srv.Grants())-1)
	}
}

// An expired token is never Ready, even while a long backoff runs: the manager wakes at the
// token's expiry to say so, with the last failure's reason. Its metrics go with the Credential.
func TestExpiredTokenIsNeverReady(t *testing.T) {
	t.Parallel()
	f := setup(t, issuertest.Seed001, func(s *issuertest.Server, _ map[string]string) { s.SetLifetime(20 * time.Second) })
	f.waitReady(30 * time.Second)
	f.srv.Fail(-1, http.StatusUnauthorized, "") // rejected credentials: the backoff starts at a minute
	expires := f.cred().Status.ExpiresAt.Time
	waitFor(t, time.Until(expires)+15*time.Second, "Ready=False once the token expired", func() (bool, string) {
		ok, state := ready(f.cred())
		return !ok && time.Now().After(expires) && strings.Contains(state, "expired at"), state
	})
	c := f.cred()
	if c.Status.NextRetryTime == nil || !c.Status.NextRetryTime.After(expires) {
		t.Fatalf("the retry (%v) is not after the expiry (%s): this proves nothing", c.Status.NextRetryTime, expires)
	}
	if ok, state := ready(c); ok || !strings.HasPrefix(state, string(v1alpha1.ReasonInvalidCredentials)) {
		t.Errorf("Ready %t %q, want False with the last failure's reason", ok, state)
	}
	// This Credential's series, among the other tests' Credentials.
	if s := credentialSeries(t, f.ns, "cred"); len(s["tokenkeeper_credential_expiry_timestamp_seconds"]) != 1 || len(s["tokenkeeper_credential_ready"]) != 1 {
		t.Fatalf("series for the Credential before its deletion: %s; want its expiry and readiness", describe(s))
	}
	must(t, env.Client.Delete(t.Context(), c))
	waitFor(t, 15*time.Second, "the deleted Credential's metric series gone", func() (bool, string) {
		s := credentialSeries(t, f.ns, "cred")
		return len(s) == 0, describe(s)
	})
}
