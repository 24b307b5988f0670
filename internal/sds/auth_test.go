package sds

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// fakeReviewer answers TokenReviews from a table of tokens, counting them.
type fakeReviewer struct {
	users   map[string]string // token → username; the audience is always granted
	noAud   map[string]bool   // tokens answered without status.audiences
	err     error
	gate    chan struct{} // when set, each review waits for it
	reviews atomic.Int32
}

func (f *fakeReviewer) Create(_ context.Context, obj client.Object, _ ...client.CreateOption) error {
	f.reviews.Add(1)
	if f.gate != nil {
		<-f.gate
	}
	if f.err != nil {
		return f.err
	}
	tr := obj.(*authenticationv1.TokenReview)
	if user, ok := f.users[tr.Spec.Token]; ok {
		tr.Status.Authenticated = true
		tr.Status.User.Username = user
		if !f.noAud[tr.Spec.Token] {
			tr.Status.Audiences = tr.Spec.Audiences
		}
	}
	return nil
}

func TestAuthenticator(t *testing.T) {
	sa := types.NamespacedName{Namespace: "team", Name: "envoy"}
	for name, tc := range map[string]struct {
		reason string
		token  string
		want   types.NamespacedName
		err    error
	}{
		"service account": {"a ServiceAccount's token names it", "sa", sa, nil},
		"user":            {"a user's token is no ServiceAccount's", "user", types.NamespacedName{}, ErrNotAuthenticated},
		"unknown":         {"a token the API server refuses", "unknown", types.NamespacedName{}, ErrNotAuthenticated},
		"no audiences":    {"an API server that ignores audiences cannot vouch for ours", "noaud", types.NamespacedName{}, ErrNotAuthenticated},
		"malformed sa":    {"a username with the prefix but no name", "bad", types.NamespacedName{}, ErrNotAuthenticated},
	} {
		t.Run(name, func(t *testing.T) {
			r := &fakeReviewer{users: map[string]string{"sa": "system:serviceaccount:team:envoy", "user": "alice", "noaud": "system:serviceaccount:team:envoy",
				"bad": "system:serviceaccount:team"}, noAud: map[string]bool{"noaud": true}}
			a := &Authenticator{Reviewer: r, Audience: "aud"}
			for range 3 {
				got, err := a.ServiceAccount(t.Context(), tc.token)
				if got != tc.want || !errors.Is(err, tc.err) {
					t.Fatalf("%s: got %v, %v; want %v, %v", tc.reason, got, err, tc.want, tc.err)
				}
			}
			if n := r.reviews.Load(); n != 1 {
				t.Fatalf("%s: %d reviews for three calls, want one (cached)", tc.reason, n)
			}
		})
	}
}

// Answers expire: accepted ones after SuccessTTL, refused ones after FailureTTL; errors of the
// API server are not cached at all.
func TestAuthenticatorExpiry(t *testing.T) {
	clock := clocktesting.NewFakePassiveClock(time.Now())
	r := &fakeReviewer{users: map[string]string{"sa": "system:serviceaccount:team:envoy"}}
	a := &Authenticator{Reviewer: r, Audience: "aud", SuccessTTL: time.Minute, FailureTTL: 10 * time.Second, Clock: clock}
	call := func(token string, wantReviews int32) {
		t.Helper()
		_, _ = a.ServiceAccount(t.Context(), token)
		if n := r.reviews.Load(); n != wantReviews {
			t.Fatalf("%d reviews, want %d", n, wantReviews)
		}
	}
	call("sa", 1)
	call("bad", 2)
	clock.SetTime(clock.Now().Add(11 * time.Second))
	call("sa", 2)  // still cached
	call("bad", 3) // reviewed again
	clock.SetTime(clock.Now().Add(time.Minute))
	call("sa", 4)
	r.err = errors.New("connection refused")
	call("other", 5)
	call("other", 6) // not cached
}

// The cache holds at most MaxEntries answers, the least recently used evicted first.
func TestAuthenticatorBounded(t *testing.T) {
	r := &fakeReviewer{users: map[string]string{}}
	a := &Authenticator{Reviewer: r, Audience: "aud", MaxEntries: 2}
	for _, tok := range []string{"a", "b", "a", "c"} { // c evicts b, the least recently used
		_, _ = a.ServiceAccount(t.Context(), tok)
	}
	if a.cached() != 2 {
		t.Fatalf("%d answers cached, want at most 2", a.cached())
	}
	_, _ = a.ServiceAccount(t.Context(), "a")
	if n := r.reviews.Load(); n != 3 {
		t.Fatalf("a was evicted: %d reviews, want 3", n)
	}
}

// Concurrent calls with one token share one review (Envoy opens its streams together).
func TestAuthenticatorOneReviewPerToken(t *testing.T) {
	r := &fakeReviewer{users: map[string]string{"sa": "system:serviceaccount:team:envoy"}, gate: make(chan struct{})}
	a := &Authenticator{Reviewer: r, Audience: "aud"}
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if _, err := a.ServiceAccount(t.Context(), "sa"); err != nil {
				t.Error(err)
			}
		})
	}
	for r.reviews.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // let the others queue behind the first
	close(r.gate)
	wg.Wait()
	if n := r.reviews.Load(); n != 1 {
		t.Fatalf("%d reviews for 50 concurrent calls with one token, want 1", n)
	}
}

// Reviews of tokens not cached are rate-limited: a flood of new tokens is refused (ErrBusy), not
// passed on to the API server, and cached tokens are still answered.
func TestAuthenticatorRateLimited(t *testing.T) {
	r := &fakeReviewer{users: map[string]string{"sa": "system:serviceaccount:team:envoy"}}
	a := &Authenticator{Reviewer: r, Audience: "aud", ReviewsPerSecond: 0.001, ReviewBurst: 2}
	if _, err := a.ServiceAccount(t.Context(), "sa"); err != nil {
		t.Fatal(err)
	}
	_, _ = a.ServiceAccount(t.Context(), "flood-1")
	for i := range 10 {
		if _, err := a.ServiceAccount(t.Context(), fmt.Sprintf("flood-%d", i+2)); !errors.Is(err, ErrBusy) {
			t.Fatalf("review %d past the limit: got %v, want ErrBusy", i+3, err)
		}
	}
	if n := r.reviews.Load(); n != 2 {
		t.Fatalf("%d reviews sent, want the burst of 2", n)
	}
	if _, err := a.ServiceAccount(t.Context(), "sa"); err != nil {
		t.Fatalf("a cached token is refused while reviews are busy: %v", err)
	}
}
