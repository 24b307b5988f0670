package login

import (
	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer"
)

// Inputs is where a Credential's login takes its inputs from.
type Inputs struct {
	Kind issuer.LoginKind
	// Secret is the input Secret in the Credential's namespace; "" for a serviceAccount login.
	Secret string
	// Keys maps each canonical input (issuer.InputUsername, ...) to its key in Secret.
	Keys map[string]string
}

// loginKinds has one row per login kind: where its inputs are in a Credential's spec. Adding a
// login kind is one row here and its protocol support in internal/issuer.
var loginKinds = []struct {
	kind   issuer.LoginKind
	inputs func(*v1alpha1.CredentialSpec) *Inputs // nil: the spec names another login
	// withSecret sets the login with only an input Secret (its default keys), for the plugin's
	// test-issuer; nil when the kind needs more (IDs, an audience).
	withSecret func(*v1alpha1.CredentialSpec, v1alpha1.LocalSecretReference)
}{
	{issuer.LoginPassword, func(s *v1alpha1.CredentialSpec) *Inputs {
		p := s.Password
		if p == nil {
			return nil
		}
		return &Inputs{Secret: p.SecretRef.Name, Keys: map[string]string{
			issuer.InputUsername: or(p.UsernameKey, issuer.InputUsername), issuer.InputPassword: or(p.PasswordKey, issuer.InputPassword)}}
	}, func(s *v1alpha1.CredentialSpec, r v1alpha1.LocalSecretReference) {
		s.Password = &v1alpha1.PasswordLogin{SecretRef: r}
	}},
	{issuer.LoginAPIKey, func(s *v1alpha1.CredentialSpec) *Inputs {
		a := s.APIKey
		if a == nil {
			return nil
		}
		return &Inputs{Secret: a.SecretRef.Name, Keys: map[string]string{
			issuer.InputKey: or(a.KeyKey, issuer.InputKey), issuer.InputSecret: or(a.SecretKey, issuer.InputSecret)}}
	}, func(s *v1alpha1.CredentialSpec, r v1alpha1.LocalSecretReference) {
		s.APIKey = &v1alpha1.APIKeyLogin{SecretRef: r}
	}},
	{issuer.LoginClientCredentials, func(s *v1alpha1.CredentialSpec) *Inputs {
		c := s.ClientCredentials
		if c == nil {
			return nil
		}
		if c.PrivateKeyKey != "" { // private_key_jwt: a signed assertion instead of a secret
			keys := map[string]string{issuer.InputClientID: or(c.ClientIDKey, issuer.InputClientID), issuer.InputPrivateKey: c.PrivateKeyKey}
			if c.CertificateKey != "" {
				keys[issuer.InputCertificate] = c.CertificateKey
			}
			return &Inputs{Secret: c.SecretRef.Name, Keys: keys}
		}
		return &Inputs{Secret: c.SecretRef.Name, Keys: map[string]string{
			issuer.InputClientID: or(c.ClientIDKey, issuer.InputClientID), issuer.InputClientSecret: or(c.ClientSecretKey, issuer.InputClientSecret)}}
	}, func(s *v1alpha1.CredentialSpec, r v1alpha1.LocalSecretReference) {
		s.ClientCredentials = &v1alpha1.ClientCredentialsLogin{SecretRef: r}
	}},
	{issuer.LoginJWTBearer, func(s *v1alpha1.CredentialSpec) *Inputs {
		j := s.JWTBearer
		if j == nil {
			return nil
		}
		if j.ServiceAccountKeyKey != "" {
			return &Inputs{Secret: j.SecretRef.Name, Keys: map[string]string{issuer.InputServiceAccountKey: j.ServiceAccountKeyKey}}
		}
		return &Inputs{Secret: j.SecretRef.Name, Keys: map[string]string{issuer.InputPrivateKey: j.PrivateKeyKey}}
	}, nil},
	{issuer.LoginServiceAccount, func(s *v1alpha1.CredentialSpec) *Inputs {
		if s.ServiceAccount == nil {
			return nil
		}
		return &Inputs{Keys: map[string]string{}}
	}, nil},
	{issuer.LoginGitHubApp, func(s *v1alpha1.CredentialSpec) *Inputs {
		g := s.GitHubApp
		if g == nil {
			return nil
		}
		return &Inputs{Secret: g.SecretRef.Name, Keys: map[string]string{issuer.InputPrivateKey: or(g.PrivateKeyKey, issuer.InputPrivateKey)}}
	}, nil},
	{issuer.LoginPrivateKey, func(s *v1alpha1.CredentialSpec) *Inputs {
		p := s.PrivateKey
		if p == nil {
			return nil
		}
		return &Inputs{Secret: p.SecretRef.Name, Keys: map[string]string{issuer.InputPrivateKey: or(p.Key, issuer.InputPrivateKey)}}
	}, func(s *v1alpha1.CredentialSpec, r v1alpha1.LocalSecretReference) {
		s.PrivateKey = &v1alpha1.PrivateKeyLogin{SecretRef: r}
	}},
	{issuer.LoginRefreshToken, func(s *v1alpha1.CredentialSpec) *Inputs {
		t := s.RefreshToken
		if t == nil {
			return nil
		}
		return &Inputs{Secret: t.SecretRef.Name, Keys: map[string]string{issuer.InputRefreshToken: or(t.Key, issuer.InputRefreshToken)}}
	}, func(s *v1alpha1.CredentialSpec, r v1alpha1.LocalSecretReference) {
		s.RefreshToken = &v1alpha1.RefreshTokenLogin{SecretRef: r}
	}},
}

// InputsOf is the login a Credential's spec names and where its inputs are; the zero Inputs when
// it names none (the CRD requires exactly one).
func InputsOf(spec *v1alpha1.CredentialSpec) Inputs {
	for _, k := range loginKinds {
		if in := k.inputs(spec); in != nil {
			in.Kind = k.kind
			return *in
		}
	}
	return Inputs{}
}

// WithSecret sets spec's login to kind with only an input Secret (the kind's default keys), for
// the plugin's test-issuer; false when kind needs more than a Secret (or is unknown).
func WithSecret(spec *v1alpha1.CredentialSpec, kind issuer.LoginKind, secret v1alpha1.LocalSecretReference) bool {
	for _, k := range loginKinds {
		if k.kind == kind && k.withSecret != nil {
			k.withSecret(spec, secret)
			return true
		}
	}
	return false
}

// SecretOnlyKinds are the login kinds WithSecret sets.
func SecretOnlyKinds() []issuer.LoginKind {
	var kinds []issuer.LoginKind
	for _, k := range loginKinds {
		if k.withSecret != nil {
			kinds = append(kinds, k.kind)
		}
	}
	return kinds
}

// InputSecretName is the input Secret of a Credential ("" for none), for watch indexes.
func InputSecretName(spec *v1alpha1.CredentialSpec) string {
	return InputsOf(spec).Secret
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
