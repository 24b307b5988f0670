package credential

import (
	"context"
	"slices"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/login"
	"github.com/tokenkeeper/tokenkeeper/internal/metrics"
	"github.com/tokenkeeper/tokenkeeper/internal/resolve"
)

// block and isBlocked are the resolver's: one error type for "cannot proceed until someone
// changes something", the same for Credentials, TokenValidators, issuers and admission.
var block = resolve.Block

func isBlocked(err error) (*resolve.Blocked, bool) { return resolve.AsBlocked(err) }

// env is everything one renewal needs (the login engine's Env) and the issuer counters' labels
// but the last: the Credential's namespace and its issuer's namespace, kind and name.
type env struct {
	*login.Env
	labels []string
}

// prepare resolves the issuer, the effective policy and the inputs (login.Engine.Prepare). A
// *resolve.Blocked error means the Credential cannot work as configured; other errors are
// transient. With a policy violation it returns the env so far (issuer and policy, no client)
// beside the error.
func (r *Reconciler) prepare(ctx context.Context, cred *v1alpha1.Credential) (*env, error) {
	e, err := r.engine.Prepare(ctx, cred)
	if e == nil {
		return nil, err
	}
	return &env{Env: e, labels: append([]string{cred.Namespace}, metrics.IssuerLabelValues(cred)...)}, err
}

// metricLabels are the issuer counters' label values for what is counted.
func (e *env) metricLabels(what string) []string {
	return append(slices.Clip(e.labels), what)
}
