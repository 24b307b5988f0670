package credential

import (
	"context"
	"encoding/json"
	"maps"
	"strings"
	"text/template"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer"
	"github.com/tokenkeeper/tokenkeeper/internal/renewal"
)

// Labels and annotations on the Secrets tokenkeeper manages. The manager caches only Secrets
// with LabelManagedBy, so it never holds unrelated Secrets in memory.
const (
	LabelManagedBy      = "app.kubernetes.io/managed-by"
	ManagedByValue      = "tokenkeeper"
	LabelCredential     = "tokenkeeper.io/credential"
	LabelRole           = "tokenkeeper.io/role"
	AnnotationExpiresAt = "tokenkeeper.io/expires-at"
	annotationInputs    = "tokenkeeper.io/inputs-version"
	annotationFailed    = "tokenkeeper.io/failed-inputs-version"
	stateSuffix         = ".tokenkeeper-state"
)

// Keys of the target Secret.
const (
	KeyToken         = "token"
	KeyAuthorization = "authorization"
	KeyTokenType     = "token-type"
	KeyExpiresAt     = "expires-at"
)

// state is what the state Secret holds: the session, so that a restarted manager carries on
// without logging in again and a rotated refresh token is never lost.
type state struct {
	token         *issuer.Token // nil: no session
	sessionStart  time.Time
	inputsVersion string
	failedInputs  string
	// retired is a session replaced by a fresh login, revoked at retireAt: once pods have had
	// time to read the new token from their mounted Secret.
	retired  *issuer.Token
	retireAt time.Time
}

// StateSecretName is the name of a Credential's state Secret.
func StateSecretName(cred *v1alpha1.Credential) string { return cred.Name + stateSuffix }

func (s *state) session() *renewal.Session {
	if s.token == nil {
		return nil
	}
	return &renewal.Session{IssuedAt: s.token.IssuedAt, ExpiresAt: s.token.ExpiresAt, RefreshExpiresAt: s.token.RefreshExpiresAt,
		HasRefreshToken: s.token.RefreshToken != "", Start: s.sessionStart, InputsVersion: s.inputsVersion}
}

func (r *Reconciler) loadState(ctx context.Context, cred *v1alpha1.Credential) (*state, error) {
	sec := &corev1.Secret{}
	err := r.Get(ctx, types.NamespacedName{Namespace: cred.Namespace, Name: StateSecretName(cred)}, sec)
	if apierrors.IsNotFound(err) {
		return &state{}, nil
	}
	if err != nil {
		return nil, err
	}
	st := &state{inputsVersion: sec.Annotations[annotationInputs], failedInputs: sec.Annotations[annotationFailed]}
	d := func(k string) string { return string(sec.Data[k]) }
	t := func(k string) time.Time { v, _ := time.Parse(time.RFC3339Nano, d(k)); return v }
	if d("access-token") != "" {
		st.token = &issuer.Token{AccessToken: d("access-token"), Scheme: d("token-type"), RefreshToken: d("refresh-token"),
			RefreshField: d("refresh-field"), IssuedAt: t("issued-at"), ExpiresAt: t("expires-at"),
			ExpirySource: issuer.ExpirySource(d("expiry-source")), RefreshExpiresAt: t("refresh-expires-at")}
		_ = json.Unmarshal(sec.Data["extra"], &st.token.Extra)
		st.sessionStart = t("session-start")
	}
	if d("retired-access-token") != "" {
		st.retired = &issuer.Token{AccessToken: d("retired-access-token"), RefreshToken: d("retired-refresh-token"), Scheme: d("retired-token-type")}
		st.retireAt = t("retire-at")
	}
	return st, nil
}

// saveState writes the state Secret. It runs before the target Secret is written, so a rotated
// refresh token is persisted before anything else can lose it.
func (r *Reconciler) saveState(ctx context.Context, cred *v1alpha1.Credential, st *state) error {
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: cred.Namespace, Name: StateSecretName(cred)}}
	_, err := controllerutil.CreateOrPatch(ctx, r.Client, sec, func() error {
		setManaged(&sec.ObjectMeta, cred, "state")
		sec.Annotations[annotationInputs] = st.inputsVersion
		sec.Annotations[annotationFailed] = st.failedInputs
		sec.Data = map[string][]byte{}
		if tok := st.token; tok != nil {
			ts := func(t time.Time) []byte {
				if t.IsZero() {
					return nil
				}
				return []byte(t.UTC().Format(time.RFC3339Nano))
			}
			extra, _ := json.Marshal(tok.Extra)
			sec.Data = map[string][]byte{
				"access-token": []byte(tok.AccessToken), "token-type": []byte(tok.Scheme), "refresh-token": []byte(tok.RefreshToken),
				"refresh-field": []byte(tok.RefreshField), "issued-at": ts(tok.IssuedAt), "expires-at": ts(tok.ExpiresAt),
				"expiry-source": []byte(tok.ExpirySource), "refresh-expires-at": ts(tok.RefreshExpiresAt),
				"session-start": ts(st.sessionStart), "extra": extra,
			}
		}
		if old := st.retired; old != nil {
			sec.Data["retired-access-token"], sec.Data["retired-refresh-token"] = []byte(old.AccessToken), []byte(old.RefreshToken)
			sec.Data["retired-token-type"], sec.Data["retire-at"] = []byte(old.Scheme), []byte(st.retireAt.UTC().Format(time.RFC3339Nano))
		}
		return controllerutil.SetControllerReference(cred, sec, r.Scheme)
	})
	return err
}

// syncTarget makes the target Secret hold the current token: it creates it, restores it when
// edited, and writes nothing when it is already right. It refuses to take over a Secret that
// another owner controls.
func (r *Reconciler) syncTarget(ctx context.Context, cred *v1alpha1.Credential, e *env, tok *issuer.Token) (changed bool, err error) {
	data, err := targetData(cred, e, tok)
	if err != nil {
		return false, err
	}
	sec := &corev1.Secret{}
	key := types.NamespacedName{Namespace: cred.Namespace, Name: cred.Spec.SecretName}
	err = r.Get(ctx, key, sec)
	if apierrors.IsNotFound(err) {
		// Not in the cache, which holds only labelled Secrets: it may exist without our label.
		err = r.APIReader.Get(ctx, key, sec)
	}
	switch {
	case apierrors.IsNotFound(err):
		sec = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
	case err != nil:
		return false, err
	default:
		if owner := metav1.GetControllerOf(sec); owner == nil || owner.UID != cred.UID {
			return false, block(v1alpha1.ReasonSecretConflict, "Secret %s already exists and is not managed by this Credential", key.Name)
		}
	}
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
	if sec.ResourceVersion == "" {
		return true, r.Create(ctx, sec)
	}
	if equality.Semantic.DeepEqual(before.Data, sec.Data) && equality.Semantic.DeepEqual(before.ObjectMeta, sec.ObjectMeta) {
		return false, nil
	}
	return true, r.Update(ctx, sec)
}

func targetData(cred *v1alpha1.Credential, e *env, tok *issuer.Token) (map[string][]byte, error) {
	data := map[string][]byte{
		KeyToken:         []byte(tok.AccessToken),
		KeyAuthorization: []byte(tok.Authorization()),
		KeyTokenType:     []byte(tok.Scheme),
		KeyExpiresAt:     []byte(tok.ExpiresAt.UTC().Format(time.RFC3339)),
	}
	// The issuer's extra headers travel with the token (seed 002's Api-Key): key "api-key".
	for name, value := range e.headers {
		data[strings.ToLower(name)] = []byte(value)
	}
	if t := cred.Spec.SecretTemplate; t != nil {
		vars := map[string]string{"token": tok.AccessToken, "tokenType": tok.Scheme, "authorization": tok.Authorization(),
			"expiresAt": tok.ExpiresAt.UTC().Format(time.RFC3339)}
		for k, text := range t.Data {
			tmpl, err := template.New(k).Option("missingkey=error").Parse(string(text))
			if err != nil {
				return nil, block(v1alpha1.ReasonInvalidConfig, "secretTemplate.data[%s]: %v", k, err)
			}
			var b strings.Builder
			if err := tmpl.Execute(&b, vars); err != nil {
				return nil, block(v1alpha1.ReasonInvalidConfig, "secretTemplate.data[%s]: rendering failed", k)
			}
			data[k] = []byte(b.String())
		}
	}
	return data, nil
}

func setManaged(m *metav1.ObjectMeta, cred *v1alpha1.Credential, role string) {
	if m.Labels == nil {
		m.Labels = map[string]string{}
	}
	if m.Annotations == nil {
		m.Annotations = map[string]string{}
	}
	m.Labels[LabelManagedBy] = ManagedByValue
	m.Labels[LabelCredential] = cred.Name
	m.Labels[LabelRole] = role
}
