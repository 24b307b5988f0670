package credential

import (
	"hash/fnv"
	"sync"
	"time"
)

// DefaultCallsPerNamespace is how many issuer calls one namespace, and one issuer, may have in
// flight at once when the Reconciler does not say.
const DefaultCallsPerNamespace = 2

// callSlots bounds the issuer calls in flight per namespace and per issuer. Each call holds a
// worker until the issuer answers or times out, so without a bound ten Credentials at an issuer
// that never answers would hold every worker and no other namespace's token would be renewed.
// With it, a namespace (or an issuer) holds at most `limit` workers; a Credential that finds no
// free slot waits a moment without calling.
//
// A Credential that found no slot is remembered as waiting: until a slot frees, its reconciles
// stop before any API request, so a thousand Credentials waiting on one hanging issuer cost the
// API server nothing and leave the manager's client rate to everyone else.
type callSlots struct {
	limit   int
	mu      sync.Mutex
	inUse   map[string]int
	waiting map[string]bool
}

func newCallSlots(limit int) *callSlots {
	if limit <= 0 {
		limit = DefaultCallsPerNamespace
	}
	return &callSlots{limit: limit, inUse: map[string]int{}, waiting: map[string]bool{}}
}

// stillWaiting reports whether who found no slot before and every slot it needs is still taken.
func (s *callSlots) stillWaiting(who string, keys ...string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.waiting[who] {
		return false
	}
	for _, k := range keys {
		if s.inUse[k] >= s.limit {
			return true
		}
	}
	return false
}

// take is acquire for a Credential: when no slot is free it is remembered as waiting.
func (s *callSlots) take(who string, keys ...string) (release func(), ok bool) {
	release, ok = s.acquire(keys...)
	s.mu.Lock()
	defer s.mu.Unlock()
	if ok {
		delete(s.waiting, who)
	} else {
		s.waiting[who] = true
	}
	return release, ok
}

// forget drops a deleted Credential.
func (s *callSlots) forget(who string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.waiting, who)
}

// acquire takes a slot under every key, or none; release gives them back.
func (s *callSlots) acquire(keys ...string) (release func(), ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range keys {
		if s.inUse[k] >= s.limit {
			return nil, false
		}
	}
	for _, k := range keys {
		s.inUse[k]++
	}
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, k := range keys {
			if s.inUse[k]--; s.inUse[k] <= 0 {
				delete(s.inUse, k)
			}
		}
	}, true
}

// busyRetry is how long a Credential that found no free slot waits: 2 to 4 s, spread by key.
func busyRetry(key string) time.Duration {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return 2*time.Second + time.Duration(h.Sum32()%2000)*time.Millisecond
}
