package issuertest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
)

// GitHubApp speaks GitHub's App installation token API as documented for REST API version
// 2022-11-28: POST /app/installations/{id}/access_tokens with an app JWT (RS256, iss the app ID,
// exp at most 10 minutes after iat) and the Accept and X-GitHub-Api-Version headers, answering
// 201 {token, expires_at, permissions, repository_selection}, 401 for a bad JWT, 404 for an
// installation the app does not have, 422 for repositories or permissions it cannot grant and
// 403 with Retry-After for the secondary rate limit; DELETE /installation/token (204) revokes a
// token; GET /installation/repositories is the API the token is for. It is not in Flavors (the
// seeds and OAuth2).
const GitHubApp Flavor = "githubapp"

// The app and installation the server knows.
const (
	GitHubAppID          = "123456"
	GitHubInstallationID = "7890"
	GitHubAPIVersion     = "2022-11-28"
)

// GitHubRepositories are the repositories the installation can reach.
var GitHubRepositories = []string{"orders", "billing", "infra"}

// AppPrivateKey is the app's private key (PEM), generated once per server.
func (s *Server) AppPrivateKey() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(s.appKeyLocked())}))
}

func (s *Server) appKeyLocked() *rsa.PrivateKey {
	if s.appKey == nil {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		s.appKey = k
	}
	return s.appKey
}

// SecondaryRateLimit makes the next n token requests answer 403 with Retry-After.
func (s *Server) SecondaryRateLimit(n int) { s.locked(func() { s.rateLimited = n }) }

func githubError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]any{"message": msg, "documentation_url": "https://docs.github.com/rest", "status": strconv.Itoa(status)})
}

func (s *Server) serveGitHub(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Accept") != "application/vnd.github+json" || r.Header.Get("X-GitHub-Api-Version") != GitHubAPIVersion {
		githubError(w, 400, "send Accept: application/vnd.github+json and X-GitHub-Api-Version: "+GitHubAPIVersion)
		return
	}
	switch {
	case r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/app/installations/") && strings.HasSuffix(r.URL.Path, "/access_tokens"):
		s.githubToken(w, r, strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/app/installations/"), "/access_tokens"))
	case r.Method == http.MethodDelete && r.URL.Path == "/installation/token":
		s.count(OpRevoke)
		s.mu.Lock()
		se := s.authorizedLocked(r, "Bearer")
		if se != nil {
			se.revoke()
		}
		s.mu.Unlock()
		if se == nil {
			githubError(w, 401, "Bad credentials")
			return
		}
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodGet && r.URL.Path == "/installation/repositories":
		s.protected(w, r, "Bearer")
	default:
		githubError(w, 404, "Not Found")
	}
}

func (s *Server) githubToken(w http.ResponseWriter, r *http.Request, installation string) {
	s.count(OpLogin)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rateLimited > 0 {
		s.rateLimited--
		w.Header().Set("Retry-After", "60")
		githubError(w, 403, "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.")
		return
	}
	if err := s.checkAppJWT(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")); err != nil {
		githubError(w, 401, "A JSON web token could not be decoded: "+err.Error())
		return
	}
	if installation != GitHubInstallationID {
		githubError(w, 404, "Not Found")
		return
	}
	var ask struct {
		Repositories []string          `json:"repositories"`
		Permissions  map[string]string `json:"permissions"`
	}
	if body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20)); len(body) > 0 && json.Unmarshal(body, &ask) != nil {
		githubError(w, 400, "Problems parsing JSON")
		return
	}
	for _, repo := range ask.Repositories {
		if !slices.Contains(GitHubRepositories, repo) {
			githubError(w, 422, "There is at least one repository that does not exist or is not accessible to the parent installation.")
			return
		}
	}
	perms := map[string]string{"contents": "read", "metadata": "read", "issues": "write"}
	for k, v := range ask.Permissions {
		if have, ok := perms[k]; !ok || v == "write" && have == "read" || v != "read" && v != "write" {
			githubError(w, 422, "The permissions requested are not granted to this installation.")
			return
		}
	}
	if len(ask.Permissions) > 0 {
		perms = ask.Permissions
	}
	se := &session{id: randHex(8), subject: "installation:" + installation}
	se.expires = time.Now().Add(s.lifetime)
	se.access = "ghs_" + randHex(18)
	s.byAccess[se.access] = se
	s.issued = append(s.issued, se.access)
	s.grants = append(s.grants, Grant{At: time.Now(), Token: se.access})
	selection := "all"
	if len(ask.Repositories) > 0 {
		selection = "selected"
	}
	s.githubAsked = append(s.githubAsked, GitHubAsk{Repositories: ask.Repositories, Permissions: ask.Permissions})
	writeJSON(w, 201, map[string]any{"token": se.access, "expires_at": se.expires.UTC().Format(time.RFC3339),
		"permissions": perms, "repository_selection": selection})
}

// GitHubAsk is what one token request asked for.
type GitHubAsk struct {
	Repositories []string
	Permissions  map[string]string
}

// GitHubAsked lists what each successful token request asked for.
func (s *Server) GitHubAsked() []GitHubAsk {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]GitHubAsk(nil), s.githubAsked...)
}

// checkAppJWT verifies an app JWT as GitHub does; callers hold mu.
func (s *Server) checkAppJWT(raw string) error {
	claims := jwt.RegisteredClaims{}
	_, err := jwt.ParseWithClaims(raw, &claims, func(*jwt.Token) (any, error) { return &s.appKeyLocked().PublicKey, nil },
		jwt.WithValidMethods([]string{"RS256"}), jwt.WithIssuer(GitHubAppID), jwt.WithExpirationRequired(), jwt.WithIssuedAt())
	if err != nil {
		return err
	}
	if claims.IssuedAt == nil || claims.ExpiresAt.Sub(claims.IssuedAt.Time) > 10*time.Minute {
		return errors.New("'Expiration time' claim ('exp') is too far in the future")
	}
	return nil
}

// githubSpec is the Issuer of a GitHubApp server.
func (s *Server) githubSpec() v1alpha1.IssuerSpec {
	return v1alpha1.IssuerSpec{URL: v1alpha1.EndpointURL(s.URL()), GitHubApp: &v1alpha1.GitHubApp{}, CABundle: s.CABundle()}
}
