package issuertest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// JWT bearer grant (RFC 7523 §2.1) on the OAuth2 flavor: an assertion signed by a key the server
// was told to trust (by kid and iss), for this server's token endpoint (or the audience set),
// living at most an hour, never presented twice.

// TrustAssertionKey makes the server accept assertions issued by iss and signed by pub's private
// key, with kid in their header unless kid is "".
func (s *Server) TrustAssertionKey(kid, iss string, pub crypto.PublicKey) {
	s.locked(func() {
		if s.assertionKeys == nil {
			s.assertionKeys = map[string]trustedKey{}
		}
		s.assertionKeys[iss] = trustedKey{kid: kid, pub: pub}
	})
}

// NewServiceAccountKey returns a Google-style service-account key file (RSA) for email whose
// assertions the server accepts.
func (s *Server) NewServiceAccountKey(email string) string {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		panic(err)
	}
	kid := randHex(20)
	s.TrustAssertionKey(kid, email, &key.PublicKey)
	file, _ := json.Marshal(map[string]string{"type": "service_account", "project_id": "orders", "private_key_id": kid,
		"private_key": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), "client_email": email,
		"client_id": "1234567890", "token_uri": s.issuerURL() + "/oauth/token"})
	return string(file)
}

// SetAssertionAudience sets the aud assertions must carry; the token endpoint by default.
func (s *Server) SetAssertionAudience(aud string) { s.locked(func() { s.assertionAud = aud }) }

// AssertionLifetimes lists exp - iat of every assertion the server accepted.
func (s *Server) AssertionLifetimes() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.assertionLives...)
}

type trustedKey struct {
	kid string
	pub crypto.PublicKey
}

// verifyAssertion checks an assertion and returns its subject (sub, else iss). Callers hold mu.
func (s *Server) verifyAssertion(assertion string) (string, error) {
	aud := s.assertionAud
	if aud == "" {
		aud = s.issuerURL() + "/oauth/token"
	}
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(assertion, claims, func(t *jwt.Token) (any, error) {
		iss, _ := t.Claims.GetIssuer()
		k, ok := s.assertionKeys[iss]
		if !ok {
			return nil, errors.New("unknown iss")
		}
		if kid, _ := t.Header["kid"].(string); k.kid != "" && kid != k.kid {
			return nil, errors.New("kid is not the key's")
		}
		// The algorithm must be the key's own.
		want := ""
		switch pub := k.pub.(type) {
		case *rsa.PublicKey:
			want = "RS256"
		case *ecdsa.PublicKey:
			want = map[string]string{"P-256": "ES256", "P-384": "ES384"}[pub.Curve.Params().Name]
		case ed25519.PublicKey:
			want = "EdDSA"
		}
		if t.Method.Alg() != want {
			return nil, errors.New("algorithm does not fit the key")
		}
		return k.pub, nil
	}, jwt.WithAudience(aud), jwt.WithExpirationRequired(), jwt.WithIssuedAt())
	if err != nil {
		return "", err
	}
	iss, _ := claims.GetIssuer()
	exp, _ := claims.GetExpirationTime()
	iat, _ := claims.GetIssuedAt()
	if iat == nil || exp.Sub(iat.Time) > time.Hour {
		return "", errors.New("the assertion lives longer than an hour")
	}
	jti, _ := claims["jti"].(string)
	if jti == "" || s.seenJTIs[jti] {
		return "", errors.New("jti missing or replayed")
	}
	if s.seenJTIs == nil {
		s.seenJTIs = map[string]bool{}
	}
	s.seenJTIs[jti] = true
	s.assertionLives = append(s.assertionLives, exp.Sub(iat.Time))
	if sub, _ := claims.GetSubject(); sub != "" {
		return sub, nil
	}
	return iss, nil
}
