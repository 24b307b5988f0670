package scale_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/testenv"
)

// What a rotation costs, counted by the API server itself (apiserver_request_total) and by the
// manager (controller_runtime_reconcile_total): a no-op reconcile writes nothing and reads no
// Secret again; a rotation (client_credentials, whose login spends nothing single-use) is one
// reconcile, one issuer call and at most three writes: the state Secret, the target Secret and
// one status patch, with no Event for a routine rotation (one per 10 minutes at most).
func TestRotationCost(t *testing.T) {
	env, bin, kubeconfig, c := controlPlane(t)
	ctx := t.Context()
	ti := startIssuer(t)
	ti.setLifetime("rot", 20*time.Second) // renewed at half its life: every 10 s ±1 s
	m := startManager(t, bin, kubeconfig)
	f := newFleet(t, c, ti, "cost", 2)

	// No-op reconciles: six Credentials with 1-h tokens, settled, then each annotated.
	f.create(ctx, t, "idle", 6, 4)
	waitAllReady(ctx, t, c, 6)
	before, _ := quiet(t, env, ti)
	reconciles := m.reconciles(t)
	var idle v1alpha1.CredentialList
	if err := c.List(ctx, &idle); err != nil {
		t.Fatal(err)
	}
	for i := range idle.Items {
		cr := &idle.Items[i]
		patch := client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"annotations":{"example.com/touched":"yes"}}}`))
		if err := c.Patch(ctx, cr, patch); err != nil {
			t.Fatal(err)
		}
	}
	testenv.WaitFor(t, 20*time.Second, "a reconcile of each annotated Credential", func() (bool, string) {
		n := m.reconciles(t)
		return n >= reconciles+6, fmt.Sprintf("%.0f reconciles", n-reconciles)
	})
	after, _ := quiet(t, env, ti)
	d := after.minus(before)
	t.Logf("6 no-op reconciles: %v", d)
	if w := d.managerWrites() - d["writes credentials"]; w != 0 { // the test's own annotations are "writes credentials"
		t.Errorf("6 no-op reconciles made %.0f writes, want 0: %v", w, d)
	}
	if r := d["reads secrets GET"]; r != 0 {
		t.Errorf("6 no-op reconciles read Secrets from the API server %.0f times, want 0 (nothing changed): %v", r, d)
	}

	// Rotations: eight Credentials with 20-s tokens. Counted from a quiet moment after they are
	// Ready until all of them are quiet again with a 1-h token, so that every rotation in the
	// window is counted whole.
	f.create(ctx, t, "rot", 8, 4)
	waitAllReady(ctx, t, c, 14)
	// The window opens on quiet's own reading: read one after another, the API server's counts
	// and the issuer's could straddle a rotation's issuer call and count its writes without it.
	before, calls := quiet(t, env, ti)
	reconciles = m.reconciles(t)
	testenv.WaitFor(t, 60*time.Second, "two rotations of each Credential", func() (bool, string) {
		return ti.calls() >= calls+16, fmt.Sprintf("%d issuer calls", ti.calls()-calls)
	})
	ti.setLifetime("rot", time.Hour)
	changed := time.Now()
	testenv.WaitFor(t, 40*time.Second, "each Credential holding a 1-h token", func() (bool, string) {
		n := 0
		for i := range 8 {
			if r := ti.requestsOf(fmt.Sprintf("rot-%d", i)); len(r) > 0 && r[len(r)-1].After(changed) {
				n++
			}
		}
		return n == 8, fmt.Sprintf("%d of 8", n)
	})
	after, end := quiet(t, env, ti)
	d = after.minus(before)
	rotations := float64(end - calls)
	recs := m.reconciles(t) - reconciles
	t.Logf("%.0f rotations: %.0f reconciles, %v", rotations, recs, d)
	if w := d.managerWrites() / rotations; w > 3 {
		t.Errorf("%.2f API writes per rotation, want at most 3 (state Secret, target Secret, status): %v over %.0f rotations", w, d, rotations)
	}
	if e := d["writes events"]; e > 0 {
		t.Errorf("%.0f Events for %.0f routine rotations, want none (at most one per Credential per 10 minutes)", e, rotations)
	}
	// A reconcile per rotation, and no more than a few besides (a status patch that met a cache
	// not yet updated runs again once).
	if recs > rotations*1.25 {
		t.Errorf("%.0f reconciles for %.0f rotations, want one per rotation", recs, rotations)
	}
	if r := d["reads secrets GET"] / rotations; r > 0.5 {
		t.Errorf("%.2f uncached Secret reads per rotation, want none but after a lagging cache: %v", r, d)
	}
}

func (ti *tokenIssuer) requestsOf(clientID string) []time.Time {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	return append([]time.Time(nil), ti.requests[clientID]...)
}

func waitAllReady(ctx context.Context, t *testing.T, c client.Client, n int) {
	t.Helper()
	testenv.WaitFor(t, 60*time.Second, fmt.Sprintf("%d Credentials Ready", n), func() (bool, string) {
		r, total := ready(ctx, t, c)
		return r == n && total == n, fmt.Sprintf("%d of %d Ready", r, total)
	})
}

// quiet waits for 2 s without a manager write or an issuer call and returns the API server's
// counts and the issuer's calls as its last look saw them, so that no rotation straddles the
// moment a count starts or ends. The counts are read before the calls: an issuer call between
// the two readings makes that look not quiet. So, provided a rotation's writes follow its issuer
// call within 2 s (milliseconds here), every call counted has its writes counted too, and no
// write is counted without its call.
func quiet(t *testing.T, env *testenv.Env, ti *tokenIssuer) (apiCounts, int) {
	t.Helper()
	counts := apiRequests(t, env.Config)
	last, calls, since := counts.managerWrites(), ti.calls(), time.Now()
	// Eight Credentials rotating every 10 s leave a 2-s gap now and then; on a machine busy with
	// other suites it can take a while.
	testenv.WaitFor(t, 90*time.Second, "no writes and no issuer call for 2 s", func() (bool, string) {
		counts = apiRequests(t, env.Config)
		if w, c := counts.managerWrites(), ti.calls(); w != last || c != calls {
			last, calls, since = w, c, time.Now()
		}
		return time.Since(since) >= 2*time.Second, fmt.Sprintf("%.0f writes, %d issuer calls so far", last, calls)
	})
	return counts, calls
}
