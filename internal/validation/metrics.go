package validation

import "github.com/prometheus/client_golang/prometheus"

// The server's metrics. They are registered by internal/metrics in the manager only: this
// package is linked into the kubectl plugin too, which registers nothing.
var (
	// Validations counts token validations by validator, result and reason.
	Validations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tokenkeeper_validations_total",
		Help: "Token validations, by TokenValidator, result (allowed, denied) and reason.",
	}, []string{"validator", "result", "reason"})

	// ValidationDuration is the latency of validations.
	ValidationDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "tokenkeeper_validation_duration_seconds",
		Help:    "Latency of token validations, by TokenValidator.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .5, 1},
	}, []string{"validator"})

	// ValidationCacheHits counts cache hits by validator and cache (verified, negative).
	ValidationCacheHits = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tokenkeeper_validation_cache_hits_total",
		Help: "Validation cache hits, by TokenValidator and cache (verified, negative).",
	}, []string{"validator", "cache"})
)
