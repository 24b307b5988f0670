package issuer

import (
	"strings"
	"testing"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
)

// TestAccepts: each protocol declares the logins it takes, so a mismatch is refused when the
// Credential is applied (and blocked by the controller) instead of failing at its first login.
func TestAccepts(t *testing.T) {
	ref := v1alpha1.LocalSecretReference{Name: "in"}
	jsonIssuer := &v1alpha1.IssuerSpec{URL: "https://api.example.com/login", JSON: &v1alpha1.JSONLogin{}}
	jsonBody := &v1alpha1.IssuerSpec{URL: "https://api.example.com/login", JSON: &v1alpha1.JSONLogin{Body: `{"jwt":{{ .serviceAccountToken | toJson }}}`}}
	jsonRefresh := &v1alpha1.IssuerSpec{URL: "https://api.example.com/login", JSON: &v1alpha1.JSONLogin{}, Refresh: &v1alpha1.Endpoint{URL: "https://api.example.com/refresh"}}
	oauth2 := &v1alpha1.IssuerSpec{URL: "https://idp.example.com/token", OAuth2: &v1alpha1.OAuth2{}}
	selfSigned := &v1alpha1.IssuerSpec{SelfSigned: &v1alpha1.SelfSignedJWT{}}
	github := &v1alpha1.IssuerSpec{URL: "https://api.github.com", GitHubApp: &v1alpha1.GitHubApp{}}
	validateOnly := &v1alpha1.IssuerSpec{JWKS: &v1alpha1.JWKS{URL: "https://idp.example.com/keys"}}
	password := &v1alpha1.CredentialSpec{Password: &v1alpha1.PasswordLogin{SecretRef: ref}}
	jwtBearer := &v1alpha1.CredentialSpec{JWTBearer: &v1alpha1.JWTBearerLogin{SecretRef: ref}}
	serviceAccount := &v1alpha1.CredentialSpec{ServiceAccount: &v1alpha1.ServiceAccountLogin{Name: "bot"}}
	refreshToken := &v1alpha1.CredentialSpec{RefreshToken: &v1alpha1.RefreshTokenLogin{SecretRef: ref}}
	privateKeyJWT := &v1alpha1.CredentialSpec{ClientCredentials: &v1alpha1.ClientCredentialsLogin{SecretRef: ref, PrivateKeyKey: "key.pem"}}
	privateKey := &v1alpha1.CredentialSpec{PrivateKey: &v1alpha1.PrivateKeyLogin{SecretRef: ref}}
	githubApp := &v1alpha1.CredentialSpec{GitHubApp: &v1alpha1.GitHubAppLogin{SecretRef: ref}}
	for name, tc := range map[string]struct {
		reason string
		iss    *v1alpha1.IssuerSpec
		cred   *v1alpha1.CredentialSpec
		want   string // "" accepted
	}{
		"PasswordAtJSON":            {reason: "Seed 000's shape.", iss: jsonIssuer, cred: password},
		"JWTBearerAtJSON":           {reason: "The reported case: admitted, failed at its first login.", iss: jsonIssuer, cred: jwtBearer, want: "the issuer speaks json, which does not take a jwtBearer login; it takes password, apiKey, clientCredentials, refreshToken"},
		"JWTBearerAtOAuth2":         {reason: "The JWT bearer grant is OAuth2's.", iss: oauth2, cred: jwtBearer},
		"ServiceAccountAtJSON":      {reason: "The ServiceAccount token has nowhere to go without a body template.", iss: jsonIssuer, cred: serviceAccount, want: "needs spec.json.body"},
		"ServiceAccountAtJSONBody":  {reason: "Vault's shape: the token in the body.", iss: jsonBody, cred: serviceAccount},
		"RefreshTokenAtJSON":        {reason: "Nothing to send it to.", iss: jsonIssuer, cred: refreshToken, want: "needs the issuer's refresh endpoint"},
		"RefreshTokenAtJSONRefresh": {reason: "Sent to the refresh endpoint.", iss: jsonRefresh, cred: refreshToken},
		"PrivateKeyJWTAtJSON":       {reason: "private_key_jwt is OAuth2 client authentication.", iss: jsonIssuer, cred: privateKeyJWT, want: "privateKeyKey (private_key_jwt) needs an oauth2 issuer"},
		"PrivateKeyJWTAtOAuth2":     {reason: "Entra's certificate login.", iss: oauth2, cred: privateKeyJWT},
		"PasswordAtSelfSigned":      {reason: "A self-signed issuer signs with a key; it has no password to check.", iss: selfSigned, cred: password, want: "the issuer speaks selfSigned, which does not take a password login; it takes privateKey"},
		"PrivateKeyAtSelfSigned":    {reason: "App Store Connect's shape.", iss: selfSigned, cred: privateKey},
		"GitHubAppAtGitHub":         {reason: "Installation tokens.", iss: github, cred: githubApp},
		"PasswordAtGitHub":          {reason: "GitHub Apps log in with the app's key.", iss: github, cred: password, want: "the issuer speaks githubApp, which does not take a password login; it takes githubApp"},
		"GitHubAppAtOAuth2":         {reason: "Not an OAuth2 grant.", iss: oauth2, cred: githubApp, want: "the issuer speaks oauth2, which does not take a githubApp login"},
		"PasswordAtValidateOnly":    {reason: "An issuer with only a key set has no login.", iss: validateOnly, cred: password, want: "it only serves TokenValidators"},
	} {
		t.Run(name, func(t *testing.T) {
			err := Accepts(tc.iss, tc.cred)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("%s: refused: %v", tc.reason, err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("%s: got %v, want %q", tc.reason, err, tc.want)
			}
		})
	}
}
