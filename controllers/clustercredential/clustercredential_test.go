package clustercredential_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/controllers/clustercredential"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer/issuertest"
	"github.com/tokenkeeper/tokenkeeper/internal/testenv"
)

// fleet is a ClusterCredential at a conformance issuer and the namespaces it selects.
type fleet struct {
	t      *testing.T
	srv    *issuertest.Server
	id     string // label value selecting the fleet's namespaces
	name   string // of the ClusterCredential
	target string
	nss    []string
}

// newFleet creates n namespaces labelled fleet=<id>, a ClusterIssuer at an OAuth2 conformance
// issuer and the client credentials in the cluster-credential namespace (not yet the
// ClusterCredential).
func newFleet(t *testing.T, n int) *fleet {
	t.Helper()
	srv := issuertest.Start(issuertest.OAuth2)
	t.Cleanup(srv.Close)
	id := fmt.Sprintf("f%d", time.Now().UnixNano()%1_000_000)
	f := &fleet{t: t, srv: srv, id: id, name: "ci-" + id, target: "ci-token"}
	ctx := t.Context()
	must(t, env.Client.Create(ctx, &v1alpha1.ClusterIssuer{ObjectMeta: metav1.ObjectMeta{Name: "idp-" + id}, Spec: srv.Spec()}))
	must(t, env.Client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: home, Name: "login-" + id},
		StringData: srv.InputSecretData()}))
	f.nss = make([]string, n)
	for i := range n {
		f.nss[i] = fmt.Sprintf("%s-%03d", id, i)
	}
	parallel(t, f.nss, func(ns string) error {
		return env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"fleet": id}}})
	})
	return f
}

// parallel runs do for each item, eight at a time.
func parallel(t *testing.T, items []string, do func(string) error) {
	t.Helper()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		sem  = make(chan struct{}, 8)
	)
	for _, it := range items {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := do(it); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", it, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatal(errs[0])
	}
}

// create creates the ClusterCredential selecting the fleet.
func (f *fleet) create() *v1alpha1.ClusterCredential {
	f.t.Helper()
	cc := &v1alpha1.ClusterCredential{ObjectMeta: metav1.ObjectMeta{Name: f.name}, Spec: v1alpha1.ClusterCredentialSpec{
		NamespaceSelector: metav1.LabelSelector{MatchLabels: map[string]string{"fleet": f.id}},
		Target:            f.target,
		Credential: v1alpha1.CredentialTemplate{
			IssuerRef:         v1alpha1.IssuerReference{Kind: v1alpha1.IssuerKindCluster, Name: "idp-" + f.id},
			ClientCredentials: &v1alpha1.ClientCredentialsLogin{SecretRef: v1alpha1.LocalSecretReference{Name: "login-" + f.id}},
		},
	}}
	must(f.t, env.Client.Create(f.t.Context(), cc))
	return cc
}

func (f *fleet) get() *v1alpha1.ClusterCredential {
	f.t.Helper()
	cc := &v1alpha1.ClusterCredential{}
	must(f.t, env.Client.Get(f.t.Context(), types.NamespacedName{Name: f.name}, cc))
	return cc
}

// token is the child's current token.
func (f *fleet) token() string {
	f.t.Helper()
	sec := &corev1.Secret{}
	err := env.Client.Get(f.t.Context(), types.NamespacedName{Namespace: home, Name: clustercredential.ChildName(f.name)}, sec)
	if apierrors.IsNotFound(err) {
		return ""
	}
	must(f.t, err)
	return string(sec.Data[v1alpha1.SecretKeyToken])
}

// copies maps namespace to the token of every copy of the fleet's ClusterCredential.
func (f *fleet) copies() map[string]string {
	f.t.Helper()
	var list corev1.SecretList
	must(f.t, env.Client.List(f.t.Context(), &list, client.MatchingLabels{v1alpha1.LabelClusterCredential: f.name}))
	out := map[string]string{}
	for _, s := range list.Items {
		out[s.Namespace] = string(s.Data[v1alpha1.SecretKeyToken])
	}
	return out
}

// logins counts the issuer calls that obtain a token.
func (f *fleet) logins() int {
	return f.srv.Calls(issuertest.OpLogin) + f.srv.Calls(issuertest.OpRefresh)
}

// waitCopies waits until every namespace of want, and no other, holds a copy of the child's
// token, and that token is not old. It returns the token and when the child's Secret was first
// seen holding it.
func (f *fleet) waitCopies(want []string, old string, timeout time.Duration) (string, time.Time) {
	f.t.Helper()
	var (
		tok     string
		rotated time.Time
	)
	testenv.WaitFor(f.t, timeout, fmt.Sprintf("%d copies of the current token", len(want)), func() (bool, string) {
		tok = f.token()
		if tok == "" || tok == old {
			return false, "no new token yet"
		}
		if rotated.IsZero() {
			rotated = time.Now()
		}
		got := f.copies()
		current := 0
		for _, ns := range want {
			if got[ns] == tok {
				current++
			}
		}
		return current == len(want) && len(got) == len(want), fmt.Sprintf("%d of %d current, %d copies", current, len(want), len(got))
	})
	return tok, rotated
}

// renew asks for a new token through the ClusterCredential's annotation and returns how long
// the child's Secret took to hold a new token, how long every copy took to hold it after that,
// and the issuer calls it cost.
func (f *fleet) renew(want []string) (rotated, copied time.Duration, calls int) {
	f.t.Helper()
	old, before := f.token(), f.logins()
	cc := f.get()
	patch := client.MergeFrom(cc.DeepCopy())
	if cc.Annotations == nil {
		cc.Annotations = map[string]string{}
	}
	cc.Annotations[v1alpha1.AnnotationRenewRequestedAt] = time.Now().UTC().Format(time.RFC3339Nano)
	start := time.Now()
	must(f.t, env.Client.Patch(f.t.Context(), cc, patch))
	_, at := f.waitCopies(want, old, 2*time.Minute)
	done := time.Now()
	time.Sleep(2 * time.Second) // any late extra login would show now
	return at.Sub(start), done.Sub(at), f.logins() - before
}

func (f *fleet) setLabel(ns, key, value string) {
	f.t.Helper()
	obj := &corev1.Namespace{}
	must(f.t, env.Client.Get(f.t.Context(), types.NamespacedName{Name: ns}, obj))
	patch := client.MergeFrom(obj.DeepCopy())
	if value == "" {
		delete(obj.Labels, key)
	} else {
		obj.Labels[key] = value
	}
	must(f.t, env.Client.Patch(f.t.Context(), obj, patch))
}

func entry(cc *v1alpha1.ClusterCredential, ns string) *v1alpha1.ClusterCredentialNamespace {
	for i, n := range cc.Status.Namespaces {
		if n.Name == ns {
			return &cc.Status.Namespaces[i]
		}
	}
	return nil
}

// TestTwoHundredNamespaces is issue #29 item 4 on the real API server: one ClusterCredential
// selecting 200 namespaces logs in once per rotation and every copy follows; a namespace whose
// TokenPolicy forbids the issuer gets no copy and a Forbidden entry; a Secret tokenkeeper did not
// write is never overwritten; namespaces join and leave with their labels; deleting the
// ClusterCredential removes every copy and the child Credential.
func TestTwoHundredNamespaces(t *testing.T) {
	ctx := t.Context()
	f := newFleet(t, 200)
	conflicted, forbidden := f.nss[0], f.nss[1]
	// A Secret of the target's name that someone else wrote.
	mine := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: conflicted, Name: f.target}, StringData: map[string]string{"token": "theirs"}}
	must(t, env.Client.Create(ctx, mine))
	// A policy that allows only another issuer, in one namespace.
	f.setLabel(forbidden, "restricted", f.id)
	pol := &v1alpha1.TokenPolicy{ObjectMeta: metav1.ObjectMeta{Name: "only-elsewhere-" + f.id}, Spec: v1alpha1.TokenPolicySpec{
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"restricted": f.id}},
		AllowedIssuers:    []v1alpha1.IssuerPattern{"https://idp.elsewhere.example.com"},
	}}
	must(t, env.Client.Create(ctx, pol))
	t.Cleanup(func() { _ = env.Client.Delete(ctx, pol) })
	waitSeen(t, pol)

	start := time.Now()
	f.create()
	allowed := f.nss[2:]
	tok, _ := f.waitCopies(allowed, "", 2*time.Minute)
	t.Logf("first token in %d namespaces after %s, %d issuer calls", len(allowed), time.Since(start).Round(time.Millisecond), f.logins())
	if n := f.logins(); n != 1 {
		t.Errorf("%d issuer logins for one ClusterCredential in 200 namespaces, want 1", n)
	}
	// Ready follows the child's status, which may come after its Secret.
	testenv.WaitFor(t, 30*time.Second, "status to count every namespace, Ready=False CopiesIncomplete (one conflicts)", func() (bool, string) {
		s := f.get().Status
		c := meta.FindStatusCondition(s.Conditions, string(v1alpha1.ConditionReady))
		return s.Selected == 200 && s.Copied == 198 && s.Forbidden == 1 && s.Conflicts == 1 && c != nil && c.Reason == string(v1alpha1.ReasonCopiesIncomplete),
			fmt.Sprintf("selected %d copied %d forbidden %d conflicts %d, Ready %+v", s.Selected, s.Copied, s.Forbidden, s.Conflicts, c)
	})
	cc := f.get()
	if e := entry(cc, forbidden); e == nil || e.State != v1alpha1.NamespaceForbidden || !strings.Contains(e.Message, pol.Name) {
		t.Errorf("forbidden namespace's entry: %+v, want Forbidden naming TokenPolicy %s", e, pol.Name)
	}
	if e := entry(cc, conflicted); e == nil || e.State != v1alpha1.NamespaceConflict {
		t.Errorf("conflicting namespace's entry: %+v, want Conflict", e)
	}
	if len(cc.Status.Namespaces) != 100 || cc.Status.Namespaces[0].State == v1alpha1.NamespaceCopied {
		t.Errorf("status.namespaces: %d entries, first %+v; want 100, those without a copy first", len(cc.Status.Namespaces), cc.Status.Namespaces[0])
	}
	b, _ := json.Marshal(cc.Status)
	if strings.Contains(string(b), tok) || strings.Contains(logs.String(), tok) {
		t.Fatal("the token appears in the ClusterCredential's status or in the manager's logs")
	}
	got := &corev1.Secret{}
	must(t, env.Client.Get(ctx, client.ObjectKeyFromObject(mine), got))
	if string(got.Data["token"]) != "theirs" || got.Labels[v1alpha1.LabelClusterCredential] != "" {
		t.Errorf("the pre-existing Secret was changed: %v", got.Labels)
	}

	// One session, one write-ahead state Secret: in the cluster-credential namespace, none in
	// the 200 namespaces.
	var states corev1.SecretList
	must(t, env.Client.List(ctx, &states, client.MatchingLabels{v1alpha1.LabelRole: "state"}))
	var mineStates []string
	for _, st := range states.Items {
		if st.Namespace != home && strings.HasPrefix(st.Namespace, f.id) {
			t.Errorf("a state Secret in target namespace %s: %s", st.Namespace, st.Name)
		}
		if st.Namespace == home && strings.HasPrefix(st.Name, clustercredential.ChildName(f.name)) {
			mineStates = append(mineStates, st.Name)
		}
	}
	if len(mineStates) != 1 {
		t.Errorf("state Secrets of the child Credential: %v, want exactly one", mineStates)
	}

	// Rotations: one issuer call each, every copy follows.
	for i := range 3 {
		rotated, copied, calls := f.renew(allowed)
		t.Logf("rotation %d: %d issuer calls; new token in the child's Secret %s after the renewal request, in all %d copies %s later (polled every 200 ms)",
			i+1, calls, rotated.Round(time.Millisecond), len(allowed), copied.Round(time.Millisecond))
		if calls != 1 {
			t.Errorf("rotation %d cost %d issuer calls, want 1", i+1, calls)
		}
	}

	// The child's spec was written once: no pass rewrites it (defaults, re-encoding).
	child := &v1alpha1.Credential{}
	must(t, env.Client.Get(ctx, types.NamespacedName{Namespace: home, Name: clustercredential.ChildName(f.name)}, child))
	if child.Generation != 1 {
		t.Errorf("the child Credential is at generation %d after rotations, want 1", child.Generation)
	}
	// Nor the ClusterCredential's: only its finalizers (a metadata patch) and status.
	if g := f.get().Generation; g != 1 {
		t.Errorf("the ClusterCredential is at generation %d, want 1: the manager wrote its spec", g)
	}

	// Drift: an edited copy is put back.
	drifted := &corev1.Secret{}
	must(t, env.Client.Get(ctx, types.NamespacedName{Namespace: allowed[5], Name: f.target}, drifted))
	drifted.Data[v1alpha1.SecretKeyToken] = []byte("edited")
	must(t, env.Client.Update(ctx, drifted))
	testenv.WaitFor(t, 30*time.Second, "the edited copy to be repaired", func() (bool, string) {
		c := f.copies()[allowed[5]]
		return c == f.token(), "still edited"
	})

	// Labels: a namespace that leaves loses its copy; one that joins gets one.
	left := allowed[10]
	f.setLabel(left, "fleet", "")
	joined := f.id + "-late"
	must(t, env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: joined}}))
	f.setLabel(joined, "fleet", f.id)
	now := append(slices.Clone(allowed[:10]), allowed[11:]...)
	now = append(now, joined)
	testenv.WaitFor(t, 30*time.Second, "copies to follow the labels", func() (bool, string) {
		got := f.copies()
		_, stays := got[left]
		return !stays && got[joined] == f.token() && len(got) == len(now), fmt.Sprintf("left still has one: %t, joined: %t, %d copies", stays, got[joined] != "", len(got))
	})
	// Allowed again: the forbidden namespace gets its copy once the policy goes.
	must(t, env.Client.Delete(ctx, pol))
	testenv.WaitFor(t, 30*time.Second, "the namespace no policy forbids any more to get a copy", func() (bool, string) {
		return f.copies()[forbidden] == f.token(), "no copy"
	})

	// Deleting the ClusterCredential deletes every copy and the child Credential.
	must(t, env.Client.Delete(ctx, f.get()))
	testenv.WaitFor(t, time.Minute, "copies, child and ClusterCredential to go", func() (bool, string) {
		child := &v1alpha1.Credential{}
		childErr := env.Client.Get(ctx, types.NamespacedName{Namespace: home, Name: clustercredential.ChildName(f.name)}, child)
		ccErr := env.Client.Get(ctx, types.NamespacedName{Name: f.name}, &v1alpha1.ClusterCredential{})
		n := len(f.copies())
		return n == 0 && apierrors.IsNotFound(childErr) && apierrors.IsNotFound(ccErr),
			fmt.Sprintf("%d copies, child: %v, ClusterCredential: %v", n, childErr, ccErr)
	})
	must(t, env.Client.Get(ctx, client.ObjectKeyFromObject(mine), got))
	if string(got.Data["token"]) != "theirs" {
		t.Error("deleting the ClusterCredential changed a Secret it did not write")
	}
	// The child revoked its session on the way out (the issuer can revoke; no policy says not to).
	if n := f.srv.Calls(issuertest.OpRevoke); n == 0 {
		t.Error("no session was revoked when the ClusterCredential was deleted")
	}
	// No issued token in any Event, ClusterCredential status or log line.
	var evs eventsv1.EventList
	must(t, env.Client.List(ctx, &evs))
	var texts strings.Builder
	texts.WriteString(logs.String())
	for _, e := range evs.Items {
		texts.WriteString(e.Note + "\n")
	}
	var ccs v1alpha1.ClusterCredentialList
	must(t, env.Client.List(ctx, &ccs))
	for _, c := range ccs.Items {
		b, _ := json.Marshal(c.Status)
		texts.Write(b)
	}
	issued := f.srv.IssuedTokens()
	if len(issued) < 4 || !strings.Contains(texts.String(), string(v1alpha1.ReasonCopiesRotated)) {
		t.Fatalf("leak check: too little to check (%d tokens, CopiesRotated Event: %t)", len(issued), strings.Contains(texts.String(), string(v1alpha1.ReasonCopiesRotated)))
	}
	for _, tok := range issued {
		if strings.Contains(texts.String(), tok) {
			t.Fatal("an issued token appears in a log line, Event or status")
		}
	}
}

// TestChildNameTaken: a Credential named cluster-<name> that the ClusterCredential did not
// create is neither taken over nor copied from.
func TestChildNameTaken(t *testing.T) {
	ctx := t.Context()
	f := newFleet(t, 2)
	theirs := &v1alpha1.Credential{ObjectMeta: metav1.ObjectMeta{Namespace: home, Name: clustercredential.ChildName(f.name)},
		Spec: v1alpha1.CredentialSpec{IssuerRef: v1alpha1.IssuerReference{Kind: v1alpha1.IssuerKindCluster, Name: "idp-" + f.id},
			ClientCredentials: &v1alpha1.ClientCredentialsLogin{SecretRef: v1alpha1.LocalSecretReference{Name: "login-" + f.id}},
			SecretName:        "someone-elses"}}
	must(t, env.Client.Create(ctx, theirs))
	waitSeen(t, theirs)
	f.create()
	testenv.WaitFor(t, 30*time.Second, "Ready=False CredentialConflict", func() (bool, string) {
		c := meta.FindStatusCondition(f.get().Status.Conditions, string(v1alpha1.ConditionReady))
		return c != nil && c.Reason == string(v1alpha1.ReasonCredentialConflict), fmt.Sprintf("%+v", c)
	})
	got := &v1alpha1.Credential{}
	must(t, env.Client.Get(ctx, client.ObjectKeyFromObject(theirs), got))
	if got.Spec.SecretName != "someone-elses" || len(got.OwnerReferences) != 0 {
		t.Errorf("the Credential in the way was changed: secretName %q, owners %v", got.Spec.SecretName, got.OwnerReferences)
	}
	if n := len(f.copies()); n != 0 {
		t.Errorf("%d copies of a Credential the ClusterCredential does not own", n)
	}
	// Deleting the ClusterCredential leaves the other Credential alone.
	must(t, env.Client.Delete(ctx, f.get()))
	testenv.WaitFor(t, 30*time.Second, "the ClusterCredential to go", func() (bool, string) {
		err := env.Client.Get(ctx, types.NamespacedName{Name: f.name}, &v1alpha1.ClusterCredential{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
	must(t, env.Client.Get(ctx, client.ObjectKeyFromObject(theirs), got))
	if !got.DeletionTimestamp.IsZero() {
		t.Error("deleting the ClusterCredential deleted a Credential it did not own")
	}
}
