package admission

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/names"
	"github.com/tokenkeeper/tokenkeeper/internal/tmpl"
)

// +kubebuilder:webhook:path=/validate-tokenkeeper-io-v1alpha1-clustercredential,mutating=false,failurePolicy=fail,sideEffects=None,groups=tokenkeeper.io,resources=clustercredentials,verbs=create;update,versions=v1alpha1,name=vclustercredential.tokenkeeper.io,admissionReviewVersions=v1

// clusterCredentialValidator refuses what the CRD schema cannot: a namespaceSelector the
// manager could not evaluate (an unknown operator, a bad label value) and a secretTemplate that
// could never be rendered or written. The login's TokenPolicies are those of the
// cluster-credential namespace, checked when the child Credential is admitted; each target
// namespace's are applied at runtime (a Forbidden entry).
type clusterCredentialValidator struct{}

func (clusterCredentialValidator) ValidateCreate(_ context.Context, cc *v1alpha1.ClusterCredential) (admission.Warnings, error) {
	return nil, validateClusterCredential(cc)
}

func (clusterCredentialValidator) ValidateUpdate(_ context.Context, old, cc *v1alpha1.ClusterCredential) (admission.Warnings, error) {
	if unchanged(old.Spec, cc.Spec, cc.DeletionTimestamp) {
		return nil, nil
	}
	return nil, validateClusterCredential(cc)
}

func (clusterCredentialValidator) ValidateDelete(context.Context, *v1alpha1.ClusterCredential) (admission.Warnings, error) {
	return nil, nil
}

func validateClusterCredential(cc *v1alpha1.ClusterCredential) error {
	var errs []error
	if _, err := metav1.LabelSelectorAsSelector(&cc.Spec.NamespaceSelector); err != nil {
		errs = append(errs, fmt.Errorf("spec.namespaceSelector: %w", err))
	}
	if t := cc.Spec.Credential.SecretTemplate; t != nil {
		errs = append(errs, names.ValidateSecretMetadata(t.Labels, t.Annotations, "spec.credential.secretTemplate"))
		for _, k := range slices.Sorted(maps.Keys(t.Data)) {
			if _, err := tmpl.Parse(k, string(t.Data[k])); err != nil {
				errs = append(errs, fmt.Errorf("spec.credential.secretTemplate.data[%s]: %w", k, err))
			}
		}
	}
	return errors.Join(errs...)
}
