package names

import (
	"fmt"

	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// MaxTemplateAnnotations bounds the annotations a Credential's secretTemplate puts on its token
// Secret, keys and values together: a quarter of what the API server allows an object, so that
// tokenkeeper's own annotations always fit beside them.
const MaxTemplateAnnotations = 64 << 10

// ValidateSecretMetadata checks labels and annotations meant for a Secret as the API server
// will, and the annotations against MaxTemplateAnnotations, naming the field under path (for
// example spec.secretTemplate). Admission refuses such a Credential; the controller refuses to
// write such a Secret instead of retrying a write that can never succeed.
func ValidateSecretMetadata(labels, annotations map[string]string, path string) error {
	p := field.NewPath(path)
	errs := metav1validation.ValidateLabels(labels, p.Child("labels"))
	errs = append(errs, apivalidation.ValidateAnnotations(annotations, p.Child("annotations"))...)
	size := 0
	for k, v := range annotations {
		size += len(k) + len(v)
	}
	if size > MaxTemplateAnnotations {
		errs = append(errs, field.TooLong(p.Child("annotations"), fmt.Sprintf("%d bytes", size), MaxTemplateAnnotations))
	}
	return errs.ToAggregate()
}
