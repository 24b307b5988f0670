package validation

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	authnv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/tokenkeeper/tokenkeeper/internal/issuer"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer/issuertest"
)

func serve(t *testing.T, v *Validator) *httptest.Server {
	t.Helper()
	s := NewServer()
	s.Set(types.NamespacedName{Namespace: "shop", Name: "orders-api"}, v)
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return srv
}

// Forward auth as nginx auth_request / Traefik forwardAuth use it, through a real HTTP client.
func TestForwardAuthRoundTrip(t *testing.T) {
	k := newKeyServer(t)
	clk := clocktesting.NewFakeClock(time.Now())
	srv := serve(t, newTestValidator(t, k, clk, nil))
	type answer struct {
		StatusCode int
		Header     http.Header
	}
	path := "/validate/shop/orders-api"
	call := func(auth string) answer {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return answer{resp.StatusCode, resp.Header}
	}
	ok := call("Bearer " + k.sign(t, "RS256", "rsa1", claims(clk.Now(), nil), nil))
	if ok.StatusCode != 200 || ok.Header.Get("X-Auth-Subject") != "user-1" || ok.Header.Get("X-Email") != "u@example.com" {
		t.Fatalf("valid token: %d %v", ok.StatusCode, ok.Header)
	}
	bad := call("Bearer " + k.sign(t, "RS256", "rsa1", claims(clk.Now(), func(c jwt.MapClaims) { c["aud"] = "billing" }), nil))
	if bad.StatusCode != 401 || !strings.Contains(bad.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Fatalf("wrong audience: %d %q", bad.StatusCode, bad.Header.Get("WWW-Authenticate"))
	}
	scope := call("Bearer " + k.sign(t, "RS256", "rsa1", claims(clk.Now(), func(c jwt.MapClaims) { c["scope"] = "x" }), nil))
	if scope.StatusCode != 403 || !strings.Contains(scope.Header.Get("WWW-Authenticate"), `error="insufficient_scope", error_description="token lacks a required scope", scope="orders.read"`) {
		t.Fatalf("missing scope: %d %q", scope.StatusCode, scope.Header.Get("WWW-Authenticate"))
	}
	if none := call(""); none.StatusCode != 401 || none.Header.Get("WWW-Authenticate") != `Bearer realm="tokenkeeper"` {
		t.Fatalf("no credentials: %d %q", none.StatusCode, none.Header.Get("WWW-Authenticate"))
	}
	resp, _ := http.Get(srv.URL + "/validate/shop/unknown")
	_ = resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("unknown validator: %d", resp.StatusCode)
	}
	// Envoy's HTTP ext_authz checks at path_prefix + the client's path: the same validator answers.
	path = "/validate/shop/orders-api/orders/1"
	if envoy := call("Bearer " + k.sign(t, "RS256", "rsa1", claims(clk.Now(), nil), nil)); envoy.StatusCode != 200 || envoy.Header.Get("X-Auth-Subject") != "user-1" {
		t.Fatalf("valid token at an Envoy-style path: %d %v", envoy.StatusCode, envoy.Header)
	}
	if envoy := call(""); envoy.StatusCode != 401 {
		t.Fatalf("no credentials at an Envoy-style path: %d", envoy.StatusCode)
	}
}

// A TokenReview as kube-apiserver's webhook token authenticator sends it.
func TestTokenReviewRoundTrip(t *testing.T) {
	k := newKeyServer(t)
	clk := clocktesting.NewFakeClock(time.Now())
	srv := serve(t, newTestValidator(t, k, clk, func(c *Config) { c.UsernamePrefix = "idp:" }))
	review := func(apiVersion, token string) authnv1.TokenReview {
		body, _ := json.Marshal(map[string]any{"apiVersion": apiVersion, "kind": "TokenReview", "spec": map[string]any{"token": token, "audiences": []string{"orders"}}})
		resp, err := http.Post(srv.URL+"/tokenreview/shop/orders-api", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		var out authnv1.TokenReview
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatal(err)
		}
		if out.APIVersion != apiVersion || out.Spec.Token != "" {
			t.Fatalf("response apiVersion %q (want %q), token echoed: %t", out.APIVersion, apiVersion, out.Spec.Token != "")
		}
		return out
	}
	for _, version := range []string{"authentication.k8s.io/v1", "authentication.k8s.io/v1beta1"} {
		good := review(version, k.sign(t, "ES256", "ec1", claims(clk.Now(), nil), nil))
		if !good.Status.Authenticated || good.Status.User.Username != "idp:user-1" || strings.Join(good.Status.User.Groups, ",") != "team-a" {
			t.Fatalf("%s valid token: %+v", version, good.Status)
		}
		bad := review(version, k.sign(t, "ES256", "ec1", claims(clk.Now(), func(c jwt.MapClaims) { c["exp"] = clk.Now().Add(-time.Hour).Unix() }), nil))
		if bad.Status.Authenticated || bad.Status.Error != "token expired" {
			t.Fatalf("%s expired token: %+v", version, bad.Status)
		}
	}
}

// Opaque tokens are checked at the issuer's token-info endpoint (seed 002), with caches whose
// entries never outlive the token.
func TestOpaqueTokenIntrospection(t *testing.T) {
	srv := issuertest.Start(issuertest.Seed002)
	defer srv.Close()
	c, err := issuer.New(issuer.Config{Spec: srv.Spec(), Headers: srv.HeaderValues()})
	if err != nil {
		t.Fatal(err)
	}
	login := issuer.Request{Kind: issuer.LoginPassword, Inputs: srv.InputSecretData()}
	tok, err := c.Login(t.Context(), login)
	if err != nil {
		t.Fatal(err)
	}
	inspect := func(ctx context.Context, token string) (*issuer.Introspection, error) {
		return c.Inspect(ctx, issuer.Request{}, token)
	}
	// Seed 002 tokens are JWTs signed with a secret the validator does not hold: validate them as
	// opaque tokens by presenting them to a validator without JWT issuers.
	v := New(Config{Issuers: []TrustedIssuer{{Name: "Issuer/crm", Inspect: inspect}}})
	id, d := v.introspect(t.Context(), tok.AccessToken)
	if d != nil || id["sub"] != issuertest.Username {
		t.Fatalf("active token: %v %v", id, d)
	}
	if err := c.Revoke(t.Context(), login, tok); err != nil {
		t.Fatal(err)
	}
	if _, d := v.introspect(t.Context(), tok.AccessToken); d == nil || d.Reason != "inactive" {
		t.Fatalf("revoked token: %v, want inactive", d)
	}
	calls := srv.Calls(issuertest.OpInspect)
	// Through AuthenticateToken an inactive answer is cached briefly: a second ask costs nothing.
	uuidLike := "0b7c2a4e-1f6d-4c55-9a0e-3d2b7f1c8e90"
	for range 2 {
		if _, d := v.AuthenticateToken(t.Context(), uuidLike); d == nil {
			t.Fatalf("unknown opaque token accepted")
		}
	}
	if n := srv.Calls(issuertest.OpInspect) - calls; n != 1 {
		t.Fatalf("%d introspection calls for two checks of one inactive token, want 1 (negative cache)", n)
	}
}

// FuzzAuthorization: header parsing never panics, and what it accepts is a well-formed token.
func FuzzAuthorization(f *testing.F) {
	for _, s := range []string{"Bearer abc.def.ghi", "bearer x", "Token abc", "Basic dXNlcg==", "Bearer ", "Bearer a b", "Bearer ==", strings.Repeat("A", 9000)} {
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, header string, acceptToken bool) {
		tok, d := ParseAuthorization([]string{header}, acceptToken)
		if d != nil {
			if d.Status != 400 && d.Status != 401 {
				t.Fatalf("status %d", d.Status)
			}
			return
		}
		if tok == "" || len(header) > MaxHeaderSize || strings.ContainsAny(tok, " \t\r\n\"\\<>") {
			t.Fatalf("accepted a malformed header %q", header)
		}
	})
}

// FuzzToken: whatever arrives as a token, validation never panics and never accepts it.
func FuzzToken(f *testing.F) {
	k := newKeyServer(f)
	clk := clocktesting.NewFakeClock(time.Now())
	v := newTestValidator(f, k, clk, func(c *Config) { c.DisableCache = true })
	valid := k.sign(f, "RS256", "rsa1", claims(clk.Now(), nil), nil)
	f.Add(valid[:len(valid)-2])
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("a.b.c")
	f.Add(strings.Repeat("e", 100) + "." + strings.Repeat("f", 100) + ".")
	f.Fuzz(func(t *testing.T, token string) {
		if token == valid {
			return
		}
		if _, d := v.AuthenticateToken(context.Background(), token); d == nil {
			t.Fatalf("accepted a token it never issued: %q", token)
		}
	})
}
