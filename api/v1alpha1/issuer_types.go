package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// EndpointURL is an absolute http or https URL. Plain http is accepted only where the issuer sets
// allowInsecureHTTP.
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=2048
// +kubebuilder:validation:XValidation:rule="isURL(self) && url(self).getScheme() in ['http', 'https'] && size(url(self).getHostname()) > 0",message="must be an absolute http or https URL"
// +kubebuilder:validation:XValidation:rule="!self.matches('^[a-zA-Z][a-zA-Z0-9+.-]*://[^/?#]*@')",message="must not hold a user name or password: put credentials in a Secret"
type EndpointURL string

// JSONPath is a dotted path into a JSON document, such as "data.token".
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=256
// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`
type JSONPath string

// GitHubApp is the GitHub App installation token API (nothing to configure but the base url).
type GitHubApp struct{}

// SelfSignedJWT is what a self-signed token holds. Its algorithm follows from the key type (RS256,
// ES256, ES384, EdDSA).
type SelfSignedJWT struct {
	// claims maps claim names to templates over the Credential's input Secret keys and
	// .publicKeyFingerprint ("SHA256:" and the base64 SHA-256 of the public key's DER, as
	// Snowflake names keys). iat and exp are set by tokenkeeper.
	// +optional
	// +kubebuilder:validation:MaxProperties=32
	// +kubebuilder:validation:XValidation:rule="self.all(k, !(k in ['iat', 'exp', 'nbf']))",message="iat, exp and nbf are set by tokenkeeper"
	Claims map[string]BodyTemplate `json:"claims,omitempty"`
	// keyID is a template for the kid header; the key's RFC 7638 thumbprint when unset.
	// +optional
	KeyID BodyTemplate `json:"keyID,omitempty"`
	// lifetime of each token: 1 minute to 24 hours, 20 minutes by default (App Store Connect's
	// limit), never longer than a TokenPolicy's maximum session duration.
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m') && duration(self) <= duration('24h')",message="selfSigned.lifetime must be between 1m and 24h"
	Lifetime *metav1.Duration `json:"lifetime,omitempty"`
}

// BodyTemplate is a Go text/template that renders a JSON request body. Its data are the keys of
// the Credential's input Secret (for example .username, .password, .key, .secret), plus
// .refreshToken and .sessionDurationSeconds where they apply; `toJson` quotes a value.
// +kubebuilder:validation:MinLength=2
// +kubebuilder:validation:MaxLength=4096
type BodyTemplate string

// HTTPMethod is the method of a request to an issuer.
// +kubebuilder:validation:Enum=GET;POST;PUT;DELETE
type HTTPMethod string

// ClientAuthentication is how an OAuth2 client authenticates at the token endpoint.
// +kubebuilder:validation:Enum=Basic;Body
type ClientAuthentication string

const (
	ClientAuthBasic ClientAuthentication = "Basic"
	ClientAuthBody  ClientAuthentication = "Body"
)

// DurationUnit is the unit a session duration is sent in.
// +kubebuilder:validation:Enum=Seconds;Minutes
type DurationUnit string

const (
	DurationSeconds DurationUnit = "Seconds"
	DurationMinutes DurationUnit = "Minutes"
)

// IssuerSpec says how to talk to one token service. Issuer and ClusterIssuer share it.
// +kubebuilder:validation:XValidation:rule="[has(self.json), has(self.oauth2), has(self.selfSigned), has(self.githubApp)].filter(x, x).size() <= 1",message="set at most one protocol: json, oauth2, selfSigned or githubApp"
// +kubebuilder:validation:XValidation:rule="has(self.url) || (has(self.oauth2) && has(self.oauth2.issuerURL)) || has(self.jwks) || has(self.hmacSecretRef) || has(self.selfSigned)",message="set url (with json or oauth2), oauth2.issuerURL, selfSigned, or a validation key source (jwks, hmacSecretRef)"
// +kubebuilder:validation:XValidation:rule="!has(self.selfSigned) || !has(self.url)",message="a selfSigned issuer calls no URL",fieldPath=".url"
// +kubebuilder:validation:XValidation:rule="!has(self.url) || has(self.json) || has(self.oauth2) || has(self.githubApp)",message="url needs a protocol: set json, oauth2 or githubApp",fieldPath=".url"
// +kubebuilder:validation:XValidation:rule="!has(self.githubApp) || has(self.url)",message="githubApp needs url, the API's base URL (https://api.github.com, or https://HOST/api/v3 for GitHub Enterprise Server)",fieldPath=".githubApp"
// +kubebuilder:validation:XValidation:rule="!has(self.json) || has(self.url)",message="json login needs url, the login endpoint",fieldPath=".json"
// +kubebuilder:validation:XValidation:rule="self.allowInsecureHTTP || !has(self.url) || self.url.startsWith('https://')",message="url must use https; set allowInsecureHTTP to allow plain http",fieldPath=".url"
// +kubebuilder:validation:XValidation:rule="self.allowInsecureHTTP || !has(self.refresh) || self.refresh.url.startsWith('https://')",message="refresh.url must use https; set allowInsecureHTTP to allow plain http",fieldPath=".refresh.url"
// +kubebuilder:validation:XValidation:rule="self.allowInsecureHTTP || !has(self.revoke) || self.revoke.url.startsWith('https://')",message="revoke.url must use https; set allowInsecureHTTP to allow plain http",fieldPath=".revoke.url"
// +kubebuilder:validation:XValidation:rule="self.allowInsecureHTTP || !has(self.tokenInfo) || self.tokenInfo.url.startsWith('https://')",message="tokenInfo.url must use https; set allowInsecureHTTP to allow plain http",fieldPath=".tokenInfo.url"
// +kubebuilder:validation:XValidation:rule="self.allowInsecureHTTP || !has(self.oauth2) || !has(self.oauth2.issuerURL) || self.oauth2.issuerURL.startsWith('https://')",message="oauth2.issuerURL must use https; set allowInsecureHTTP to allow plain http",fieldPath=".oauth2.issuerURL"
// +kubebuilder:validation:XValidation:rule="self.allowInsecureHTTP || !has(self.jwks) || self.jwks.url.startsWith('https://')",message="jwks.url must use https; set allowInsecureHTTP to allow plain http",fieldPath=".jwks.url"
// +kubebuilder:validation:XValidation:rule="!has(self.sessionDurationField) || !has(self.oauth2)",message="sessionDurationField applies to json issuers only",fieldPath=".sessionDurationField"
// +kubebuilder:validation:XValidation:rule="!(has(self.caBundle) && has(self.caBundleFrom))",message="set at most one of caBundle or caBundleFrom",fieldPath=".caBundleFrom"
type IssuerSpec struct {
	// url is the login endpoint: for json, where credentials are posted; for oauth2, the token
	// endpoint (found by OIDC discovery when only oauth2.issuerURL is set).
	// +optional
	URL EndpointURL `json:"url,omitempty"`

	// json selects a generic JSON login: the Credential's inputs are posted as a JSON object (or
	// rendered by a body template) and the token is read from the response.
	// +optional
	JSON *JSONLogin `json:"json,omitempty"`

	// oauth2 selects OAuth2 (RFC 6749): client_credentials, password and refresh_token grants.
	// +optional
	OAuth2 *OAuth2 `json:"oauth2,omitempty"`

	// selfSigned mints tokens in the manager, no request made: JWTs signed with each
	// Credential's own key (a privateKey login), for APIs that accept a JWT their client signs
	// (App Store Connect, Snowflake key-pair authentication).
	// +optional
	SelfSigned *SelfSignedJWT `json:"selfSigned,omitempty"`

	// githubApp gets GitHub App installation tokens (githubApp logins) from the API at url: an
	// app JWT signed with the app's key buys a one-hour installation token, revoked when the
	// Credential goes.
	// +optional
	GitHubApp *GitHubApp `json:"githubApp,omitempty"`

	// serviceAccountAudience is the audience of the ServiceAccount tokens Credentials present
	// here (serviceAccount logins), unless they name one.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	ServiceAccountAudience string `json:"serviceAccountAudience,omitempty"`

	// tokenType is the scheme written before the token in the Authorization header, such as Bearer
	// or Token. Defaults to the token_type the issuer returns, else Bearer.
	// +optional
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^[A-Za-z][A-Za-z0-9_-]*$`
	TokenType string `json:"tokenType,omitempty"`

	// defaultLifetime is how long a token lives when neither the response nor the token itself
	// says so.
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="defaultLifetime must be positive"
	DefaultLifetime *metav1.Duration `json:"defaultLifetime,omitempty"`

	// sessionDurationField is the request body field (a dotted path) through which a json issuer
	// is asked for a session of the Credential's sessionDuration.
	// +optional
	SessionDurationField JSONPath `json:"sessionDurationField,omitempty"`

	// sessionDurationUnit is the unit of the value sent in sessionDurationField.
	// +optional
	// +kubebuilder:default=Seconds
	SessionDurationUnit DurationUnit `json:"sessionDurationUnit,omitempty"`

	// refresh is the endpoint that trades a refresh token for a new access token. For oauth2 the
	// token endpoint is used when it is unset.
	// +optional
	Refresh *Endpoint `json:"refresh,omitempty"`

	// revoke is the endpoint that ends a session (logout, RFC 7009 revocation), called when a
	// Credential is deleted and when a session is replaced.
	// +optional
	Revoke *Endpoint `json:"revoke,omitempty"`

	// tokenInfo is the endpoint that says whether a token is valid: RFC 7662 introspection for
	// oauth2, or a token-info endpoint that answers 200 or 401 for json.
	// +optional
	TokenInfo *Endpoint `json:"tokenInfo,omitempty"`

	// probe is a cheap request that needs the token, such as GET /3/user/ or
	// /rest/accounts/current. tokenkeeper sends it with each new token and every interval; a
	// 401 or 403 answer means the issuer rejected the token (a session ended early, say):
	// tokenkeeper logs in again at once, within the failure backoff, and says so in status and
	// an Event. Other answers say nothing about the token and are only recorded.
	// +optional
	Probe *TokenProbe `json:"probe,omitempty"`

	// headers are sent on every request to the issuer, such as an application's Api-Key.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	Headers []Header `json:"headers,omitempty"`

	// caBundle is a PEM bundle of certificate authorities trusted for the issuer's TLS
	// certificate, in place of the system roots.
	// +optional
	// +kubebuilder:validation:MaxLength=262144
	CABundle string `json:"caBundle,omitempty"`

	// caBundleFrom reads the CA bundle from a key of a ConfigMap or Secret instead (a
	// trust-manager Bundle's target, say), watched for changes. An Issuer reads its own
	// namespace; a ClusterIssuer the namespace given, else the manager's cluster resource
	// namespace.
	// +optional
	CABundleFrom *CABundleSource `json:"caBundleFrom,omitempty"`

	// timeout bounds each request to the issuer. Defaults to 10s.
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('5m')",message="timeout must be between 1s and 5m"
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// allowInsecureHTTP allows plain http URLs. Tokens and passwords then cross the network in
	// clear text: use it for local tests only. A TokenPolicy may forbid it.
	// +optional
	// +kubebuilder:default=false
	AllowInsecureHTTP bool `json:"allowInsecureHTTP"`

	// jwks is where the issuer publishes the keys its JWTs are signed with, used by
	// TokenValidators. With oauth2.issuerURL it is found by OIDC discovery. The key set is
	// fetched again every 10 minutes, or sooner when its response's Cache-Control max-age (or
	// no-store/no-cache) says so, but never more often than every 10 seconds: a key removed from
	// it stops verifying tokens, cached verifications included, within max(max-age, 10s).
	// +optional
	JWKS *JWKS `json:"jwks,omitempty"`

	// hmacSecretRef holds a shared secret for HS256/384/512 JWTs, used by TokenValidators only.
	// +optional
	HMACSecretRef *SecretKeySelector `json:"hmacSecretRef,omitempty"`
}

// TokenProbe is a request that checks the current token.
type TokenProbe struct {
	// url of the request; the token goes in the Authorization header, with the issuer's
	// headers.
	// +required
	URL EndpointURL `json:"url"`

	// method of the request. Defaults to GET.
	// +optional
	// +kubebuilder:validation:Enum=GET;HEAD;POST
	Method string `json:"method,omitempty"`

	// interval between probes of the same token, from 10s to 24h. Defaults to 5m.
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('10s') && duration(self) <= duration('24h')",message="probe.interval must be between 10s and 24h"
	Interval *metav1.Duration `json:"interval,omitempty"`
}

// CABundleSource names a key holding a PEM CA bundle: in a ConfigMap or in a Secret.
// +kubebuilder:validation:XValidation:rule="has(self.configMapKeyRef) != has(self.secretKeyRef)",message="set exactly one of configMapKeyRef or secretKeyRef"
type CABundleSource struct {
	// configMapKeyRef selects a key of a ConfigMap (trust-manager's usual target).
	// +optional
	ConfigMapKeyRef *ConfigMapKeySelector `json:"configMapKeyRef,omitempty"`
	// secretKeyRef selects a key of a Secret.
	// +optional
	SecretKeyRef *SecretKeySelector `json:"secretKeyRef,omitempty"`
}

// ConfigMapKeySelector selects one key of a ConfigMap.
type ConfigMapKeySelector struct {
	// name of the ConfigMap.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`

	// key in the ConfigMap's data or binaryData.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	Key string `json:"key"`

	// namespace of the ConfigMap; only a ClusterIssuer may set it.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Namespace string `json:"namespace,omitempty"`
}

// JSONLogin describes a generic JSON login.
type JSONLogin struct {
	// method of the login request. Defaults to POST.
	// +optional
	// +kubebuilder:validation:Enum=POST;PUT
	Method HTTPMethod `json:"method,omitempty"`

	// body renders the login request body. When unset, the body is a JSON object of the
	// login inputs: username and password, key and secret, or client_id and client_secret.
	// +optional
	Body BodyTemplate `json:"body,omitempty"`

	// response says where the fields are in the login and refresh responses. Unset fields are
	// found by their common names (token, access_token, accessToken, refresh_token, expires_in,
	// tokenLifetime, expires_at, tokenExpiration, expires, ttl, …) at the top level or up to two
	// levels inside data, result, session, auth, … ; expiry times may be RFC 3339, epoch seconds
	// or epoch milliseconds. Else the JWT exp, else defaultLifetime, and the Credential's
	// LifetimeAssumed condition says so.
	// +optional
	Response *ResponseMapping `json:"response,omitempty"`
}

// ResponseMapping locates token fields in an issuer's JSON response.
type ResponseMapping struct {
	// token is the path of the access token.
	// +optional
	Token JSONPath `json:"token,omitempty"`
	// refreshToken is the path of the refresh token.
	// +optional
	RefreshToken JSONPath `json:"refreshToken,omitempty"`
	// tokenType is the path of the token type (the Authorization scheme).
	// +optional
	TokenType JSONPath `json:"tokenType,omitempty"`
	// expiresIn is the path of the lifetime in seconds.
	// +optional
	ExpiresIn JSONPath `json:"expiresIn,omitempty"`
	// expiresAt is the path of the expiry time (RFC 3339, or epoch seconds or milliseconds).
	// +optional
	ExpiresAt JSONPath `json:"expiresAt,omitempty"`
	// refreshTokenExpiresAt is the path of the refresh token's expiry time.
	// +optional
	RefreshTokenExpiresAt JSONPath `json:"refreshTokenExpiresAt,omitempty"`
}

// OAuth2 configures an OAuth2 issuer.
type OAuth2 struct {
	// issuerURL is the OIDC issuer; the token, revocation, introspection and JWKS endpoints are
	// read from its /.well-known/openid-configuration when not set explicitly.
	// +optional
	IssuerURL EndpointURL `json:"issuerURL,omitempty"`

	// scopes requested for every token, joined with spaces.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=256
	Scopes []string `json:"scopes,omitempty"`

	// audience is sent as the audience parameter, for servers that take one.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Audience string `json:"audience,omitempty"`

	// resource is sent as the RFC 8707 resource parameter.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	Resource string `json:"resource,omitempty"`

	// clientAuthentication is how the client authenticates: Basic (HTTP Basic, RFC 6749 §2.3.1)
	// or Body (client_id and client_secret form fields). Defaults to Basic.
	// +optional
	// +kubebuilder:default=Basic
	ClientAuthentication ClientAuthentication `json:"clientAuthentication,omitempty"`
}

// Endpoint is one extra call an issuer offers.
type Endpoint struct {
	// url of the endpoint.
	// +required
	URL EndpointURL `json:"url"`

	// method of the request. Defaults to POST.
	// +optional
	Method HTTPMethod `json:"method,omitempty"`

	// body renders the request body. Refresh defaults to a JSON object holding the refresh token
	// under the name the issuer returned it by; revoke and tokenInfo default to no body (the token
	// goes in the Authorization header) for json issuers and to RFC 7009/7662 forms for oauth2.
	// +optional
	Body BodyTemplate `json:"body,omitempty"`
}

// Header is an extra HTTP header sent to the issuer.
// +kubebuilder:validation:XValidation:rule="has(self.value) != has(self.valueFrom)",message="set exactly one of value or valueFrom"
type Header struct {
	// name of the header.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9-]+$`
	// +kubebuilder:validation:XValidation:rule="!(self.lowerAscii() in ['authorization', 'content-type', 'content-length', 'host'])",message="Authorization, Content-Type, Content-Length and Host are set by tokenkeeper"
	// +kubebuilder:validation:XValidation:rule="!(self.lowerAscii() in ['token', 'token-type', 'expires-at'])",message="a header named token, token-type or expires-at would replace that key of the token Secret"
	Name string `json:"name"`

	// value is a literal, non-secret value.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Value string `json:"value,omitempty"`

	// valueFrom reads the value from a Secret.
	// +optional
	ValueFrom *HeaderValueSource `json:"valueFrom,omitempty"`
}

// HeaderValueSource is where a header value comes from.
type HeaderValueSource struct {
	// secretKeyRef selects the Secret key holding the value.
	// +required
	SecretKeyRef SecretKeySelector `json:"secretKeyRef"`
}

// JWKS is a JSON Web Key Set endpoint.
type JWKS struct {
	// url of the key set.
	// +required
	URL EndpointURL `json:"url"`

	// issuer is the iss claim tokens signed with these keys carry. Defaults to oauth2.issuerURL.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	Issuer string `json:"issuer,omitempty"`
}

// IssuerStatus is the observed state of an issuer.
type IssuerStatus struct {
	// observedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready says whether the configuration is usable and its Secrets exist.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// tokenURL is the token endpoint in use, from url or OIDC discovery.
	// +optional
	TokenURL string `json:"tokenURL,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=tki,categories=tokenkeeper
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="URL",type=string,JSONPath=`.spec.url`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="!has(self.spec.headers) || self.spec.headers.all(h, !has(h.valueFrom) || !has(h.valueFrom.secretKeyRef.namespace))",message="an Issuer reads Secrets in its own namespace only: remove headers[].valueFrom.secretKeyRef.namespace"
// +kubebuilder:validation:XValidation:rule="!has(self.spec.hmacSecretRef) || !has(self.spec.hmacSecretRef.namespace)",message="an Issuer reads Secrets in its own namespace only: remove hmacSecretRef.namespace"
// +kubebuilder:validation:XValidation:rule="!has(self.spec.caBundleFrom) || (!has(self.spec.caBundleFrom.secretKeyRef) || !has(self.spec.caBundleFrom.secretKeyRef.namespace)) && (!has(self.spec.caBundleFrom.configMapKeyRef) || !has(self.spec.caBundleFrom.configMapKeyRef.namespace))",message="an Issuer reads its own namespace only: remove caBundleFrom's namespace"

// Issuer is a token service that Credentials and TokenValidators in its namespace can use.
type Issuer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec IssuerSpec `json:"spec"`
	// +optional
	Status IssuerStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// IssuerList is a list of Issuers.
type IssuerList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Issuer `json:"items"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=tkci,categories=tokenkeeper
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="URL",type=string,JSONPath=`.spec.url`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// ClusterIssuer is a token service that Credentials and TokenValidators in every namespace can
// use. Its Secret references default to the manager's namespace.
type ClusterIssuer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec IssuerSpec `json:"spec"`
	// +optional
	Status IssuerStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// ClusterIssuerList is a list of ClusterIssuers.
type ClusterIssuerList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterIssuer `json:"items"`
}

// GenericIssuer is an Issuer or a ClusterIssuer: one code path serves both scopes.
// +kubebuilder:object:generate=false
type GenericIssuer interface {
	metav1.Object
	runtime.Object
	GetSpec() *IssuerSpec
	GetStatus() *IssuerStatus
}

var (
	_ GenericIssuer = &Issuer{}
	_ GenericIssuer = &ClusterIssuer{}
)

// GetSpec returns the issuer's spec.
func (i *Issuer) GetSpec() *IssuerSpec { return &i.Spec }

// GetStatus returns the issuer's status.
func (i *Issuer) GetStatus() *IssuerStatus { return &i.Status }

// GetSpec returns the issuer's spec.
func (i *ClusterIssuer) GetSpec() *IssuerSpec { return &i.Spec }

// GetStatus returns the issuer's status.
func (i *ClusterIssuer) GetStatus() *IssuerStatus { return &i.Status }

func init() {
	register(&Issuer{}, &IssuerList{}, &ClusterIssuer{}, &ClusterIssuerList{})
}
