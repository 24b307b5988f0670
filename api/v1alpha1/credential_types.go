package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// CredentialSpec declares one identity at one issuer and the Secret its token is kept in.
// +kubebuilder:validation:XValidation:rule="[has(self.password), has(self.apiKey), has(self.clientCredentials), has(self.refreshToken), has(self.jwtBearer), has(self.privateKey), has(self.githubApp), has(self.serviceAccount)].filter(x, x).size() == 1",message="set exactly one login: password, apiKey, clientCredentials, refreshToken, jwtBearer, privateKey, githubApp or serviceAccount"
// +kubebuilder:validation:XValidation:rule="!has(self.renewal) || !has(self.renewal.renewBefore) || !has(self.sessionDuration) || duration(self.renewal.renewBefore) < duration(self.sessionDuration)",message="renewal.renewBefore must be shorter than sessionDuration",fieldPath=".renewal.renewBefore"
type CredentialSpec struct {
	// issuerRef is the Issuer (same namespace) or ClusterIssuer to log in at.
	// +required
	IssuerRef IssuerReference `json:"issuerRef"`

	// password logs in with a username and password (JSON login or the OAuth2 password grant).
	// +optional
	Password *PasswordLogin `json:"password,omitempty"`

	// apiKey logs in with an API key and secret.
	// +optional
	APIKey *APIKeyLogin `json:"apiKey,omitempty"`

	// clientCredentials logs in as an OAuth2 client (client_credentials grant).
	// +optional
	ClientCredentials *ClientCredentialsLogin `json:"clientCredentials,omitempty"`

	// refreshToken starts from a refresh token obtained elsewhere and keeps refreshing it.
	// +optional
	RefreshToken *RefreshTokenLogin `json:"refreshToken,omitempty"`

	// jwtBearer signs a JWT with a private key and exchanges it for a token (the JWT bearer
	// grant, RFC 7523 §2.1): a Google service-account key file as it is, or any key with the
	// claims the issuer wants. The issuer must be OAuth2.
	// +optional
	JWTBearer *JWTBearerLogin `json:"jwtBearer,omitempty"`

	// privateKey signs the token itself, at a selfSigned issuer.
	// +optional
	PrivateKey *PrivateKeyLogin `json:"privateKey,omitempty"`

	// githubApp gets installation tokens of a GitHub App, at a githubApp issuer.
	// +optional
	GitHubApp *GitHubAppLogin `json:"githubApp,omitempty"`

	// serviceAccount logs in with a token of a ServiceAccount of this namespace, which the
	// manager requests from the API server for each login: nothing secret is stored.
	// +optional
	ServiceAccount *ServiceAccountLogin `json:"serviceAccount,omitempty"`

	// sessionDuration is the session length asked of the issuer where it supports one, and the
	// lifetime assumed when it says nothing. Capped by TokenPolicy.
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('10s') && duration(self) <= duration('8760h')",message="sessionDuration must be between 10s and 8760h"
	SessionDuration *metav1.Duration `json:"sessionDuration,omitempty"`

	// scopes requested in addition to the issuer's (OAuth2).
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=256
	Scopes []string `json:"scopes,omitempty"`

	// renewal says when the token is renewed. Defaults come from TokenPolicy, else a third of
	// the lifetime before expiry, at least 2 minutes ahead.
	// +optional
	Renewal *Renewal `json:"renewal,omitempty"`

	// secretName is the Secret the token is written to, in the Credential's namespace. Keys:
	// token, authorization, token-type, expires-at. It is owned by the Credential.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +kubebuilder:validation:XValidation:rule="!self.endsWith('.tokenkeeper-state')",message="secretName may not end in .tokenkeeper-state: that suffix names tokenkeeper's state Secrets"
	SecretName string `json:"secretName"`

	// secretTemplate adds labels, annotations and extra keys to the target Secret.
	// +optional
	SecretTemplate *SecretTemplate `json:"secretTemplate,omitempty"`

	// rolloutRestart says which workloads are restarted when the token rotates, for applications
	// that read the token only at start: by kind and name, by label selector, or auto (the
	// workloads whose pod templates read the target Secret through env or envFrom; mounted
	// volumes are updated in place by the kubelet). Restarts are coalesced per workload within
	// the manager's window, bounded by its cluster-wide budget, and stamp the pod template with
	// the token's fingerprint (tokenkeeper.io/restarted-for), so a workload is restarted once
	// per token, never again for the same token.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	RolloutRestart []WorkloadReference `json:"rolloutRestart,omitempty"`

	// delivery serves the token to consumers besides the target Secret: Envoy proxies over the
	// Secret Discovery Service (sds).
	// +optional
	Delivery *Delivery `json:"delivery,omitempty"`

	// revokeOnDelete revokes the session at the issuer when the Credential is deleted, where the
	// issuer has a revoke endpoint. Defaults to the TokenPolicy's choice, else true.
	// +optional
	RevokeOnDelete *bool `json:"revokeOnDelete,omitempty"`
}

// Delivery says how the token reaches consumers that do not read the target Secret.
type Delivery struct {
	// sds serves the token over Envoy's Secret Discovery Service, as the generic_secret
	// tokenkeeper:<namespace>/<name> (the authorization value, "Bearer …") or
	// tokenkeeper:<namespace>/<name>#token (the bare token), for Envoy's credential injector.
	// New tokens are pushed to open streams as they rotate.
	// +optional
	SDS *SDSDelivery `json:"sds,omitempty"`
}

// SDSDelivery says who may fetch the token over SDS.
type SDSDelivery struct {
	// serviceAccounts are the names of the ServiceAccounts, of the Credential's namespace (never
	// another's), whose tokens (audience: the manager's SDS audience) may fetch this Credential's
	// token. Any other caller is refused as if the Credential did not exist.
	// +required
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	ServiceAccounts []string `json:"serviceAccounts"`
}

// PasswordLogin reads a username and password from a Secret.
type PasswordLogin struct {
	// secretRef is the Secret, in the Credential's namespace, holding the inputs. Every key is
	// available to the issuer's body template.
	// +required
	SecretRef LocalSecretReference `json:"secretRef"`
	// usernameKey is the key of the username. Defaults to username.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	UsernameKey string `json:"usernameKey,omitempty"`
	// passwordKey is the key of the password. Defaults to password.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	PasswordKey string `json:"passwordKey,omitempty"`
}

// APIKeyLogin reads an API key and secret from a Secret.
type APIKeyLogin struct {
	// secretRef is the Secret, in the Credential's namespace, holding the inputs.
	// +required
	SecretRef LocalSecretReference `json:"secretRef"`
	// keyKey is the key of the API key. Defaults to key.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	KeyKey string `json:"keyKey,omitempty"`
	// secretKey is the key of the API secret. Defaults to secret.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	SecretKey string `json:"secretKey,omitempty"`
}

// ClientCredentialsLogin reads an OAuth2 client ID and secret (or private key) from a Secret.
// +kubebuilder:validation:XValidation:rule="has(self.privateKeyKey) || (!has(self.certificateKey) && !has(self.assertionAudience))",message="certificateKey and assertionAudience need privateKeyKey"
type ClientCredentialsLogin struct {
	// secretRef is the Secret, in the Credential's namespace, holding the inputs.
	// +required
	SecretRef LocalSecretReference `json:"secretRef"`
	// clientIDKey is the key of the client ID. Defaults to client_id.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	ClientIDKey string `json:"clientIDKey,omitempty"`
	// clientSecretKey is the key of the client secret. Defaults to client_secret.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	ClientSecretKey string `json:"clientSecretKey,omitempty"`
	// privateKeyKey is the key of a PEM private key (RSA of 2048 bits or more, EC P-256 or P-384,
	// Ed25519; PKCS#1, SEC1 or PKCS#8). When set, the client authenticates with a JWT it signs
	// with that key (private_key_jwt, RFC 7523), whose kid is the key's RFC 7638 thumbprint, and
	// no client secret is read or sent.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	PrivateKeyKey string `json:"privateKeyKey,omitempty"`
	// certificateKey is the key of the PEM certificate of privateKeyKey's public key. When set,
	// each assertion carries the certificate's SHA-256 thumbprint in its x5t#S256 header, which
	// Entra ID needs to find a certificate credential. Needs privateKeyKey.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	CertificateKey string `json:"certificateKey,omitempty"`
	// assertionAudience is the aud claim of the client assertions; defaults to the token
	// endpoint's URL. Some issuers want their issuer URL instead. Needs privateKeyKey.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	AssertionAudience string `json:"assertionAudience,omitempty"`
}

// JWTBearerLogin is the JWT bearer grant: an assertion signed with a key from a Secret, a new one
// for each request (unique jti, short expiry), whose algorithm follows from the key's type.
// +kubebuilder:validation:XValidation:rule="has(self.serviceAccountKeyKey) != has(self.privateKeyKey)",message="set one of serviceAccountKeyKey or privateKeyKey"
// +kubebuilder:validation:XValidation:rule="has(self.serviceAccountKeyKey) || has(self.issuer)",message="issuer is required with privateKeyKey"
type JWTBearerLogin struct {
	// secretRef is the Secret, in the Credential's namespace, holding the key.
	// +required
	SecretRef LocalSecretReference `json:"secretRef"`
	// serviceAccountKeyKey is the key of a Google service-account key file (JSON with
	// client_email, private_key_id, private_key and token_uri), used as it is: iss is
	// client_email, kid private_key_id, aud token_uri.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	ServiceAccountKeyKey string `json:"serviceAccountKeyKey,omitempty"`
	// privateKeyKey is the key of a PEM private key (RSA of 2048 bits or more, EC P-256 or P-384,
	// Ed25519); kid is its RFC 7638 thumbprint.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	PrivateKeyKey string `json:"privateKeyKey,omitempty"`
	// issuer is the iss claim (from the key file: client_email).
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Issuer string `json:"issuer,omitempty"`
	// subject is the sub claim: for a Google key file, the user to act as (domain-wide
	// delegation); else defaults to issuer.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Subject string `json:"subject,omitempty"`
	// audience is the aud claim; defaults to the key file's token_uri, else the token endpoint.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	Audience string `json:"audience,omitempty"`
	// scopes go into the assertion's scope claim (Google reads them there), space-separated.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=256
	Scopes []string `json:"scopes,omitempty"`
	// assertionLifetime is how long each assertion is valid: 1 minute to 1 hour, 5 minutes by
	// default, never longer than a TokenPolicy's maximum session duration.
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m') && duration(self) <= duration('1h')",message="assertionLifetime must be between 1m and 1h"
	AssertionLifetime *metav1.Duration `json:"assertionLifetime,omitempty"`
}

// ServiceAccountLogin presents a Kubernetes ServiceAccount token (TokenRequest API, bound to the
// Credential's state Secret so that it dies with the Credential) to the issuer.
type ServiceAccountLogin struct {
	// name of the ServiceAccount, in the Credential's namespace (never another's).
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
	// audience of the ServiceAccount token: the issuer that accepts it. Defaults to the Issuer's
	// serviceAccountAudience. TokenPolicy allowedAudiences can restrict it.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Audience string `json:"audience,omitempty"`
	// expiration of the ServiceAccount token: 10 minutes (the API's minimum, the default) to 24
	// hours. A new one is requested for each login.
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('10m') && duration(self) <= duration('24h')",message="expiration must be between 10m and 24h"
	Expiration *metav1.Duration `json:"expiration,omitempty"`
	// presentAs is how an OAuth2 issuer receives the token: TokenExchange (RFC 8693
	// subject_token, the default), ClientAssertion (client_credentials with the token as
	// client_assertion: Entra ID workload identity federation) or JWTBearer (RFC 7523 assertion).
	// A JSON issuer reads it as .serviceAccountToken in its body template (Vault's JWT auth).
	// +optional
	// +kubebuilder:validation:Enum=TokenExchange;ClientAssertion;JWTBearer
	PresentAs ServiceAccountPresentation `json:"presentAs,omitempty"`
	// clientID is sent as client_id where the issuer wants one (Entra ID: the application's ID).
	// +optional
	// +kubebuilder:validation:MaxLength=256
	ClientID string `json:"clientID,omitempty"`
	// requestedTokenType is the RFC 8693 requested_token_type (TokenExchange).
	// +optional
	// +kubebuilder:validation:MaxLength=256
	RequestedTokenType string `json:"requestedTokenType,omitempty"`
	// targetAudience is the RFC 8693 audience parameter: where the issued token will be used
	// (TokenExchange).
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	TargetAudience string `json:"targetAudience,omitempty"`
	// resource is the RFC 8693 / RFC 8707 resource parameter (TokenExchange).
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	Resource string `json:"resource,omitempty"`
}

// ServiceAccountPresentation is how a ServiceAccount token is presented to an OAuth2 issuer.
type ServiceAccountPresentation string

const (
	PresentAsTokenExchange   ServiceAccountPresentation = "TokenExchange"
	PresentAsClientAssertion ServiceAccountPresentation = "ClientAssertion"
	PresentAsJWTBearer       ServiceAccountPresentation = "JWTBearer"
)

// GitHubAppLogin is one installation of a GitHub App: the app signs a JWT with its private key
// and trades it for an installation token, optionally narrowed to some repositories and
// permissions.
type GitHubAppLogin struct {
	// secretRef is the Secret, in the Credential's namespace, holding the app's private key.
	// +required
	SecretRef LocalSecretReference `json:"secretRef"`
	// privateKeyKey is the key of the app's PEM private key (RSA, as GitHub issues them).
	// Defaults to private_key.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	PrivateKeyKey string `json:"privateKeyKey,omitempty"`
	// appID is the App ID (or its client ID, Iv1.…) the app JWT is issued by.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9.]+$`
	AppID string `json:"appID"`
	// installationID is the installation the token is for.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=20
	// +kubebuilder:validation:Pattern=`^[0-9]+$`
	InstallationID string `json:"installationID"`
	// repositories narrows the token to these repositories (names, not owner/name).
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=500
	// +kubebuilder:validation:items:MaxLength=100
	Repositories []string `json:"repositories,omitempty"`
	// permissions narrows the token's permissions, for example {contents: read, issues: write}.
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	Permissions map[string]GitHubPermission `json:"permissions,omitempty"`
}

// GitHubPermission is a GitHub App permission level.
// +kubebuilder:validation:Enum=read;write;admin
type GitHubPermission string

// PrivateKeyLogin reads the key a selfSigned issuer signs this Credential's tokens with.
type PrivateKeyLogin struct {
	// secretRef is the Secret, in the Credential's namespace, holding the key (and the values
	// the issuer's claim templates read).
	// +required
	SecretRef LocalSecretReference `json:"secretRef"`
	// key is the key of the PEM private key (RSA of 2048 bits or more, EC P-256 or P-384,
	// Ed25519; PKCS#1, SEC1 or PKCS#8). Defaults to private_key.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	Key string `json:"key,omitempty"`
}

// RefreshTokenLogin reads an initial refresh token from a Secret.
type RefreshTokenLogin struct {
	// secretRef is the Secret, in the Credential's namespace, holding the refresh token (and
	// client_id / client_secret for OAuth2 where needed).
	// +required
	SecretRef LocalSecretReference `json:"secretRef"`
	// key is the key of the refresh token. Defaults to refresh_token.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Key string `json:"key,omitempty"`
}

// Renewal says when a token is renewed, as a fixed lead or a share of its lifetime.
// +kubebuilder:validation:XValidation:rule="!(has(self.renewBefore) && has(self.beforeExpiryPercent))",message="set at most one of renewBefore or beforeExpiryPercent"
type Renewal struct {
	// renewBefore renews this long before expiry.
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="renewBefore must be positive"
	RenewBefore *metav1.Duration `json:"renewBefore,omitempty"`

	// beforeExpiryPercent renews when this share of the lifetime is left.
	// +optional
	// +kubebuilder:validation:Minimum=5
	// +kubebuilder:validation:Maximum=90
	BeforeExpiryPercent *int32 `json:"beforeExpiryPercent,omitempty"`
}

// SecretTemplate shapes the target Secret.
type SecretTemplate struct {
	// labels added to the Secret.
	// +optional
	// +kubebuilder:validation:MaxProperties=32
	Labels map[string]string `json:"labels,omitempty"`
	// annotations added to the Secret.
	// +optional
	// +kubebuilder:validation:MaxProperties=32
	Annotations map[string]string `json:"annotations,omitempty"`
	// data adds keys rendered by Go text/template from .token, .tokenType, .authorization and
	// .expiresAt, for applications that want another file format.
	// +optional
	// +kubebuilder:validation:MaxProperties=16
	// +kubebuilder:validation:XValidation:rule="self.all(k, size(k) <= 253 && k.matches('^[-._a-zA-Z0-9]+$'))",message="secretTemplate.data keys must be valid Secret keys: letters, digits, '-', '_' and '.', at most 253 characters"
	// +kubebuilder:validation:XValidation:rule="self.all(k, !(k in ['token', 'authorization', 'token-type', 'expires-at']))",message="secretTemplate.data may not replace the token, authorization, token-type or expires-at keys"
	Data map[string]BodyTemplate `json:"data,omitempty"`
}

// WorkloadKind is a kind of workload that can be restarted.
// +kubebuilder:validation:Enum=Deployment;StatefulSet;DaemonSet
type WorkloadKind string

// WorkloadReference selects workloads in the Credential's namespace to restart: one by kind
// and name, those whose labels match selector, or (auto) those that read the target Secret
// through env or envFrom.
// +kubebuilder:validation:XValidation:rule="[has(self.name), has(self.selector), has(self.auto) && self.auto].filter(x, x).size() == 1",message="set exactly one of name, selector or auto: true"
// +kubebuilder:validation:XValidation:rule="!has(self.name) || has(self.kind)",message="kind is required with name"
type WorkloadReference struct {
	// kind of the workload. Required with name; with selector or auto it narrows the choice to
	// this kind (all three kinds when unset).
	// +optional
	Kind WorkloadKind `json:"kind,omitempty"`
	// name of the workload.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name,omitempty"`
	// selector restarts the workloads whose labels it matches.
	// +optional
	Selector *metav1.LabelSelector `json:"selector,omitempty"`
	// auto restarts exactly the workloads whose pod templates read the target Secret through
	// env or envFrom (status.consumers), which see a new token only when restarted.
	// +optional
	Auto bool `json:"auto,omitempty"`
}

// SecretUse is how a pod template reads a Secret.
// +kubebuilder:validation:Enum=volume;env;envFrom;projected
type SecretUse string

const (
	// SecretUseVolume: a secret volume; the kubelet updates the files in place.
	SecretUseVolume SecretUse = "volume"
	// SecretUseProjected: a projected volume with a secret source; updated in place too.
	SecretUseProjected SecretUse = "projected"
	// SecretUseEnv: an environment variable from a secretKeyRef; read at container start only.
	SecretUseEnv SecretUse = "env"
	// SecretUseEnvFrom: envFrom a secretRef; read at container start only.
	SecretUseEnvFrom SecretUse = "envFrom"
)

// SecretConsumer is a workload whose pod template reads the target Secret.
type SecretConsumer struct {
	// kind of the workload.
	// +required
	Kind WorkloadKind `json:"kind"`
	// name of the workload.
	// +required
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// via lists how its pod template reads the Secret.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=4
	Via []SecretUse `json:"via,omitempty"`
}

// WorkloadName is one workload of the Credential's namespace.
type WorkloadName struct {
	// kind of the workload.
	// +required
	Kind WorkloadKind `json:"kind"`
	// name of the workload.
	// +required
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// RolloutRestartStatus is the progress of the restarts spec.rolloutRestart asks for at a rotation.
type RolloutRestartStatus struct {
	// fingerprint is the token the workloads are restarted for; each restarted workload's pod
	// template carries it in its tokenkeeper.io/restarted-for annotation.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	Fingerprint string `json:"fingerprint,omitempty"`
	// restarted counts the selected workloads whose pod template carries fingerprint.
	// +optional
	Restarted int32 `json:"restarted,omitempty"`
	// queued are the selected workloads still to be restarted: waiting for the coalescing
	// window, or for the manager's cluster-wide budget of restarts in progress.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	Queued []WorkloadName `json:"queued,omitempty"`
	// queuedCount counts them all; more than queued lists when the list was cut.
	// +optional
	QueuedCount int32 `json:"queuedCount,omitempty"`
	// message says what is waiting for what, and which named workloads are missing.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`
}

const (
	// ReasonRolloutRestarted: a workload was restarted for a new token.
	ReasonRolloutRestarted EventReason = "RolloutRestarted"
	// AnnotationRestartedFor, on a pod template, names the tokens (credential=fingerprint, comma
	// separated) it was last restarted for.
	AnnotationRestartedFor = "tokenkeeper.io/restarted-for"
)

// CredentialStatus is the observed state of a Credential. It never holds a secret.
type CredentialStatus struct {
	// observedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready (the Secret holds a valid token) and Issuing (a login is under way).
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// expiresAt is when the current token expires.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`

	// renewalTime is when the token will be renewed.
	// +optional
	RenewalTime *metav1.Time `json:"renewalTime,omitempty"`

	// lastRotationTime is when the Secret last received a new token.
	// +optional
	LastRotationTime *metav1.Time `json:"lastRotationTime,omitempty"`

	// sessionStartTime is when the current session began with a full login.
	// +optional
	SessionStartTime *metav1.Time `json:"sessionStartTime,omitempty"`

	// failedAttempts counts failures since the last success.
	// +optional
	FailedAttempts int32 `json:"failedAttempts,omitempty"`

	// lastFailureReason is the reason of the last failure, one of the condition reasons.
	// +optional
	LastFailureReason string `json:"lastFailureReason,omitempty"`

	// lastFailureTime is when the last failure happened.
	// +optional
	LastFailureTime *metav1.Time `json:"lastFailureTime,omitempty"`

	// nextRetryTime is when a failed renewal is tried again, unless the inputs change first.
	// +optional
	NextRetryTime *metav1.Time `json:"nextRetryTime,omitempty"`

	// lastProbeTime is when the issuer's probe last checked the current token.
	// +optional
	LastProbeTime *metav1.Time `json:"lastProbeTime,omitempty"`

	// lastProbeResult is what the last probe said: Accepted, Rejected (HTTP 401 or 403) or
	// Inconclusive with the reason (an outage says nothing about the token).
	// +optional
	// +kubebuilder:validation:MaxLength=256
	LastProbeResult string `json:"lastProbeResult,omitempty"`

	// lastRenewRequest is the value of the tokenkeeper.io/renew-requested-at annotation the
	// controller last acted on: a new value renews the token once, a repeated one does nothing.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	LastRenewRequest string `json:"lastRenewRequest,omitempty"`

	// tokenFingerprint is the first 16 hex digits of the SHA-256 of the token, to tell tokens
	// apart without revealing them.
	// +optional
	TokenFingerprint string `json:"tokenFingerprint,omitempty"`

	// consumers are the workloads (Deployments, StatefulSets, DaemonSets) whose pod templates
	// read the target Secret, and how; at most 32, sorted by kind and name.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	Consumers []SecretConsumer `json:"consumers,omitempty"`

	// consumerCount counts the consumers; more than consumers lists when the list was cut.
	// +optional
	ConsumerCount int32 `json:"consumerCount,omitempty"`

	// rolloutRestart is the progress of the restarts of spec.rolloutRestart for the current token.
	// +optional
	RolloutRestart *RolloutRestartStatus `json:"rolloutRestart,omitempty"`

	// effectivePolicy is what the TokenPolicies in force resolved to for this Credential.
	// +optional
	EffectivePolicy *EffectivePolicy `json:"effectivePolicy,omitempty"`
}

// EffectivePolicy is the result of combining the TokenPolicies that select a namespace.
type EffectivePolicy struct {
	// policies that applied, by name; empty when built-in defaults apply.
	// +optional
	Policies []string `json:"policies,omitempty"`
	// sessionDuration asked of the issuer.
	// +optional
	SessionDuration *metav1.Duration `json:"sessionDuration,omitempty"`
	// maxSessionDuration caps a token's lifetime.
	// +optional
	MaxSessionDuration *metav1.Duration `json:"maxSessionDuration,omitempty"`
	// beforeExpiryPercent is the share of the lifetime left when renewing.
	// +optional
	BeforeExpiryPercent int32 `json:"beforeExpiryPercent,omitempty"`
	// renewBefore is the fixed renewal lead, when set.
	// +optional
	RenewBefore *metav1.Duration `json:"renewBefore,omitempty"`
	// minimumLead is the least time before expiry a renewal happens.
	// +optional
	MinimumLead *metav1.Duration `json:"minimumLead,omitempty"`
	// maxSessionAge is how long refreshing may go on before a fresh login.
	// +optional
	MaxSessionAge *metav1.Duration `json:"maxSessionAge,omitempty"`
	// renewalLead is how long before the current token's expiry it is renewed, after every
	// adjustment to its actual lifetime (minimum lead, short tokens, jitter).
	// +optional
	RenewalLead *metav1.Duration `json:"renewalLead,omitempty"`
	// renewalRule says how renewalLead follows from the policy and the token's lifetime, for
	// example "33% of the 1m0s lifetime (19.8s), raised to half the lifetime (30s): the minimum
	// lead 2m0s would leave less, ±10% jitter".
	// +optional
	// +kubebuilder:validation:MaxLength=512
	RenewalRule string `json:"renewalRule,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=cred;creds,categories=tokenkeeper
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Issuer",type=string,JSONPath=`.spec.issuerRef.name`
// +kubebuilder:printcolumn:name="Expires",type=string,JSONPath=`.status.expiresAt`
// +kubebuilder:printcolumn:name="Renews",type=string,JSONPath=`.status.renewalTime`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 235",message="metadata.name may be at most 235 characters, so that the state Secret <name>.tokenkeeper-state fits the 253-character limit of Secret names"

// Credential is one identity at one issuer; tokenkeeper keeps its token fresh in a Secret.
type Credential struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec CredentialSpec `json:"spec"`
	// +optional
	Status CredentialStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// CredentialList is a list of Credentials.
type CredentialList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Credential `json:"items"`
}

func init() {
	register(&Credential{}, &CredentialList{})
}
