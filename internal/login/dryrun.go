package login

import (
	"context"
	"errors"
	"sync"
	"time"

	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer"
	"github.com/tokenkeeper/tokenkeeper/internal/policy"
	"github.com/tokenkeeper/tokenkeeper/internal/renewal"
	"github.com/tokenkeeper/tokenkeeper/internal/resolve"
)

// RevokeTimeout bounds each best-effort revocation.
const RevokeTimeout = 10 * time.Second

// DryRunResult is what one login made as the controller would make it shows.
type DryRunResult struct {
	// Issuer is "Issuer/name" or "ClusterIssuer/name"; IssuerSpec what it declares.
	Issuer     string
	IssuerSpec *v1alpha1.IssuerSpec
	// Policy is the effective policy the Credential would get.
	Policy policy.Effective
	// Exchanges are the requests sent and their answers, secrets redacted.
	Exchanges []issuer.Exchange
	// Token is the token obtained; nil on failure. Callers must show only what Token.String and
	// its non-secret fields show.
	Token *issuer.Token
	// Plan is when the controller would renew Token.
	Plan renewal.Plan
	// CanRefresh says whether renewals would refresh rather than log in again.
	CanRefresh bool
	// Revoked says the dry run's session was ended at the issuer; RevokeError why not.
	Revoked     bool
	RevokeError string
	// Reason is the condition reason the controller would set for the error, "" on success.
	Reason v1alpha1.ConditionReason
}

// DryRun logs in once for cred exactly as the controller would — the same Prepare (resolution of
// issuer, policy and inputs), the same request and the same response parsing — through c with its
// caller's permissions, and writes nothing: no state Secret, no target Secret, no status. A
// serviceAccount login requests an unbound token; a refreshToken login is refused (it would
// spend the refresh token). The session is revoked afterwards where the issuer supports it. On
// failure the result still holds the exchanges and the reason.
func DryRun(ctx context.Context, c client.Client, cred *v1alpha1.Credential, clusterResourceNamespace string) (*DryRunResult, error) {
	res := &DryRunResult{Issuer: resolve.IssuerKey(cred.Spec.IssuerRef)}
	var mu sync.Mutex
	g := &Engine{Inputs: c, Clients: issuer.NewPool(1), Clock: clock.RealClock{},
		Resolver: &resolve.Resolver{Client: c, APIReader: c, ClusterResourceNamespace: clusterResourceNamespace},
		Trace: func(x issuer.Exchange) {
			mu.Lock()
			defer mu.Unlock()
			res.Exchanges = append(res.Exchanges, x)
		}}
	fail := func(err error) (*DryRunResult, error) {
		res.Reason = Reason(err)
		return res, err
	}
	e, err := g.Prepare(ctx, cred)
	if e != nil {
		res.IssuerSpec, res.Policy = e.Issuer.GetSpec(), e.Policy
	}
	if err != nil {
		return fail(err)
	}
	defer e.Client.Close()
	res.CanRefresh = e.Client.CanRefresh()
	// A refresh-token login spends its input at most issuers: a dry run would leave the
	// Credential that uses the same Secret with a dead refresh token. It is never made.
	if e.Request.Kind == issuer.LoginRefreshToken {
		return fail(resolve.Block(v1alpha1.ReasonInvalidConfig, "a dry run of a refreshToken login would spend the refresh token in its Secret "+
			"(single use at most issuers) and lose the session; test the issuer with another login, or watch the Credential's status"))
	}
	if e.Request.Kind == issuer.LoginServiceAccount {
		tok, err := ServiceAccountToken(ctx, c, cred, e, nil)
		if err != nil {
			return fail(err)
		}
		e.SetInput(issuer.InputServiceAccountToken, tok)
	}
	tok, err := e.Client.Login(ctx, e.Request)
	if err != nil {
		return fail(err)
	}
	res.Token = tok
	res.Plan = renewal.Schedule(renewal.Session{IssuedAt: tok.IssuedAt, ExpiresAt: tok.ExpiresAt, RefreshExpiresAt: tok.RefreshExpiresAt,
		HasRefreshToken: tok.RefreshToken != ""}, e.Policy, string(cred.UID))
	if e.Client.CanRevoke() {
		rctx, cancel := context.WithTimeout(ctx, RevokeTimeout)
		defer cancel()
		if err := e.Client.Revoke(rctx, e.Request, tok); err != nil {
			res.RevokeError = err.Error()
		} else {
			res.Revoked = true
		}
	}
	return res, nil
}

// Reason is the condition reason the controller sets for err: a blocked configuration's own,
// else the issuer failure's (IssuerReason).
func Reason(err error) v1alpha1.ConditionReason {
	if b, ok := resolve.AsBlocked(err); ok {
		return b.Reason
	}
	return IssuerReason(err)
}

// IssuerReason is the condition reason of a failed issuer call.
func IssuerReason(err error) v1alpha1.ConditionReason {
	if errors.Is(err, issuer.ErrTokenRejected) {
		return v1alpha1.ReasonTokenRejected
	}
	switch issuer.ClassOf(err) {
	case issuer.ClassInvalidCredentials, issuer.ClassRefreshRejected:
		return v1alpha1.ReasonInvalidCredentials
	case issuer.ClassRateLimited:
		return v1alpha1.ReasonRateLimited
	case issuer.ClassMalformedResponse:
		return v1alpha1.ReasonMalformedResponse
	case issuer.ClassConfig:
		return v1alpha1.ReasonInvalidConfig
	}
	return v1alpha1.ReasonIssuerUnavailable
}
