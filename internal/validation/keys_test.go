package validation

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const testIss = "https://idp.test"

// keyServer serves a JWKS with an RSA, an EC P-256 and an Ed25519 key, and can rotate them.
type keyServer struct {
	*httptest.Server
	mu   sync.Mutex
	rsa  map[string]*rsa.PrivateKey
	ec   *ecdsa.PrivateKey
	ed   ed25519.PrivateKey
	hits atomic.Int32
	hmac []byte
	// header is sent with the key set (Cache-Control, Age).
	header http.Header
}

func newKeyServer(t testing.TB) *keyServer {
	t.Helper()
	k := &keyServer{rsa: map[string]*rsa.PrivateKey{"rsa1": mustRSA(t)}, hmac: []byte("0123456789abcdef0123456789abcdef")}
	var err error
	if k.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	if _, k.ed, err = ed25519.GenerateKey(rand.Reader); err != nil {
		t.Fatal(err)
	}
	k.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		k.hits.Add(1)
		k.mu.Lock()
		defer k.mu.Unlock()
		for name, values := range k.header {
			w.Header()[name] = values
		}
		b64 := base64.RawURLEncoding.EncodeToString
		var keys []any
		for kid, key := range k.rsa {
			keys = append(keys, map[string]any{"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": b64(key.N.Bytes()), "e": b64(big.NewInt(int64(key.E)).Bytes())})
		}
		ecx, ecy := k.ec.X.FillBytes(make([]byte, 32)), k.ec.Y.FillBytes(make([]byte, 32))
		keys = append(keys,
			map[string]any{"kty": "EC", "kid": "ec1", "crv": "P-256", "x": b64(ecx), "y": b64(ecy)},
			map[string]any{"kty": "OKP", "kid": "ed1", "crv": "Ed25519", "x": b64(k.ed.Public().(ed25519.PublicKey))})
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": keys})
	}))
	t.Cleanup(k.Close)
	return k
}

func mustRSA(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// rotate replaces the RSA keys with one new key, kid rsa2.
func (k *keyServer) rotate(t testing.TB) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.rsa = map[string]*rsa.PrivateKey{"rsa2": mustRSA(t)}
}

// claims are valid claims at now, changed by edit.
func claims(now time.Time, edit func(jwt.MapClaims)) jwt.MapClaims {
	c := jwt.MapClaims{"iss": testIss, "sub": "user-1", "aud": "orders", "scope": "orders.read profile",
		"iat": now.Add(-time.Minute).Unix(), "exp": now.Add(time.Hour).Unix(), "email": "u@example.com", "groups": []string{"team-a"}}
	if edit != nil {
		edit(c)
	}
	return c
}

// sign signs claims with the named key; headers are added to the JOSE header.
func (k *keyServer) sign(t testing.TB, alg, kid string, c jwt.MapClaims, headers map[string]any) string {
	t.Helper()
	k.mu.Lock()
	defer k.mu.Unlock()
	var (
		method jwt.SigningMethod
		key    any
	)
	switch alg {
	case "RS256":
		method, key = jwt.SigningMethodRS256, k.rsa[kid]
	case "PS256":
		method, key = jwt.SigningMethodPS256, k.rsa[kid]
	case "ES256":
		method, key = jwt.SigningMethodES256, k.ec
	case "EdDSA":
		method, key = jwt.SigningMethodEdDSA, crypto.Signer(k.ed)
	case "HS256":
		method, key = jwt.SigningMethodHS256, k.hmac
	}
	tok := jwt.NewWithClaims(method, c)
	tok.Header["kid"] = kid
	for h, v := range headers {
		tok.Header[h] = v
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("signing: %v", err)
	}
	return s
}

func b64json(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}
