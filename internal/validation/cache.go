package validation

import (
	"crypto/sha256"
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"
)

// cacheShards spreads the cache over independently locked shards, picked by the first byte of
// the key (uniform: it is a SHA-256), so that concurrent validations rarely wait for each other.
const cacheShards = 16

// cache is a bounded map from SHA-256(token) to a value that expires; it never holds a token.
// Every operation is O(1): a full shard evicts its oldest insertion (first in, first out), so
// a flood of distinct tokens costs no scan and no global lock.
type cache[V any] struct {
	shards [cacheShards]cacheShard[V]
}

type cacheShard[V any] struct {
	mu      sync.Mutex
	entries map[[32]byte]cacheEntry[V]
	// order holds the shard's keys in insertion order, as a ring of capacity max: next is the
	// oldest once the ring is full.
	order [][32]byte
	next  int
	max   int
}

type cacheEntry[V any] struct {
	value   V
	expires time.Time
}

func newCache[V any](size int) *cache[V] {
	c := &cache[V]{}
	per := max(1, size/cacheShards)
	for i := range c.shards {
		c.shards[i] = cacheShard[V]{entries: make(map[[32]byte]cacheEntry[V], per), order: make([][32]byte, 0, per), max: per}
	}
	return c
}

func (c *cache[V]) shard(key [32]byte) *cacheShard[V] { return &c.shards[key[0]%cacheShards] }

func (c *cache[V]) get(key [32]byte, now time.Time) (V, bool) {
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[key]
	if !ok || !now.Before(e.expires) {
		var zero V
		return zero, false
	}
	return e.value, true
}

// put stores value until expires. A new key in a full shard takes the place of the shard's
// oldest insertion (expired or not: expired entries are never returned anyway).
func (c *cache[V]) put(key [32]byte, value V, expires, now time.Time) {
	if !now.Before(expires) {
		return
	}
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.entries[key]; !ok {
		if len(s.order) < s.max {
			s.order = append(s.order, key)
		} else {
			delete(s.entries, s.order[s.next])
			s.order[s.next] = key
			s.next = (s.next + 1) % s.max
		}
	}
	s.entries[key] = cacheEntry[V]{value: value, expires: expires}
}

// len is the number of entries, for tests.
func (c *cache[V]) len() int {
	n := 0
	for i := range c.shards {
		c.shards[i].mu.Lock()
		n += len(c.shards[i].entries)
		c.shards[i].mu.Unlock()
	}
	return n
}

func tokenKey(token string) [32]byte { return sha256.Sum256([]byte(token)) }

// doorkeeper admits a token to the cache only the second time it is seen (TinyLFU's door
// keeper): a flood of tokens that never come again (many clients, short tokens) costs one
// atomic load and store each instead of an insertion that evicts an entry worth keeping and an
// identity kept alive for the garbage collector to trace. It is a direct-mapped table of key
// fingerprints, lock-free and fixed in size; a collision only delays an admission.
type doorkeeper struct {
	slots []atomic.Uint64
	mask  uint64
}

func newDoorkeeper(size int) *doorkeeper {
	n := uint64(1)
	for n < uint64(max(size, 1)) {
		n <<= 1
	}
	return &doorkeeper{slots: make([]atomic.Uint64, n), mask: n - 1}
}

// seenBefore reports whether key was offered since its slot was last taken, and remembers it.
func (d *doorkeeper) seenBefore(key [32]byte) bool {
	slot := &d.slots[binary.LittleEndian.Uint64(key[0:8])&d.mask]
	fp := binary.LittleEndian.Uint64(key[8:16]) | 1 // never 0, the empty slot
	if slot.Load() == fp {
		return true
	}
	slot.Store(fp)
	return false
}
