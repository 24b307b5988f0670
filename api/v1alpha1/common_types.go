package v1alpha1

// ConditionType is the type of a condition tokenkeeper sets (metav1.Condition.Type).
type ConditionType string

// ConditionReason is the reason of a condition tokenkeeper sets (metav1.Condition.Reason); the
// Events that report the same change carry it too.
type ConditionReason string

// EventReason is the reason of an Event that reports no condition.
type EventReason string

// Condition types shared by every kind.
const (
	// ConditionReady says whether the object does its job now: a Credential's Secret holds a valid
	// token, an Issuer's configuration is usable, a TokenValidator has keys to verify with.
	ConditionReady ConditionType = "Ready"
	// ConditionIssuing is True while a Credential's renewal is due or running, False while it
	// waits: for the next renewal (Idle) or, after a failure, to retry (the failure's reason).
	ConditionIssuing ConditionType = "Issuing"
	// ConditionLifetimeAssumed is True when the issuer's response named no expiry, so the token's
	// lifetime is assumed (the Issuer's defaultLifetime or the session duration asked for): the
	// message names the assumption and the fields to map.
	ConditionLifetimeAssumed ConditionType = "LifetimeAssumed"
)

// Condition reasons. They are part of the API: alerts and scripts match on them. Each is
// documented in docs/troubleshooting.md (a test checks).
const (
	// ReasonExpiryKnown: LifetimeAssumed is False; the message says where the expiry came from.
	ReasonExpiryKnown ConditionReason = "ExpiryKnown"
	// ReasonNoExpiryInResponse: LifetimeAssumed is True.
	ReasonNoExpiryInResponse ConditionReason = "NoExpiryInResponse"
	// ReasonSessionsEndEarly: LifetimeAssumed is True; the issuer's probe rejected a session
	// before the expiry the issuer stated, and tokens are taken to live as long as it did.
	ReasonSessionsEndEarly ConditionReason = "SessionsEndEarly"
	// ReasonIssued: Ready is True with a token from a login (also the Event of a login).
	ReasonIssued ConditionReason = "Issued"
	// ReasonRefreshed: Ready is True with a token from a refresh (also the Event of a refresh).
	ReasonRefreshed ConditionReason = "Refreshed"
	// ReasonRenewing: Issuing is True; a renewal is due and waits for an issuer call slot.
	ReasonRenewing ConditionReason = "Renewing"
	// ReasonIdle: Issuing is False; the message names the next renewal.
	ReasonIdle ConditionReason = "Idle"
	// ReasonInvalidCredentials: the issuer refused the inputs (401/403, invalid_grant): retried
	// rarely until the input Secret changes.
	ReasonInvalidCredentials ConditionReason = "InvalidCredentials"
	// ReasonIssuerUnavailable: the issuer could not be reached or answered 5xx; retried with
	// backoff.
	ReasonIssuerUnavailable ConditionReason = "IssuerUnavailable"
	// ReasonRateLimited: the issuer answered 429; retried no sooner than its Retry-After.
	ReasonRateLimited ConditionReason = "RateLimited"
	// ReasonMalformedResponse: the issuer's answer held no usable token (or not where the Issuer's
	// mapping says); the message quotes the fields found.
	ReasonMalformedResponse ConditionReason = "MalformedResponse"
	// ReasonIssuerNotFound: the Issuer or ClusterIssuer spec.issuerRef names does not exist.
	ReasonIssuerNotFound ConditionReason = "IssuerNotFound"
	// ReasonSecretNotFound: a Secret (or a key in it) that the spec names does not exist.
	ReasonSecretNotFound ConditionReason = "SecretNotFound"
	// ReasonServiceAccountNotFound: the ServiceAccount a serviceAccount login names does not exist.
	ReasonServiceAccountNotFound ConditionReason = "ServiceAccountNotFound"
	// ReasonInvalidConfig: the configuration cannot work (a login kind the issuer does not take, a
	// key that cannot sign, a template that fails); the message names the field.
	ReasonInvalidConfig ConditionReason = "InvalidConfiguration"
	// ReasonPolicyViolation: a TokenPolicy forbids what the spec asks (an issuer, a duration, an
	// audience); the message names the policy, the field and the limit.
	ReasonPolicyViolation ConditionReason = "PolicyViolation"
	// ReasonSecretConflict: the target Secret exists and belongs to someone else.
	ReasonSecretConflict ConditionReason = "SecretConflict"
	// ReasonValid: an Issuer's Ready is True; its configuration is usable.
	ReasonValid ConditionReason = "Valid"
	// ReasonKeysLoaded: a TokenValidator's Ready is True; the message counts its keys.
	ReasonKeysLoaded ConditionReason = "KeysLoaded"
	// ReasonKeysUnavailable: a TokenValidator's key set or discovery document could not be
	// fetched; retried every minute, the keys it had stay in use.
	ReasonKeysUnavailable ConditionReason = "KeysUnavailable"
	// ReasonRefreshTokenSpent: a refreshToken login whose input refresh token was already sent
	// (it is never sent twice); a new one in the input Secret starts a new session.
	ReasonRefreshTokenSpent ConditionReason = "RefreshTokenSpent"
	// ReasonSecretRejected: the API server refused to write the token Secret (too large, invalid
	// labels or annotations, or another admission webhook): the token is kept in the state Secret
	// and the write is tried again with backoff; the message quotes the API server.
	ReasonSecretRejected ConditionReason = "SecretRejected"
	// ReasonPolicyInForce: a TokenPolicy's Ready is True; the message says how many namespaces it
	// selects and which policies of the same priority overlap it.
	ReasonPolicyInForce ConditionReason = "InForce"
	// ReasonInvalidSelector: a TokenPolicy's namespaceSelector cannot be evaluated (Ready False).
	ReasonInvalidSelector ConditionReason = "InvalidSelector"
	// ReasonExpired: Ready is False because the token in the Secret has expired and no renewal
	// replaced it yet.
	ReasonExpired ConditionReason = "Expired"
	// ReasonTokenRejected: Ready is False; the issuer's probe answered 401 or 403 to the current
	// token before its expiry (also the Event of the probe).
	ReasonTokenRejected ConditionReason = "TokenRejected"
)

// Event reasons that are not condition reasons.
const (
	// ReasonInterrupted: a login or refresh was sent but its outcome never recorded (the manager
	// died or lost the API server); its refresh token is never sent again.
	ReasonInterrupted EventReason = "Interrupted"
	// ReasonStateRestored: the state Secret was deleted and recreated from the current session.
	ReasonStateRestored EventReason = "StateRestored"
	// ReasonSecretAdopted: a target Secret that had lost its owner reference was taken back.
	ReasonSecretAdopted EventReason = "SecretAdopted"
	// ReasonRevoked: a session was revoked at the issuer (replaced, or its Credential deleted).
	ReasonRevoked EventReason = "Revoked"
	// ReasonRevokeFailed: a session could not be revoked; it stays open until it expires.
	ReasonRevokeFailed EventReason = "RevokeFailed"
	// ReasonRolloutRestartFailed: a workload in spec.rolloutRestart could not be restarted.
	ReasonRolloutRestartFailed EventReason = "RolloutRestartFailed"
	// ReasonSecretRestored: the target Secret was recreated or its edits undone.
	ReasonSecretRestored EventReason = "SecretRestored"
)

// SecretKeySelector selects one key of a Secret.
type SecretKeySelector struct {
	// name of the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`

	// key in the Secret's data.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	Key string `json:"key"`

	// namespace of the Secret. Only a ClusterIssuer may set it; it defaults to the namespace the
	// manager runs in. An Issuer's and a Credential's references stay in their own namespace.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Namespace string `json:"namespace,omitempty"`
}

// LocalSecretReference names a Secret in the referring object's own namespace.
type LocalSecretReference struct {
	// name of the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
}

// IssuerKind is the kind of an issuer reference.
// +kubebuilder:validation:Enum=Issuer;ClusterIssuer
type IssuerKind string

const (
	IssuerKindNamespaced IssuerKind = "Issuer"
	IssuerKindCluster    IssuerKind = "ClusterIssuer"
)

// IssuerReference points at an Issuer in the same namespace or at a ClusterIssuer.
type IssuerReference struct {
	// kind of the issuer: Issuer (same namespace) or ClusterIssuer.
	// +optional
	// +kubebuilder:default=Issuer
	Kind IssuerKind `json:"kind,omitempty"`

	// name of the issuer.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
}
