package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	// RolloutRestarts counts workloads restarted for a new token (one patch of the pod template,
	// however many Credentials it served), by namespace and workload kind.
	RolloutRestarts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tokenkeeper_rollout_restarts_total",
		Help: "Workloads restarted for a new token (coalesced: one per pod template patch), by namespace and kind.",
	}, []string{"namespace", "kind"})

	// RolloutRestartsQueued is how many workloads wait for a restart: for the coalescing window
	// or for the manager-wide budget of restarts in progress.
	RolloutRestartsQueued = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tokenkeeper_rollout_restarts_queued",
		Help: "Workloads waiting to be restarted for a new token (coalescing window or restart budget).",
	})

	// RolloutRestartsInProgress is how many restarted workloads have not finished rolling out,
	// each holding one slot of the manager-wide restart budget.
	RolloutRestartsInProgress = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tokenkeeper_rollout_restarts_in_progress",
		Help: "Restarted workloads whose rollout has not finished, each holding a slot of the restart budget.",
	})
)

func init() {
	metrics.Registry.MustRegister(RolloutRestarts, RolloutRestartsQueued, RolloutRestartsInProgress)
}
