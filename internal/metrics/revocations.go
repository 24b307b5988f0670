package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// RevocationsAbandoned counts sessions a deleted Credential left open at its issuer: the issuer
// could not be reached or used within the revocation deadline, and the Credential went anyway
// (it must not hold its namespace in Terminating). Such a session stays valid until it expires.
var RevocationsAbandoned = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "tokenkeeper_revocations_abandoned_total",
	Help: "Sessions not revoked when their Credential was deleted (issuer unreachable or unusable): they stay open at the issuer until they expire.",
}, []string{"namespace", "issuer_kind", "issuer_name"})

func init() {
	metrics.Registry.MustRegister(RevocationsAbandoned)
}
