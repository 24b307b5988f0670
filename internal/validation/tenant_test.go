package validation

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	authnv1 "k8s.io/api/authentication/v1"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/tokenkeeper/tokenkeeper/internal/issuer"
)

// What a TokenReview confirms is what the token proves: audiences intersected with the token's,
// no system: identity from a token, a subject required, only TokenReviews accepted.
func TestTokenReviewTrustsOnlyTheToken(t *testing.T) {
	k := newKeyServer(t)
	clk := clocktesting.NewFakeClock(time.Now())
	sign := func(edit func(jwt.MapClaims)) string { return k.sign(t, "RS256", "rsa1", claims(clk.Now(), edit), nil) }
	post := func(srvURL string, body map[string]any) (int, authnv1.TokenReview) {
		b, _ := json.Marshal(body)
		resp, err := http.Post(srvURL+"/tokenreview/shop/orders-api", "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		var out authnv1.TokenReview
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	review := func(token string, audiences ...string) map[string]any {
		return map[string]any{"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": map[string]any{"token": token, "audiences": audiences}}
	}
	plain := serve(t, newTestValidator(t, k, clk, nil)).URL
	prefixed := serve(t, newTestValidator(t, k, clk, func(c *Config) { c.GroupsPrefix = "idp:" })).URL

	cases := map[string]struct {
		reason   string
		url      string
		body     map[string]any
		status   int
		authn    bool
		groups   string
		audience string
		errText  string
	}{
		"AudiencesIntersected": {reason: "Only the requested audiences the token carries are confirmed.",
			url: plain, body: review(sign(nil), "orders", "kubernetes"), status: 200, authn: true, groups: "team-a", audience: "orders"},
		"AudiencesDisjoint": {reason: "A token for another audience does not authenticate to the API server.",
			url: plain, body: review(sign(nil), "kubernetes"), status: 200, errText: "audiences do not match"},
		"SystemGroupsDropped": {reason: "system:masters from a token claim would make its bearer a cluster admin.",
			url: plain, body: review(sign(func(c jwt.MapClaims) { c["groups"] = []string{"system:masters", "dev"} })), status: 200, authn: true, groups: "dev"},
		"GroupsPrefixed": {reason: "With groupsPrefix every group is in the issuer's own namespace.",
			url: prefixed, body: review(sign(func(c jwt.MapClaims) { c["groups"] = []string{"system:masters", "dev"} })), status: 200, authn: true,
			groups: "idp:system:masters,idp:dev"},
		"SystemUsername": {reason: "A sub in the system: namespace would impersonate Kubernetes' own users.",
			url: plain, body: review(sign(func(c jwt.MapClaims) { c["sub"] = "system:kube-controller-manager" })), status: 200, errText: "system:"},
		"MissingSub": {reason: "A token without a subject authenticated as the bare prefix.",
			url: plain, body: review(sign(func(c jwt.MapClaims) { delete(c, "sub") })), status: 200, errText: "no subject"},
		"EmptySub": {reason: "An empty subject is no subject.",
			url: plain, body: review(sign(func(c jwt.MapClaims) { c["sub"] = "" })), status: 200, errText: "no subject"},
		"NumericSub": {reason: "A non-string subject is no subject.",
			url: plain, body: review(sign(func(c jwt.MapClaims) { c["sub"] = 42 })), status: 200, errText: "no subject"},
		"WrongKind": {reason: "Only TokenReviews are answered.",
			url: plain, body: map[string]any{"apiVersion": "authentication.k8s.io/v1", "kind": "SubjectAccessReview", "spec": map[string]any{"token": sign(nil)}}, status: 400},
		"WrongVersion": {reason: "Only the v1 and v1beta1 TokenReview APIs.",
			url: plain, body: map[string]any{"apiVersion": "v1", "kind": "TokenReview", "spec": map[string]any{"token": sign(nil)}}, status: 400},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			status, out := post(tc.url, tc.body)
			if status != tc.status {
				t.Fatalf("%s\nHTTP %d, want %d", tc.reason, status, tc.status)
			}
			if status != 200 {
				return
			}
			s := out.Status
			if s.Authenticated != tc.authn || !strings.Contains(s.Error, tc.errText) || strings.Join(s.User.Groups, ",") != tc.groups ||
				strings.Join(s.Audiences, ",") != tc.audience {
				t.Fatalf("%s\nstatus %+v", tc.reason, s)
			}
		})
	}
}

// Forward auth never answers 200 with an empty X-Auth-Subject.
func TestForwardAuthNeedsSubject(t *testing.T) {
	k := newKeyServer(t)
	clk := clocktesting.NewFakeClock(time.Now())
	v := newTestValidator(t, k, clk, nil)
	_, d := v.AuthenticateToken(t.Context(), k.sign(t, "RS256", "rsa1", claims(clk.Now(), func(c jwt.MapClaims) { delete(c, "sub") }), nil))
	if d == nil || d.Status != http.StatusUnauthorized {
		t.Fatalf("a token without sub: %v, want 401", d)
	}
}

// An issuer's "active: true" is held to the times and audience it states.
func TestIntrospectionChecksClaims(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Now())
	now := clk.Now()
	cases := map[string]struct {
		reason string
		claims map[string]any
		ok     bool
	}{
		"Active":      {reason: "A current answer for our audience.", claims: map[string]any{"sub": "svc", "aud": "orders", "exp": float64(now.Add(time.Hour).Unix())}, ok: true},
		"PastExpiry":  {reason: "active with an exp in the past.", claims: map[string]any{"sub": "svc", "aud": "orders", "exp": float64(now.Add(-time.Hour).Unix())}},
		"FutureNbf":   {reason: "active with an nbf in the future.", claims: map[string]any{"sub": "svc", "aud": "orders", "exp": float64(now.Add(time.Hour).Unix()), "nbf": float64(now.Add(time.Hour).Unix())}},
		"WrongAud":    {reason: "active for another audience.", claims: map[string]any{"sub": "svc", "aud": "billing", "exp": float64(now.Add(time.Hour).Unix())}},
		"MissingAud":  {reason: "The validator requires an audience; an answer without one proves none.", claims: map[string]any{"sub": "svc", "exp": float64(now.Add(time.Hour).Unix())}},
		"MissingSubj": {reason: "An active answer without a subject identifies nobody.", claims: map[string]any{"aud": "orders", "exp": float64(now.Add(time.Hour).Unix())}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			inspect := func(context.Context, string) (*issuer.Introspection, error) {
				exp, _ := tc.claims["exp"].(float64)
				return &issuer.Introspection{Active: true, Claims: tc.claims, ExpiresAt: time.Unix(int64(exp), 0)}, nil
			}
			v := New(Config{Issuers: []TrustedIssuer{{Name: "Issuer/idp", Inspect: inspect}}, Audiences: []string{"orders"}, Clock: clk, DisableCache: true})
			_, d := v.AuthenticateToken(t.Context(), "opaque-token-0123456789")
			if (d == nil) != tc.ok {
				t.Fatalf("%s\ndenial %v, want ok=%t", tc.reason, d, tc.ok)
			}
		})
	}
}

// leeway: 0s means no tolerance, not the 30-second default.
func TestZeroLeewayIsZero(t *testing.T) {
	k := newKeyServer(t)
	clk := clocktesting.NewFakeClock(time.Now())
	expired := k.sign(t, "RS256", "rsa1", claims(clk.Now(), func(c jwt.MapClaims) { c["exp"] = clk.Now().Add(-10 * time.Second).Unix() }), nil)
	if _, d := newTestValidator(t, k, clk, nil).AuthenticateToken(t.Context(), expired); d != nil {
		t.Fatalf("default leeway: a token expired 10 s ago was refused: %v", d)
	}
	zero := time.Duration(0)
	if _, d := newTestValidator(t, k, clk, func(c *Config) { c.Leeway = &zero }).AuthenticateToken(t.Context(), expired); d == nil {
		t.Fatalf("leeway 0s: a token expired 10 s ago was accepted")
	}
}
