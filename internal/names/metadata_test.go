package names

import (
	"strings"
	"testing"
)

func TestValidateSecretMetadata(t *testing.T) {
	big := strings.Repeat("v", 40<<10)
	for name, tc := range map[string]struct {
		reason      string
		labels      map[string]string
		annotations map[string]string
		want        string // "" valid
	}{
		"Valid":            {reason: "Ordinary labels and annotations.", labels: map[string]string{"app.kubernetes.io/part-of": "shop"}, annotations: map[string]string{"team": "payments"}},
		"BadLabelKey":      {reason: "The API server refuses this key on the Secret: every write would fail.", labels: map[string]string{"bad key!": "x"}, want: "spec.secretTemplate.labels"},
		"BadLabelValue":    {reason: "Label values are at most 63 characters.", labels: map[string]string{"a": strings.Repeat("x", 64)}, want: "spec.secretTemplate.labels"},
		"BadAnnotationKey": {reason: "Annotation keys are qualified names.", annotations: map[string]string{"/x": "y"}, want: "spec.secretTemplate.annotations"},
		"AnnotationsOverBound": {reason: "80 KiB of annotations leave no room under the API server's limit for ours.",
			annotations: map[string]string{"a": big, "b": big}, want: "65536"},
	} {
		t.Run(name, func(t *testing.T) {
			err := ValidateSecretMetadata(tc.labels, tc.annotations, "spec.secretTemplate")
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("%s: refused: %v", tc.reason, err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("%s: got %v, want an error containing %q", tc.reason, err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), big) {
				t.Fatalf("the error quotes a whole annotation value")
			}
		})
	}
}
