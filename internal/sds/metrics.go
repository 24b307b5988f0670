package sds

import (
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	streamsOpen = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tokenkeeper_sds_streams",
		Help: "SDS streams open on this replica.",
	})
	responses = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tokenkeeper_sds_responses_total",
		Help: "SDS responses sent on streams: on a request (a new stream or new names), on a change (a rotation), or again after a NACK (retry).",
	}, []string{"reason"})
	nacks = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tokenkeeper_sds_nacks_total",
		Help: "SDS responses Envoy refused (NACK); each is sent again after a backoff.",
	})
	refusals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tokenkeeper_sds_refusals_total",
		Help: "SDS calls refused, by gRPC code: Unauthenticated, PermissionDenied, InvalidArgument, ResourceExhausted, Unavailable.",
	}, []string{"code"})
)

func init() {
	metrics.Registry.MustRegister(streamsOpen, responses, nacks, refusals)
}

// Reasons of tokenkeeper_sds_responses_total.
const (
	reasonRequest  = "request"
	reasonRotation = "rotation"
	reasonRetry    = "retry"
)

// countRefusal counts err when it is a refusal of the server's, not the end of a stream.
func countRefusal(err error) {
	switch c := status.Code(err); c {
	case codes.Unauthenticated, codes.PermissionDenied, codes.InvalidArgument, codes.ResourceExhausted, codes.Unavailable:
		refusals.WithLabelValues(c.String()).Inc()
	}
}
