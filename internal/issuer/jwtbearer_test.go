package issuer_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper/internal/issuer"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer/issuertest"
)

// The JWT bearer grant (RFC 7523 §2.1) against the OAuth2 conformance server, which verifies
// each assertion's signature with the public key it trusts, its iss, aud, lifetime (≤ 1 h) and
// that no jti comes twice: a Google service-account key file used as it is, and a PEM key with
// configured claims.
func TestJWTBearerGrant(t *testing.T) {
	srv := issuertest.Start(issuertest.OAuth2)
	defer srv.Close()
	c := newClient(t, srv, seedSpec(srv))

	keyFile := srv.NewServiceAccountKey("orders@orders.iam.gserviceaccount.com")
	req := issuer.Request{Kind: issuer.LoginJWTBearer, Inputs: map[string]string{"key.json": keyFile, issuer.InputServiceAccountKey: keyFile},
		Assertion: &issuer.Assertion{Scopes: []string{"https://www.googleapis.com/auth/cloud-platform"}}}
	for range 2 { // a new assertion (jti) for each request: the server refuses replays
		tok, err := c.Login(t.Context(), req)
		if err != nil {
			t.Fatalf("login with a service-account key file: %v", err)
		}
		if !srv.Valid(tok.AccessToken) {
			t.Fatal("the issued token is not valid at the server")
		}
	}

	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalECPrivateKey(ecKey)
	srv.TrustAssertionKey("", "orders-batch", &ecKey.PublicKey)
	req = issuer.Request{Kind: issuer.LoginJWTBearer,
		Inputs:    map[string]string{issuer.InputPrivateKey: string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))},
		Assertion: &issuer.Assertion{Issuer: "orders-batch", Subject: "orders-batch", Lifetime: 2 * time.Minute}}
	if _, err := c.Login(t.Context(), req); err != nil {
		t.Fatalf("login with a PEM key: %v", err)
	}
	lives := srv.AssertionLifetimes()
	if len(lives) != 3 || lives[0] != issuer.DefaultAssertionLifetime || lives[2] != 2*time.Minute {
		t.Errorf("assertion lifetimes %v, want [5m 5m 2m]", lives)
	}

	// Another issuer's name for the same key: the server refuses, the login is rejected.
	req.Assertion.Issuer = "someone-else"
	if _, err := c.Login(t.Context(), req); issuer.ClassOf(err) != issuer.ClassInvalidCredentials {
		t.Errorf("an assertion the server does not trust: %v (class %s), want InvalidCredentials", err, issuer.ClassOf(err))
	}
}

// A key file or key that cannot be used is a configuration error naming the Secret key and the
// formats expected, and never showing the key.
func TestJWTBearerBadKeys(t *testing.T) {
	srv := issuertest.Start(issuertest.OAuth2)
	defer srv.Close()
	c := newClient(t, srv, seedSpec(srv))
	for name, tc := range map[string]struct {
		inputs map[string]string
		names  string
	}{
		"NotJSON":       {map[string]string{issuer.InputServiceAccountKey: "c2VjcmV0LWtleS1tYXRlcmlhbA=="}, "serviceAccountKeyKey"},
		"NoPrivateKey":  {map[string]string{issuer.InputServiceAccountKey: `{"client_email":"a@b","private_key_id":"c2VjcmV0"}`}, "serviceAccountKeyKey"},
		"GarbageInFile": {map[string]string{issuer.InputServiceAccountKey: `{"client_email":"a@b","private_key":"-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END PRIVATE KEY-----\n"}`}, "serviceAccountKeyKey"},
		"GarbagePEM":    {map[string]string{issuer.InputPrivateKey: "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END PRIVATE KEY-----\n"}, "privateKeyKey"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := c.Login(t.Context(), issuer.Request{Kind: issuer.LoginJWTBearer, Inputs: tc.inputs, Assertion: &issuer.Assertion{Issuer: "x"}})
			if issuer.ClassOf(err) != issuer.ClassConfig || !strings.Contains(err.Error(), tc.names) {
				t.Fatalf("%v (class %s), want a configuration error naming %s", err, issuer.ClassOf(err), tc.names)
			}
			if strings.Contains(err.Error(), "c2VjcmV0") {
				t.Fatalf("the error shows key material: %v", err)
			}
		})
	}
	if srv.Calls(issuertest.OpLogin) != 0 {
		t.Errorf("%d token requests with unusable keys, want none", srv.Calls(issuertest.OpLogin))
	}
}
