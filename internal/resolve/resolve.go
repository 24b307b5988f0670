// Package resolve looks up what Credentials, TokenValidators, issuers and admission all need from
// the cluster: the issuer a reference names, the TokenPolicies in force for a namespace, and the
// Secret and ConfigMap values an issuer reads (headers, CA bundle, HMAC secret). Everything that
// cannot proceed until someone changes something is a *Blocked error with a condition reason, the
// same for every caller.
package resolve

import (
	"context"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/policy"
)

// Blocked is a reason an object cannot be served until someone changes something: a missing
// issuer or Secret, an invalid configuration, a policy violation. Other errors are transient.
type Blocked struct {
	Reason  v1alpha1.ConditionReason // IssuerNotFound, SecretNotFound, PolicyViolation, …
	Message string
}

func (b *Blocked) Error() string { return b.Message }

// Block returns a *Blocked error.
func Block(reason v1alpha1.ConditionReason, format string, args ...any) error {
	return &Blocked{Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// AsBlocked returns err's *Blocked, if it is one.
func AsBlocked(err error) (*Blocked, bool) {
	var b *Blocked
	ok := errors.As(err, &b)
	return b, ok
}

// Resolver reads from the cluster: cached objects through Client, Secrets and ConfigMaps (which
// the manager does not cache) through APIReader.
type Resolver struct {
	Client    client.Reader
	APIReader client.Reader
	// ClusterResourceNamespace holds what ClusterIssuers refer to without a namespace.
	ClusterResourceNamespace string
}

// IndexIssuerRefs is the field index of Issuers and ClusterIssuers by what they read:
// "Secret/ns/name" or "ConfigMap/ns/name" (IssuerReferences); the Credential controller
// registers it.
const IndexIssuerRefs = "issuer.references"

// Kind returns the reference's kind, Issuer when unset.
func Kind(ref v1alpha1.IssuerReference) v1alpha1.IssuerKind {
	if ref.Kind == "" {
		return v1alpha1.IssuerKindNamespaced
	}
	return ref.Kind
}

// IssuerKey names a referenced issuer for metrics, logs and call slots: "Issuer/name" or
// "ClusterIssuer/name".
func IssuerKey(ref v1alpha1.IssuerReference) string { return string(Kind(ref)) + "/" + ref.Name }

// Issuer returns the issuer ref names: an Issuer in namespace or a ClusterIssuer.
func (r *Resolver) Issuer(ctx context.Context, namespace string, ref v1alpha1.IssuerReference) (v1alpha1.GenericIssuer, error) {
	var iss v1alpha1.GenericIssuer = &v1alpha1.Issuer{}
	key := types.NamespacedName{Namespace: namespace, Name: ref.Name}
	if Kind(ref) == v1alpha1.IssuerKindCluster {
		iss, key.Namespace = &v1alpha1.ClusterIssuer{}, ""
	}
	if err := r.Client.Get(ctx, key, iss); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, Block(v1alpha1.ReasonIssuerNotFound, "%s %q not found", Kind(ref), ref.Name)
		}
		return nil, err
	}
	return iss, nil
}

// Policies returns the TokenPolicies in force for namespace, highest priority first; for ""
// (cluster-scoped objects) the ones that select every namespace. A policy whose
// namespaceSelector cannot be read blocks: nobody can tell whether it applies.
func (r *Resolver) Policies(ctx context.Context, namespace string) ([]v1alpha1.TokenPolicy, error) {
	var list v1alpha1.TokenPolicyList
	if err := r.Client.List(ctx, &list); err != nil {
		return nil, err
	}
	if namespace == "" {
		return policy.Global(list.Items), nil
	}
	ns := &corev1.Namespace{}
	if err := r.Client.Get(ctx, types.NamespacedName{Name: namespace}, ns); err != nil {
		return nil, err
	}
	sel, err := policy.Selecting(list.Items, ns.Labels)
	if err != nil {
		return nil, Block(v1alpha1.ReasonPolicyViolation, "%v", err)
	}
	return sel, nil
}

// Policy is the effective policy for a Credential's spec (nil: for a validator or an issuer) in
// namespace. Violations of a limit block, naming the policy and field.
func (r *Resolver) Policy(ctx context.Context, namespace string, spec *v1alpha1.CredentialSpec) (policy.Effective, error) {
	sel, err := r.Policies(ctx, namespace)
	if err != nil {
		return policy.Effective{}, err
	}
	eff, violations := policy.Resolve(sel, spec)
	if len(violations) > 0 {
		return eff, Block(v1alpha1.ReasonPolicyViolation, "%v", violations[0])
	}
	return eff, nil
}

// CheckIssuer blocks an issuer the policy does not allow, naming the issuer, the policy and the
// field.
func CheckIssuer(eff policy.Effective, iss v1alpha1.GenericIssuer) error {
	if v := eff.CheckIssuer(iss.GetSpec()); len(v) > 0 {
		return Block(v1alpha1.ReasonPolicyViolation, "%s %q: %v", KindOf(iss), iss.GetName(), v[0])
	}
	return nil
}

// KindOf is an issuer object's kind.
func KindOf(iss v1alpha1.GenericIssuer) v1alpha1.IssuerKind {
	if iss.GetNamespace() == "" {
		return v1alpha1.IssuerKindCluster
	}
	return v1alpha1.IssuerKindNamespaced
}

// Namespace is where an issuer's reference to a Secret or ConfigMap points: an Issuer's own
// namespace, or for a ClusterIssuer the reference's namespace or the cluster resource namespace.
func (r *Resolver) Namespace(iss v1alpha1.GenericIssuer, refNamespace string) string {
	return RefNamespace(iss, refNamespace, r.ClusterResourceNamespace)
}

// RefNamespace is Namespace for callers without a Resolver (watch indexes).
func RefNamespace(iss v1alpha1.GenericIssuer, refNamespace, clusterResourceNamespace string) string {
	switch {
	case iss.GetNamespace() != "":
		return iss.GetNamespace()
	case refNamespace != "":
		return refNamespace
	}
	return clusterResourceNamespace
}

// SecretValue reads one key of a Secret; the version changes whenever the Secret does.
func (r *Resolver) SecretValue(ctx context.Context, key types.NamespacedName, field string) (value, version string, err error) {
	s := &corev1.Secret{}
	if err := r.APIReader.Get(ctx, key, s); err != nil {
		if apierrors.IsNotFound(err) {
			return "", "", Block(v1alpha1.ReasonSecretNotFound, "Secret %s not found", key)
		}
		return "", "", err
	}
	v, ok := s.Data[field]
	if !ok {
		return "", "", Block(v1alpha1.ReasonSecretNotFound, "Secret %s has no key %q", key, field)
	}
	return string(v), "secret:" + key.String() + ":" + s.ResourceVersion, nil
}

// ConfigMapValue reads one key of a ConfigMap (data or binaryData).
func (r *Resolver) ConfigMapValue(ctx context.Context, key types.NamespacedName, field string) (value, version string, err error) {
	cm := &corev1.ConfigMap{}
	if err := r.APIReader.Get(ctx, key, cm); err != nil {
		if apierrors.IsNotFound(err) {
			return "", "", Block(v1alpha1.ReasonSecretNotFound, "ConfigMap %s not found", key)
		}
		return "", "", err
	}
	v, ok := cm.Data[field]
	if !ok {
		b, isBinary := cm.BinaryData[field]
		if !isBinary {
			return "", "", Block(v1alpha1.ReasonSecretNotFound, "ConfigMap %s has no key %q", key, field)
		}
		v = string(b)
	}
	return v, "configmap:" + key.String() + ":" + cm.ResourceVersion, nil
}

// IssuerInputs are an issuer's values read from Secrets and ConfigMaps.
type IssuerInputs struct {
	// Headers are the extra headers, values resolved.
	Headers map[string]string
	// CABundle is the PEM bundle to trust: spec.caBundle, or what caBundleFrom names.
	CABundle string
	// Versions change whenever anything read changes.
	Versions []string
}

// Version is the inputs' versions joined.
func (in IssuerInputs) Version() string { return strings.Join(in.Versions, ";") }

// IssuerInputs reads an issuer's header Secrets and its CA bundle source.
func (r *Resolver) IssuerInputs(ctx context.Context, iss v1alpha1.GenericIssuer) (IssuerInputs, error) {
	spec := iss.GetSpec()
	in := IssuerInputs{Headers: map[string]string{}, CABundle: spec.CABundle}
	for _, h := range spec.Headers {
		if h.ValueFrom == nil {
			in.Headers[h.Name] = h.Value
			continue
		}
		ref := h.ValueFrom.SecretKeyRef
		v, version, err := r.SecretValue(ctx, types.NamespacedName{Namespace: r.Namespace(iss, ref.Namespace), Name: ref.Name}, ref.Key)
		if err != nil {
			return in, field("headers["+h.Name+"]", err)
		}
		in.Headers[h.Name] = v
		in.Versions = append(in.Versions, version)
	}
	if from := spec.CABundleFrom; from != nil {
		var (
			v, version string
			err        error
		)
		if ref := from.SecretKeyRef; ref != nil {
			v, version, err = r.SecretValue(ctx, types.NamespacedName{Namespace: r.Namespace(iss, ref.Namespace), Name: ref.Name}, ref.Key)
		} else if ref := from.ConfigMapKeyRef; ref != nil {
			v, version, err = r.ConfigMapValue(ctx, types.NamespacedName{Namespace: r.Namespace(iss, ref.Namespace), Name: ref.Name}, ref.Key)
		}
		if err != nil {
			return in, field("caBundleFrom", err)
		}
		in.CABundle = v
		in.Versions = append(in.Versions, version)
	}
	return in, nil
}

// field names the field a blocking error came from.
func field(name string, err error) error {
	if b, ok := AsBlocked(err); ok {
		return &Blocked{Reason: b.Reason, Message: name + ": " + b.Message}
	}
	return err
}

// IssuerReferences lists "kind/namespace/name" of every Secret and ConfigMap an issuer reads,
// for the watch indexes that bring its users back when one changes.
func IssuerReferences(iss v1alpha1.GenericIssuer, clusterResourceNamespace string) []string {
	spec := iss.GetSpec()
	var out []string
	add := func(kind, ns, name string) {
		out = append(out, kind+"/"+RefNamespace(iss, ns, clusterResourceNamespace)+"/"+name)
	}
	for _, h := range spec.Headers {
		if h.ValueFrom != nil {
			add("Secret", h.ValueFrom.SecretKeyRef.Namespace, h.ValueFrom.SecretKeyRef.Name)
		}
	}
	if ref := spec.HMACSecretRef; ref != nil {
		add("Secret", ref.Namespace, ref.Name)
	}
	if from := spec.CABundleFrom; from != nil {
		if ref := from.SecretKeyRef; ref != nil {
			add("Secret", ref.Namespace, ref.Name)
		}
		if ref := from.ConfigMapKeyRef; ref != nil {
			add("ConfigMap", ref.Namespace, ref.Name)
		}
	}
	return out
}
