package v1alpha1

// What tokenkeeper writes on objects is API too: scripts, policies (Kyverno, Gatekeeper) and the
// kubectl plugin rely on these names, so they are defined here once.

// FinalizerRevokeSession is on a Credential while deleting it must first revoke its session at
// the issuer (the policy's revokeOnDelete and an issuer that can revoke). Only the manager
// removes it.
const FinalizerRevokeSession = "tokenkeeper.io/revoke-session"

// Annotations.
const (
	// AnnotationRenewRequestedAt, on a Credential, asks for a renewal now: each new value renews
	// once (kubectl tokenkeeper renew sets it; status.lastRenewRequest records the value acted on).
	AnnotationRenewRequestedAt = "tokenkeeper.io/renew-requested-at"
	// AnnotationExpiresAt, on a token Secret, is the token's expiry (RFC 3339).
	AnnotationExpiresAt = "tokenkeeper.io/expires-at"
	// AnnotationInputsVersion, on a state Secret, identifies the inputs the session was obtained with.
	AnnotationInputsVersion = "tokenkeeper.io/inputs-version"
	// AnnotationFailedInputsVersion, on a state Secret, identifies the inputs the last failure was for.
	AnnotationFailedInputsVersion = "tokenkeeper.io/failed-inputs-version"
)

// Labels on the Secrets tokenkeeper manages. The manager caches only Secrets labelled
// LabelManagedBy=ManagedByValue.
const (
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedByValue = "tokenkeeper"
	// LabelCredential is the owning Credential's name (hashed past 63 characters).
	LabelCredential = "tokenkeeper.io/credential"
	// LabelRole is "token" on a Credential's token Secret, "state" on its state Secret.
	LabelRole = "tokenkeeper.io/role"
)

// Keys of a token Secret (besides those of spec.secretTemplate.data and an issuer's extra
// headers, such as api-key).
const (
	// SecretKeyToken is the bare access token.
	SecretKeyToken = "token"
	// SecretKeyAuthorization is the whole Authorization header value: "Bearer eyJ…", "Token …".
	SecretKeyAuthorization = "authorization"
	// SecretKeyTokenType is the header scheme: Bearer, Token, …
	SecretKeyTokenType = "token-type"
	// SecretKeyExpiresAt is the token's expiry (RFC 3339).
	SecretKeyExpiresAt = "expires-at"
)
