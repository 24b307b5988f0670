package credential

import (
	"context"
	"errors"
	"maps"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer"
	"github.com/tokenkeeper/tokenkeeper/internal/names"
	"github.com/tokenkeeper/tokenkeeper/internal/tmpl"
)

// Labels, annotations and keys of the Secrets tokenkeeper manages: the API's (v1alpha1).
const (
	LabelManagedBy      = v1alpha1.LabelManagedBy
	ManagedByValue      = v1alpha1.ManagedByValue
	LabelCredential     = v1alpha1.LabelCredential
	LabelRole           = v1alpha1.LabelRole
	AnnotationExpiresAt = v1alpha1.AnnotationExpiresAt
	annotationInputs    = v1alpha1.AnnotationInputsVersion
	annotationFailed    = v1alpha1.AnnotationFailedInputsVersion

	KeyToken         = v1alpha1.SecretKeyToken
	KeyAuthorization = v1alpha1.SecretKeyAuthorization
	KeyTokenType     = v1alpha1.SecretKeyTokenType
	KeyExpiresAt     = v1alpha1.SecretKeyExpiresAt
)

// syncTarget makes the target Secret hold the current token: it creates it, restores it when
// edited, and writes nothing when it is already right. It refuses to take over a Secret that
// another owner controls.
func (r *Reconciler) syncTarget(ctx context.Context, cred *v1alpha1.Credential, e *env, tok *issuer.Token) (changed bool, err error) {
	data, err := targetData(cred, e, tok)
	if err != nil {
		return false, err
	}
	key := types.NamespacedName{Namespace: cred.Namespace, Name: cred.Spec.SecretName}
	sec := &corev1.Secret{}
	err = r.Get(ctx, key, sec)
	if apierrors.IsNotFound(err) {
		// Not in the cache, which holds only labelled Secrets: usually a first write, so create
		// it; one that exists without our label (another owner's, or ours with its label
		// removed) answers AlreadyExists and is read then. A new Credential costs no read.
		changed, werr := r.writeTarget(ctx, cred, tok, data, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}})
		if !apierrors.IsAlreadyExists(werr) {
			return changed, werr
		}
		sec = &corev1.Secret{}
		err = r.APIReader.Get(ctx, key, sec)
	}
	if err != nil {
		return false, err
	}
	if err := r.claim(cred, sec); err != nil {
		return false, err
	}
	changed, err = r.writeTarget(ctx, cred, tok, data, sec)
	if !apierrors.IsConflict(err) {
		return changed, err
	}
	// The cache is behind the API server (after an API server restart it can be for tens of
	// seconds) while pods read an old token: read the Secret from the API server and write again
	// now rather than after the workqueue's backoff.
	sec = &corev1.Secret{}
	if err := r.APIReader.Get(ctx, key, sec); err != nil {
		return false, err
	}
	if err := r.claim(cred, sec); err != nil {
		return false, err
	}
	return r.writeTarget(ctx, cred, tok, data, sec)
}

// writeTarget writes data and our labels, annotations and owner into sec (created when it has no
// resourceVersion), and nothing when sec already holds them.
func (r *Reconciler) writeTarget(ctx context.Context, cred *v1alpha1.Credential, tok *issuer.Token, data map[string][]byte, sec *corev1.Secret) (changed bool, err error) {
	before := sec.DeepCopy()
	setManaged(&sec.ObjectMeta, cred, "token")
	sec.Annotations[AnnotationExpiresAt] = tok.ExpiresAt.UTC().Format(time.RFC3339)
	if t := cred.Spec.SecretTemplate; t != nil {
		maps.Copy(sec.Labels, t.Labels)
		maps.Copy(sec.Annotations, t.Annotations)
		setManaged(&sec.ObjectMeta, cred, "token") // ours win
	}
	sec.Type = corev1.SecretTypeOpaque
	sec.Data = data
	if err := controllerutil.SetControllerReference(cred, sec, r.Scheme); err != nil {
		return false, err
	}
	if sec.ResourceVersion != "" && equality.Semantic.DeepEqual(before.Data, sec.Data) && equality.Semantic.DeepEqual(before.ObjectMeta, sec.ObjectMeta) {
		return false, nil
	}
	r.echoes.expect(sec)
	if sec.ResourceVersion == "" {
		err = r.Create(ctx, sec)
	} else {
		err = r.Update(ctx, sec)
	}
	if apierrors.IsInvalid(err) || apierrors.IsRequestEntityTooLargeError(err) || apierrors.IsForbidden(err) && !isRBAC(err) {
		// Retrying as fast as the workqueue would cannot fix it: say why, retry slowly.
		return false, block(v1alpha1.ReasonSecretRejected, "the API server refused to write Secret %s: %s", sec.Name, bounded(err.Error()))
	}
	return err == nil, err
}

// isRBAC tells a refusal by authorization (the manager's role lacks a verb: an installation
// problem the workqueue's retries will see fixed) from one by an admission webhook or quota.
func isRBAC(err error) bool {
	return strings.Contains(err.Error(), "cannot create resource") || strings.Contains(err.Error(), "cannot update resource")
}

func targetData(cred *v1alpha1.Credential, e *env, tok *issuer.Token) (map[string][]byte, error) {
	data := map[string][]byte{
		KeyToken:         []byte(tok.AccessToken),
		KeyAuthorization: []byte(tok.Authorization()),
		KeyTokenType:     []byte(tok.Scheme),
		KeyExpiresAt:     []byte(tok.ExpiresAt.UTC().Format(time.RFC3339)),
	}
	// The issuer's extra headers travel with the token (seed 002's Api-Key): key "api-key".
	for name, value := range e.Headers {
		if k := strings.ToLower(name); data[k] == nil { // never over the token's own keys
			data[k] = []byte(value)
		}
	}
	if t := cred.Spec.SecretTemplate; t != nil {
		// Admitted before the webhook knew better, or with webhooks off: never sent.
		if err := names.ValidateSecretMetadata(t.Labels, t.Annotations, "spec.secretTemplate"); err != nil {
			return nil, block(v1alpha1.ReasonInvalidConfig, "%s", bounded(err.Error()))
		}
		vars := map[string]string{"token": tok.AccessToken, "tokenType": tok.Scheme, "authorization": tok.Authorization(),
			"expiresAt": tok.ExpiresAt.UTC().Format(time.RFC3339)}
		for k, text := range t.Data {
			parsed, err := tmpl.Parse(k, string(text))
			if err != nil {
				return nil, block(v1alpha1.ReasonInvalidConfig, "spec.secretTemplate.data[%s]: %v", k, err)
			}
			out, err := parsed.Execute(vars)
			if errors.Is(err, tmpl.ErrTooLarge) {
				return nil, block(v1alpha1.ReasonInvalidConfig, "spec.secretTemplate.data[%s]: %v", k, err)
			}
			if err != nil {
				// The error may quote the token: say only that it failed.
				return nil, block(v1alpha1.ReasonInvalidConfig, "spec.secretTemplate.data[%s]: rendering failed", k)
			}
			data[k] = []byte(out)
		}
	}
	size := 0
	for k, v := range data {
		size += len(k) + len(v)
	}
	if size > MaxTargetData {
		return nil, block(v1alpha1.ReasonInvalidConfig, "spec.secretTemplate.data: Secret %s would hold %d KiB, over the %d KiB bound of a token Secret (MaxTargetData)",
			cred.Spec.SecretName, size>>10, MaxTargetData>>10)
	}
	return data, nil
}

// MaxTargetData bounds what a token Secret holds, keys and values: half the API server's limit of
// a Secret, so that a Secret tokenkeeper renders can always be written (16 templates of 64 KiB
// would not be).
const MaxTargetData = 512 << 10

// bounded cuts a message that quotes a user's input (never a secret) to a size status can hold.
func bounded(msg string) string {
	if len(msg) > 1024 {
		return msg[:1021] + "..."
	}
	return msg
}

// claim checks that the existing target Secret is this Credential's. A Secret that carries this
// Credential's labels but lost its owner reference (removed by hand, or restored from a backup)
// is taken back; any other Secret is left alone and reported, saying what to do.
func (r *Reconciler) claim(cred *v1alpha1.Credential, sec *corev1.Secret) error {
	owner := metav1.GetControllerOf(sec)
	switch {
	case owner != nil && owner.UID == cred.UID:
		return nil
	case owner == nil && sec.Labels[LabelManagedBy] == ManagedByValue && sec.Labels[LabelCredential] == names.Label(cred.Name) &&
		sec.Labels[LabelRole] == "token":
		r.Recorder.Eventf(cred, nil, corev1.EventTypeNormal, string(v1alpha1.ReasonSecretAdopted), "Adopt",
			"Secret %s carries this Credential's labels but had no owner: taken back", sec.Name)
		return nil
	case owner != nil:
		return block(v1alpha1.ReasonSecretConflict, "Secret %s belongs to %s %s: set spec.secretName to another name", sec.Name, owner.Kind, owner.Name)
	}
	return block(v1alpha1.ReasonSecretConflict, "Secret %s already exists and tokenkeeper did not create it: delete it to let this Credential create it, or set spec.secretName to another name", sec.Name)
}

func setManaged(m *metav1.ObjectMeta, cred *v1alpha1.Credential, role string) {
	if m.Labels == nil {
		m.Labels = map[string]string{}
	}
	if m.Annotations == nil {
		m.Annotations = map[string]string{}
	}
	m.Labels[LabelManagedBy] = ManagedByValue
	m.Labels[LabelCredential] = names.Label(cred.Name)
	m.Labels[LabelRole] = role
}
