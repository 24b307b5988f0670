package tokenvalidator

import (
	"context"

	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/resolve"
	"github.com/tokenkeeper/tokenkeeper/internal/validation"
)

// Local builds the validator tv describes exactly as the reconciler does — the same issuers,
// policies, key sets, HMAC and introspection Secrets — reading through c with its caller's
// permissions, for a terminal to ask what /validate would answer. close releases its clients.
func Local(ctx context.Context, c client.Reader, tv *v1alpha1.TokenValidator, clusterResourceNamespace string) (v *validation.Validator, close func(), err error) {
	r := &Reconciler{Clock: clock.RealClock{},
		resolver: &resolve.Resolver{Client: c, APIReader: c, ClusterResourceNamespace: clusterResourceNamespace}}
	eff, issuers, err := r.issuers(ctx, tv)
	if err != nil {
		return nil, nil, err
	}
	cfg, b, err := r.build(ctx, tv, issuers, eff)
	if err != nil {
		return nil, nil, err
	}
	return validation.New(cfg), func() {
		for _, c := range b.clients {
			c.Close()
		}
	}, nil
}
