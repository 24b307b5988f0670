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
	// AnnotationSyncedToken, on a running pod, names the tokens (secret=fingerprint, comma
	// separated, sorted) the manager last asked the kubelet to write into the pod's Secret
	// volumes: patching it makes the kubelet sync the pod, and so rewrite its Secret volumes, at
	// once rather than at its next periodic sync. A pod carrying a Secret's current fingerprint
	// is never patched for it again.
	AnnotationSyncedToken = "tokenkeeper.io/synced-token"
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

// ClusterCredentials. The child Credential (cluster-<name>, in the cluster-credential namespace)
// and every copy carry LabelClusterCredential; copies also carry LabelManagedBy (so the manager's
// cache holds them) and LabelRole=RoleCopy, never LabelCredential.
const (
	// LabelClusterCredential is the name of the ClusterCredential a copy or child Credential
	// belongs to (at most 63 characters, as ClusterCredential names are).
	LabelClusterCredential = "tokenkeeper.io/cluster-credential"
	// RoleCopy is LabelRole's value on a ClusterCredential's copy of its token Secret.
	RoleCopy = "copy"
	// FinalizerClusterCredentialCopies is on a ClusterCredential while copies may exist: deleting
	// it first deletes every copy (they have no owner reference across namespaces).
	FinalizerClusterCredentialCopies = "tokenkeeper.io/cluster-credential-copies"
	// ClusterCredentialPrefix begins the child Credential's name: cluster-<name>.
	ClusterCredentialPrefix = "cluster-"
)
