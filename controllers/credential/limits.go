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
type callSlots struct {
	limit int
	mu    sync.Mutex
	inUse map[string]int
}

func newCallSlots(limit int) *callSlots {
	if limit <= 0 {
		limit = DefaultCallsPerNamespace
	}
	return &callSlots{limit: limit, inUse: map[string]int{}}
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
