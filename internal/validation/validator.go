// Package validation checks Bearer tokens for in-cluster services: JWTs against their issuer's
// keys, opaque tokens by introspection, with the hardening a public endpoint needs, and serves
// the results over forward-auth HTTP and the Kubernetes TokenReview protocol.
package validation

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"k8s.io/utils/clock"

	"github.com/tokenkeeper/tokenkeeper/internal/issuer"
)

const (
	// MaxHeaderSize caps the Authorization header, checked before any parsing.
	MaxHeaderSize = 8 << 10
	// DefaultLeeway tolerates clock skew on exp, nbf and iat.
	DefaultLeeway = 30 * time.Second
	cacheSize     = 10000
	// maxCacheTTL bounds how long a verified token is trusted without checking again.
	maxCacheTTL    = 5 * time.Minute
	negativeTTL    = 10 * time.Second
	subjectHeader  = "X-Auth-Subject"
	defaultGroups  = "groups"
	defaultSubject = "sub"
)

// DefaultAlgorithms are accepted when a validator names none.
var DefaultAlgorithms = []string{"RS256", "ES256", "EdDSA"}

// TrustedIssuer is one issuer a validator accepts tokens from.
type TrustedIssuer struct {
	// Name is "ClusterIssuer/x" or "Issuer/x", for messages.
	Name string
	// Iss is the iss claim its JWTs carry; empty when it issues opaque tokens only.
	Iss string
	// Keys verifies its signed JWTs; nil when it has none.
	Keys *KeySet
	// HMAC verifies HS256/384/512 JWTs; only when explicitly configured.
	HMAC []byte
	// Inspect asks the issuer about an opaque token; nil when it cannot.
	Inspect func(ctx context.Context, token string) (*issuer.Introspection, error)
}

// Config is what one TokenValidator accepts.
type Config struct {
	Issuers           []TrustedIssuer
	Audiences         []string
	RequiredScopes    []string
	RequiredClaims    map[string]string
	Algorithms        []string
	ForwardClaims     map[string]string // claim → header
	AcceptTokenScheme bool
	// RequiredType is the typ header JWTs must carry; empty accepts any.
	RequiredType string
	// Leeway tolerates clock skew; nil means DefaultLeeway, an explicit 0 none.
	Leeway         *time.Duration
	MaxTokenAge    time.Duration
	DisableCache   bool
	UsernameClaim  string
	UsernamePrefix string
	GroupsClaim    string
	// GroupsPrefix is prepended to every group; groups still starting with system: are dropped.
	GroupsPrefix string
	Clock        clock.PassiveClock
}

// Identity is an accepted token's holder.
type Identity struct {
	Subject  string
	Username string
	Groups   []string
	// Audiences are the token's aud values.
	Audiences []string
	Claims    map[string]any
	ExpiresAt time.Time
	// Headers are the identity headers for forward auth: X-Auth-Subject and forwarded claims,
	// keys in canonical form, ready to copy into a response.
	Headers map[string]string
	header  http.Header
}

// ResponseHeader is Headers as an http.Header, built once per identity (cached identities reuse it).
func (id *Identity) ResponseHeader() http.Header { return id.header }

// Denial is a rejected request, as RFC 6750 describes it.
type Denial struct {
	Status      int    // 400, 401 or 403
	Code        string // invalid_request, invalid_token, insufficient_scope; "" when no credentials
	Description string
	// Reason is a short, bounded label for metrics.
	Reason string
	Scope  string
}

func (d *Denial) Error() string { return d.Code + ": " + d.Description }

// Challenge is the WWW-Authenticate header value.
func (d *Denial) Challenge() string {
	if d.Code == "" {
		return `Bearer realm="tokenkeeper"`
	}
	c := fmt.Sprintf(`Bearer realm="tokenkeeper", error=%q, error_description=%q`, d.Code, d.Description)
	if d.Scope != "" {
		c += fmt.Sprintf(`, scope=%q`, d.Scope)
	}
	return c
}

func deny(status int, code, reason, desc string) *Denial {
	return &Denial{Status: status, Code: code, Reason: reason, Description: desc}
}

// Validator checks tokens for one TokenValidator. It is safe for concurrent use.
type Validator struct {
	cfg      Config
	verified *cache[*Identity]
	negative *cache[*Denial]
	door     *doorkeeper // a token is cached the second time it is verified
	// OnCacheHit is called on each cache hit, for metrics. Optional.
	OnCacheHit func(kind string)
}

// New returns a Validator.
func New(cfg Config) *Validator {
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if len(cfg.Algorithms) == 0 {
		cfg.Algorithms = DefaultAlgorithms
	}
	if cfg.Leeway == nil { // unset; an explicit 0 means no tolerance
		d := DefaultLeeway
		cfg.Leeway = &d
	}
	return &Validator{cfg: cfg, verified: newCache[*Identity](cacheSize), negative: newCache[*Denial](cacheSize), door: newDoorkeeper(cacheSize)}
}

// ParseAuthorization extracts the token from the Authorization header values, applying every
// check that needs no key: one header, at most 8 KiB, the Bearer (or Token) scheme, the RFC 6750
// b64token charset.
func ParseAuthorization(values []string, acceptToken bool) (string, *Denial) {
	switch {
	case len(values) == 0:
		return "", deny(http.StatusUnauthorized, "", "missing", "no credentials")
	case len(values) > 1:
		return "", deny(http.StatusBadRequest, "invalid_request", "multiple_headers", "more than one Authorization header")
	case len(values[0]) > MaxHeaderSize:
		return "", deny(http.StatusBadRequest, "invalid_request", "oversize", "Authorization header larger than 8 KiB")
	}
	scheme, token, found := strings.Cut(values[0], " ")
	switch {
	case strings.EqualFold(scheme, "Bearer"), acceptToken && strings.EqualFold(scheme, "Token"):
	default:
		return "", deny(http.StatusUnauthorized, "", "wrong_scheme", "the Bearer scheme is required")
	}
	if !found || token == "" {
		return "", deny(http.StatusBadRequest, "invalid_request", "empty", "empty token")
	}
	if err := issuer.CheckTokenSyntax(token); err != nil {
		return "", deny(http.StatusBadRequest, "invalid_request", "charset", "token is not an RFC 6750 b64token")
	}
	return token, nil
}

// Authenticate validates the Authorization header values of one request.
func (v *Validator) Authenticate(ctx context.Context, authorization []string) (*Identity, *Denial) {
	token, d := ParseAuthorization(authorization, v.cfg.AcceptTokenScheme)
	if d != nil {
		return nil, d
	}
	return v.authenticate(ctx, token)
}

// AuthenticateToken validates a bare token (TokenReview sends no header).
func (v *Validator) AuthenticateToken(ctx context.Context, token string) (*Identity, *Denial) {
	if err := issuer.CheckTokenSyntax(token); err != nil {
		return nil, deny(http.StatusBadRequest, "invalid_request", "charset", "token is not an RFC 6750 b64token")
	}
	return v.authenticate(ctx, token)
}

// authenticate validates a token whose syntax is checked.
func (v *Validator) authenticate(ctx context.Context, token string) (*Identity, *Denial) {
	now := v.cfg.Clock.Now()
	key := tokenKey(token)
	if !v.cfg.DisableCache {
		if id, ok := v.verified.get(key, now); ok {
			v.hit("verified")
			return id, nil
		}
		if d, ok := v.negative.get(key, now); ok {
			v.hit("negative")
			return nil, d
		}
	}
	var (
		claims jwt.MapClaims
		d      *Denial
		// keysExpire is when the key set that verified the token must be fetched again: the
		// token is not trusted from the cache past it, so a key the issuer removed stops working.
		keysExpire time.Time
	)
	if strings.Count(token, ".") == 2 {
		claims, d = v.verifyJWT(ctx, token)
		if d == nil {
			keysExpire = v.keysExpireAt(claims)
		}
	} else {
		claims, d = v.introspect(ctx, token)
	}
	if d == nil {
		d = v.authorize(claims)
	}
	if d == nil {
		d = v.identifiable(claims)
	}
	if d != nil {
		if !v.cfg.DisableCache && d.Reason == "inactive" {
			v.negative.put(key, d, now.Add(negativeTTL), now)
		}
		return nil, d
	}
	id := v.identity(claims)
	if !v.cfg.DisableCache && v.door.seenBefore(key) {
		until := minTime(id.ExpiresAt, now.Add(maxCacheTTL))
		if !keysExpire.IsZero() {
			until = minTime(until, keysExpire)
		}
		v.verified.put(key, id, until, now)
	}
	return id, nil
}

// keysExpireAt is when the key set of the issuer that claims' iss names expires (KeySet.ExpiresAt);
// zero when it has none or sets no lifetime.
func (v *Validator) keysExpireAt(claims jwt.MapClaims) time.Time {
	iss, _ := claims["iss"].(string)
	for i := range v.cfg.Issuers {
		if t := &v.cfg.Issuers[i]; t.Iss != "" && t.Iss == iss && t.Keys != nil {
			return t.Keys.ExpiresAt()
		}
	}
	return time.Time{}
}

func (v *Validator) hit(kind string) {
	if v.OnCacheHit != nil {
		v.OnCacheHit(kind)
	}
}

// errKeyAlgorithm is returned by the key function when the token's algorithm is not the one its
// key is published for.
var errKeyAlgorithm = errors.New("key not published for this algorithm")

// errUntrustedIssuer is returned by the key function for a token whose iss no issuer matches.
var errUntrustedIssuer = errors.New("token issuer not trusted")

// joseHeader is the part of a JWT header read before verification.
type joseHeader struct {
	Alg  string          `json:"alg"`
	Kid  string          `json:"kid"`
	Typ  string          `json:"typ"`
	Crit json.RawMessage `json:"crit"`
}

// verifyJWT verifies a JWT with the keys of the issuer its iss names, and only those. The header
// is read first (algorithm and critical extensions); the claims are decoded once, by the
// verifying parse, whose key function picks the issuer.
func (v *Validator) verifyJWT(ctx context.Context, token string) (jwt.MapClaims, *Denial) {
	invalid := func(reason, desc string) *Denial {
		return deny(http.StatusUnauthorized, "invalid_token", reason, desc)
	}
	var hdr joseHeader
	raw, err := base64.RawURLEncoding.DecodeString(token[:strings.IndexByte(token, '.')])
	if err != nil || json.Unmarshal(raw, &hdr) != nil {
		return nil, invalid("malformed", "malformed token")
	}
	if hdr.Crit != nil {
		return nil, invalid("crit", "unsupported critical header")
	}
	if !slices.Contains(v.cfg.Algorithms, hdr.Alg) {
		return nil, invalid("algorithm", "signing algorithm not accepted")
	}
	if want := v.cfg.RequiredType; want != "" && !strings.EqualFold(strings.TrimPrefix(strings.ToLower(hdr.Typ), "application/"), strings.TrimPrefix(strings.ToLower(want), "application/")) {
		return nil, invalid("type", "token type not accepted")
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{hdr.Alg}), jwt.WithExpirationRequired(), jwt.WithStrictDecoding(),
		jwt.WithLeeway(*v.cfg.Leeway), jwt.WithIssuedAt(), jwt.WithTimeFunc(v.cfg.Clock.Now),
	}
	if len(v.cfg.Audiences) > 0 {
		opts = append(opts, jwt.WithAudience(v.cfg.Audiences...))
	}
	claims := jwt.MapClaims{}
	_, err = jwt.NewParser(opts...).ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) {
		iss, _ := claims["iss"].(string)
		var trusted *TrustedIssuer
		for i := range v.cfg.Issuers {
			if v.cfg.Issuers[i].Iss != "" && v.cfg.Issuers[i].Iss == iss {
				trusted = &v.cfg.Issuers[i]
				break
			}
		}
		switch {
		case trusted == nil:
			return nil, errUntrustedIssuer
		case strings.HasPrefix(hdr.Alg, "HS"):
			if len(trusted.HMAC) == 0 {
				return nil, errors.New("HMAC not configured for this issuer")
			}
			return trusted.HMAC, nil
		case trusted.Keys == nil:
			return nil, errors.New("issuer has no key set")
		}
		kid, _ := t.Header["kid"].(string)
		key, err := trusted.Keys.Lookup(ctx, kid)
		if err != nil {
			return nil, err
		}
		if !key.Accepts(hdr.Alg) {
			return nil, errKeyAlgorithm
		}
		return key.Key, nil
	})
	switch {
	case err == nil:
	case errors.Is(err, errUntrustedIssuer):
		return nil, invalid("issuer", "token issuer not trusted")
	case errors.Is(err, errKeyAlgorithm):
		return nil, invalid("algorithm", "signing algorithm does not match the key's")
	case errors.Is(err, jwt.ErrTokenExpired):
		return nil, invalid("expired", "token expired")
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return nil, invalid("not_yet_valid", "token not valid yet")
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return nil, invalid("issued_in_future", "token issued in the future")
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return nil, invalid("audience", "audience not accepted")
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		if _, ok := claims["exp"]; !ok {
			return nil, invalid("claim_missing", "token lacks the required claim exp")
		}
		return nil, invalid("audience", "token has no audience (aud is missing or empty); one of the validator's audiences is required")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return nil, invalid("signature", "signature invalid")
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return nil, invalid("unverifiable", "no key to verify the token")
	default:
		return nil, invalid("malformed", "malformed token")
	}
	if v.cfg.MaxTokenAge > 0 {
		iat, err := claims.GetIssuedAt()
		if err != nil || iat == nil {
			return nil, invalid("claim_missing", "token lacks iat, needed to bound its age")
		}
		if v.cfg.Clock.Now().Sub(iat.Time) > v.cfg.MaxTokenAge+*v.cfg.Leeway {
			return nil, invalid("too_old", "token older than the maximum token age")
		}
	}
	return claims, nil
}

// introspect asks the trusted issuers that can inspect opaque tokens.
func (v *Validator) introspect(ctx context.Context, token string) (jwt.MapClaims, *Denial) {
	asked := false
	for _, t := range v.cfg.Issuers {
		if t.Inspect == nil {
			continue
		}
		asked = true
		in, err := t.Inspect(ctx, token)
		if err != nil {
			continue
		}
		if !in.Active {
			continue
		}
		claims := jwt.MapClaims{}
		for k, val := range in.Claims {
			claims[k] = val
		}
		if _, ok := claims["exp"]; !ok || in.ExpiresAt.IsZero() {
			claims["exp"] = float64(v.cfg.Clock.Now().Add(time.Minute).Unix()) // trust an answer for a minute at most
		}
		// An issuer that says active is still held to the times and audience it states.
		opts := []jwt.ParserOption{jwt.WithLeeway(*v.cfg.Leeway), jwt.WithTimeFunc(v.cfg.Clock.Now), jwt.WithExpirationRequired()}
		if err := jwt.NewValidator(opts...).Validate(claims); err != nil {
			return nil, deny(http.StatusUnauthorized, "invalid_token", "inactive", "introspection: "+claimError(err))
		}
		if len(v.cfg.Audiences) > 0 {
			if aud, err := claims.GetAudience(); err != nil || !slices.ContainsFunc(aud, func(a string) bool { return slices.Contains(v.cfg.Audiences, a) }) {
				return nil, deny(http.StatusUnauthorized, "invalid_token", "audience", "audience not accepted")
			}
		}
		return claims, nil
	}
	if !asked {
		return nil, deny(http.StatusUnauthorized, "invalid_token", "malformed", "not a JWT, and no trusted issuer can introspect tokens")
	}
	return nil, deny(http.StatusUnauthorized, "invalid_token", "inactive", "token is not active")
}

// identifiable requires what an identity is made of: a non-empty string subject, and a username
// outside Kubernetes' reserved system: namespace.
func (v *Validator) identifiable(claims jwt.MapClaims) *Denial {
	if sub, ok := claims["sub"].(string); !ok || strings.TrimSpace(sub) == "" {
		return deny(http.StatusUnauthorized, "invalid_token", "subject", "token has no subject (sub)")
	}
	userClaim := v.cfg.UsernameClaim
	if userClaim == "" {
		userClaim = defaultSubject
	}
	u := claimStrings(claims[userClaim])
	if len(u) == 0 || u[0] == "" {
		return deny(http.StatusUnauthorized, "invalid_token", "username", fmt.Sprintf("token has no username claim %q", userClaim))
	}
	if strings.HasPrefix(v.cfg.UsernamePrefix+u[0], "system:") {
		return deny(http.StatusUnauthorized, "invalid_token", "username", "username would be in the reserved system: namespace")
	}
	return nil
}

// authorize checks scopes and required claims: failures are 403 insufficient_scope.
func (v *Validator) authorize(claims jwt.MapClaims) *Denial {
	have := scopes(claims)
	for _, s := range v.cfg.RequiredScopes {
		if !slices.Contains(have, s) {
			d := deny(http.StatusForbidden, "insufficient_scope", "scope", "token lacks a required scope")
			d.Scope = strings.Join(v.cfg.RequiredScopes, " ")
			return d
		}
	}
	// A required claim is a string with exactly the value asked for: a list that merely contains
	// it (groups a user can add themselves to, say) does not qualify.
	for name, want := range v.cfg.RequiredClaims {
		if got, ok := claims[name].(string); !ok || got != want {
			return deny(http.StatusForbidden, "insufficient_scope", "claim", fmt.Sprintf("claim %q does not have the required value", name))
		}
	}
	return nil
}

func scopes(claims jwt.MapClaims) []string {
	var out []string
	for _, name := range []string{"scope", "scp"} {
		for _, s := range claimStrings(claims[name]) {
			out = append(out, strings.Fields(s)...)
		}
	}
	return out
}

// claimStrings reads a claim as strings: a string, or the strings of an array.
func claimStrings(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case []any:
		var out []string
		for _, e := range x {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	case []string:
		return x
	}
	return nil
}

func (v *Validator) identity(claims jwt.MapClaims) *Identity {
	id := &Identity{Claims: claims, Headers: map[string]string{}}
	id.Subject, _ = claims["sub"].(string)
	if exp, err := claims.GetExpirationTime(); err == nil && exp != nil {
		id.ExpiresAt = exp.Time
	}
	userClaim := v.cfg.UsernameClaim
	if userClaim == "" {
		userClaim = defaultSubject
	}
	if u := claimStrings(claims[userClaim]); len(u) > 0 {
		id.Username = v.cfg.UsernamePrefix + u[0]
	}
	groupsClaim := v.cfg.GroupsClaim
	if groupsClaim == "" {
		groupsClaim = defaultGroups
	}
	for _, g := range claimStrings(claims[groupsClaim]) {
		if g = v.cfg.GroupsPrefix + g; g != "" && !strings.HasPrefix(g, "system:") {
			id.Groups = append(id.Groups, g) // never a system: group from a token
		}
	}
	id.Audiences, _ = claims.GetAudience()
	id.Headers[subjectHeader] = headerSafe(id.Subject)
	for claim, header := range v.cfg.ForwardClaims {
		header = http.CanonicalHeaderKey(header)
		if vals := claimStrings(claims[claim]); len(vals) > 0 {
			id.Headers[header] = headerSafe(strings.Join(vals, ","))
		} else if val, ok := claims[claim]; ok && val != nil {
			id.Headers[header] = headerSafe(fmt.Sprint(val))
		}
	}
	id.header = make(http.Header, len(id.Headers))
	for k, val := range id.Headers {
		id.header[k] = []string{val}
	}
	return id
}

// headerSafe drops control characters, so that no claim can inject a header, and caps length.
func headerSafe(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
	if len(s) > 1024 {
		s = s[:1024]
	}
	return s
}

// claimError names the registered claim a validation failed on.
func claimError(err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return "token expired (exp)"
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return "token not valid yet (nbf)"
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return "token issued in the future (iat)"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return "token lacks the required claim exp"
	}
	return "invalid claims"
}

func minTime(a, b time.Time) time.Time {
	if a.IsZero() || b.Before(a) {
		return b
	}
	return a
}
