package validation

import (
	"strconv"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	clocktesting "k8s.io/utils/clock/testing"
)

// A flood of distinct tokens keeps the cache at its bound, every recent entry is still found,
// the oldest are the ones gone, and a re-inserted key takes no second place.
func TestCacheBoundedFIFO(t *testing.T) {
	now := time.Now()
	c := newCache[int](1600)
	for i := range 100_000 {
		c.put(tokenKey(strconv.Itoa(i)), i, now.Add(time.Hour), now)
	}
	if n := c.len(); n > 1600 {
		t.Fatalf("%d entries, bound 1600", n)
	}
	for i := 100_000 - 50; i < 100_000; i++ {
		if v, ok := c.get(tokenKey(strconv.Itoa(i)), now); !ok || v != i {
			t.Fatalf("recent entry %d lost", i)
		}
	}
	if _, ok := c.get(tokenKey("0"), now); ok {
		t.Fatal("the oldest entry survived a flood of 100,000")
	}
	if _, ok := c.get(tokenKey("99999"), now.Add(2*time.Hour)); ok {
		t.Fatal("an expired entry was returned")
	}
	before := c.len()
	for range 10 {
		c.put(tokenKey("99999"), 1, now.Add(time.Hour), now)
	}
	if c.len() != before {
		t.Fatal("re-inserting a key grew the cache")
	}
}

// BenchmarkCacheDistinctInserts: the cost of inserting into a full cache (it scanned the whole
// map under one lock before).
func BenchmarkCacheDistinctInserts(b *testing.B) {
	now := time.Now()
	c := newCache[int](cacheSize)
	keys := make([][32]byte, 1<<16)
	for i := range keys {
		keys[i] = tokenKey(strconv.Itoa(i))
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			c.put(keys[i&(len(keys)-1)], i, now.Add(time.Hour), now)
			i += 7919
		}
	})
}

// A token is cached the second time it is verified, not the first: a flood of tokens that never
// come again leaves the cache (and the entries worth keeping in it) alone.
func TestDoorkeeperAdmitsOnSecondSight(t *testing.T) {
	k := newKeyServer(t)
	clk := clocktesting.NewFakeClock(time.Now())
	v := newTestValidator(t, k, clk, func(c *Config) { c.Algorithms = []string{"RS256"} })
	hits := 0
	v.OnCacheHit = func(string) { hits++ }
	for i := range 50 {
		tok := k.sign(t, "RS256", "rsa1", claims(clk.Now(), func(c jwt.MapClaims) { c["jti"] = i }), nil)
		if _, d := v.AuthenticateToken(t.Context(), tok); d != nil {
			t.Fatal(d)
		}
	}
	if n := v.verified.len(); n != 0 || hits != 0 {
		t.Fatalf("50 tokens seen once each: %d cached, %d hits; want none", n, hits)
	}
	tok := k.sign(t, "RS256", "rsa1", claims(clk.Now(), nil), nil)
	for range 3 {
		if _, d := v.AuthenticateToken(t.Context(), tok); d != nil {
			t.Fatal(d)
		}
	}
	if n := v.verified.len(); n != 1 || hits != 1 {
		t.Fatalf("one token seen three times: %d cached, %d hits; want 1 and 1 (cached at the second, hit at the third)", n, hits)
	}
}
