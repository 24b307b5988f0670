package login

import (
	"slices"
	"testing"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer"
)

// TestOneRowPerLoginKind: every login kind the issuer package knows has its row, and a spec set
// from a row is read back as that kind with its Secret: adding a kind without its row, or a row
// that reads another kind's field, fails here.
func TestOneRowPerLoginKind(t *testing.T) {
	all := []issuer.LoginKind{issuer.LoginPassword, issuer.LoginAPIKey, issuer.LoginClientCredentials, issuer.LoginJWTBearer,
		issuer.LoginServiceAccount, issuer.LoginGitHubApp, issuer.LoginPrivateKey, issuer.LoginRefreshToken}
	var rows []issuer.LoginKind
	for _, k := range loginKinds {
		rows = append(rows, k.kind)
	}
	for _, k := range all {
		if !slices.Contains(rows, k) {
			t.Errorf("login kind %s has no row in loginKinds", k)
		}
	}
	for _, k := range SecretOnlyKinds() {
		spec := &v1alpha1.CredentialSpec{}
		if !WithSecret(spec, k, v1alpha1.LocalSecretReference{Name: "input"}) {
			t.Fatalf("WithSecret(%s) refused a kind SecretOnlyKinds lists", k)
		}
		in := InputsOf(spec)
		if in.Kind != k || in.Secret != "input" || len(in.Keys) == 0 {
			t.Errorf("a %s spec reads back as %+v", k, in)
		}
		if issuer.KindOf(spec) != k {
			t.Errorf("issuer.KindOf disagrees: %s for a %s spec", issuer.KindOf(spec), k)
		}
	}
	if WithSecret(&v1alpha1.CredentialSpec{}, issuer.LoginGitHubApp, v1alpha1.LocalSecretReference{Name: "x"}) {
		t.Errorf("a githubApp login needs its IDs: WithSecret must refuse it")
	}
	if in := InputsOf(&v1alpha1.CredentialSpec{}); in.Kind != "" {
		t.Errorf("a spec naming no login reads as %s", in.Kind)
	}
}

// TestDefaultLoginAccepted: the login test-issuer picks for an issuer is one the issuer takes.
func TestDefaultLoginAccepted(t *testing.T) {
	specs := map[string]*v1alpha1.IssuerSpec{
		"oauth2":     {URL: "https://idp.example.com/token", OAuth2: &v1alpha1.OAuth2{}},
		"json":       {URL: "https://api.example.com/login"},
		"selfSigned": {SelfSigned: &v1alpha1.SelfSignedJWT{}},
	}
	for name, spec := range specs {
		kind := issuer.DefaultLogin(spec)
		cred := &v1alpha1.CredentialSpec{}
		if !WithSecret(cred, kind, v1alpha1.LocalSecretReference{Name: "input"}) {
			t.Fatalf("%s: default login %s cannot be set with a Secret", name, kind)
		}
		if err := issuer.Accepts(spec, cred); err != nil {
			t.Errorf("%s: the default login %s is refused: %v", name, kind, err)
		}
	}
}
