package sds

import (
	"container/list"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
	authenticationv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ErrNotAuthenticated is the answer for a token the API server does not accept for the audience.
var ErrNotAuthenticated = errors.New("the API server does not accept the token for this audience")

// ErrBusy is the answer for a token not cached while reviews run at their limit.
var ErrBusy = errors.New("too many token reviews: try again")

// Reviewer asks the API server whose token it is (a TokenReview for the given audiences).
type Reviewer interface {
	Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error
}

// Authenticator tells which ServiceAccount a token belongs to, by TokenReview with one audience.
// Answers are cached by the token's SHA-256 (never the token): accepted ones for SuccessTTL,
// refused ones for FailureTTL, at most MaxEntries of them, the least recently used evicted
// first; concurrent reviews of one token are one request.
type Authenticator struct {
	Reviewer   Reviewer
	Audience   string
	SuccessTTL time.Duration
	FailureTTL time.Duration
	MaxEntries int
	// ReviewsPerSecond and ReviewBurst bound the TokenReviews sent for tokens not cached, so
	// that clients presenting ever new tokens cannot flood the API server nor use up the
	// manager's own API budget; a review that would wait longer than maxReviewWait is refused
	// (ErrBusy). Zero means DefaultReviewsPerSecond and DefaultReviewBurst.
	ReviewsPerSecond float64
	ReviewBurst      int
	Clock            clock.PassiveClock

	mu       sync.Mutex
	limiter  *rate.Limiter
	entries  map[[32]byte]*list.Element
	lru      list.List // of *authEntry, most recent first
	inflight map[[32]byte]*review
}

type authEntry struct {
	key     [32]byte
	id      types.NamespacedName // zero: refused
	expires time.Time
}

type review struct {
	done chan struct{}
	id   types.NamespacedName
	err  error
}

// Defaults of an Authenticator.
const (
	DefaultAuthSuccessTTL   = time.Minute
	DefaultAuthFailureTTL   = 10 * time.Second
	DefaultAuthMaxEntries   = 4096
	DefaultReviewsPerSecond = 50
	DefaultReviewBurst      = 100
	maxReviewWait           = 5 * time.Second
	serviceAccountPrefix    = "system:serviceaccount:"
)

// ServiceAccount authenticates token: the ServiceAccount (namespace/name) it was issued to.
// ErrNotAuthenticated for any token the API server refuses, that is not a ServiceAccount's, or
// that is not for the audience; other errors (the API server unreachable) are not cached.
func (a *Authenticator) ServiceAccount(ctx context.Context, token string) (types.NamespacedName, error) {
	key := sha256.Sum256([]byte(token))
	now := a.clock().Now()
	a.mu.Lock()
	if a.entries == nil {
		a.entries, a.inflight = map[[32]byte]*list.Element{}, map[[32]byte]*review{}
		rps, burst := a.ReviewsPerSecond, a.ReviewBurst
		if rps <= 0 {
			rps = DefaultReviewsPerSecond
		}
		if burst <= 0 {
			burst = DefaultReviewBurst
		}
		a.limiter = rate.NewLimiter(rate.Limit(rps), burst)
	}
	if el, ok := a.entries[key]; ok {
		e := el.Value.(*authEntry)
		if now.Before(e.expires) {
			a.lru.MoveToFront(el)
			a.mu.Unlock()
			if e.id.Name == "" {
				return types.NamespacedName{}, ErrNotAuthenticated
			}
			return e.id, nil
		}
		a.lru.Remove(el)
		delete(a.entries, key)
	}
	if r, ok := a.inflight[key]; ok {
		a.mu.Unlock()
		select {
		case <-r.done:
			return r.id, r.err
		case <-ctx.Done():
			return types.NamespacedName{}, ctx.Err()
		}
	}
	res := a.limiter.Reserve()
	if d := res.Delay(); d > maxReviewWait {
		res.Cancel()
		a.mu.Unlock()
		return types.NamespacedName{}, ErrBusy
	}
	r := &review{done: make(chan struct{})}
	a.inflight[key] = r
	a.mu.Unlock()
	if d := res.Delay(); d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
		}
	}

	r.id, r.err = a.review(ctx, token)
	a.mu.Lock()
	delete(a.inflight, key)
	switch {
	case r.err == nil:
		a.store(key, r.id, now.Add(a.ttl(a.SuccessTTL, DefaultAuthSuccessTTL)))
	case errors.Is(r.err, ErrNotAuthenticated):
		a.store(key, types.NamespacedName{}, now.Add(a.ttl(a.FailureTTL, DefaultAuthFailureTTL)))
	}
	a.mu.Unlock()
	close(r.done)
	return r.id, r.err
}

// store caches one answer; a.mu is held.
func (a *Authenticator) store(key [32]byte, id types.NamespacedName, expires time.Time) {
	a.entries[key] = a.lru.PushFront(&authEntry{key: key, id: id, expires: expires})
	limit := a.MaxEntries
	if limit <= 0 {
		limit = DefaultAuthMaxEntries
	}
	for a.lru.Len() > limit {
		last := a.lru.Back()
		a.lru.Remove(last)
		delete(a.entries, last.Value.(*authEntry).key)
	}
}

// cached counts the cached answers, for tests.
func (a *Authenticator) cached() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lru.Len()
}

func (a *Authenticator) review(ctx context.Context, token string) (types.NamespacedName, error) {
	tr := &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: []string{a.Audience}}}
	if err := a.Reviewer.Create(ctx, tr); err != nil {
		// The API server's error never holds the token it was sent.
		return types.NamespacedName{}, fmt.Errorf("reviewing the token: %w", err)
	}
	st := tr.Status
	// An API server that ignores audiences answers without status.audiences: refused too.
	if !st.Authenticated || st.Error != "" || !slices.Contains(st.Audiences, a.Audience) {
		return types.NamespacedName{}, ErrNotAuthenticated
	}
	rest, ok := strings.CutPrefix(st.User.Username, serviceAccountPrefix)
	ns, name, ok2 := strings.Cut(rest, ":")
	if !ok || !ok2 || ns == "" || name == "" {
		return types.NamespacedName{}, ErrNotAuthenticated
	}
	return types.NamespacedName{Namespace: ns, Name: name}, nil
}

func (a *Authenticator) clock() clock.PassiveClock {
	if a.Clock == nil {
		return clock.RealClock{}
	}
	return a.Clock
}

func (a *Authenticator) ttl(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}
