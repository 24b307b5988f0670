package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// IssuerPattern is an allowed issuer: scheme, host (a leading "*." matches any subdomain), optional
// port and optional path prefix, such as "https://*.example.com" or "https://idp.corp:8443/oauth".
// +kubebuilder:validation:MaxLength=2048
// +kubebuilder:validation:Pattern=`^https?://(\*\.)?[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?(:[0-9]{1,5})?(/[^\s*]*)?$`
type IssuerPattern string

// TokenPolicySpec is a platform team's rules for the namespaces it selects.
//
// Several policies may select one namespace. They combine so that no policy is weakened: limits
// take the most restrictive value (the smallest maximum, the smallest maximum age, HTTPS required
// if any requires it, allowed issuers must satisfy every policy that lists some); defaults
// (sessionDuration.default, renewal, revokeOnDelete, validation) come from the policy with the
// highest priority, ties broken by name in alphabetical order.
// +kubebuilder:validation:XValidation:rule="!has(self.sessionDuration) || !has(self.sessionDuration.default) || !has(self.sessionDuration.max) || duration(self.sessionDuration.default) <= duration(self.sessionDuration.max)",message="sessionDuration.default must not exceed sessionDuration.max",fieldPath=".sessionDuration.default"
type TokenPolicySpec struct {
	// namespaceSelector selects the namespaces the policy covers; empty selects all.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`

	// priority orders policies for defaults: the highest wins. Limits always combine strictly.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000000
	Priority int32 `json:"priority,omitempty"`

	// sessionDuration sets the default and maximum session a Credential may ask for.
	// +optional
	SessionDuration *SessionDurationPolicy `json:"sessionDuration,omitempty"`

	// renewal sets the default renewal timing.
	// +optional
	Renewal *RenewalPolicy `json:"renewal,omitempty"`

	// maxSessionAge is how long a session may be extended by refresh tokens before a fresh login.
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m')",message="maxSessionAge must be at least 1m"
	MaxSessionAge *metav1.Duration `json:"maxSessionAge,omitempty"`

	// allowedIssuers lists the issuer URLs Credentials may log in at; empty allows all.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	AllowedIssuers []IssuerPattern `json:"allowedIssuers,omitempty"`

	// allowedAudiences are the audiences ServiceAccount tokens may be requested for by
	// Credentials in the selected namespaces (exact, or a prefix ending in *); unset allows any.
	// A ServiceAccount token is as good as a password at every issuer that trusts the cluster for
	// that audience.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=1024
	AllowedAudiences []string `json:"allowedAudiences,omitempty"`

	// requireHTTPS forbids issuers that allow plain http.
	// +optional
	RequireHTTPS bool `json:"requireHTTPS,omitempty"`

	// revokeOnDelete is the default for Credentials that do not say.
	// +optional
	RevokeOnDelete *bool `json:"revokeOnDelete,omitempty"`

	// validation sets defaults for TokenValidators.
	// +optional
	Validation *ValidationPolicy `json:"validation,omitempty"`
}

// SessionDurationPolicy bounds session durations.
type SessionDurationPolicy struct {
	// default is asked for when a Credential does not say.
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('10s')",message="default must be at least 10s"
	Default *metav1.Duration `json:"default,omitempty"`
	// max is the longest session a Credential may ask for; longer-lived tokens are renewed as if
	// they lived this long.
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('10s')",message="max must be at least 10s"
	Max *metav1.Duration `json:"max,omitempty"`
}

// RenewalPolicy sets renewal defaults.
type RenewalPolicy struct {
	// beforeExpiryPercent renews when this share of the lifetime is left. Defaults to 33.
	// +optional
	// +kubebuilder:validation:Minimum=5
	// +kubebuilder:validation:Maximum=90
	BeforeExpiryPercent *int32 `json:"beforeExpiryPercent,omitempty"`
	// minimumLead is the least time before expiry a token is renewed, to cover the kubelet's
	// delay in updating mounted Secrets. Defaults to 2m.
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s') && duration(self) <= duration('24h')",message="minimumLead must be between 0s and 24h"
	MinimumLead *metav1.Duration `json:"minimumLead,omitempty"`
}

// ValidationPolicy sets TokenValidator defaults.
type ValidationPolicy struct {
	// leeway tolerated on exp, nbf and iat.
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s') && duration(self) <= duration('5m')",message="leeway must be between 0s and 5m"
	Leeway *metav1.Duration `json:"leeway,omitempty"`
	// maxTokenAge rejects tokens issued (iat) longer ago than this.
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="maxTokenAge must be positive"
	MaxTokenAge *metav1.Duration `json:"maxTokenAge,omitempty"`
}

// TokenPolicyStatus is the observed state of a TokenPolicy.
type TokenPolicyStatus struct {
	// observedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// conditions: Ready says the policy is valid and in force.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=tkpol,categories=tokenkeeper
// +kubebuilder:printcolumn:name="Priority",type=integer,JSONPath=`.spec.priority`
// +kubebuilder:printcolumn:name="Default",type=string,JSONPath=`.spec.sessionDuration.default`
// +kubebuilder:printcolumn:name="Max",type=string,JSONPath=`.spec.sessionDuration.max`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// TokenPolicy is a platform team's cluster-wide rules for Credentials, Issuers and validators.
type TokenPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec TokenPolicySpec `json:"spec"`
	// +optional
	Status TokenPolicyStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// TokenPolicyList is a list of TokenPolicies.
type TokenPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TokenPolicy `json:"items"`
}

func init() {
	register(&TokenPolicy{}, &TokenPolicyList{})
}
