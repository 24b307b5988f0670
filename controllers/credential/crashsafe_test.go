package credential_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/controllers/credential"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer/issuertest"
)

func (f *fixture) state() *corev1.Secret {
	s := &corev1.Secret{}
	err := env.Client.Get(f.t.Context(), types.NamespacedName{Namespace: f.ns, Name: credential.StateSecretName(f.cred())}, s)
	if apierrors.IsNotFound(err) {
		return nil
	}
	must(f.t, err)
	return s
}

// events returns the notes of the Events about the fixture's Credential with reason.
func (f *fixture) events(reason string) []string {
	var list eventsv1.EventList
	must(f.t, env.Client.List(f.t.Context(), &list, client.InNamespace(f.ns)))
	var notes []string
	for _, e := range list.Items {
		if e.Reason == reason && e.Regarding.Name == f.key.Name {
			notes = append(notes, e.Note)
		}
	}
	return notes
}

func (f *fixture) waitEvent(reason string) string {
	f.t.Helper()
	var notes []string
	waitFor(f.t, 15*time.Second, "a "+reason+" Event", func() (bool, string) {
		notes = f.events(reason)
		return len(notes) > 0, "none"
	})
	return notes[0]
}

// The manager dies after the issuer answered a refresh and before it saved the rotated refresh
// token (played here by refreshing at the issuer with the state Secret's token while the manager
// is down, and leaving the call recorded as in flight). The restarted manager must never send
// the spent refresh token again: it keeps serving the still-valid access token, and its next
// renewal is a fresh login. The issuer's reuse detection never fires.
// Not parallel: it stops the suite's manager.
func TestInterruptedRefreshIsNeverReplayed(t *testing.T) {
	f := setup(t, issuertest.Seed001, func(s *issuertest.Server, _ map[string]string) { s.SetLifetime(14 * time.Second) })
	f.waitReady(30 * time.Second)
	served := f.token()
	stopManager()

	st := f.state()
	spent := string(st.Data["refresh-token"])
	if spent == "" {
		t.Fatal("the state Secret holds no refresh token")
	}
	c, err := issuer.New(issuer.Config{Spec: f.srv.Spec()})
	must(t, err)
	if _, err := c.Refresh(t.Context(), issuer.Request{Kind: issuer.LoginPassword}, &issuer.Token{RefreshToken: spent}); err != nil {
		t.Fatalf("refreshing as the dying manager did: %v", err)
	}
	st.Data["pending"], _ = json.Marshal(map[string]any{"id": "lost", "op": "refresh", "issuer": "Issuer/issuer", "at": time.Now()})
	must(t, env.Client.Update(t.Context(), st))
	must(t, startManager())

	note := f.waitEvent(string(v1alpha1.ReasonInterrupted))
	if !strings.Contains(note, "never sent again") {
		t.Errorf("Interrupted Event says %q, want it to say the refresh token is never sent again", note)
	}
	waitFor(t, 10*time.Second, "the call settled in the state Secret", func() (bool, string) {
		st := f.state()
		return len(st.Data["pending"]) == 0 && len(st.Data["refresh-token"]) == 0, "pending or refresh token still there"
	})
	if f.token() != served {
		t.Errorf("the target Secret changed on recovery; the still-valid token should stay until its renewal")
	}
	logins := f.srv.Calls(issuertest.OpLogin)
	waitFor(t, 20*time.Second, "the renewal, by a fresh login", func() (bool, string) {
		return f.srv.Calls(issuertest.OpLogin) > logins && f.token() != served && f.srv.Valid(f.token()), "not yet"
	})
	if n := f.srv.Reuses(); n != 0 {
		t.Fatalf("the issuer detected %d reused refresh tokens", n)
	}
	if ok, state := ready(f.cred()); !ok {
		t.Fatalf("not Ready after the fresh login: %s", state)
	}
}

// The state Secret deleted while the manager runs is recreated from the manager's copy of the
// session, refresh token included: no login, and the next renewal is a refresh.
func TestStateSecretDeletedIsRecreated(t *testing.T) {
	t.Parallel()
	f := setup(t, issuertest.Seed003, nil)
	f.waitReady(30 * time.Second)
	before := f.state()
	must(t, env.Client.Delete(t.Context(), before))
	waitFor(t, 15*time.Second, "the state Secret recreated", func() (bool, string) {
		st := f.state()
		return st != nil && st.UID != before.UID, "missing"
	})
	after := f.state()
	for _, k := range []string{"access-token", "refresh-token", "expires-at"} {
		if string(after.Data[k]) != string(before.Data[k]) {
			t.Errorf("recreated state Secret differs in %q", k)
		}
	}
	f.waitEvent(string(v1alpha1.ReasonStateRestored))
	if n := f.srv.Calls(issuertest.OpLogin); n != 1 {
		t.Errorf("issuer saw %d logins, want 1", n)
	}
}

// The state Secret deleted while no manager runs: the restarted manager carries on with the
// token the target Secret holds instead of logging in and leaving that session open; at its
// renewal it logs in and revokes the old session after the grace period.
// Not parallel: it stops the suite's manager.
func TestStateSecretLostWhileDownIsRebuiltFromTarget(t *testing.T) {
	f := setup(t, issuertest.Seed002, func(s *issuertest.Server, _ map[string]string) { s.SetLifetime(14 * time.Second) })
	f.waitReady(30 * time.Second)
	served := f.token()
	stopManager()
	must(t, env.Client.Delete(t.Context(), f.state()))
	must(t, startManager())
	f.waitEvent(string(v1alpha1.ReasonStateRestored))
	if n := f.srv.Calls(issuertest.OpLogin); n != 1 || f.token() != served {
		t.Fatalf("issuer saw %d logins (want 1) and the token changed: %t", n, f.token() != served)
	}
	waitFor(t, 20*time.Second, "the renewal by a fresh login", func() (bool, string) {
		return f.srv.Calls(issuertest.OpLogin) == 2 && f.token() != served, "not yet"
	})
	if f.srv.Calls(issuertest.OpRefresh) != 0 || f.srv.Reuses() != 0 {
		t.Errorf("%d refreshes and %d reuses; the refresh token was lost with the state Secret", f.srv.Calls(issuertest.OpRefresh), f.srv.Reuses())
	}
}

// A target Secret whose owner reference was removed by hand is taken back; one the Credential
// did not create is reported, and deleting it lets the Credential recover on its own.
func TestTargetSecretOwnershipRecovers(t *testing.T) {
	t.Parallel()
	t.Run("OwnerReferenceRemoved", func(t *testing.T) {
		t.Parallel()
		f := setup(t, issuertest.Seed004, nil)
		f.waitReady(30 * time.Second)
		s := f.secret()
		s.OwnerReferences = nil
		must(t, env.Client.Update(t.Context(), s))
		waitFor(t, 15*time.Second, "the Secret owned again", func() (bool, string) {
			owner := metav1.GetControllerOf(f.secret())
			return owner != nil && owner.UID == f.cred().UID, "no owner"
		})
		f.waitEvent(string(v1alpha1.ReasonSecretAdopted))
		if ok, state := ready(f.cred()); !ok {
			t.Fatalf("not Ready: %s", state)
		}
	})
	t.Run("ForeignSecretDeleted", func(t *testing.T) {
		t.Parallel()
		var ns string
		f := setupWith(t, issuertest.Seed004, nil, func(c *v1alpha1.Credential) {
			ns = c.Namespace
			must(t, env.Client.Create(t.Context(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "token"},
				StringData: map[string]string{"token": "someone else's"}}))
		})
		waitFor(t, 30*time.Second, "Ready=False SecretConflict saying what to do", func() (bool, string) {
			ok, state := ready(f.cred())
			return !ok && strings.Contains(state, string(v1alpha1.ReasonSecretConflict)) && strings.Contains(state, "delete it"), state
		})
		must(t, env.Client.Delete(t.Context(), f.secret()))
		f.waitReady(15 * time.Second)
		if n := f.srv.Calls(issuertest.OpLogin); n != 1 {
			t.Errorf("issuer saw %d logins, want 1: the token obtained before the conflict is the one published", n)
		}
	})
}

// The longest name the CRD accepts works end to end: its state Secret, labels and Events all fit
// their limits. One character more is refused at admission, naming the limit.
func TestLongestNameFits(t *testing.T) {
	t.Parallel()
	longest := strings.Repeat("a", credential.MaxNameLength)
	f := setupWith(t, issuertest.Seed004, nil, func(c *v1alpha1.Credential) { c.Name = longest })
	f.key.Name = longest
	f.waitReady(30 * time.Second)
	st := f.state()
	if st == nil || len(st.Name) != 253 {
		t.Fatalf("state Secret missing or misnamed")
	}
	if v := f.secret().Labels[credential.LabelCredential]; len(v) > 63 || !strings.HasPrefix(v, "aaaa") {
		t.Errorf("credential label %q does not fit a label value", v)
	}
	f.waitEvent(string(v1alpha1.ReasonIssued))

	tooLong := &v1alpha1.Credential{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: longest + "a"}, Spec: f.cred().Spec}
	err := env.Client.Create(t.Context(), tooLong)
	if err == nil || !strings.Contains(err.Error(), "at most 235 characters") {
		t.Fatalf("a %d-character name: got %v, want a refusal naming the 235-character limit", len(tooLong.Name), err)
	}
}

// Ten Credentials in one namespace at an issuer that never answers (each call waits out its 20 s
// timeout) hold at most two of the manager's four workers: another namespace's 20-second tokens
// keep rotating on time meanwhile, and its Secret never holds an expired token.
func TestHangingIssuerStarvesNoOne(t *testing.T) {
	t.Parallel()
	hanging := setupWith(t, issuertest.Seed004, func(s *issuertest.Server, _ map[string]string) { s.Hang(time.Hour) }, nil)
	hanging.editIssuer(func(s *v1alpha1.IssuerSpec) { s.Timeout = &metav1.Duration{Duration: 20 * time.Second} })
	for i := range 9 {
		c := hanging.cred().DeepCopy()
		c.ObjectMeta = metav1.ObjectMeta{Namespace: hanging.ns, Name: fmt.Sprintf("cred-%d", i)}
		c.Spec.SecretName = fmt.Sprintf("token-%d", i)
		must(t, env.Client.Create(t.Context(), c))
	}
	waitFor(t, 15*time.Second, "the hanging issuer to hold calls", func() (bool, string) {
		return hanging.srv.MaxInFlight() >= credential.DefaultCallsPerNamespace, "fewer calls in flight"
	})

	f := setup(t, issuertest.Seed001, func(s *issuertest.Server, _ map[string]string) { s.SetLifetime(20 * time.Second) })
	f.waitReady(15 * time.Second)
	seen := []string{f.token()}
	for deadline := time.Now().Add(45 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		tok := f.token()
		if !f.srv.Valid(tok) {
			t.Fatalf("the Secret held a token the issuer rejects (%s) after %d rotations", f.srv.Why(tok), len(seen)-1)
		}
		if tok != seen[len(seen)-1] {
			seen = append(seen, tok)
		}
	}
	if len(seen) < 3 {
		t.Fatalf("%d rotations of 20-second tokens in 45 s beside a hanging issuer, want at least 2", len(seen)-1)
	}
	if n := hanging.srv.MaxInFlight(); n > credential.DefaultCallsPerNamespace {
		t.Errorf("the hanging issuer had %d calls in flight at once, want at most %d", n, credential.DefaultCallsPerNamespace)
	}
}

// A refreshToken Credential's input refresh token works once. Editing its Issuer (new inputs,
// so a new "login") carries the session on with its own refresh token instead of resending the
// spent input one, which reuse detection would punish. Once the session is gone it says so
// (RefreshTokenSpent), and a new refresh token in the Secret starts a new session.
func TestRefreshTokenLoginNeverResendsItsInput(t *testing.T) {
	t.Parallel()
	var c *issuer.Client
	f := setupWith(t, issuertest.Seed001, func(s *issuertest.Server, in map[string]string) {
		c = mustClient(t, s)
		tok, err := c.Login(t.Context(), issuer.Request{Kind: issuer.LoginPassword, Inputs: s.InputSecretData()})
		must(t, err)
		in["refresh_token"] = tok.RefreshToken
	}, func(cred *v1alpha1.Credential) {
		cred.Spec.RefreshToken = &v1alpha1.RefreshTokenLogin{SecretRef: *cred.Spec.Password.SecretRef.DeepCopy()}
		cred.Spec.Password = nil
	})
	f.waitReady(30 * time.Second)
	editIssuer := func(timeout time.Duration) {
		f.editIssuer(func(s *v1alpha1.IssuerSpec) { s.Timeout = &metav1.Duration{Duration: timeout} })
	}
	first := f.token()
	editIssuer(7 * time.Second)
	waitFor(t, 15*time.Second, "a new token after the Issuer edit", func() (bool, string) {
		return f.token() != first && f.srv.Valid(f.token()), "same token"
	})
	if n := f.srv.Reuses(); n != 0 {
		t.Fatalf("the spent input refresh token was sent again: %d reuse detections", n)
	}

	f.srv.RevokeAll() // the session ends at the issuer
	editIssuer(8 * time.Second)
	waitFor(t, 15*time.Second, "Ready=False RefreshTokenSpent", func() (bool, string) {
		ok, state := ready(f.cred())
		return !ok && strings.HasPrefix(state, string(v1alpha1.ReasonRefreshTokenSpent)), state
	})
	if n := f.srv.Reuses(); n != 0 {
		t.Fatalf("the spent input refresh token was sent again: %d reuse detections", n)
	}
	fresh, err := c.Login(t.Context(), issuer.Request{Kind: issuer.LoginPassword, Inputs: f.srv.InputSecretData()})
	must(t, err)
	must(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		s := &corev1.Secret{}
		must(t, env.Client.Get(t.Context(), types.NamespacedName{Namespace: f.ns, Name: "login"}, s))
		s.Data["refresh_token"] = []byte(fresh.RefreshToken)
		return env.Client.Update(t.Context(), s)
	}))
	f.waitReady(15 * time.Second)
	if !f.srv.Valid(f.token()) || f.srv.Reuses() != 0 {
		t.Fatalf("after a new refresh token: valid=%t reuses=%d", f.srv.Valid(f.token()), f.srv.Reuses())
	}
}

func mustClient(t *testing.T, s *issuertest.Server) *issuer.Client {
	t.Helper()
	c, err := issuer.New(issuer.Config{Spec: s.Spec(), Headers: s.HeaderValues()})
	must(t, err)
	return c
}
