// Package issuer talks to token services: it logs in, refreshes, revokes and inspects tokens for
// JSON-login APIs and OAuth2 servers, classifying every failure so a controller knows what to do.
// It needs no Kubernetes: callers pass an IssuerSpec and the inputs read from a Secret.
package issuer

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"k8s.io/utils/clock"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/egress"
	"github.com/tokenkeeper/tokenkeeper/internal/tmpl"
)

const (
	// DefaultTimeout bounds each request when the issuer does not set one.
	DefaultTimeout = 10 * time.Second
	// MaxBodySize caps every response body read from an issuer.
	MaxBodySize = 1 << 20
	// maxRetryAfter caps how long a Retry-After can defer us.
	maxRetryAfter = time.Hour
)

// LoginKind is how a Credential logs in.
type LoginKind string

const (
	LoginPassword          LoginKind = "password"
	LoginAPIKey            LoginKind = "apiKey"
	LoginClientCredentials LoginKind = "clientCredentials"
	LoginRefreshToken      LoginKind = "refreshToken"
	LoginJWTBearer         LoginKind = "jwtBearer"
	LoginPrivateKey        LoginKind = "privateKey"
	LoginGitHubApp         LoginKind = "githubApp"
	LoginServiceAccount    LoginKind = "serviceAccount"
)

// Canonical input names. The controller copies the configured Secret keys to these names; every
// other key of the input Secret is passed through for body templates.
const (
	InputUsername     = "username"
	InputPassword     = "password"
	InputKey          = "key"
	InputSecret       = "secret"
	InputClientID     = "client_id"
	InputClientSecret = "client_secret"
	// InputPrivateKey is a PEM private key a client signs its assertions with (private_key_jwt).
	InputPrivateKey = "private_key"
	// InputCertificate is the PEM certificate of InputPrivateKey's public key (x5t#S256).
	InputCertificate = "certificate"
	// InputServiceAccountToken is the Kubernetes ServiceAccount token of a serviceAccount login
	// (.serviceAccountToken in body templates).
	InputServiceAccountToken = "serviceAccountToken"
	// InputServiceAccountKey is a Google service-account key file (JSON).
	InputServiceAccountKey = "service_account_key"
	InputRefreshToken      = "refresh_token"
)

// Request is what one Credential asks of its issuer.
type Request struct {
	Kind LoginKind
	// Inputs are the input Secret's keys plus the canonical names above.
	Inputs map[string]string
	// SessionDuration is asked of the issuer where it supports it, and assumed when the response
	// says nothing.
	SessionDuration time.Duration
	// Scopes are added to the issuer's scopes (OAuth2).
	Scopes []string
	// AssertionAudience is the aud of a private_key_jwt client assertion; the token endpoint
	// when empty.
	AssertionAudience string
	// Assertion is what a jwtBearer login signs.
	Assertion *Assertion
	// GitHubApp is what a githubApp login asks for.
	GitHubApp *GitHubAppRequest
	// ServiceAccount says how a serviceAccount login presents its token.
	ServiceAccount *ServiceAccountRequest
	// MaxLifetime caps what the manager signs (assertions, self-signed tokens): a TokenPolicy's
	// maximum session duration; 0: no cap.
	MaxLifetime time.Duration
}

// Config builds a Client.
type Config struct {
	Spec v1alpha1.IssuerSpec
	// Headers are the extra headers with their values resolved from Secrets.
	Headers map[string]string
	// CheckURL vets every URL before a request (policy: allowed issuers). Optional.
	CheckURL func(*url.URL) error
	// Clock defaults to the real clock.
	Clock clock.PassiveClock
	// Transport replaces the HTTP transport, for tests. Optional.
	Transport http.RoundTripper
	// Egress refuses connections to addresses a tenant must not reach (metadata, loopback, the
	// manager itself), checked on the address dialled. Nil checks nothing (tests, libraries).
	Egress *egress.Policy
	// Trace, when set, sees every request and its answer with secrets redacted (a dry run shows
	// them). Optional.
	Trace func(Exchange)
}

// Client talks to one issuer. It is safe for concurrent use.
type Client struct {
	spec     v1alpha1.IssuerSpec
	headers  map[string]string
	checkURL func(*url.URL) error
	clock    clock.PassiveClock
	http     *http.Client
	trace    func(Exchange)

	// proto is the issuer's protocol, chosen once from its spec; it holds the protocol's own
	// state (OAuth2's discovery document).
	proto protocol
}

// New returns a Client for an issuer. It fails only on configuration that can never work.
func New(cfg Config) (*Client, error) {
	c := &Client{spec: cfg.Spec, headers: cfg.Headers, checkURL: cfg.CheckURL, clock: cfg.Clock, trace: cfg.Trace}
	c.proto = protocolOf(c)
	if c.clock == nil {
		c.clock = clock.RealClock{}
	}
	timeout := DefaultTimeout
	if cfg.Spec.Timeout != nil && cfg.Spec.Timeout.Duration > 0 {
		timeout = cfg.Spec.Timeout.Duration
	}
	rt := cfg.Transport
	if rt == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		if cfg.Egress != nil {
			t.DialContext = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Control: cfg.Egress.Control}).DialContext
		}
		if cfg.Spec.CABundle != "" {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM([]byte(cfg.Spec.CABundle)) {
				return nil, &Error{Class: ClassConfig, Op: "configure", Reason: "caBundle holds no PEM certificate"}
			}
			t.TLSClientConfig.RootCAs = pool
		}
		rt = t
	}
	c.http = &http.Client{
		Transport: userAgentTransport{rt},
		Timeout:   timeout,
		// Redirects are never followed: a login must not be replayed to another scheme or host.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return c, nil
}

// Login starts a session.
func (c *Client) Login(ctx context.Context, req Request) (*Token, error) {
	if req.Kind == LoginRefreshToken {
		rt := req.Inputs[InputRefreshToken]
		if rt == "" {
			return nil, &Error{Class: ClassConfig, Op: "login", Reason: "the input Secret has no refresh token"}
		}
		return c.Refresh(ctx, req, &Token{RefreshToken: rt})
	}
	return c.proto.login(ctx, req)
}

// Refresh trades prev's refresh token for a new token. A response without a new refresh token
// keeps prev's. ErrUnsupported means the issuer has no refresh endpoint: log in instead.
func (c *Client) Refresh(ctx context.Context, req Request, prev *Token) (*Token, error) {
	if prev == nil || prev.RefreshToken == "" {
		return nil, ErrUnsupported
	}
	tok, err := c.proto.refresh(ctx, req, prev)
	if err != nil {
		return nil, err
	}
	if tok.RefreshToken == "" {
		tok.RefreshToken, tok.RefreshField, tok.RefreshExpiresAt = prev.RefreshToken, prev.RefreshField, prev.RefreshExpiresAt
	}
	return tok, nil
}

// Revoke ends the session of tok at the issuer. ErrUnsupported means there is no endpoint.
func (c *Client) Revoke(ctx context.Context, req Request, tok *Token) error {
	return c.proto.revoke(ctx, req, tok)
}

// Introspection is what an issuer says of a token.
type Introspection struct {
	Active    bool
	Subject   string
	Scope     string
	ExpiresAt time.Time
	// Claims holds the whole answer, for validators.
	Claims map[string]any
}

// Inspect asks the issuer whether accessToken is valid (RFC 7662 introspection or a token-info
// endpoint). An invalid token is an inactive Introspection, not an error.
func (c *Client) Inspect(ctx context.Context, req Request, accessToken string) (*Introspection, error) {
	return c.proto.inspect(ctx, req, accessToken)
}

// ErrTokenRejected is returned by Probe when the issuer answers 401 or 403 to the token.
var ErrTokenRejected = errors.New("the issuer rejected the token")

// DefaultProbeInterval is the time between probes when the issuer names none.
const DefaultProbeInterval = 5 * time.Minute

// CanProbe reports whether the issuer names a probe request.
func (c *Client) CanProbe() bool { return c.spec.Probe != nil }

// ProbeInterval is the time between probes of one token.
func (c *Client) ProbeInterval() time.Duration {
	if p := c.spec.Probe; p != nil && p.Interval != nil && p.Interval.Duration > 0 {
		return p.Interval.Duration
	}
	return DefaultProbeInterval
}

// Probe sends the issuer's probe request with tok. nil: accepted (2xx); ErrTokenRejected (an
// *Error wrapping it): 401 or 403; any other error says nothing about the token.
func (c *Client) Probe(ctx context.Context, tok *Token) error {
	p := c.spec.Probe
	if p == nil {
		return ErrUnsupported
	}
	method := p.Method
	if method == "" {
		method = http.MethodGet
	}
	resp, err := c.send(ctx, call{op: "probe", method: method, url: string(p.URL),
		header: http.Header{"Authorization": {tok.Authorization()}}, secrets: c.secretsOf(Request{}, tok.AccessToken, tok.RefreshToken)})
	if err != nil {
		return err
	}
	switch {
	case resp.status/100 == 2:
		return nil
	case resp.status == http.StatusUnauthorized || resp.status == http.StatusForbidden:
		return &Error{Class: ClassInvalidCredentials, Op: "probe", StatusCode: resp.status, Err: ErrTokenRejected}
	}
	return &Error{Class: ClassUnavailable, Op: "probe", StatusCode: resp.status, Reason: fmt.Sprintf("probe answered HTTP %d", resp.status)}
}

// operation (InvalidCredentials on login, RefreshRejected on refresh).
func (c *Client) classify(op string, resp *response, rejected Class, secrets redactor) error {
	e := &Error{Op: op, StatusCode: resp.status, Reason: secrets.sanitize(issuerReason(resp.body))}
	code := oauthErrorCode(resp.body)
	switch {
	case resp.status == http.StatusTooManyRequests:
		e.Class, e.RetryAfter = ClassRateLimited, c.retryAfter(resp.header)
	case resp.status >= 500, resp.status == http.StatusRequestTimeout:
		e.Class, e.RetryAfter = ClassUnavailable, c.retryAfter(resp.header)
	case code == "invalid_client" || code == "unauthorized_client":
		e.Class = ClassInvalidCredentials
	case code == "invalid_grant":
		e.Class = rejected
	case resp.status == http.StatusNotFound, resp.status == http.StatusMethodNotAllowed, resp.status == http.StatusUnsupportedMediaType:
		e.Class = ClassConfig
		if e.Reason == "" {
			e.Reason = "endpoint not found or method not allowed: check the issuer URL"
		}
	default:
		e.Class = rejected
	}
	return e
}

// retryAfter reads Retry-After as seconds or an HTTP date, capped at an hour.
func (c *Client) retryAfter(h http.Header) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.Atoi(v); err == nil {
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(c.clock.Now())
	}
	return min(max(d, 0), maxRetryAfter)
}

// issuerReason extracts a human reason from an error body: the vendor's message (see
// vendorMessage), else the body itself when it is short text rather than JSON or HTML.
func issuerReason(body []byte) string {
	if said := vendorMessage(body); said != "" {
		return said
	}
	text := bytes.TrimSpace(body)
	if len(text) == 0 || text[0] == '<' || text[0] == '{' || text[0] == '[' || couldBeToken(string(text)) {
		return "" // empty, an HTML error page, JSON without a message, or a bare token: nothing to show
	}
	return string(text)
}

// Where vendors put their error message, in order: OAuth2's error and error_description, RFC 9457's
// title and detail, and the usual message fields. An object under error is searched for the
// messageKeys too ({"error": {"code": 7, "message": "…"}}).
var (
	reasonKeys  = []string{"error", "error_description", "message", "detail", "msg", "title"}
	messageKeys = []string{"message", "error_description", "description", "detail", "msg"}
)

// vendorMessage finds the issuer's own words in a JSON body: a string error, error.message,
// error_description, message, detail, errors[0] (a string, or its message or detail), at the top
// level or else one level inside a common wrapper (data.error.message, result.message). It returns
// "" for anything else; a value that could be a token (one long word of token characters) is never
// taken for a message. The caller redacts and bounds it.
func vendorMessage(body []byte) string {
	var doc map[string]any
	if json.Unmarshal(body, &doc) != nil {
		return ""
	}
	if said := messageIn(doc); said != "" {
		return said
	}
	for _, w := range append(wrapperNames, "meta", "status") {
		if obj, ok := doc[w].(map[string]any); ok {
			if said := messageIn(obj); said != "" {
				return said
			}
		}
	}
	return ""
}

func messageIn(obj map[string]any) string {
	var parts []string
	add := func(v any) bool {
		s, ok := v.(string)
		s = strings.TrimSpace(s)
		if !ok || s == "" || couldBeToken(s) || slices.Contains(parts, s) {
			return false
		}
		parts = append(parts, s)
		return true
	}
	addFrom := func(o map[string]any, keys ...string) {
		for _, k := range keys {
			if add(o[k]) {
				return
			}
		}
	}
	for _, k := range reasonKeys {
		if o, ok := obj[k].(map[string]any); ok {
			addFrom(o, messageKeys...)
		} else {
			add(obj[k])
		}
	}
	if errs, ok := obj["errors"].([]any); ok && len(errs) > 0 {
		if o, ok := errs[0].(map[string]any); ok {
			addFrom(o, "message", "detail", "title", "description")
		} else {
			add(errs[0])
		}
	}
	return strings.Join(parts, ": ")
}

// couldBeToken reports whether s may be a credential rather than words: one long run of token
// characters holding a digit. Messages have spaces; tokens do not.
func couldBeToken(s string) bool {
	return len(s) >= 16 && strings.IndexFunc(s, unicode.IsSpace) < 0 && strings.ContainsAny(s, "0123456789") && CheckTokenSyntax(s) == nil
}

func oauthErrorCode(body []byte) string {
	var doc struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(body, &doc)
	return doc.Error
}

// secretsOf lists every value that must never appear in an error: all inputs, the extra header
// values and any tokens at hand.
func (c *Client) secretsOf(req Request, tokens ...string) redactor {
	r := make(redactor, 0, 4*(len(req.Inputs)+len(c.headers)+len(tokens)))
	for _, v := range req.Inputs {
		r = r.with(v)
	}
	for _, v := range c.headers {
		r = r.with(v)
	}
	return r.with(tokens...)
}

func (c *Client) parse(op string, resp *response, req Request, sentDuration bool, secrets redactor) (*Token, error) {
	opts := ParseOptions{Now: c.clock.Now(), AssumedLifetime: req.SessionDuration}
	if c.spec.JSON != nil {
		opts.MappingField = "spec.json.response"
		if c.spec.JSON.Response != nil {
			opts.Mapping = *c.spec.JSON.Response
		}
	}
	if c.spec.DefaultLifetime != nil {
		opts.DefaultLifetime = c.spec.DefaultLifetime.Duration
	}
	if sentDuration {
		// The issuer was asked for this session; it is the better guess than a fixed default.
		opts.DefaultLifetime = req.SessionDuration
	}
	tok, err := parseResponse(resp.body, opts)
	if err != nil {
		// A token read before the failure is as secret as the ones sent.
		secrets = secrets.with(tok.AccessToken, tok.RefreshToken)
		reason := secrets.sanitizeN(err.Error(), maxParseReasonLen)
		if said := secrets.sanitize(vendorMessage(resp.body)); said != "" {
			reason = "the issuer says \"" + said + "\": " + reason
		}
		return nil, &Error{Class: ClassMalformedResponse, Op: op, StatusCode: resp.status, Reason: reason}
	}
	if c.spec.TokenType != "" {
		tok.Scheme = c.spec.TokenType
	}
	return tok, nil
}

func bearer(tok *Token, fallback string) http.Header {
	scheme := fallback
	if tok.Scheme != "" {
		scheme = tok.Scheme
	}
	return http.Header{"Authorization": {scheme + " " + tok.AccessToken}}
}

// HTTPClient is the client the issuer is called with (its CA bundle, timeout and no-redirect
// rule), for fetching its key set.
func (c *Client) HTTPClient() *http.Client { return c.http }

// Close releases idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// CanRefresh reports whether the issuer has a way to refresh tokens.
func (c *Client) CanRefresh() bool { return c.proto.canRefresh() }

// CanRevoke reports whether the issuer may have a way to revoke tokens (OAuth2 finds out by
// discovery).
func (c *Client) CanRevoke() bool { return c.proto.canRevoke() }

// Validate checks what can be checked of an issuer spec without calling it: body and claim
// templates parse and the CA bundle holds certificates.
func Validate(spec *v1alpha1.IssuerSpec) error {
	check := func(field string, body v1alpha1.BodyTemplate) error {
		if body == "" {
			return nil
		}
		if _, err := tmpl.Parse(field, string(body)); err != nil {
			return fmt.Errorf("%s: %w", field, err)
		}
		return nil
	}
	var errs []error
	if spec.JSON != nil {
		errs = append(errs, check("spec.json.body", spec.JSON.Body))
	}
	for field, ep := range map[string]*v1alpha1.Endpoint{"spec.refresh.body": spec.Refresh, "spec.revoke.body": spec.Revoke, "spec.tokenInfo.body": spec.TokenInfo} {
		if ep != nil {
			errs = append(errs, check(field, ep.Body))
		}
	}
	if ss := spec.SelfSigned; ss != nil {
		for name, text := range ss.Claims {
			errs = append(errs, check("spec.selfSigned.claims["+name+"]", text))
		}
		errs = append(errs, check("spec.selfSigned.keyID", ss.KeyID))
	}
	if spec.CABundle != "" && !x509.NewCertPool().AppendCertsFromPEM([]byte(spec.CABundle)) {
		errs = append(errs, errors.New("spec.caBundle holds no PEM certificate"))
	}
	return errors.Join(errs...)
}
