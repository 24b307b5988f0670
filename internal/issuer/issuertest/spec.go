package issuertest

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
)

// Spec is the IssuerSpec a user writes for this server, as in config/samples, trusting its TLS
// certificate. Seed 002's Api-Key comes from the Secret named HeaderSecretName.
func (s *Server) Spec() v1alpha1.IssuerSpec {
	u := s.URL()
	ep := func(path string) *v1alpha1.Endpoint { return &v1alpha1.Endpoint{URL: v1alpha1.EndpointURL(u + path)} }
	spec := v1alpha1.IssuerSpec{CABundle: s.CABundle()}
	switch s.Flavor {
	case Seed000:
		spec.URL = v1alpha1.EndpointURL(u + "/3/auth/login/")
		spec.JSON = &v1alpha1.JSONLogin{Response: &v1alpha1.ResponseMapping{Token: "data.token"}}
		spec.TokenType = "Token"
		spec.DefaultLifetime = &metav1.Duration{Duration: 10 * time.Hour}
		spec.SessionDurationField = "session_duration"
		spec.Revoke = ep("/3/auth/logout/")
	case Seed001:
		spec.URL = v1alpha1.EndpointURL(u + "/token")
		spec.JSON = &v1alpha1.JSONLogin{}
		spec.Refresh = ep("/token/refresh")
	case Seed002:
		spec.URL = v1alpha1.EndpointURL(u + "/auth/login")
		spec.JSON = &v1alpha1.JSONLogin{}
		spec.Headers = []v1alpha1.Header{{Name: "Api-Key", ValueFrom: &v1alpha1.HeaderValueSource{
			SecretKeyRef: v1alpha1.SecretKeySelector{Name: HeaderSecretName, Key: HeaderSecretKey}}}}
		spec.Refresh, spec.Revoke = ep("/auth/refresh"), ep("/auth/logout")
		spec.TokenInfo = &v1alpha1.Endpoint{URL: v1alpha1.EndpointURL(u + "/auth/token-info"), Method: "GET"}
	case Seed003:
		spec.URL = v1alpha1.EndpointURL(u + "/rest/v1/login")
		spec.JSON = &v1alpha1.JSONLogin{Body: `{"username":{{ .username | toJson }},"password":{{ .password | toJson }},"account_id":{{ .account_id }}}`}
		spec.Refresh = &v1alpha1.Endpoint{URL: v1alpha1.EndpointURL(u + "/rest/v1/refresh"), Body: `{"refreshToken":{{ .refreshToken | toJson }}}`}
	case Seed004:
		spec.URL = v1alpha1.EndpointURL(u + "/v1/sessions")
		spec.JSON = &v1alpha1.JSONLogin{Body: `{"type":"api-key","key":{{ .key | toJson }},"secret":{{ .secret | toJson }}}`}
	case OAuth2:
		spec.OAuth2 = &v1alpha1.OAuth2{IssuerURL: v1alpha1.EndpointURL(u), Scopes: []string{"orders.read"}}
	case GitHubApp:
		return s.githubSpec()
	}
	return spec
}

// Names of the Secret holding seed 002's application Api-Key.
const (
	HeaderSecretName = "crm-app-key"
	HeaderSecretKey  = "api-key"
)

// HeaderValues are the resolved extra headers (what the controller reads from Secrets).
func (s *Server) HeaderValues() map[string]string {
	if s.Flavor == Seed002 {
		return map[string]string{"Api-Key": APIKey}
	}
	return nil
}

// HeaderSecretData is the content of the header Secret, or nil when the flavor needs none.
func (s *Server) HeaderSecretData() map[string]string {
	if s.Flavor == Seed002 {
		return map[string]string{HeaderSecretKey: APIKey}
	}
	return nil
}

// SetLogin sets the login of a Credential at this server, reading the input Secret named
// secret: an API key for seed 004, client credentials for OAuth2, a password otherwise.
func (s *Server) SetLogin(spec *v1alpha1.CredentialSpec, secret string) {
	ref := v1alpha1.LocalSecretReference{Name: secret}
	switch s.Flavor {
	case Seed004:
		spec.APIKey = &v1alpha1.APIKeyLogin{SecretRef: ref}
	case OAuth2:
		spec.ClientCredentials = &v1alpha1.ClientCredentialsLogin{SecretRef: ref}
	case GitHubApp:
		spec.GitHubApp = &v1alpha1.GitHubAppLogin{SecretRef: ref, AppID: GitHubAppID, InstallationID: GitHubInstallationID}
	default:
		spec.Password = &v1alpha1.PasswordLogin{SecretRef: ref}
	}
}

// InputSecretData is the content of the Credential's input Secret.
func (s *Server) InputSecretData() map[string]string {
	switch s.Flavor {
	case Seed004:
		return map[string]string{"key": APIKey, "secret": APISecret}
	case OAuth2:
		return map[string]string{"client_id": ClientID, "client_secret": ClientSecret}
	case GitHubApp:
		return map[string]string{"private_key": s.AppPrivateKey()}
	case Seed003:
		return map[string]string{"username": Username, "password": Password, "account_id": AccountID}
	}
	return map[string]string{"username": Username, "password": Password}
}

// Secrets lists every secret value the servers accept, for leak checks.
var Secrets = []string{Password, APIKey, APISecret, ClientSecret}

// IssuedTokens lists every access and refresh token this server has issued, for leak checks.
func (s *Server) IssuedTokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.issued...)
}

// ProtectedPath is a path of the protected API, for calls made with an issued token.
func (s *Server) ProtectedPath() string {
	switch s.Flavor {
	case Seed000:
		return "/3/user/"
	case Seed004:
		return "/v1/properties"
	}
	return "/api/me"
}
