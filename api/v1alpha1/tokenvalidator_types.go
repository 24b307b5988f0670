package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SigningAlgorithm is a JWS algorithm a validator accepts. "none" is never accepted.
// +kubebuilder:validation:Enum=RS256;RS384;RS512;PS256;PS384;PS512;ES256;ES384;ES512;EdDSA;HS256;HS384;HS512
type SigningAlgorithm string

// HeaderName is an HTTP header name.
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=128
// +kubebuilder:validation:Pattern=`^[A-Za-z0-9-]+$`
type HeaderName string

// TokenValidatorSpec says which Bearer tokens one in-cluster service accepts.
// +kubebuilder:validation:XValidation:rule="!has(self.algorithms) || !self.algorithms.exists(a, a.startsWith('HS')) || self.algorithms.all(a, a.startsWith('HS'))",message="do not mix HMAC (HS*) and public-key algorithms in one validator",fieldPath=".algorithms"
type TokenValidatorSpec struct {
	// issuers whose tokens are trusted.
	// +required
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	Issuers []IssuerReference `json:"issuers"`

	// audiences of which a token's aud must contain one. Empty accepts any audience.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=512
	Audiences []string `json:"audiences,omitempty"`

	// requiredScopes must all be in the token's scope (or scp) claim; otherwise 403.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=256
	RequiredScopes []string `json:"requiredScopes,omitempty"`

	// requiredClaims are claims that must be strings with exactly these values. A list-valued
	// claim never matches, even one that contains the value.
	// +optional
	// +kubebuilder:validation:MaxProperties=32
	RequiredClaims map[string]string `json:"requiredClaims,omitempty"`

	// algorithms accepted. Defaults to RS256, ES256 and EdDSA.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=13
	Algorithms []SigningAlgorithm `json:"algorithms,omitempty"`

	// requiredType is the JWT typ header tokens must carry, such as at+jwt (RFC 9068), so that an
	// ID token or another kind of JWT from the same issuer is not accepted as an access token.
	// Compared case-insensitively, with or without the application/ prefix.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	RequiredType string `json:"requiredType,omitempty"`

	// forwardClaims maps claims to the response headers that carry them to the service. The
	// headers that carry identity or HTTP framing (Authorization, Cookie, Set-Cookie, Host,
	// Content-*, Transfer-Encoding, Connection, X-Auth-Subject) cannot be set from a claim.
	// +optional
	// +kubebuilder:validation:MaxProperties=32
	// +kubebuilder:validation:XValidation:rule="self.all(c, !(self[c].lowerAscii() in ['authorization', 'cookie', 'set-cookie', 'host', 'content-type', 'content-length', 'transfer-encoding', 'connection', 'x-auth-subject']))",message="forwardClaims may not set Authorization, Cookie, Set-Cookie, Host, Content-Type, Content-Length, Transfer-Encoding, Connection or X-Auth-Subject"
	ForwardClaims map[string]HeaderName `json:"forwardClaims,omitempty"`

	// acceptTokenScheme also accepts "Authorization: Token …".
	// +optional
	AcceptTokenScheme bool `json:"acceptTokenScheme,omitempty"`

	// leeway tolerated on exp, nbf and iat. Defaults to the TokenPolicy's, else 30s.
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s') && duration(self) <= duration('5m')",message="leeway must be between 0s and 5m"
	Leeway *metav1.Duration `json:"leeway,omitempty"`

	// maxTokenAge rejects tokens issued longer ago than this.
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="maxTokenAge must be positive"
	MaxTokenAge *metav1.Duration `json:"maxTokenAge,omitempty"`

	// disableCache turns off the verified-token cache.
	// +optional
	DisableCache bool `json:"disableCache,omitempty"`

	// introspectionSecretRef names a Secret in the validator's namespace with client_id and
	// client_secret, for RFC 7662 introspection endpoints that require client authentication.
	// +optional
	IntrospectionSecretRef *LocalSecretReference `json:"introspectionSecretRef,omitempty"`

	// tokenReview maps claims to a TokenReview's user.
	// +optional
	TokenReview *TokenReviewMapping `json:"tokenReview,omitempty"`
}

// TokenReviewMapping maps claims to a Kubernetes user.
type TokenReviewMapping struct {
	// usernameClaim is the claim used as the username. Defaults to sub.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	UsernameClaim string `json:"usernameClaim,omitempty"`
	// usernamePrefix is prepended to the username. It may not start with "system:", the
	// namespace of Kubernetes' own users.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('system:')",message="usernamePrefix may not start with system:, the namespace of Kubernetes' own users"
	UsernamePrefix string `json:"usernamePrefix,omitempty"`
	// groupsClaim is the claim holding groups. Defaults to groups.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	GroupsClaim string `json:"groupsClaim,omitempty"`
	// groupsPrefix is prepended to every group from the token. Groups that would still start
	// with "system:" are dropped: a token never makes its bearer a member of system:masters.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('system:')",message="groupsPrefix may not start with system:, the namespace of Kubernetes' own groups"
	GroupsPrefix string `json:"groupsPrefix,omitempty"`
}

// TokenValidatorStatus is the observed state of a TokenValidator.
type TokenValidatorStatus struct {
	// observedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// conditions: Ready says keys or an introspection endpoint are available.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// keys is the number of verification keys loaded.
	// +optional
	Keys int32 `json:"keys,omitempty"`
	// lastKeyRefresh is when the key sets were last fetched.
	// +optional
	LastKeyRefresh *metav1.Time `json:"lastKeyRefresh,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=tkv,categories=tokenkeeper
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Keys",type=integer,JSONPath=`.status.keys`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// TokenValidator says what Bearer tokens one in-cluster service accepts. The manager serves it at
// /validate/{namespace}/{name} and /tokenreview/{namespace}/{name}.
type TokenValidator struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec TokenValidatorSpec `json:"spec"`
	// +optional
	Status TokenValidatorStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// TokenValidatorList is a list of TokenValidators.
type TokenValidatorList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TokenValidator `json:"items"`
}

func init() {
	register(&TokenValidator{}, &TokenValidatorList{})
}
