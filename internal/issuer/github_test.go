package issuer_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper/internal/issuer"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer/issuertest"
)

// GitHub App installation tokens against a local server speaking GitHub's API (it verifies the
// app JWT with the app's public key, the headers, the installation and what is asked for): a
// token narrowed to a repository and a permission, revoked; each failure GitHub documents
// classified, the secondary rate limit with its Retry-After.
func TestGitHubAppInstallationTokens(t *testing.T) {
	srv := issuertest.Start(issuertest.GitHubApp)
	defer srv.Close()
	c := newClient(t, srv, srv.Spec())
	request := func(key string, edit func(*issuer.GitHubAppRequest)) issuer.Request {
		g := &issuer.GitHubAppRequest{AppID: issuertest.GitHubAppID, InstallationID: issuertest.GitHubInstallationID}
		if edit != nil {
			edit(g)
		}
		return issuer.Request{Kind: issuer.LoginGitHubApp, Inputs: map[string]string{issuer.InputPrivateKey: key}, GitHubApp: g}
	}
	appKey := srv.AppPrivateKey()
	req := request(appKey, func(g *issuer.GitHubAppRequest) {
		g.Repositories, g.Permissions = []string{"orders"}, map[string]string{"contents": "read"}
	})
	tok, err := c.Login(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if !srv.Valid(tok.AccessToken) || !strings.HasPrefix(tok.AccessToken, "ghs_") || tok.Authorization() != "Bearer "+tok.AccessToken {
		t.Fatalf("token %q (authorization %q) not valid at the server", tok.Fingerprint(), tok.Authorization())
	}
	if d := time.Until(tok.ExpiresAt); d < 59*time.Minute || d > time.Hour {
		t.Errorf("expires in %s, want the hour GitHub grants (expires_at)", d)
	}
	if asked := srv.GitHubAsked(); len(asked) != 1 || len(asked[0].Repositories) != 1 || asked[0].Permissions["contents"] != "read" {
		t.Errorf("the server was asked for %+v, want repositories [orders] and contents: read", asked)
	}
	if err := c.Revoke(t.Context(), req, tok); err != nil || srv.Valid(tok.AccessToken) {
		t.Fatalf("revoke: %v (still valid: %t)", err, srv.Valid(tok.AccessToken))
	}

	otherRSA, _ := rsa.GenerateKey(rand.Reader, 2048)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalECPrivateKey(ec)
	for name, tc := range map[string]struct {
		req   issuer.Request
		class issuer.Class
		says  string
	}{
		"AnotherAppsKey": {request(string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(otherRSA)})), nil),
			issuer.ClassInvalidCredentials, "app JWT was refused"},
		"ECKey": {request(string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER})), nil), issuer.ClassConfig, "RSA"},
		"UnknownInstallation": {request(appKey, func(g *issuer.GitHubAppRequest) { g.InstallationID = "999" }),
			issuer.ClassConfig, "installation 999 not found"},
		"RepositoryNotInstalled": {request(appKey, func(g *issuer.GitHubAppRequest) { g.Repositories = []string{"secret-plans"} }),
			issuer.ClassConfig, "cannot grant"},
		"PermissionNotGranted": {request(appKey, func(g *issuer.GitHubAppRequest) { g.Permissions = map[string]string{"contents": "write"} }),
			issuer.ClassConfig, "cannot grant"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := c.Login(t.Context(), tc.req)
			if issuer.ClassOf(err) != tc.class || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("%v (class %s), want %s saying %q", err, issuer.ClassOf(err), tc.class, tc.says)
			}
			if strings.Contains(err.Error(), "BEGIN") || strings.Contains(err.Error(), "eyJ") {
				t.Fatalf("the error shows a key or the app JWT: %v", err)
			}
		})
	}

	srv.SecondaryRateLimit(1)
	_, err = c.Login(t.Context(), request(appKey, nil))
	if issuer.ClassOf(err) != issuer.ClassRateLimited || issuer.RetryAfterOf(err) != time.Minute {
		t.Fatalf("secondary rate limit: %v (class %s, retry after %s), want RateLimited after 1m", err, issuer.ClassOf(err), issuer.RetryAfterOf(err))
	}
	if _, err := c.Login(t.Context(), request(appKey, nil)); err != nil {
		t.Fatalf("after the rate limit: %v", err)
	}
}
