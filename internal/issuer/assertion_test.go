package issuer_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer"
)

// private_key_jwt (RFC 7523 §2.2): the client signs an assertion with its private key instead of
// sending a secret. A local token endpoint verifies it with the public key, for each key type.
func TestPrivateKeyJWTClientAuthentication(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	pkcs8 := func(k any) string {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	}
	ecDER, _ := x509.MarshalECPrivateKey(ecKey)
	cases := map[string]struct {
		pem string
		pub crypto.PublicKey
		alg string
	}{
		"RSA-PKCS1": {string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)})), &rsaKey.PublicKey, "RS256"},
		"RSA-PKCS8": {pkcs8(rsaKey), &rsaKey.PublicKey, "RS256"},
		"EC-SEC1":   {string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER})), &ecKey.PublicKey, "ES256"},
		"Ed25519":   {pkcs8(edKey), edKey.Public(), "EdDSA"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var (
				mu   sync.Mutex
				jtis = map[string]bool{}
				why  string
			)
			var endpoint string
			srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_ = r.ParseForm()
				mu.Lock()
				defer mu.Unlock()
				fail := func(reason string) {
					why = reason
					w.WriteHeader(http.StatusUnauthorized)
					_, _ = w.Write([]byte(`{"error":"invalid_client"}`))
				}
				if r.Form.Get("client_secret") != "" || r.Header.Get("Authorization") != "" {
					fail("a secret was sent")
					return
				}
				if r.Form.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
					fail("wrong client_assertion_type")
					return
				}
				claims := jwt.RegisteredClaims{}
				tok, err := jwt.ParseWithClaims(r.Form.Get("client_assertion"), &claims, func(*jwt.Token) (any, error) { return tc.pub, nil },
					jwt.WithValidMethods([]string{tc.alg}), jwt.WithAudience(endpoint), jwt.WithIssuer("orders-client"), jwt.WithExpirationRequired())
				switch {
				case err != nil:
					fail("assertion: " + err.Error())
				case claims.Subject != "orders-client" || claims.ID == "" || jtis[claims.ID]:
					fail("subject or jti")
				case claims.ExpiresAt.Sub(claims.IssuedAt.Time) > 5*time.Minute:
					fail("assertion lives longer than 5 minutes")
				case tok.Header["kid"] == nil || tok.Header["kid"] == "":
					fail("no kid")
				default:
					jtis[claims.ID] = true
					_, _ = w.Write([]byte(`{"access_token":"at-123","token_type":"Bearer","expires_in":300}`))
				}
			}))
			defer srv.Close()
			endpoint = srv.URL + "/token"
			spec := v1alpha1.IssuerSpec{URL: v1alpha1.EndpointURL(endpoint), OAuth2: &v1alpha1.OAuth2{},
				CABundle: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))}
			c, err := issuer.New(issuer.Config{Spec: spec})
			if err != nil {
				t.Fatal(err)
			}
			req := issuer.Request{Kind: issuer.LoginClientCredentials, Inputs: map[string]string{"client_id": "orders-client", "private_key": tc.pem}}
			for range 2 { // a fresh jti each time
				if _, err := c.Login(t.Context(), req); err != nil {
					t.Fatalf("login: %v (server: %s)", err, why)
				}
			}
		})
	}
}

// A key that does not parse is a configuration error that never shows the key.
func TestPrivateKeyJWTBadKey(t *testing.T) {
	spec := v1alpha1.IssuerSpec{URL: "https://login.example.com/token", OAuth2: &v1alpha1.OAuth2{}}
	c, _ := issuer.New(issuer.Config{Spec: spec})
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	for name, key := range map[string]string{
		"NotPEM":   "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7secret",
		"Garbage":  "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END PRIVATE KEY-----\n",
		"SmallRSA": string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(small)})),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := c.Login(t.Context(), issuer.Request{Kind: issuer.LoginClientCredentials, Inputs: map[string]string{"client_id": "c", "private_key": key}})
			if issuer.ClassOf(err) != issuer.ClassConfig || !strings.Contains(err.Error(), "privateKeyKey") {
				t.Fatalf("%v (class %s), want a configuration error naming privateKeyKey", err, issuer.ClassOf(err))
			}
			if strings.Contains(err.Error(), "c2VjcmV0") || strings.Contains(err.Error(), "MII") {
				t.Fatalf("the error shows key material: %v", err)
			}
		})
	}
}

// With a certificate (Entra ID certificate credentials) each assertion names it by x5t#S256,
// the SHA-256 of its DER; the audience can be set instead of the token endpoint. A local
// endpoint verifies the signature with the certificate's public key and both values; a
// certificate of another key is a configuration error naming certificateKey.
func TestPrivateKeyJWTCertificateAndAudience(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	certFor := func(k *ecdsa.PrivateKey) (string, []byte) {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "orders-client"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
		if err != nil {
			t.Fatal(err)
		}
		return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), der
	}
	certPEM, der := certFor(key)
	sum := sha256.Sum256(der)
	wantX5t := base64.RawURLEncoding.EncodeToString(sum[:])
	const audience = "https://login.example.com/tenant-1/v2.0"
	var why string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		tok, err := jwt.Parse(r.Form.Get("client_assertion"), func(*jwt.Token) (any, error) { return &key.PublicKey, nil },
			jwt.WithValidMethods([]string{"ES256"}), jwt.WithAudience(audience), jwt.WithIssuer("orders-client"), jwt.WithExpirationRequired())
		switch {
		case err != nil:
			why = err.Error()
		case tok.Header["x5t#S256"] != wantX5t:
			why = fmt.Sprintf("x5t#S256 %v, want %s", tok.Header["x5t#S256"], wantX5t)
		default:
			_, _ = w.Write([]byte(`{"access_token":"at-123","token_type":"Bearer","expires_in":300}`))
			return
		}
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":"invalid_client"}`))
	}))
	defer srv.Close()
	spec := v1alpha1.IssuerSpec{URL: v1alpha1.EndpointURL(srv.URL + "/token"), OAuth2: &v1alpha1.OAuth2{},
		CABundle: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))}
	c, err := issuer.New(issuer.Config{Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	keyPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	req := issuer.Request{Kind: issuer.LoginClientCredentials, AssertionAudience: audience,
		Inputs: map[string]string{"client_id": "orders-client", "private_key": keyPEM, "certificate": certPEM}}
	if _, err := c.Login(t.Context(), req); err != nil {
		t.Fatalf("login: %v (server: %s)", err, why)
	}

	otherPEM, _ := certFor(other)
	req.Inputs["certificate"] = otherPEM
	_, err = c.Login(t.Context(), req)
	if issuer.ClassOf(err) != issuer.ClassConfig || !strings.Contains(err.Error(), "certificateKey") {
		t.Fatalf("a certificate of another key: %v (class %s), want a configuration error naming certificateKey", err, issuer.ClassOf(err))
	}
}

// A TokenPolicy's maximum session caps the client assertion too.
func TestPrivateKeyJWTCappedLifetime(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	var lifetime time.Duration
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		claims := jwt.RegisteredClaims{}
		if _, err := jwt.ParseWithClaims(r.Form.Get("client_assertion"), &claims, func(*jwt.Token) (any, error) { return &key.PublicKey, nil },
			jwt.WithValidMethods([]string{"ES256"})); err == nil {
			lifetime = claims.ExpiresAt.Sub(claims.IssuedAt.Time)
		}
		_, _ = w.Write([]byte(`{"access_token":"at-1","token_type":"Bearer","expires_in":300}`))
	}))
	defer srv.Close()
	c, err := issuer.New(issuer.Config{Spec: v1alpha1.IssuerSpec{URL: v1alpha1.EndpointURL(srv.URL + "/token"), OAuth2: &v1alpha1.OAuth2{},
		CABundle: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))}})
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	req := issuer.Request{Kind: issuer.LoginClientCredentials, MaxLifetime: 30 * time.Second,
		Inputs: map[string]string{"client_id": "c", "private_key": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))}}
	if _, err := c.Login(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	if lifetime != 30*time.Second {
		t.Errorf("assertion lifetime %s, want the policy's 30s", lifetime)
	}
}
