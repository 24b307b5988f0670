package issuer

import "net/url"

// A serviceAccount login presents a Kubernetes ServiceAccount token the manager requested for
// this login: as an RFC 8693 subject_token, as the client assertion of a client_credentials
// grant (Entra ID workload identity federation), as an RFC 7523 assertion, or (JSON issuers) as
// .serviceAccountToken in the body template (Vault's JWT auth).

// Grant and token types of RFC 8693.
const (
	grantTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	tokenTypeJWT       = "urn:ietf:params:oauth:token-type:jwt"
)

// Ways to present a ServiceAccount token to an OAuth2 issuer.
const (
	PresentTokenExchange   = "TokenExchange"
	PresentClientAssertion = "ClientAssertion"
	PresentJWTBearer       = "JWTBearer"
)

// ServiceAccountRequest says how a serviceAccount login presents its token.
type ServiceAccountRequest struct {
	PresentAs          string // PresentTokenExchange when empty
	ClientID           string
	RequestedTokenType string
	TargetAudience     string
	Resource           string
}

// serviceAccountForm fills the grant of a serviceAccount login at an OAuth2 token endpoint.
func serviceAccountForm(form url.Values, req Request) error {
	token := req.Inputs[InputServiceAccountToken]
	if token == "" {
		return configError("no ServiceAccount token to present")
	}
	sa := ServiceAccountRequest{}
	if req.ServiceAccount != nil {
		sa = *req.ServiceAccount
	}
	if sa.ClientID != "" {
		form.Set("client_id", sa.ClientID)
	}
	switch sa.PresentAs {
	case PresentClientAssertion:
		form.Set("grant_type", "client_credentials")
		form.Set("client_assertion_type", clientAssertionType)
		form.Set("client_assertion", token)
	case PresentJWTBearer:
		form.Set("grant_type", grantJWTBearer)
		form.Set("assertion", token)
	case PresentTokenExchange, "":
		form.Set("grant_type", grantTokenExchange)
		form.Set("subject_token", token)
		form.Set("subject_token_type", tokenTypeJWT)
		for k, v := range map[string]string{"requested_token_type": sa.RequestedTokenType, "audience": sa.TargetAudience, "resource": sa.Resource} {
			if v != "" {
				form.Set(k, v)
			}
		}
	default:
		return configError("serviceAccount.presentAs " + sa.PresentAs + " is not TokenExchange, ClientAssertion or JWTBearer")
	}
	return nil
}
