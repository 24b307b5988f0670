package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ClusterCredentialSpec is one login whose token is copied into a Secret in every namespace a
// selector picks: one issuer session for all of them.
type ClusterCredentialSpec struct {
	// credential is the login: the manager keeps one Credential, cluster-<name>, in its
	// cluster-credential namespace (the manager's own by default) with this spec, and copies its
	// token. Input Secrets and a namespaced Issuer are read in that namespace; a ClusterIssuer
	// serves from anywhere.
	// +required
	Credential CredentialTemplate `json:"credential"`

	// namespaceSelector picks the namespaces that receive a copy, by their labels; every
	// namespace carries kubernetes.io/metadata.name, so matchExpressions on it name namespaces
	// outright. It trusts namespace labels: whoever may label a Namespace may make it receive
	// the token. An empty selector is refused: to copy into every namespace, say so (for
	// example kubernetes.io/metadata.name Exists).
	// +required
	// +kubebuilder:validation:XValidation:rule="(has(self.matchLabels) && size(self.matchLabels) > 0) || (has(self.matchExpressions) && size(self.matchExpressions) > 0)",message="namespaceSelector must have matchLabels or matchExpressions: an empty selector would pick every namespace"
	NamespaceSelector metav1.LabelSelector `json:"namespaceSelector"`

	// target is the name of the Secret written in each selected namespace. Keys as a
	// Credential's token Secret: token, authorization, token-type, expires-at and those of
	// credential.secretTemplate.data. A Secret of that name that tokenkeeper did not copy is
	// never overwritten: the namespace is reported as Conflict.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +kubebuilder:validation:XValidation:rule="!self.endsWith('.tokenkeeper-state')",message="target may not end in .tokenkeeper-state: that suffix names tokenkeeper's state Secrets"
	Target string `json:"target"`
}

// CredentialTemplate is the part of a CredentialSpec a ClusterCredential's login takes: the
// token Secret's name is derived (the child Credential's own name) and restarts are per
// namespace, so secretName and rolloutRestart are left out.
// +kubebuilder:validation:XValidation:rule="[has(self.password), has(self.apiKey), has(self.clientCredentials), has(self.refreshToken), has(self.jwtBearer), has(self.privateKey), has(self.githubApp), has(self.serviceAccount)].filter(x, x).size() == 1",message="set exactly one login: password, apiKey, clientCredentials, refreshToken, jwtBearer, privateKey, githubApp or serviceAccount"
// +kubebuilder:validation:XValidation:rule="!has(self.renewal) || !has(self.renewal.renewBefore) || !has(self.sessionDuration) || duration(self.renewal.renewBefore) < duration(self.sessionDuration)",message="renewal.renewBefore must be shorter than sessionDuration",fieldPath=".renewal.renewBefore"
type CredentialTemplate struct {
	// issuerRef is the ClusterIssuer, or an Issuer of the cluster-credential namespace, to log
	// in at.
	// +required
	IssuerRef IssuerReference `json:"issuerRef"`

	// password logs in with a username and password (Secret in the cluster-credential namespace).
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

	// jwtBearer signs a JWT with a private key and exchanges it for a token (RFC 7523 §2.1).
	// +optional
	JWTBearer *JWTBearerLogin `json:"jwtBearer,omitempty"`

	// privateKey signs the token itself, at a selfSigned issuer.
	// +optional
	PrivateKey *PrivateKeyLogin `json:"privateKey,omitempty"`

	// githubApp gets installation tokens of a GitHub App, at a githubApp issuer.
	// +optional
	GitHubApp *GitHubAppLogin `json:"githubApp,omitempty"`

	// serviceAccount logs in with a token of a ServiceAccount of the cluster-credential namespace.
	// +optional
	ServiceAccount *ServiceAccountLogin `json:"serviceAccount,omitempty"`

	// sessionDuration is the session length asked of the issuer. Each target namespace's
	// TokenPolicy must allow it (sessionDuration.max), or the namespace gets no copy.
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('10s') && duration(self) <= duration('8760h')",message="sessionDuration must be between 10s and 8760h"
	SessionDuration *metav1.Duration `json:"sessionDuration,omitempty"`

	// scopes requested in addition to the issuer's (OAuth2).
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=256
	Scopes []string `json:"scopes,omitempty"`

	// renewal says when the token is renewed, as for a Credential.
	// +optional
	Renewal *Renewal `json:"renewal,omitempty"`

	// secretTemplate adds labels, annotations and extra keys to the token Secret and to every
	// copy.
	// +optional
	SecretTemplate *SecretTemplate `json:"secretTemplate,omitempty"`

	// revokeOnDelete revokes the session at the issuer when the ClusterCredential is deleted.
	// Defaults to the TokenPolicy's choice (of the cluster-credential namespace), else true.
	// +optional
	RevokeOnDelete *bool `json:"revokeOnDelete,omitempty"`
}

// NamespaceCopyState is what became of one selected namespace's copy.
// +kubebuilder:validation:Enum=Copied;Pending;Forbidden;Conflict;Failed
type NamespaceCopyState string

const (
	// NamespaceCopied: the namespace's Secret holds the current token.
	NamespaceCopied NamespaceCopyState = "Copied"
	// NamespacePending: allowed, waiting for the first token.
	NamespacePending NamespaceCopyState = "Pending"
	// NamespaceForbidden: a TokenPolicy selecting the namespace forbids this credential (issuer
	// not allowed, session too long, plain http); the namespace gets no copy, and one it had is
	// deleted.
	NamespaceForbidden NamespaceCopyState = "Forbidden"
	// NamespaceConflict: a Secret of the target's name exists that tokenkeeper did not copy; it
	// is left alone.
	NamespaceConflict NamespaceCopyState = "Conflict"
	// NamespaceFailed: the API server refused the write; it is tried again.
	NamespaceFailed NamespaceCopyState = "Failed"
)

// ClusterCredentialNamespace is the copy in one selected namespace.
type ClusterCredentialNamespace struct {
	// name of the namespace.
	// +required
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`
	// state of its copy.
	// +required
	State NamespaceCopyState `json:"state"`
	// message says why a namespace has no copy: the policy and the rule, or the Secret in the
	// way. Never a token.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Message string `json:"message,omitempty"`
}

// ClusterCredentialStatus is the observed state of a ClusterCredential. It never holds a secret.
type ClusterCredentialStatus struct {
	// observedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready says every namespace the policies allow holds the current token.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// credential is the Credential that logs in, namespace/name.
	// +optional
	// +kubebuilder:validation:MaxLength=330
	Credential string `json:"credential,omitempty"`

	// tokenFingerprint is the fingerprint of the token the copies hold (first 16 hex digits of
	// its SHA-256), as on the Credential's status.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	TokenFingerprint string `json:"tokenFingerprint,omitempty"`

	// expiresAt is when the copied token expires.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`

	// lastCopyTime is when the copies last received a new token.
	// +optional
	LastCopyTime *metav1.Time `json:"lastCopyTime,omitempty"`

	// selected counts the namespaces the selector picks (terminating ones aside).
	// +optional
	Selected int32 `json:"selected,omitempty"`
	// copied counts the namespaces whose Secret holds the current token.
	// +optional
	Copied int32 `json:"copied,omitempty"`
	// pending counts the allowed namespaces waiting for the first token.
	// +optional
	Pending int32 `json:"pending,omitempty"`
	// forbidden counts the namespaces a TokenPolicy keeps from receiving the token.
	// +optional
	Forbidden int32 `json:"forbidden,omitempty"`
	// conflicts counts the namespaces holding a Secret of the target's name that is not a copy.
	// +optional
	Conflicts int32 `json:"conflicts,omitempty"`
	// failed counts the namespaces whose copy could not be written.
	// +optional
	Failed int32 `json:"failed,omitempty"`

	// namespaces lists the selected namespaces and their copies: those without a copy first,
	// then the rest, by name; at most 100 (the counts cover them all).
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=100
	Namespaces []ClusterCredentialNamespace `json:"namespaces,omitempty"`
}

// Condition reasons of a ClusterCredential's Ready condition.
const (
	// ReasonCopied: Ready is True; every namespace the policies allow holds the current token.
	ReasonCopied ConditionReason = "Copied"
	// ReasonCredentialNotReady: the Credential that logs in is not Ready (its reason and message
	// follow); copies keep the last token.
	ReasonCredentialNotReady ConditionReason = "CredentialNotReady"
	// ReasonCredentialConflict: a Credential named cluster-<name> exists in the
	// cluster-credential namespace and is not this ClusterCredential's.
	ReasonCredentialConflict ConditionReason = "CredentialConflict"
	// ReasonCopiesIncomplete: some allowed namespaces have no current copy (Conflict or Failed).
	ReasonCopiesIncomplete ConditionReason = "CopiesIncomplete"
	// ReasonTooManyNamespaces: the selector picks more namespaces than the manager copies into
	// (--cluster-credential-max-namespaces); the first ones by name get a copy.
	ReasonTooManyNamespaces ConditionReason = "TooManyNamespaces"
	// ReasonCopiesRotated (Event): the copies received a new token.
	ReasonCopiesRotated EventReason = "CopiesRotated"
)

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=ccred;ccreds,categories=tokenkeeper
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Namespaces",type=integer,JSONPath=`.status.selected`
// +kubebuilder:printcolumn:name="Copied",type=integer,JSONPath=`.status.copied`
// +kubebuilder:printcolumn:name="Forbidden",type=integer,JSONPath=`.status.forbidden`,priority=1
// +kubebuilder:printcolumn:name="Expires",type=string,JSONPath=`.status.expiresAt`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 63",message="metadata.name may be at most 63 characters: it is a label value on every copy"

// ClusterCredential is one login whose token tokenkeeper copies into a Secret in every namespace
// its selector picks. Cluster-scoped: only who may write cluster-scoped objects (the platform
// team) can make tokenkeeper write into namespaces.
type ClusterCredential struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec ClusterCredentialSpec `json:"spec"`
	// +optional
	Status ClusterCredentialStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// ClusterCredentialList is a list of ClusterCredentials.
type ClusterCredentialList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterCredential `json:"items"`
}

func init() {
	register(&ClusterCredential{}, &ClusterCredentialList{})
}
