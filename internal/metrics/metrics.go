// Package metrics holds tokenkeeper's Prometheus metrics, registered with controller-runtime's
// registry and served on the manager's metrics endpoint.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	// CredentialExpiry is when each Credential's current token expires (Unix seconds).
	CredentialExpiry = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tokenkeeper_credential_expiry_timestamp_seconds",
		Help: "When the token of a Credential expires, in Unix seconds.",
	}, []string{"namespace", "credential", "issuer"})

	// Renewals counts tokens obtained, by issuer and method (login or refresh).
	Renewals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tokenkeeper_renewals_total",
		Help: "Tokens obtained from issuers, by method (login, refresh).",
	}, []string{"issuer", "method"})

	// RenewalFailures counts failed logins and refreshes, by issuer and reason.
	RenewalFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tokenkeeper_renewal_failures_total",
		Help: "Failed logins and refreshes, by issuer and reason.",
	}, []string{"issuer", "reason"})

	// IssuerRequestDuration is the latency of issuer operations.
	IssuerRequestDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "tokenkeeper_issuer_request_duration_seconds",
		Help:    "Latency of issuer operations (login, refresh, revoke), including failures.",
		Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"issuer", "operation"})
)

func init() {
	metrics.Registry.MustRegister(CredentialExpiry, Renewals, RenewalFailures, IssuerRequestDuration)
}
