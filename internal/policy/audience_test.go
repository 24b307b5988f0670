package policy

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
)

func TestCheckAudience(t *testing.T) {
	pol := func(name string, aud ...string) v1alpha1.TokenPolicy {
		return v1alpha1.TokenPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.TokenPolicySpec{AllowedAudiences: aud}}
	}
	e, violations := Resolve([]v1alpha1.TokenPolicy{pol("vault", "vault", "sts.example.com/*"), pol("narrow", "sts.example.com/orders", "vault")}, nil)
	if len(violations) > 0 {
		t.Fatal(violations)
	}
	for aud, ok := range map[string]bool{"vault": true, "sts.example.com/orders": true, "sts.example.com/billing": false, "vaultx": false, "": false} {
		if v := e.CheckAudience(aud); (v == nil) != ok {
			t.Errorf("audience %q: violation %v, want allowed=%t", aud, v, ok)
		}
	}
	if none, _ := Resolve(nil, nil); none.CheckAudience("anything") != nil {
		t.Error("no policy: every audience is allowed")
	}
}
