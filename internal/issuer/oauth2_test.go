package issuer_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer"
)

// TestOAuth2Parameters: an RFC 8414-only server is discovered, and scopes (issuer's and the
// Credential's), audience and resource reach the token endpoint.
func TestOAuth2Parameters(t *testing.T) {
	var got url.Values
	var srv *httptest.Server
	srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/.well-known/oauth-authorization-server":
			_, _ = w.Write([]byte(`{"issuer":"` + srv.URL + `","token_endpoint":"` + srv.URL + `/t"}`))
		case "/t":
			_ = r.ParseForm()
			got = r.PostForm
			_, _ = w.Write([]byte(`{"access_token":"abc","token_type":"Bearer","expires_in":60}`))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	c, err := issuer.New(issuer.Config{Spec: v1alpha1.IssuerSpec{
		CABundle: string(pemOf(srv)),
		OAuth2: &v1alpha1.OAuth2{IssuerURL: v1alpha1.EndpointURL(srv.URL), Scopes: []string{"orders.read"},
			Audience: "orders", Resource: "https://orders.example.com/"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	req := issuer.Request{Kind: issuer.LoginClientCredentials, Scopes: []string{"orders.write"},
		Inputs: map[string]string{"client_id": "id", "client_secret": "secret"}}
	if _, err := c.Login(t.Context(), req); err != nil {
		t.Fatalf("Login: %v", err)
	}
	want := map[string]string{
		"grant_type": "client_credentials", "scope": "orders.read orders.write",
		"audience": "orders", "resource": "https://orders.example.com/",
	}
	for k, v := range want {
		if got.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, got.Get(k), v)
		}
	}
	if got.Has("client_secret") {
		t.Errorf("client_secret sent in the body with Basic authentication")
	}
}
