package issuer

import (
	"fmt"
	"slices"
	"strings"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
)

// Protocol names, as admission messages and status say them.
const (
	ProtocolOAuth2     = "oauth2"
	ProtocolJSON       = "json"
	ProtocolSelfSigned = "selfSigned"
	ProtocolGitHubApp  = "githubApp"
)

// ProtocolName is the protocol an issuer spec names (protocolOf's choice, by name).
func ProtocolName(spec *v1alpha1.IssuerSpec) string {
	switch {
	case spec.OAuth2 != nil:
		return ProtocolOAuth2
	case spec.SelfSigned != nil:
		return ProtocolSelfSigned
	case spec.GitHubApp != nil:
		return ProtocolGitHubApp
	}
	return ProtocolJSON
}

// accepted are the login kinds each protocol takes, the most usual first (DefaultLogin); a json
// issuer takes some only with a body template (bodyOnly), which is where their inputs go.
var accepted = map[string][]LoginKind{
	ProtocolOAuth2:     {LoginClientCredentials, LoginPassword, LoginJWTBearer, LoginServiceAccount, LoginRefreshToken},
	ProtocolJSON:       {LoginPassword, LoginAPIKey, LoginClientCredentials, LoginRefreshToken, LoginServiceAccount, LoginPrivateKey},
	ProtocolSelfSigned: {LoginPrivateKey},
	ProtocolGitHubApp:  {LoginGitHubApp},
}

var bodyOnly = []LoginKind{LoginServiceAccount, LoginPrivateKey}

// DefaultLogin is the login an issuer is most often used with (a dry run's when none is named):
// the first its protocol takes.
func DefaultLogin(iss *v1alpha1.IssuerSpec) LoginKind {
	return accepted[ProtocolName(iss)][0]
}

// KindOf is the kind of login a Credential's spec names ("" when it names none).
func KindOf(spec *v1alpha1.CredentialSpec) LoginKind {
	switch {
	case spec.Password != nil:
		return LoginPassword
	case spec.APIKey != nil:
		return LoginAPIKey
	case spec.ClientCredentials != nil:
		return LoginClientCredentials
	case spec.JWTBearer != nil:
		return LoginJWTBearer
	case spec.ServiceAccount != nil:
		return LoginServiceAccount
	case spec.GitHubApp != nil:
		return LoginGitHubApp
	case spec.PrivateKey != nil:
		return LoginPrivateKey
	case spec.RefreshToken != nil:
		return LoginRefreshToken
	}
	return ""
}

// Accepts says whether an issuer takes the login a Credential names, before anything is sent:
// admission refuses a mismatch when the Credential is applied, and the controller blocks it with
// the same message, naming both kinds and what the issuer takes.
func Accepts(iss *v1alpha1.IssuerSpec, cred *v1alpha1.CredentialSpec) error {
	proto, kind := ProtocolName(iss), KindOf(cred)
	if kind == "" {
		return nil // the CRD requires one login; nothing to say here
	}
	if proto == ProtocolJSON && iss.URL == "" {
		return fmt.Errorf("the issuer names no login (url with json or oauth2, selfSigned or githubApp): it only serves TokenValidators, so no %s login can use it", kind)
	}
	takes := accepted[proto]
	body := iss.JSON != nil && iss.JSON.Body != ""
	if proto == ProtocolJSON && !body {
		takes = slices.DeleteFunc(slices.Clone(takes), func(k LoginKind) bool { return slices.Contains(bodyOnly, k) })
	}
	if !slices.Contains(takes, kind) {
		why := ""
		if proto == ProtocolJSON && slices.Contains(bodyOnly, kind) {
			why = " (a " + string(kind) + " login needs spec.json.body, a template that puts its inputs in the request)"
		}
		return fmt.Errorf("the issuer speaks %s, which does not take a %s login%s; it takes %s", proto, kind, why, kinds(takes))
	}
	switch {
	case kind == LoginRefreshToken && proto == ProtocolJSON && iss.Refresh == nil:
		return fmt.Errorf("a refreshToken login needs the issuer's refresh endpoint (spec.refresh), which this %s issuer does not name", proto)
	case kind == LoginClientCredentials && proto == ProtocolJSON && cred.ClientCredentials.PrivateKeyKey != "" && !body:
		return fmt.Errorf("clientCredentials.privateKeyKey (private_key_jwt) needs an oauth2 issuer, or spec.json.body that puts the key in the request")
	}
	return nil
}

func kinds(ks []LoginKind) string {
	s := make([]string, len(ks))
	for i, k := range ks {
		s[i] = string(k)
	}
	return strings.Join(s, ", ")
}
