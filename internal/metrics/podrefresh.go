package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	// PodRefreshes counts running pods asked to rewrite a rotated token's Secret volume at once
	// (one annotation patch each), by namespace.
	PodRefreshes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tokenkeeper_pod_refreshes_total",
		Help: "Running pods patched so that the kubelet rewrites a rotated token's Secret volume at once, by namespace.",
	}, []string{"namespace"})

	// PodRefreshesBounded counts pods that mount a rotated token but were not patched because
	// the Secret's rotation reached --pod-refresh-max-pods: the kubelet's periodic sync (about
	// a minute) brings them the new token.
	PodRefreshesBounded = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tokenkeeper_pod_refreshes_bounded_total",
		Help: "Pods mounting a rotated token left to the kubelet's periodic sync: beyond --pod-refresh-max-pods for that rotation, by namespace.",
	}, []string{"namespace"})
)

func init() {
	metrics.Registry.MustRegister(PodRefreshes, PodRefreshesBounded)
}
