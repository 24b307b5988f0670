package validation

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
)

// benchValidator returns a validator for alg and a token it accepts.
func benchValidator(b *testing.B, k *keyServer, alg string, cached bool) (*Validator, string) {
	clk := clocktesting.NewFakeClock(time.Now())
	kid := map[string]string{"RS256": "rsa1", "ES256": "ec1", "EdDSA": "ed1", "HS256": ""}[alg]
	v := newTestValidator(b, k, clk, func(c *Config) {
		c.Algorithms = []string{alg}
		c.DisableCache = !cached
		if alg == "HS256" {
			c.Issuers[0].HMAC = k.hmac
		}
	})
	tok := k.sign(b, alg, kid, claims(clk.Now(), nil), nil)
	if _, d := v.AuthenticateToken(b.Context(), tok); d != nil {
		b.Fatalf("benchmark token rejected: %v", d)
	}
	return v, tok
}

// distinctTokens is how many distinct RS256 tokens the distinct-token benchmark cycles through:
// twice the cache size, so that with first-in-first-out eviction every lookup misses.
const distinctTokens = 2 * cacheSize

// BenchmarkValidateDistinct measures in-process RS256 validation when every token is new (many
// clients, short tokens): each one misses the cache and is inserted into a full one. Compare
// with BenchmarkValidate/RS256/uncached (no cache at all).
func BenchmarkValidateDistinct(b *testing.B) {
	// Signing 20,000 RS256 tokens takes a while; it is done again for each -count.
	k := newKeyServer(b)
	now := time.Now()
	headers := make([][]string, distinctTokens)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < distinctTokens; i += 4 {
				headers[i] = []string{"Bearer " + k.sign(b, "RS256", "rsa1", claims(now, func(c jwt.MapClaims) { c["jti"] = i }), nil)}
			}
		}()
	}
	wg.Wait()
	v, _ := benchValidator(b, k, "RS256", true)
	ctx := context.Background()
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, d := v.Authenticate(ctx, headers[next.Add(1)%distinctTokens]); d != nil {
				b.Fatal(d)
			}
		}
	})
}

// BenchmarkValidate measures in-process validation per algorithm, with and without the cache.
func BenchmarkValidate(b *testing.B) {
	k := newKeyServer(b)
	for _, alg := range []string{"RS256", "ES256", "EdDSA", "HS256"} {
		for _, cached := range []bool{false, true} {
			name := alg + "/uncached"
			if cached {
				name = alg + "/cached"
			}
			b.Run(name, func(b *testing.B) {
				v, tok := benchValidator(b, k, alg, cached)
				header := []string{"Bearer " + tok}
				ctx := context.Background()
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, d := v.Authenticate(ctx, header); d != nil {
							b.Fatal(d)
						}
					}
				})
			})
		}
	}
}

// BenchmarkHTTP is the loopback load run: forward-auth requests through real HTTP clients and a
// real server, for a bare net/http handler and the validation endpoint (RS256, cached and
// uncached), reporting requests/s and p50/p99 latency.
func BenchmarkHTTP(b *testing.B) {
	k := newKeyServer(b)
	bare := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	cachedV, tok := benchValidator(b, k, "RS256", true)
	uncachedV, _ := benchValidator(b, k, "RS256", false)
	endpoints := NewServer()
	endpoints.Set(types.NamespacedName{Namespace: "bench", Name: "cached"}, cachedV)
	endpoints.Set(types.NamespacedName{Namespace: "bench", Name: "uncached"}, uncachedV)
	for _, tc := range []struct {
		name    string
		handler http.Handler
		path    string
	}{
		{"bare", bare, "/"},
		{"RS256-cached", endpoints, "/validate/bench/cached"},
		{"RS256-uncached", endpoints, "/validate/bench/uncached"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			srv := httptest.NewServer(tc.handler)
			defer srv.Close()
			transport := &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64}
			defer transport.CloseIdleConnections()
			client := &http.Client{Transport: transport}
			var (
				mu        sync.Mutex
				latencies []time.Duration
			)
			b.SetParallelism(16)
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				var local []time.Duration
				for pb.Next() {
					req, _ := http.NewRequest(http.MethodGet, srv.URL+tc.path, nil)
					req.Header.Set("Authorization", "Bearer "+tok)
					t0 := time.Now()
					resp, err := client.Do(req)
					if err != nil {
						b.Fatal(err)
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
					local = append(local, time.Since(t0))
					if resp.StatusCode != http.StatusOK {
						b.Fatalf("status %d", resp.StatusCode)
					}
				}
				mu.Lock()
				latencies = append(latencies, local...)
				mu.Unlock()
			})
			reportLatencies(b, latencies, time.Since(start))
		})
	}
}

// reportLatencies stops the timer and reports the rate and the p50 and p99 of latencies.
func reportLatencies(b *testing.B, latencies []time.Duration, elapsed time.Duration) {
	b.StopTimer()
	slices.Sort(latencies)
	pct := func(p float64) float64 {
		return float64(latencies[int(float64(len(latencies)-1)*p)].Microseconds())
	}
	b.ReportMetric(float64(len(latencies))/elapsed.Seconds(), "req/s")
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
}
