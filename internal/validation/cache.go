package validation

import (
	"crypto/sha256"
	"sync"
	"time"
)

// cache is a bounded map from SHA-256(token) to a value that expires; it never holds a token.
type cache[V any] struct {
	mu      sync.Mutex
	max     int
	entries map[[32]byte]cacheEntry[V]
}

type cacheEntry[V any] struct {
	value   V
	expires time.Time
}

func newCache[V any](max int) *cache[V] {
	return &cache[V]{max: max, entries: make(map[[32]byte]cacheEntry[V])}
}

func (c *cache[V]) get(key [32]byte, now time.Time) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok || !now.Before(e.expires) {
		var zero V
		return zero, false
	}
	return e.value, true
}

// put stores value until expires. When full it drops expired entries, then arbitrary ones.
func (c *cache[V]) put(key [32]byte, value V, expires, now time.Time) {
	if !now.Before(expires) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		for k, e := range c.entries {
			if !now.Before(e.expires) {
				delete(c.entries, k)
			}
		}
		for k := range c.entries {
			if len(c.entries) < c.max {
				break
			}
			delete(c.entries, k)
		}
	}
	c.entries[key] = cacheEntry[V]{value: value, expires: expires}
}

func tokenKey(token string) [32]byte { return sha256.Sum256([]byte(token)) }
