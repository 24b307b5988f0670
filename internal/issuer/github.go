package issuer

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// GitHub App installation tokens: an app JWT (RS256, issued 60 s in the past against clock
// drift, valid 9 minutes, iss the app ID) buys a one-hour installation token at
// POST {url}/app/installations/{id}/access_tokens, narrowed to repositories and permissions when
// asked; DELETE {url}/installation/token revokes it.

// GitHubAPIVersion is the REST API version every request names.
const GitHubAPIVersion = "2022-11-28"

// Bounds GitHub puts on app JWTs: exp at most 10 minutes after iat.
const (
	githubJWTBackdate = 60 * time.Second
	githubJWTLifetime = 9 * time.Minute
)

// GitHubAppRequest is what a githubApp login asks for.
type GitHubAppRequest struct {
	AppID, InstallationID string
	Repositories          []string
	Permissions           map[string]string
}

type githubAppProtocol struct{ c *Client }

func githubHeaders(bearer string) http.Header {
	h := http.Header{}
	h.Set("Authorization", "Bearer "+bearer)
	h.Set("Accept", "application/vnd.github+json")
	h.Set("X-GitHub-Api-Version", GitHubAPIVersion)
	return h
}

func (p githubAppProtocol) login(ctx context.Context, req Request) (*Token, error) {
	c := p.c
	g := req.GitHubApp
	if req.Kind != LoginGitHubApp || g == nil {
		return nil, configError("a githubApp issuer takes a githubApp login, not " + string(req.Kind))
	}
	key, err := parseSigningKey(req.Inputs[InputPrivateKey])
	if err != nil {
		return nil, configError("privateKeyKey: " + err.Error())
	}
	if key.method != jwt.SigningMethodRS256 {
		return nil, configError("privateKeyKey: a GitHub App's key is RSA (app JWTs are RS256)")
	}
	now := c.clock.Now()
	lifetime := githubJWTLifetime
	if req.MaxLifetime > 0 {
		lifetime = min(lifetime, req.MaxLifetime)
	}
	appJWT, err := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.RegisteredClaims{Issuer: g.AppID,
		IssuedAt: jwt.NewNumericDate(now.Add(-githubJWTBackdate)), ExpiresAt: jwt.NewNumericDate(now.Add(lifetime))}).SignedString(key.key)
	if err != nil {
		return nil, configError("signing the app JWT failed")
	}
	var body []byte
	if len(g.Repositories) > 0 || len(g.Permissions) > 0 {
		narrow := map[string]any{}
		if len(g.Repositories) > 0 {
			narrow["repositories"] = g.Repositories
		}
		if len(g.Permissions) > 0 {
			narrow["permissions"] = g.Permissions
		}
		body, _ = json.Marshal(narrow)
	}
	endpoint := strings.TrimSuffix(string(c.spec.URL), "/") + "/app/installations/" + url.PathEscape(g.InstallationID) + "/access_tokens"
	secrets := c.secretsOf(req, appJWT)
	resp, err := c.send(ctx, call{op: "login", method: http.MethodPost, url: endpoint, contentType: contentJSON, body: body,
		header: githubHeaders(appJWT), secrets: secrets})
	if err != nil {
		return nil, err
	}
	if resp.status/100 != 2 {
		return nil, c.githubError("login", resp, secrets, g)
	}
	tok, err := c.parse("login", resp, req, false, secrets)
	if err != nil {
		return nil, err
	}
	tok.Scheme = "Bearer"
	return tok, nil
}

// githubError classifies GitHub's answers: 401 a refused app JWT, 403 a rate limit when GitHub
// says so (Retry-After, or no requests left until x-ratelimit-reset) else a refusal, 404 an
// installation the app does not have, 422 repositories or permissions it cannot grant.
func (c *Client) githubError(op string, resp *response, secrets redactor, g *GitHubAppRequest) error {
	e := &Error{Op: op, StatusCode: resp.status, Reason: secrets.sanitize(issuerReason(resp.body))}
	switch {
	case resp.status == http.StatusTooManyRequests || resp.status == http.StatusForbidden &&
		(resp.header.Get("Retry-After") != "" || resp.header.Get("X-Ratelimit-Remaining") == "0"):
		e.Class, e.RetryAfter = ClassRateLimited, c.retryAfter(resp.header)
		if reset, err := strconv.ParseInt(resp.header.Get("X-Ratelimit-Reset"), 10, 64); err == nil && e.RetryAfter == 0 {
			e.RetryAfter = min(max(time.Unix(reset, 0).Sub(c.clock.Now()), 0), maxRetryAfter)
		}
	case resp.status >= 500:
		e.Class, e.RetryAfter = ClassUnavailable, c.retryAfter(resp.header)
	case resp.status == http.StatusUnauthorized:
		e.Class = ClassInvalidCredentials
		e.Reason = "the app JWT was refused (" + e.Reason + "): check appID and the private key"
	case resp.status == http.StatusNotFound:
		e.Class = ClassConfig
		e.Reason = "installation " + g.InstallationID + " not found for app " + g.AppID + ": check installationID and that the app is installed"
	case resp.status == http.StatusUnprocessableEntity:
		e.Class = ClassConfig
		e.Reason = "GitHub cannot grant the repositories or permissions asked for: " + e.Reason
	default:
		e.Class = ClassInvalidCredentials
	}
	return e
}

func (githubAppProtocol) refresh(context.Context, Request, *Token) (*Token, error) {
	return nil, ErrUnsupported
}

// revoke ends an installation token: DELETE /installation/token, authenticated by the token.
// A token GitHub no longer knows (401) is as good as revoked.
func (p githubAppProtocol) revoke(ctx context.Context, req Request, tok *Token) error {
	c := p.c
	secrets := c.secretsOf(req, tok.AccessToken)
	resp, err := c.send(ctx, call{op: "revoke", method: http.MethodDelete, url: strings.TrimSuffix(string(c.spec.URL), "/") + "/installation/token",
		header: githubHeaders(tok.AccessToken), secrets: secrets})
	if err != nil {
		return err
	}
	if resp.status/100 != 2 && resp.status != http.StatusUnauthorized {
		return c.githubError("revoke", resp, secrets, req.GitHubApp)
	}
	return nil
}

func (githubAppProtocol) inspect(context.Context, Request, string) (*Introspection, error) {
	return nil, ErrUnsupported
}
func (githubAppProtocol) canRefresh() bool { return false }
func (githubAppProtocol) canRevoke() bool  { return true }
