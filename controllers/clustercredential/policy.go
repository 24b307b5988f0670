package clustercredential

import (
	"fmt"
	"time"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/policy"
	"github.com/tokenkeeper/tokenkeeper/internal/resolve"
)

// lifetimeSlack tolerates the rounding of a token's lifetime measured from status times (whole
// seconds) against a policy's maximum.
const lifetimeSlack = 2 * time.Second

// forbids says why the TokenPolicies selecting a namespace (as policy.Selecting returns them)
// keep it from receiving the token, or "" when they allow it. It applies to the copy the rules
// a Credential in that namespace would meet: the session asked for within sessionDuration.max
// (and, when none is asked, the current token's lifetime within it), the issuer's URLs within
// allowedIssuers and requireHTTPS, a ServiceAccount audience within allowedAudiences. iss may be
// nil (not found yet): there is no token to copy then. The message names the policy and the rule,
// never a secret.
func forbids(selecting []v1alpha1.TokenPolicy, spec *v1alpha1.CredentialSpec, iss v1alpha1.GenericIssuer, lifetime time.Duration) string {
	eff, violations := policy.Resolve(selecting, spec)
	if len(violations) > 0 {
		return violations[0].Error()
	}
	if spec.SessionDuration == nil && eff.MaxSessionDuration > 0 && lifetime > eff.MaxSessionDuration+lifetimeSlack {
		return policy.Violation{Policy: eff.Sources[policy.FieldSessionMax], Field: "spec.credential.sessionDuration",
			Detail: fmt.Sprintf("the token lives %s, longer than the maximum session duration %s", lifetime.Round(time.Second), eff.MaxSessionDuration)}.Error()
	}
	if iss == nil {
		return ""
	}
	if v := eff.CheckIssuer(iss.GetSpec()); len(v) > 0 {
		return fmt.Sprintf("%s %q: %v", resolve.KindOf(iss), iss.GetName(), v[0])
	}
	if sa := spec.ServiceAccount; sa != nil {
		aud := sa.Audience
		if aud == "" {
			aud = iss.GetSpec().ServiceAccountAudience
		}
		if v := eff.CheckAudience(aud); aud != "" && v != nil {
			return v.Error()
		}
	}
	return ""
}
