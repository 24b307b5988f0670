// Package issuerref resolves what Credentials and TokenValidators share: the issuer a reference
// names and the Secret values its extra headers read.
package issuerref

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
)

// NotFound is a missing issuer or Secret: nothing to retry until it appears.
type NotFound struct {
	Reason  string // IssuerNotFound or SecretNotFound
	Message string
}

func (e *NotFound) Error() string { return e.Message }

// Kind returns the reference's kind, Issuer when unset.
func Kind(ref v1alpha1.IssuerReference) v1alpha1.IssuerKind {
	if ref.Kind == "" {
		return v1alpha1.IssuerKindNamespaced
	}
	return ref.Kind
}

// Get returns the issuer ref names, an Issuer in namespace or a ClusterIssuer.
func Get(ctx context.Context, c client.Reader, namespace string, ref v1alpha1.IssuerReference) (v1alpha1.GenericIssuer, error) {
	var iss v1alpha1.GenericIssuer = &v1alpha1.Issuer{}
	key := types.NamespacedName{Namespace: namespace, Name: ref.Name}
	if Kind(ref) == v1alpha1.IssuerKindCluster {
		iss, key.Namespace = &v1alpha1.ClusterIssuer{}, ""
	}
	if err := c.Get(ctx, key, iss); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, &NotFound{Reason: v1alpha1.ReasonIssuerNotFound, Message: fmt.Sprintf("%s %q not found", Kind(ref), ref.Name)}
		}
		return nil, err
	}
	return iss, nil
}

// SecretKey is where an issuer's Secret reference points: an Issuer's own namespace, or for a
// ClusterIssuer the reference's namespace or the cluster resource namespace.
func SecretKey(iss v1alpha1.GenericIssuer, ref v1alpha1.SecretKeySelector, clusterResourceNamespace string) types.NamespacedName {
	ns := iss.GetNamespace()
	if ns == "" {
		ns = ref.Namespace
		if ns == "" {
			ns = clusterResourceNamespace
		}
	}
	return types.NamespacedName{Namespace: ns, Name: ref.Name}
}

// SecretValue reads one key of a Secret (uncached reader).
func SecretValue(ctx context.Context, c client.Reader, key types.NamespacedName, field string) (string, string, error) {
	s := &corev1.Secret{}
	if err := c.Get(ctx, key, s); err != nil {
		if apierrors.IsNotFound(err) {
			return "", "", &NotFound{Reason: v1alpha1.ReasonSecretNotFound, Message: fmt.Sprintf("Secret %s not found", key)}
		}
		return "", "", err
	}
	v, ok := s.Data[field]
	if !ok {
		return "", "", &NotFound{Reason: v1alpha1.ReasonSecretNotFound, Message: fmt.Sprintf("Secret %s has no key %q", key, field)}
	}
	return string(v), s.ResourceVersion, nil
}

// HeaderValues resolves an issuer's extra headers; versions receives the resource version of
// each Secret read, so that callers notice changes.
func HeaderValues(ctx context.Context, c client.Reader, iss v1alpha1.GenericIssuer, clusterResourceNamespace string) (map[string]string, []string, error) {
	out := map[string]string{}
	var versions []string
	for _, h := range iss.GetSpec().Headers {
		if h.ValueFrom == nil {
			out[h.Name] = h.Value
			continue
		}
		ref := h.ValueFrom.SecretKeyRef
		v, rv, err := SecretValue(ctx, c, SecretKey(iss, ref, clusterResourceNamespace), ref.Key)
		if err != nil {
			return nil, nil, err
		}
		out[h.Name] = v
		versions = append(versions, "header:"+rv)
	}
	return out, versions, nil
}
