package names_test

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/tokenkeeper/tokenkeeper/internal/names"
)

// FuzzNames: for every name the API server admits for a Credential (a DNS subdomain of at most
// MaxCredentialName characters), the state Secret name is a valid Secret name that no admitted
// target secretName can equal, the label is a valid label value, two names never share a label,
// and deriving them allocates a bounded amount.
func FuzzNames(f *testing.F) {
	for _, seed := range [][2]string{
		{"billing", "billing2"}, {strings.Repeat("a", 63), strings.Repeat("a", 64)},
		{strings.Repeat("a.", 117) + "a", strings.Repeat("a", 235)},
		{strings.Repeat("x", 49) + ".-y" + strings.Repeat("z", 40), strings.Repeat("x", 49) + ".-y" + strings.Repeat("z", 41)},
	} {
		f.Add(seed[0], seed[1])
	}
	admitted := func(name string) bool {
		return len(name) <= names.MaxCredentialName && len(validation.IsDNS1123Subdomain(name)) == 0
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		if !admitted(a) {
			return
		}
		var state, label string
		if allocs := testing.AllocsPerRun(10, func() { state, label = names.StateSecret(a), names.Label(a) }); allocs > 8 {
			t.Fatalf("deriving names for a %d-character name took %.0f allocations", len(a), allocs)
		}
		if errs := validation.IsDNS1123Subdomain(state); len(errs) > 0 {
			t.Fatalf("state Secret name %q: %v", state, errs)
		}
		if errs := validation.IsValidLabelValue(label); len(errs) > 0 {
			t.Fatalf("label %q of %q: %v", label, a, errs)
		}
		if admitted(b) && a != b && label == names.Label(b) {
			t.Fatalf("%q and %q share the label %q", a, b, label)
		}
	})
}
