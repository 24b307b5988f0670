package issuer

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
)

const (
	contentForm = "application/x-www-form-urlencoded"
	// discoveryTTL is how long an OIDC discovery document is reused.
	discoveryTTL = time.Hour
)

// Discovery is the part of an OIDC / RFC 8414 discovery document tokenkeeper uses.
type Discovery struct {
	Issuer                string `json:"issuer"`
	TokenEndpoint         string `json:"token_endpoint"`
	RevocationEndpoint    string `json:"revocation_endpoint"`
	IntrospectionEndpoint string `json:"introspection_endpoint"`
	JWKSURI               string `json:"jwks_uri"`
}

// Discover reads (and caches for an hour) the issuer's discovery document. It tries OIDC's
// /.well-known/openid-configuration, then RFC 8414's /.well-known/oauth-authorization-server, and
// insists that the document names the configured issuer.
func (c *Client) Discover(ctx context.Context) (*Discovery, error) {
	p, ok := c.proto.(oauth2Protocol)
	if !ok || c.spec.OAuth2.IssuerURL == "" {
		return nil, ErrUnsupported
	}
	if d := p.discovered.get(c.clock); d != nil {
		return d, nil
	}

	issuerURL := strings.TrimSuffix(string(c.spec.OAuth2.IssuerURL), "/")
	var lastErr error
	for _, suffix := range []string{"/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"} {
		resp, err := c.send(ctx, call{op: "discovery", method: http.MethodGet, url: issuerURL + suffix, secrets: c.secretsOf(Request{})})
		if err != nil {
			return nil, err
		}
		if resp.status == http.StatusNotFound {
			lastErr = &Error{Class: ClassConfig, Op: "discovery", StatusCode: resp.status, Reason: "no discovery document at " + issuerURL}
			continue
		}
		if resp.status/100 != 2 {
			return nil, c.classify("discovery", resp, ClassConfig, nil)
		}
		d := &Discovery{}
		if err := json.Unmarshal(resp.body, d); err != nil {
			return nil, &Error{Class: ClassMalformedResponse, Op: "discovery", Reason: "discovery document is not JSON"}
		}
		if strings.TrimSuffix(d.Issuer, "/") != issuerURL {
			return nil, &Error{Class: ClassConfig, Op: "discovery", Reason: "discovery document names issuer " + redactor(nil).sanitize(d.Issuer) + ", not " + issuerURL}
		}
		if d.TokenEndpoint == "" {
			return nil, &Error{Class: ClassMalformedResponse, Op: "discovery", Reason: "discovery document has no token_endpoint"}
		}
		p.discovered.set(d, c.clock.Now())
		return d, nil
	}
	return nil, lastErr
}

// endpoint returns an explicit endpoint, else the one discovery names (which may be empty).
func (c *Client) endpoint(ctx context.Context, explicit *v1alpha1.Endpoint, pick func(*Discovery) string) (string, error) {
	if explicit != nil {
		return string(explicit.URL), nil
	}
	if c.spec.OAuth2.IssuerURL == "" {
		return "", nil
	}
	d, err := c.Discover(ctx)
	if err != nil {
		return "", err
	}
	return pick(d), nil
}

func (c *Client) tokenEndpoint(ctx context.Context) (string, error) {
	if c.spec.URL != "" {
		return string(c.spec.URL), nil
	}
	return c.endpoint(ctx, nil, func(d *Discovery) string { return d.TokenEndpoint })
}

func (c *Client) oauth2Login(ctx context.Context, req Request) (*Token, error) {
	endpoint, err := c.tokenEndpoint(ctx)
	if err != nil {
		return nil, err
	}
	form := url.Values{}
	switch req.Kind {
	case LoginClientCredentials:
		form.Set("grant_type", "client_credentials")
	case LoginPassword:
		form.Set("grant_type", "password")
		form.Set("username", req.Inputs[InputUsername])
		form.Set("password", req.Inputs[InputPassword])
	case LoginJWTBearer:
		assertion, err := c.bearerAssertion(req, endpoint)
		if err != nil {
			return nil, err
		}
		form.Set("grant_type", grantJWTBearer)
		form.Set("assertion", assertion)
	case LoginServiceAccount:
		c.addTokenParams(form, req)
		if err := serviceAccountForm(form, req); err != nil { // after: its audience and resource win
			return nil, err
		}
	default:
		return nil, &Error{Class: ClassConfig, Op: "login", Reason: "oauth2 issuers take clientCredentials, password, jwtBearer, serviceAccount or refreshToken logins, not " + string(req.Kind)}
	}
	if req.Kind != LoginServiceAccount {
		c.addTokenParams(form, req)
	}
	tok, err := c.tokenRequest(ctx, "login", endpoint, form, req, ClassInvalidCredentials, nil)
	c.forgetDiscoveryOn(err)
	return tok, err
}

// forgetDiscoveryOn drops the cached discovery document after a failure that a moved endpoint
// could explain (a configuration error or an unreachable endpoint): the next attempt reads it
// again. Rejected credentials and rate limits say nothing about the document.
func (c *Client) forgetDiscoveryOn(err error) {
	if p, ok := c.proto.(oauth2Protocol); ok {
		if class := ClassOf(err); class == ClassConfig || class == ClassUnavailable {
			p.discovered.set(nil, time.Time{})
		}
	}
}

// discoveryCache is the OAuth2 protocol's state: the discovery document, reused for
// discoveryTTL. It is safe for concurrent use.
type discoveryCache struct {
	mu        sync.Mutex
	doc       *Discovery
	fetchedAt time.Time
}

func (d *discoveryCache) get(clk clock.PassiveClock) *Discovery {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.doc != nil && clk.Since(d.fetchedAt) < discoveryTTL {
		return d.doc
	}
	return nil
}

func (d *discoveryCache) set(doc *Discovery, at time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.doc, d.fetchedAt = doc, at
}

func (c *Client) oauth2Refresh(ctx context.Context, req Request, prev *Token) (*Token, error) {
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {prev.RefreshToken}}
	endpoint, err := c.endpoint(ctx, c.spec.Refresh, func(*Discovery) string { return "" })
	if err == nil && endpoint == "" {
		endpoint, err = c.tokenEndpoint(ctx)
	}
	if err != nil {
		return nil, err
	}
	return c.tokenRequest(ctx, "refresh", endpoint, form, req, ClassRefreshRejected, []string{prev.RefreshToken, prev.AccessToken})
}

func (c *Client) addTokenParams(form url.Values, req Request) {
	o := c.spec.OAuth2
	if scopes := append(append([]string{}, o.Scopes...), req.Scopes...); len(scopes) > 0 {
		form.Set("scope", strings.Join(scopes, " "))
	}
	if o.Audience != "" {
		form.Set("audience", o.Audience)
	}
	if o.Resource != "" {
		form.Set("resource", o.Resource)
	}
}

// clientAuth adds client authentication: a signed JWT when the client has a private key
// (private_key_jwt, RFC 7523 §2.2), else RFC 6749 §2.3.1 HTTP Basic with form-encoded parts, or
// body parameters. A client without a secret (public client) sends only client_id.
func (c *Client) clientAuth(form url.Values, req Request, endpoint string) (http.Header, error) {
	id, secret := req.Inputs[InputClientID], req.Inputs[InputClientSecret]
	if id == "" {
		return nil, nil
	}
	if pemKey := req.Inputs[InputPrivateKey]; pemKey != "" {
		key, err := parseSigningKey(pemKey)
		if err != nil {
			return nil, &Error{Class: ClassConfig, Op: "login", Reason: "privateKeyKey: " + err.Error()}
		}
		x5t := ""
		if cert := req.Inputs[InputCertificate]; cert != "" {
			if x5t, err = certificateThumbprint(cert, key); err != nil {
				return nil, &Error{Class: ClassConfig, Op: "login", Reason: "certificateKey: " + err.Error()}
			}
		}
		audience := endpoint
		if req.AssertionAudience != "" {
			audience = req.AssertionAudience
		}
		assertion, err := clientAssertion(key, id, audience, x5t, c.clock.Now(), req.MaxLifetime)
		if err != nil {
			return nil, &Error{Class: ClassConfig, Op: "login", Reason: "signing the client assertion failed"}
		}
		form.Set("client_id", id)
		form.Set("client_assertion_type", clientAssertionType)
		form.Set("client_assertion", assertion)
		return nil, nil
	}
	if secret == "" || c.spec.OAuth2.ClientAuthentication == v1alpha1.ClientAuthBody {
		form.Set("client_id", id)
		if secret != "" {
			form.Set("client_secret", secret)
		}
		return nil, nil
	}
	r, _ := http.NewRequest(http.MethodPost, "/", nil)
	r.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	return http.Header{"Authorization": r.Header["Authorization"]}, nil
}

func (c *Client) tokenRequest(ctx context.Context, op, endpoint string, form url.Values, req Request, rejected Class, tokens []string) (*Token, error) {
	header, err := c.clientAuth(form, req, endpoint)
	if err != nil {
		return nil, err
	}
	// The signed assertions are secrets too: a captured one is valid for its lifetime.
	secrets := c.secretsOf(req, append(tokens, form.Get("client_assertion"), form.Get("assertion"))...)
	resp, err := c.send(ctx, call{op: op, method: http.MethodPost, url: endpoint, contentType: contentForm, body: []byte(form.Encode()), header: header, secrets: secrets})
	if err != nil {
		return nil, err
	}
	if resp.status/100 != 2 {
		return nil, c.classify(op, resp, rejected, secrets)
	}
	return c.parse(op, resp, req, false, secrets)
}

// oauth2Revoke revokes per RFC 7009: the refresh token when there is one (which ends the whole
// session at most servers), else the access token.
func (c *Client) oauth2Revoke(ctx context.Context, req Request, tok *Token) error {
	endpoint, err := c.endpoint(ctx, c.spec.Revoke, func(d *Discovery) string { return d.RevocationEndpoint })
	if err != nil {
		return err
	}
	if endpoint == "" {
		return ErrUnsupported
	}
	form := url.Values{"token": {tok.AccessToken}, "token_type_hint": {"access_token"}}
	if tok.RefreshToken != "" {
		form = url.Values{"token": {tok.RefreshToken}, "token_type_hint": {"refresh_token"}}
	}
	header, err := c.clientAuth(form, req, endpoint)
	if err != nil {
		return err
	}
	secrets := c.secretsOf(req, tok.AccessToken, tok.RefreshToken, form.Get("client_assertion"))
	resp, err := c.send(ctx, call{op: "revoke", method: http.MethodPost, url: endpoint, contentType: contentForm, body: []byte(form.Encode()), header: header, secrets: secrets})
	if err != nil {
		return err
	}
	if resp.status/100 != 2 {
		return c.classify("revoke", resp, ClassInvalidCredentials, secrets)
	}
	return nil
}

// oauth2Inspect introspects per RFC 7662.
func (c *Client) oauth2Inspect(ctx context.Context, req Request, accessToken string) (*Introspection, error) {
	endpoint, err := c.endpoint(ctx, c.spec.TokenInfo, func(d *Discovery) string { return d.IntrospectionEndpoint })
	if err != nil {
		return nil, err
	}
	if endpoint == "" {
		return nil, ErrUnsupported
	}
	form := url.Values{"token": {accessToken}, "token_type_hint": {"access_token"}}
	header, err := c.clientAuth(form, req, endpoint)
	if err != nil {
		return nil, err
	}
	secrets := c.secretsOf(req, accessToken, form.Get("client_assertion"))
	resp, err := c.send(ctx, call{op: "inspect", method: http.MethodPost, url: endpoint, contentType: contentForm, body: []byte(form.Encode()), header: header, secrets: secrets})
	if err != nil {
		return nil, err
	}
	if resp.status/100 != 2 {
		return nil, c.classify("inspect", resp, ClassInvalidCredentials, secrets)
	}
	var claims map[string]any
	if err := json.Unmarshal(resp.body, &claims); err != nil {
		return nil, &Error{Class: ClassMalformedResponse, Op: "inspect", StatusCode: resp.status, Reason: "introspection response is not a JSON object"}
	}
	in := &Introspection{Claims: claims}
	in.Active, _ = claims["active"].(bool)
	in.Subject, _ = claims["sub"].(string)
	in.Scope, _ = claims["scope"].(string)
	if v, ok := claims["exp"]; ok {
		in.ExpiresAt, _ = ParseTime(v)
	}
	return in, nil
}
