// Package metrics holds tokenkeeper's Prometheus metrics, registered with controller-runtime's
// registry and served on the manager's metrics endpoint.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/tokenkeeper/tokenkeeper/internal/validation"
)

var (
	// Renewals counts tokens obtained, by the Credentials' namespace, their issuer (namespace,
	// kind, name) and method (login or refresh). Each Credential's own state is
	// CredentialCollector's.
	Renewals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tokenkeeper_renewals_total",
		Help: "Tokens obtained from issuers, by namespace, issuer and method (login, refresh).",
	}, issuerLabels("method"))

	// EventsSkipped counts routine rotation Events left out because the manager-wide budget for
	// them was spent (thousands of Credentials rotating at once); status still records each.
	EventsSkipped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tokenkeeper_events_skipped_total",
		Help: "Routine rotation Events not emitted because the manager-wide Event budget was spent.",
	})

	// RenewalFailures counts failed logins, refreshes and probes, by namespace, issuer and reason.
	RenewalFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tokenkeeper_renewal_failures_total",
		Help: "Failed logins, refreshes and probes, by namespace, issuer and reason.",
	}, issuerLabels("reason"))

	// IssuerRequestDuration is the latency of issuer operations.
	IssuerRequestDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "tokenkeeper_issuer_request_duration_seconds",
		Help:    "Latency of issuer operations (login, refresh, probe, revoke), including failures, by namespace and issuer.",
		Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, issuerLabels("operation"))

	// InterruptedCalls counts logins and refreshes whose outcome was never recorded (the manager
	// died or lost the API server after sending them), found and settled at the next reconcile.
	InterruptedCalls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tokenkeeper_interrupted_calls_total",
		Help: "Logins and refreshes sent but whose outcome was never recorded, by namespace, issuer and operation.",
	}, issuerLabels("operation"))
)

// issuerLabels are the labels of the issuer counters: the Credential's namespace (so that an
// alert routes to its team), the issuer's namespace (empty for a ClusterIssuer), kind and name
// (so that same-named Issuers of two namespaces stay apart), and what is counted.
func issuerLabels(what string) []string {
	return []string{"namespace", "issuer_namespace", "issuer_kind", "issuer_name", what}
}

func init() {
	metrics.Registry.MustRegister(Renewals, RenewalFailures, IssuerRequestDuration, InterruptedCalls, EventsSkipped)
}

var (
	// Validations, ValidationDuration and ValidationCacheHits are the validation server's,
	// defined beside it (the kubectl plugin links that package and must register nothing).
	Validations         = validation.Validations
	ValidationDuration  = validation.ValidationDuration
	ValidationCacheHits = validation.ValidationCacheHits

	// KeySetRefreshes counts key set fetches by issuer and result.
	KeySetRefreshes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tokenkeeper_keyset_refreshes_total",
		Help: "JWKS fetches, by issuer and result (ok, error).",
	}, []string{"issuer", "result"})
)

func init() {
	metrics.Registry.MustRegister(Validations, ValidationDuration, ValidationCacheHits, KeySetRefreshes)
}
