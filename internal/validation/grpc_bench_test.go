package validation

import (
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"k8s.io/apimachinery/pkg/types"
)

// BenchmarkCheckGRPC is BenchmarkHTTP for ext_authz over gRPC: Check calls from a real grpc-go
// client over one HTTP/2 connection (as an Envoy worker keeps one) to a real validation Listener
// on loopback (h2c), RS256 cached and uncached, reporting requests/s and p50/p99 latency.
func BenchmarkCheckGRPC(b *testing.B) {
	k := newKeyServer(b)
	cachedV, tok := benchValidator(b, k, "RS256", true)
	uncachedV, _ := benchValidator(b, k, "RS256", false)
	s := NewServer()
	s.Set(types.NamespacedName{Namespace: "bench", Name: "cached"}, cachedV)
	s.Set(types.NamespacedName{Namespace: "bench", Name: "uncached"}, uncachedV)
	client := startExtAuthz(b, s, "", false).client(b)
	for _, tc := range []struct{ name, validator string }{
		{"RS256-cached", "bench/cached"},
		{"RS256-uncached", "bench/uncached"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			req := checkRequest([]string{"Bearer " + tok}, map[string]string{ValidatorContextKey: tc.validator}, false)
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
					t0 := time.Now()
					resp, err := client.Check(b.Context(), req)
					if err != nil {
						b.Fatal(err)
					}
					local = append(local, time.Since(t0))
					if _, ok := resp.GetHttpResponse().(*authv3.CheckResponse_OkResponse); !ok || resp.GetStatus().GetCode() != int32(codes.OK) {
						b.Fatalf("denied: %v", resp.GetStatus())
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
