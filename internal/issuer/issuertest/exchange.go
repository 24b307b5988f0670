package issuertest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Exchange is an issuer that trusts a Kubernetes cluster: it verifies ServiceAccount tokens with
// the API server's own OIDC discovery document and key set (/.well-known/openid-configuration,
// then the path of its jwks_uri, read from the API server it is given), checking iss, aud and
// expiry, and answers the four ways a token is presented: RFC 8693 token exchange (POST /token),
// a client_credentials client assertion (client_id "entra-app"), the RFC 7523 JWT bearer grant,
// and Vault's JWT login (POST /v1/auth/jwt/login {role: "orders", jwt}). GET /use is the API the
// tokens are for.
type Exchange struct {
	TLS      *httptest.Server
	audience string
	lifetime time.Duration
	api      *http.Client
	apiHost  string

	mu       sync.Mutex
	subjects []string
	valid    map[string]time.Time
	requests int
	uses     int
}

// StartExchange serves an Exchange for audience, issuing tokens that live lifetime, reading the
// cluster's keys from apiHost with api (a client that may read them). With cert it listens on
// addr (the node's address, for pods); without, on loopback with a test certificate.
func StartExchange(audience string, lifetime time.Duration, api *http.Client, apiHost, addr string, cert *tls.Certificate) (*Exchange, error) {
	x := &Exchange{audience: audience, lifetime: lifetime, api: api, apiHost: strings.TrimSuffix(apiHost, "/"), valid: map[string]time.Time{}}
	if cert == nil {
		x.TLS = httptest.NewTLSServer(x)
		return x, nil
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	x.TLS = httptest.NewUnstartedServer(x)
	_ = x.TLS.Listener.Close()
	x.TLS.Listener = l
	x.TLS.TLS = &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS12}
	x.TLS.StartTLS()
	return x, nil
}

// URL is the server's base URL.
func (x *Exchange) URL() string { return x.TLS.URL }

// CABundle is the PEM certificate to trust.
func (x *Exchange) CABundle() string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: x.TLS.Certificate().Raw}))
}

// Close stops the server.
func (x *Exchange) Close() { x.TLS.Close() }

// Valid reports whether tok is a live token this server issued.
func (x *Exchange) Valid(tok string) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	exp, ok := x.valid[tok]
	return ok && time.Now().Before(exp)
}

// Subjects lists the sub of every ServiceAccount token accepted; Requests counts token requests.
func (x *Exchange) Subjects() ([]string, int) {
	x.mu.Lock()
	defer x.mu.Unlock()
	return append([]string(nil), x.subjects...), x.requests
}

// IssuedTokens lists every token issued, for leak checks.
func (x *Exchange) IssuedTokens() []string {
	x.mu.Lock()
	defer x.mu.Unlock()
	out := make([]string, 0, len(x.valid))
	for t := range x.valid {
		out = append(out, t)
	}
	return out
}

// Verify checks a ServiceAccount token against the cluster's published keys and returns its sub.
func (x *Exchange) Verify(raw string) (string, error) {
	get := func(u string, v any) error {
		resp, err := x.api.Get(u)
		if err != nil {
			return err
		}
		defer func() { _ = resp.Body.Close() }()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %d", u, resp.StatusCode)
		}
		return json.NewDecoder(resp.Body).Decode(v)
	}
	var disc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := get(x.apiHost+"/.well-known/openid-configuration", &disc); err != nil {
		return "", err
	}
	jwks, err := url.Parse(disc.JWKSURI)
	if err != nil {
		return "", err
	}
	var set struct {
		Keys []struct{ Kid, Kty, Crv, N, E, X, Y string } `json:"keys"`
	}
	// The document may name an address this server cannot reach (envtest advertises one it does
	// not serve): the same path on the API server it was given.
	if err := get(x.apiHost+jwks.Path, &set); err != nil {
		return "", err
	}
	b64 := func(s string) []byte { b, _ := base64.RawURLEncoding.DecodeString(s); return b }
	claims := jwt.RegisteredClaims{}
	_, err = jwt.ParseWithClaims(raw, &claims, func(tok *jwt.Token) (any, error) {
		for _, k := range set.Keys {
			if k.Kid != tok.Header["kid"] {
				continue
			}
			switch k.Kty {
			case "RSA":
				return &rsa.PublicKey{N: new(big.Int).SetBytes(b64(k.N)), E: int(new(big.Int).SetBytes(b64(k.E)).Int64())}, nil
			case "EC":
				curve, size := elliptic.P256(), 32
				if k.Crv == "P-384" {
					curve, size = elliptic.P384(), 48
				}
				point := []byte{4}
				for _, c := range []string{k.X, k.Y} {
					b := b64(c)
					point = append(point, append(make([]byte, max(0, size-len(b))), b...)...)
				}
				return ecdsa.ParseUncompressedPublicKey(curve, point)
			}
		}
		return nil, errors.New("no key with that kid in the cluster's key set")
	}, jwt.WithIssuer(disc.Issuer), jwt.WithAudience(x.audience), jwt.WithExpirationRequired())
	if err != nil {
		return "", err
	}
	return claims.Subject, nil
}

func (x *Exchange) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && r.URL.Path == "/use" {
		tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !x.Valid(tok) {
			writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "invalid_token"})
			return
		}
		x.mu.Lock()
		x.uses++
		x.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]any{"ok": true})
		return
	}
	x.mu.Lock()
	x.requests++
	x.mu.Unlock()
	raw, vault, ok := x.presented(w, r)
	if !ok {
		return
	}
	sub, err := x.Verify(raw)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "invalid_grant", "error_description": "the cluster's token was refused: " + err.Error()})
		return
	}
	tok := "xt-" + randHex(16)
	x.mu.Lock()
	x.subjects = append(x.subjects, sub)
	x.valid[tok] = time.Now().Add(x.lifetime)
	x.mu.Unlock()
	secs := int(x.lifetime.Seconds())
	if vault {
		writeJSON(w, http.StatusOK, map[string]any{"auth": map[string]any{"client_token": tok, "lease_duration": secs, "renewable": false}})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"access_token": tok, "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
		"token_type": "Bearer", "expires_in": secs})
}

// presented finds the ServiceAccount token in a request, or answers it with an error.
func (x *Exchange) presented(w http.ResponseWriter, r *http.Request) (raw string, vault, ok bool) {
	if r.URL.Path == "/v1/auth/jwt/login" {
		var body struct{ Role, JWT string }
		if json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&body) != nil || body.Role != "orders" {
			writeJSON(w, http.StatusBadRequest, map[string]any{"errors": []string{"role not found"}})
			return "", true, false
		}
		return body.JWT, true, true
	}
	switch r.PostFormValue("grant_type") {
	case "urn:ietf:params:oauth:grant-type:token-exchange":
		if r.PostFormValue("subject_token_type") == "urn:ietf:params:oauth:token-type:jwt" {
			return r.PostFormValue("subject_token"), false, true
		}
	case "client_credentials":
		if r.PostFormValue("client_assertion_type") == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" && r.PostFormValue("client_id") == "entra-app" {
			return r.PostFormValue("client_assertion"), false, true
		}
		oauthError(w, http.StatusUnauthorized, "invalid_client", "client authentication failed")
		return "", false, false
	case "urn:ietf:params:oauth:grant-type:jwt-bearer":
		return r.PostFormValue("assertion"), false, true
	}
	oauthError(w, http.StatusBadRequest, "invalid_request", "unsupported grant or subject token type")
	return "", false, false
}
