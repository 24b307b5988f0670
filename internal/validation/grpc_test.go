package validation

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/tokenkeeper/tokenkeeper/internal/issuer"
)

// extAuthzListener is a validation Listener on loopback serving s (and ext_authz with default
// validator def) until the test ends: TLS, or plaintext with h2c.
type extAuthzListener struct {
	addr      string
	clientTLS *tls.Config // nil for h2c
}

func startExtAuthz(t testing.TB, s *Server, def string, withTLS bool) extAuthzListener {
	t.Helper()
	a, err := NewExtAuthz(s, def)
	if err != nil {
		t.Fatal(err)
	}
	var out extAuthzListener
	if !withTLS { // benchmarks use h2c: grpc-go's own transport, as --ext-authz-h2c-bind-address serves it
		out.addr = serveOnLoopback(t, &GRPCListener{ExtAuthz: a})
		return out
	}
	l := &Listener{Handler: GRPCHandler(a.GRPCServer(), s)}
	l.CertDir, out.clientTLS = writeServingCert(t.(*testing.T))
	out.addr = serveOnLoopback(t, l)
	return out
}

// client is a real grpc-go client of the Authorization service, closed before the listener stops.
func (l extAuthzListener) client(t testing.TB) authv3.AuthorizationClient {
	t.Helper()
	creds := insecure.NewCredentials()
	if l.clientTLS != nil {
		cfg := l.clientTLS.Clone()
		cfg.NextProtos = nil // gRPC asks for h2
		creds = credentials.NewTLS(cfg)
	}
	conn, err := grpc.NewClient("passthrough:///"+l.addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return authv3.NewAuthorizationClient(conn)
}

// checkRequest is a CheckRequest as Envoy sends it for a GET with these Authorization header
// values: in the headers map (repeated headers joined with commas), or with encode_raw_headers in
// header_map, one entry per header. The client also sends an identity header of its own.
func checkRequest(auth []string, ext map[string]string, raw bool) *authv3.CheckRequest {
	h := &authv3.AttributeContext_HttpRequest{Id: "1", Method: "GET", Path: "/orders/1", Host: "shop.example", Scheme: "https", Protocol: "HTTP/1.1"}
	if raw {
		h.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
			{Key: ":method", RawValue: []byte("GET")}, {Key: ":path", RawValue: []byte("/orders/1")}, {Key: "x-tenant", RawValue: []byte("spoofed")},
		}}
		for _, a := range auth {
			h.HeaderMap.Headers = append(h.HeaderMap.Headers, &corev3.HeaderValue{Key: "authorization", RawValue: []byte(a)})
		}
	} else {
		h.Headers = map[string]string{":method": "GET", ":path": "/orders/1", "x-tenant": "spoofed"}
		if len(auth) > 0 {
			h.Headers["authorization"] = strings.Join(auth, ",")
		}
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: h}, ContextExtensions: ext}}
}

// checkAnswer is a CheckResponse read as the HTTP answer Envoy makes of it.
type checkAnswer struct {
	attackResult
	body    string
	message string   // the gRPC status message
	removed []string // headers_to_remove
}

func check(t *testing.T, c authv3.AuthorizationClient, req *authv3.CheckRequest) checkAnswer {
	t.Helper()
	resp, err := c.Check(t.Context(), req)
	if err != nil {
		t.Fatalf("Check: %v", err) // every problem is a denial, never an error
	}
	a := checkAnswer{attackResult: attackResult{headers: map[string]string{}}, message: resp.GetStatus().GetMessage()}
	read := func(hs []*corev3.HeaderValueOption) {
		for _, h := range hs {
			if h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
				t.Fatalf("header %s would be appended to the client's, not replace it", h.GetHeader().GetKey())
			}
			a.headers[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
		}
	}
	switch r := resp.GetHttpResponse().(type) {
	case *authv3.CheckResponse_OkResponse:
		if resp.GetStatus().GetCode() != int32(codes.OK) {
			t.Fatalf("ok_response with status %v", resp.GetStatus())
		}
		a.status = 200
		read(r.OkResponse.GetHeaders())
		a.removed = r.OkResponse.GetHeadersToRemove()
	case *authv3.CheckResponse_DeniedResponse:
		if resp.GetStatus().GetCode() == int32(codes.OK) {
			t.Fatalf("denied_response with status OK")
		}
		a.status = int(r.DeniedResponse.GetStatus().GetCode())
		read(r.DeniedResponse.GetHeaders())
		a.challenge = a.headers["WWW-Authenticate"]
		a.body = r.DeniedResponse.GetBody()
	default:
		t.Fatalf("CheckResponse without an HTTP response: %v", resp)
	}
	return a
}

// The attack table, run over every transport that serves /validate's decision: /validate over
// HTTPS, and ext_authz over gRPC with TLS on the same port and over h2c, in both of Envoy's header
// encodings. Denial reasons are read from the metrics each transport records.
func TestAttacksOverTransports(t *testing.T) {
	k := newKeyServer(t)
	clk := clocktesting.NewFakeClock(time.Now())
	var attackerHits atomic.Int32
	attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		attackerHits.Add(1)
		_, _ = w.Write([]byte(`{"keys":[]}`))
	}))
	defer attacker.Close()
	cases := attackCases(t, k, clk.Now(), attacker.URL)

	s := NewServer()
	for _, name := range []string{"http", "grpc-tls", "grpc-h2c"} {
		s.Set(types.NamespacedName{Namespace: "attacks", Name: name}, newTestValidator(t, k, clk, nil))
	}
	tlsPort := startExtAuthz(t, s, "", true)
	// The h2c listener's default is its validator: its requests name none.
	h2c := startExtAuthz(t, s, "attacks/grpc-h2c", false).client(t)
	overTLS := tlsPort.client(t)

	t.Run("HTTP", func(t *testing.T) {
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsPort.clientTLS}}
		runAttacks(t, cases, "attacks/http", func(t *testing.T, auth []string) attackResult {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "https://"+tlsPort.addr+"/validate/attacks/http", nil)
			req.Header["Authorization"] = auth
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			return attackResult{status: resp.StatusCode, challenge: resp.Header.Get("WWW-Authenticate"),
				headers: map[string]string{"X-Auth-Subject": resp.Header.Get("X-Auth-Subject"), "X-Email": resp.Header.Get("X-Email")}}
		})
	})
	t.Run("GRPC-TLS", func(t *testing.T) {
		ext := map[string]string{ValidatorContextKey: "attacks/grpc-tls"}
		runAttacks(t, cases, "attacks/grpc-tls", func(t *testing.T, auth []string) attackResult {
			return check(t, overTLS, checkRequest(auth, ext, false)).attackResult
		})
	})
	t.Run("GRPC-H2C-RawHeaders", func(t *testing.T) {
		runAttacks(t, cases, "attacks/grpc-h2c", func(t *testing.T, auth []string) attackResult {
			return check(t, h2c, checkRequest(auth, nil, true)).attackResult
		})
	})
	if n := attackerHits.Load(); n != 0 {
		t.Fatalf("a URL from a token was fetched %d times", n)
	}
}

// ext_authz answers with the identity headers of /validate, replacing any the client sent, and
// removes a forwarded-claim header the token does not fill, so that the client cannot fill it.
func TestExtAuthzHeaders(t *testing.T) {
	k := newKeyServer(t)
	clk := clocktesting.NewFakeClock(time.Now())
	s := NewServer()
	s.Set(types.NamespacedName{Namespace: "shop", Name: "orders-api"}, newTestValidator(t, k, clk, func(c *Config) {
		c.ForwardClaims = map[string]string{"email": "X-Email", "tenant": "x-tenant"}
	}))
	allowed := Validations.WithLabelValues("shop/orders-api", "allowed", "ok")
	before := testutil.ToFloat64(allowed)
	c := startExtAuthz(t, s, "shop/orders-api", true).client(t)
	ok := check(t, c, checkRequest([]string{"Bearer " + k.sign(t, "RS256", "rsa1", claims(clk.Now(), nil), nil)}, nil, false))
	if ok.status != 200 || len(ok.headers) != 2 || ok.headers["X-Auth-Subject"] != "user-1" || ok.headers["X-Email"] != "u@example.com" {
		t.Fatalf("valid token: %d %v", ok.status, ok.headers)
	}
	if strings.Join(ok.removed, ",") != "X-Tenant" {
		t.Fatalf("headers_to_remove %v, want the unfilled forwarded claim X-Tenant", ok.removed)
	}
	withTenant := check(t, c, checkRequest([]string{"Bearer " + k.sign(t, "RS256", "rsa1", claims(clk.Now(), func(c jwt.MapClaims) { c["tenant"] = "acme" }), nil)}, nil, true))
	if withTenant.headers["X-Tenant"] != "acme" || len(withTenant.removed) != 0 {
		t.Fatalf("token with a tenant: %v, removes %v", withTenant.headers, withTenant.removed)
	}
	if n := testutil.ToFloat64(allowed) - before; n != 2 {
		t.Fatalf("%v allowed validations counted, want 2", n)
	}
	scope := check(t, c, checkRequest([]string{"Bearer " + k.sign(t, "RS256", "rsa1", claims(clk.Now(), func(c jwt.MapClaims) { c["scope"] = "x" }), nil)}, nil, false))
	if scope.status != 403 || scope.challenge != `Bearer realm="tokenkeeper", error="insufficient_scope", error_description="token lacks a required scope", scope="orders.read"` ||
		scope.headers["Content-Type"] != "application/json" || !strings.Contains(scope.body, `"error":"insufficient_scope"`) || scope.message != "token lacks a required scope" {
		t.Fatalf("missing scope: %+v", scope)
	}
	if none := check(t, c, checkRequest(nil, nil, false)); none.status != 401 || none.challenge != `Bearer realm="tokenkeeper"` {
		t.Fatalf("no credentials: %+v", none)
	}
}

// Opaque tokens over ext_authz: asked of the issuer's introspection, which can revoke them.
func TestExtAuthzOpaqueIntrospection(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Now())
	const token = "c04c7ff7-5fa1-48fb-aa2a-bcf97a6b8a79"
	var revoked, asked atomic.Int32
	inspect := func(_ context.Context, tok string) (*issuer.Introspection, error) {
		asked.Add(1)
		if tok != token || revoked.Load() != 0 {
			return &issuer.Introspection{}, nil
		}
		exp := clk.Now().Add(time.Hour)
		return &issuer.Introspection{Active: true, ExpiresAt: exp,
			Claims: map[string]any{"sub": "svc-1", "aud": "orders", "email": "svc@example.com", "exp": float64(exp.Unix())}}, nil
	}
	s := NewServer()
	s.Set(types.NamespacedName{Namespace: "crm", Name: "api"}, New(Config{Issuers: []TrustedIssuer{{Name: "Issuer/crm", Inspect: inspect}},
		Audiences: []string{"orders"}, ForwardClaims: map[string]string{"email": "X-Email"}, Clock: clk, DisableCache: true}))
	c := startExtAuthz(t, s, "", false).client(t)
	ext := map[string]string{ValidatorContextKey: "crm/api"}
	if ok := check(t, c, checkRequest([]string{"Bearer " + token}, ext, false)); ok.status != 200 || ok.headers["X-Auth-Subject"] != "svc-1" || ok.headers["X-Email"] != "svc@example.com" {
		t.Fatalf("active opaque token: %+v", ok)
	}
	revoked.Store(1)
	if got := check(t, c, checkRequest([]string{"Bearer " + token}, ext, true)); got.status != 401 || !strings.Contains(got.challenge, `error="invalid_token"`) {
		t.Fatalf("revoked opaque token: %+v", got)
	}
	if n := asked.Load(); n != 2 {
		t.Fatalf("%d introspections for two checks without a cache, want 2", n)
	}
}

// The route's context extension picks the validator, else the listener's default; a missing,
// unknown or malformed reference, and a CheckRequest without an HTTP request, are denials with
// their reason, never errors or crashes.
func TestExtAuthzSelection(t *testing.T) {
	k := newKeyServer(t)
	clk := clocktesting.NewFakeClock(time.Now())
	s := NewServer()
	s.Set(types.NamespacedName{Namespace: "shop", Name: "orders-api"}, newTestValidator(t, k, clk, nil))
	s.Set(types.NamespacedName{Namespace: "shop", Name: "billing-api"}, newTestValidator(t, k, clk, func(c *Config) { c.Audiences = []string{"billing"} }))
	orders := []string{"Bearer " + k.sign(t, "RS256", "rsa1", claims(clk.Now(), nil), nil)}
	withDefault := startExtAuthz(t, s, "shop/billing-api", true).client(t)
	noDefault := startExtAuthz(t, s, "", false).client(t)
	named := func(ref string) map[string]string { return map[string]string{ValidatorContextKey: ref, "other": "x"} }
	for name, tc := range map[string]struct {
		reason string
		client authv3.AuthorizationClient
		req    *authv3.CheckRequest
		status int
		says   string // in the body and the gRPC status message
	}{
		"ExtensionNamesValidator": {reason: "the route's validator accepts the token", client: noDefault, req: checkRequest(orders, named("shop/orders-api"), false), status: 200},
		"ExtensionOverDefault":    {reason: "the route's validator wins over the default", client: withDefault, req: checkRequest(orders, named("shop/orders-api"), true), status: 200},
		"DefaultApplies":          {reason: "without an extension the default (billing) checks, and refuses an orders token", client: withDefault, req: checkRequest(orders, nil, false), status: 401, says: "audience not accepted"},
		"ExtensionOtherAudience":  {reason: "a route naming billing refuses an orders token", client: noDefault, req: checkRequest(orders, named("shop/billing-api"), false), status: 401, says: "audience not accepted"},
		"NoValidator":             {reason: "neither extension nor default", client: noDefault, req: checkRequest(orders, map[string]string{"other": "x"}, false), status: 403, says: "names no TokenValidator"},
		"UnknownValidator":        {reason: "a validator that does not exist", client: withDefault, req: checkRequest(orders, named("shop/nope"), false), status: 403, says: "no such TokenValidator shop/nope"},
		"MalformedReference":      {reason: "a reference that is not namespace/name", client: withDefault, req: checkRequest(orders, named("shop/orders-api/x"), false), status: 403, says: "is not namespace/name"},
		"EmptyReference":          {reason: "an empty reference is not the default", client: withDefault, req: checkRequest(orders, named(""), false), status: 403, says: "is not namespace/name"},
		"EmptyCheckRequest":       {reason: "no attributes at all", client: withDefault, req: &authv3.CheckRequest{}, status: 403, says: "no HTTP request attributes"},
		"NoHTTPAttributes": {reason: "a request without its HTTP part", client: noDefault,
			req: &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{}, ContextExtensions: named("shop/orders-api")}}, status: 403, says: "no HTTP request attributes"},
		"NoHeaders": {reason: "an HTTP request without headers has no credentials", client: noDefault,
			req: &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{}}, ContextExtensions: named("shop/orders-api")}}, status: 401, says: "no credentials"},
	} {
		t.Run(name, func(t *testing.T) {
			got := check(t, tc.client, tc.req)
			if got.status != tc.status || !strings.Contains(got.body, tc.says) || !strings.Contains(got.message, tc.says) {
				t.Fatalf("%s\ngot %d %q (%q), want %d saying %q", tc.reason, got.status, got.body, got.message, tc.status, tc.says)
			}
			if tc.status == 403 && tc.says != "" && got.challenge != "" {
				t.Fatalf("%s\na configuration problem challenges the client: %q", tc.reason, got.challenge)
			}
		})
	}
	if _, err := NewExtAuthz(s, "no-slash"); err == nil {
		t.Fatal("a default validator that is not namespace/name was accepted")
	}
}

// One TLS port serves the HTTP endpoints over HTTP/1.1 and HTTP/2 beside gRPC.
func TestTLSPortServesHTTPAndGRPC(t *testing.T) {
	l := startExtAuthz(t, NewServer(), "", true)
	cfg := l.clientTLS.Clone()
	cfg.NextProtos = []string{"h2"}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "https://"+l.addr+"/healthz", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
		t.Fatalf("/healthz over HTTP/2: %d %s", resp.StatusCode, resp.Proto)
	}
	if got := check(t, l.client(t), checkRequest(nil, nil, false)); got.status != 403 {
		t.Fatalf("gRPC on the same port: %+v", got)
	}
}
