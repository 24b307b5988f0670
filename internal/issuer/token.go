package issuer

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
)

// ExpirySource says where a token's expiry came from.
type ExpirySource string

const (
	ExpiryFromResponse ExpirySource = "Response"         // expires_at / tokenExpiration
	ExpiryFromLifetime ExpirySource = "ResponseLifetime" // expires_in / tokenLifetime
	ExpiryFromJWT      ExpirySource = "JWT"              // the access token's exp claim
	ExpiryFromDefault  ExpirySource = "DefaultLifetime"  // the issuer's defaultLifetime
	ExpiryAssumed      ExpirySource = "Assumed"          // the requested session duration
	ExpiryFromSecret   ExpirySource = "TargetSecret"     // recovered from the target Secret's expires-at
	// ExpiryObserved: the issuer ended an earlier session sooner than it said; tokens are taken
	// to live as long as that one did.
	ExpiryObserved ExpirySource = "Observed"
)

// Token is the result of a login or refresh. Its String and GoString never show a secret, so a
// Token that reaches a log line by mistake reveals nothing.
type Token struct {
	// AccessToken is the token sent to the API.
	AccessToken string
	// TokenField is the response field the access token was read from.
	TokenField string
	// Scheme is the Authorization scheme: Bearer, Token, …
	Scheme string
	// RefreshToken trades for a new access token, when the issuer returned one.
	RefreshToken string
	// RefreshField is the response field the refresh token came in (refresh_token, refreshToken),
	// used as the field name of the default refresh request.
	RefreshField string
	// IssuedAt is when the token was received (or its iat).
	IssuedAt time.Time
	// ExpiresAt is when the access token expires.
	ExpiresAt time.Time
	// ExpirySource says where ExpiresAt came from.
	ExpirySource ExpirySource
	// ExpiryField is the response field the expiry was read from, when it came from the response.
	ExpiryField string
	// RefreshExpiresAt is when the refresh token expires; zero when unknown.
	RefreshExpiresAt time.Time
	// Extra holds non-secret identifiers the issuer returned, such as guid.
	Extra map[string]string
}

// Authorization is the whole Authorization header value.
func (t *Token) Authorization() string { return t.Scheme + " " + t.AccessToken }

// Fingerprint is the first 16 hex digits of the SHA-256 of the access token.
func (t *Token) Fingerprint() string { return Fingerprint(t.AccessToken) }

// Fingerprint is the first 16 hex digits of the SHA-256 of a token: enough to tell tokens apart,
// nothing to reuse.
func Fingerprint(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:8])
}

func (t *Token) String() string {
	if t == nil {
		return "Token(nil)"
	}
	return fmt.Sprintf("Token(scheme=%s fingerprint=%s expiresAt=%s refresh=%t)",
		t.Scheme, t.Fingerprint(), t.ExpiresAt.UTC().Format(time.RFC3339), t.RefreshToken != "")
}

// GoString hides secrets from %#v.
func (t *Token) GoString() string { return t.String() }

const (
	// MaxTokenLength caps access and refresh tokens.
	MaxTokenLength = 16 << 10
	// maxLifetime rejects absurd expiries.
	maxLifetime = 10 * 365 * 24 * time.Hour
	// clockSkew tolerated for an issued-at time slightly in the future.
	clockSkew = 30 * time.Second
	// MinLifetime is the shortest token accepted: one that expires sooner cannot be renewed
	// before it does.
	MinLifetime = 5 * time.Second
)

// Auto-detected response field names, in order of preference.
var (
	tokenNames     = []string{"access_token", "accessToken", "token", "auth_token", "authToken", "jwt", "client_token", "id_token", "idToken", "sessionToken", "session_token"}
	refreshNames   = []string{"refresh_token", "refreshToken"}
	typeNames      = []string{"token_type", "tokenType"}
	expiresInNames = []string{"expires_in", "expiresIn", "tokenLifetime", "token_lifetime", "lease_duration", "ttl", "lifetime",
		"expires_in_seconds", "expiresInSeconds", "validity"}
	// Expiry names may hold a time (RFC 3339, epoch seconds or milliseconds) or, for the vaguer
	// names, a lifetime in seconds: a number below 10^8 (about three years) is read as one.
	expiresAtNames = []string{"expires_at", "expiresAt", "tokenExpiration", "token_expiration", "expiration", "expiry",
		"expires", "expires_on", "expiresOn", "expire_at", "expireAt", "expiration_time", "expirationTime", "expiry_time",
		"expiryTime", "expiry_date", "expiryDate", "valid_until", "validUntil", "exp"}
	refreshExpAtNames = []string{"refreshTokenExpiration", "refresh_token_expires_at", "refreshTokenExpiresAt", "refresh_expires_at"}
	refreshExpInNames = []string{"refresh_expires_in", "refresh_token_expires_in", "refreshTokenLifetime"}
	// Objects that commonly wrap the fields, searched one and two levels deep (data.token,
	// data.attributes.expires, auth.lease_duration).
	wrapperNames = []string{"data", "result", "session", "auth", "response", "payload", "token", "tokens", "credentials",
		"attributes", "login", "body"}
	// Identifiers worth keeping; never anything that looks like a secret.
	extraNames = []string{"guid", "id", "session_id", "sessionId", "user_id", "userId", "scope"}
)

// ParseOptions tunes ParseResponse.
type ParseOptions struct {
	// Mapping holds explicit paths; unset ones are auto-detected.
	Mapping v1alpha1.ResponseMapping
	// Now is the time the response arrived.
	Now time.Time
	// DefaultLifetime applies when neither the response nor the token gives an expiry.
	DefaultLifetime time.Duration
	// AssumedLifetime applies after DefaultLifetime: the session duration asked for.
	AssumedLifetime time.Duration
	// MappingField is where the Issuer maps response fields ("spec.json.response"), for the hint
	// of a response without an expiry; empty when the issuer has no response mapping (OAuth2).
	MappingField string
}

// ParseResponse reads a token response. It trusts nothing: every field is type- and range-checked,
// and a JWT access token is decoded only to read exp and iat, never to trust it.
func ParseResponse(body []byte, opts ParseOptions) (*Token, error) {
	tok, err := parseResponse(body, opts)
	if err != nil {
		return nil, err
	}
	return tok, nil
}

// parseResponse is ParseResponse, but on failure it returns what it had read so far too (never
// nil), so the caller can redact a token the failed response holds.
func parseResponse(body []byte, opts ParseOptions) (tok *Token, err error) {
	tok = &Token{IssuedAt: opts.Now}
	var doc any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return tok, errors.New("response is not JSON")
	}
	if dec.More() {
		return tok, errors.New("response holds trailing data after the JSON document")
	}
	root, ok := doc.(map[string]any)
	if !ok {
		return tok, errors.New("response is not a JSON object")
	}
	m := opts.Mapping

	access, tokenField, err := pickString(root, m.Token, tokenNames)
	if err != nil {
		return tok, fmt.Errorf("token: %w", err)
	}
	if access == "" {
		return tok, errors.New("response has no access token (looked for " + describe(m.Token, tokenNames) + ")")
	}
	tok.AccessToken, tok.TokenField = access, tokenField // set before it is checked, to be redacted either way
	if err := CheckTokenSyntax(access); err != nil {
		return tok, fmt.Errorf("access token: %w", err)
	}

	refresh, field, err := pickString(root, m.RefreshToken, refreshNames)
	if err != nil {
		return tok, fmt.Errorf("refresh token: %w", err)
	}
	if refresh != "" {
		tok.RefreshToken, tok.RefreshField = refresh, lastSegment(field)
		if err := CheckTokenSyntax(refresh); err != nil {
			return tok, fmt.Errorf("refresh token: %w", err)
		}
	}

	typ, _, err := pickString(root, m.TokenType, typeNames)
	if m.TokenType == "" && !knownScheme(typ) {
		typ = "" // found by name, not an HTTP scheme (Vault's auth.token_type "service"): Bearer
	}
	if err != nil {
		return tok, fmt.Errorf("token type: %w", err)
	}
	tok.Scheme = NormalizeScheme(typ)

	if err := readExpiry(root, m, opts, tok); err != nil {
		return tok, err
	}
	if err := readRefreshExpiry(root, m, opts, tok); err != nil {
		return tok, err
	}
	tok.Extra = readExtra(root)
	return tok, nil
}

func readExpiry(root map[string]any, m v1alpha1.ResponseMapping, opts ParseOptions, tok *Token) error {
	if v, field, ok := pick(root, m.ExpiresAt, expiresAtNames); ok {
		t, err := parseTime(v)
		if f, nerr := number(v); err != nil && nerr == nil && m.ExpiresAt == "" && f > 0 && f < 1e8 {
			// "expires": 3600 is a lifetime, not a time in 1970.
			tok.ExpiresAt, tok.ExpirySource, tok.ExpiryField = opts.Now.Add(time.Duration(f*float64(time.Second))), ExpiryFromLifetime, field
		} else if err != nil {
			return fmt.Errorf("expiry %q: %w", field, err)
		} else {
			tok.ExpiresAt, tok.ExpirySource, tok.ExpiryField = t, ExpiryFromResponse, field
		}
	} else if v, field, ok := pick(root, m.ExpiresIn, expiresInNames); ok {
		tok.ExpiryField = field
		d, err := parseSeconds(v)
		if err != nil {
			return fmt.Errorf("lifetime %q: %w", field, err)
		}
		tok.ExpiresAt, tok.ExpirySource = opts.Now.Add(d), ExpiryFromLifetime
	} else if exp, iat, ok := jwtTimes(tok.AccessToken); ok {
		tok.ExpiresAt, tok.ExpirySource = exp, ExpiryFromJWT
		if !iat.IsZero() && !iat.After(opts.Now.Add(clockSkew)) {
			tok.IssuedAt = iat
		}
	} else if opts.DefaultLifetime > 0 {
		tok.ExpiresAt, tok.ExpirySource = opts.Now.Add(opts.DefaultLifetime), ExpiryFromDefault
	} else if opts.AssumedLifetime > 0 {
		tok.ExpiresAt, tok.ExpirySource = opts.Now.Add(opts.AssumedLifetime), ExpiryAssumed
	} else {
		return noExpiryError(root, m, opts, tok)
	}
	if left := tok.ExpiresAt.Sub(opts.Now); left < MinLifetime {
		// Written, it would be renewed every few seconds for ever (a GitHub expires_at in the
		// past did that): refused, it is a failure with backoff.
		if left <= 0 {
			return fmt.Errorf("token already expired at %s (%s before the answer): the issuer's clock or expiry field is wrong",
				tok.ExpiresAt.UTC().Format(time.RFC3339), (-left).Round(time.Second))
		}
		return fmt.Errorf("token expires at %s, %s after it was issued: too soon to renew it in time (at least %s)",
			tok.ExpiresAt.UTC().Format(time.RFC3339), left.Round(time.Second), MinLifetime)
	}
	if tok.ExpiresAt.Sub(opts.Now) > maxLifetime {
		return fmt.Errorf("token expiry %s is more than 10 years away", tok.ExpiresAt.UTC().Format(time.RFC3339))
	}
	return nil
}

func readRefreshExpiry(root map[string]any, m v1alpha1.ResponseMapping, opts ParseOptions, tok *Token) error {
	if tok.RefreshToken == "" {
		return nil
	}
	if v, _, ok := pick(root, m.RefreshTokenExpiresAt, refreshExpAtNames); ok {
		t, err := parseTime(v)
		if err != nil {
			return fmt.Errorf("refresh token expiry: %w", err)
		}
		tok.RefreshExpiresAt = t
	} else if v, _, ok := pick(root, "", refreshExpInNames); ok {
		d, err := parseSeconds(v)
		if err != nil {
			return fmt.Errorf("refresh token lifetime: %w", err)
		}
		if d > 0 { // Keycloak sends 0 for "does not expire"
			tok.RefreshExpiresAt = opts.Now.Add(d)
		}
	}
	return nil
}

func readExtra(root map[string]any) map[string]string {
	var extra map[string]string
	for _, name := range extraNames {
		v, ok := root[name]
		if !ok {
			continue
		}
		var s string
		switch x := v.(type) {
		case string:
			s = x
		case json.Number:
			s = x.String()
		default:
			continue
		}
		if len(s) == 0 || len(s) > 256 {
			continue
		}
		if extra == nil {
			extra = map[string]string{}
		}
		extra[name] = s
	}
	return extra
}

// knownScheme reports whether an auto-detected token_type is an HTTP authentication scheme
// issuers send (RFC 6750 Bearer, RFC 9449 DPoP, MAC, seed 000's Token).
func knownScheme(typ string) bool {
	switch strings.ToLower(typ) {
	case "", "bearer", "token", "dpop", "mac", "pop":
		return true
	}
	return false
}

// NormalizeScheme maps a token_type to its Authorization scheme: bearer → Bearer; empty → Bearer.
func NormalizeScheme(typ string) string {
	switch strings.ToLower(typ) {
	case "", "bearer":
		return "Bearer"
	case "token":
		return "Token"
	}
	for _, c := range typ {
		if (c < 'A' || c > 'Z') && (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' && c != '_' {
			return "Bearer"
		}
	}
	if len(typ) > 32 {
		return "Bearer"
	}
	return typ
}

// b64tokenChar marks the bytes of an RFC 6750 b64token before its padding: ALPHA DIGIT - . _ ~ + /.
var b64tokenChar = func() (t [256]bool) {
	for c := range 256 {
		t[c] = c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("-._~+/", byte(c)) >= 0
	}
	return t
}()

// CheckTokenSyntax accepts RFC 6750 b64token values (ALPHA DIGIT - . _ ~ + / then optional =)
// of at most MaxTokenLength bytes. It never echoes the token. It runs on every validation, so
// the common case is one table lookup per byte.
func CheckTokenSyntax(tok string) error {
	if len(tok) > MaxTokenLength {
		return fmt.Errorf("longer than %d bytes", MaxTokenLength)
	}
	i := 0
	for i < len(tok) && b64tokenChar[tok[i]] {
		i++
	}
	// The rest may only be '=' padding.
	for ; i < len(tok); i++ {
		switch c := tok[i]; {
		case c == '=':
		case strings.IndexByte(tok[:i], '=') >= 0:
			return fmt.Errorf("character after '=' padding at offset %d", i)
		default:
			return fmt.Errorf("illegal character at offset %d (RFC 6750 b64token)", i)
		}
	}
	if tok == "" || tok[0] == '=' {
		return errors.New("empty")
	}
	return nil
}

// jwtTimes reads exp and iat from a JWT without verifying it: only to learn when it expires.
func jwtTimes(tok string) (exp, iat time.Time, ok bool) {
	if strings.Count(tok, ".") != 2 {
		return time.Time{}, time.Time{}, false
	}
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(tok, claims); err != nil {
		return time.Time{}, time.Time{}, false
	}
	e, err := claims.GetExpirationTime()
	if err != nil || e == nil {
		return time.Time{}, time.Time{}, false
	}
	if i, err := claims.GetIssuedAt(); err == nil && i != nil {
		iat = i.Time
	}
	return e.Time, iat, true
}

// pick finds a value by explicit path, else by the first common name present at the top level
// or inside a common wrapper object.
func pick(root map[string]any, path v1alpha1.JSONPath, names []string) (any, string, bool) {
	if path != "" {
		v, ok := lookup(root, string(path))
		return v, string(path), ok && v != nil
	}
	// A name that holds zero or "" holds nothing when the same name holds a value deeper in
	// (Vault: top-level lease_duration 0, auth.lease_duration the token's); alone it is read.
	if v, field, ok := pickWhere(root, names, func(v any) bool { f, err := number(v); return v != "" && (err != nil || f != 0) }); ok {
		return v, field, true
	}
	return pickWhere(root, names, func(any) bool { return true })
}

// pickWhere is pick's auto-detection, for values keep accepts: the top level first, then one
// wrapper deep, then two.
func pickWhere(root map[string]any, names []string, keep func(any) bool) (any, string, bool) {
	if v, field, ok := pickIn(root, "", names, keep); ok {
		return v, field, true
	}
	for _, w := range wrapperNames {
		obj, ok := root[w].(map[string]any)
		if !ok {
			continue
		}
		if v, field, ok := pickIn(obj, w+".", names, keep); ok {
			return v, field, true
		}
	}
	for _, w := range wrapperNames {
		obj, ok := root[w].(map[string]any)
		if !ok {
			continue
		}
		for _, w2 := range wrapperNames {
			if inner, ok := obj[w2].(map[string]any); ok {
				if v, field, ok := pickIn(inner, w+"."+w2+".", names, keep); ok {
					return v, field, true
				}
			}
		}
	}
	return nil, "", false
}

// pickIn finds the first of names in obj that holds a value, not an object or list (a "token"
// object is a wrapper to look into, not a token).
func pickIn(obj map[string]any, prefix string, names []string, keep func(any) bool) (any, string, bool) {
	for _, n := range names {
		switch v := obj[n].(type) {
		case nil, map[string]any, []any:
		default:
			if keep(v) {
				return v, prefix + n, true
			}
		}
	}
	return nil, "", false
}

// ExpiryFields lists the fields auto-detection reads an expiry from, for messages.
func ExpiryFields() string {
	return strings.Join(expiresAtNames[:6], ", ") + ", " + strings.Join(expiresInNames[:3], ", ") + " and more, at the top level or inside " +
		strings.Join(wrapperNames[:4], ", ") + "…"
}

func pickString(root map[string]any, path v1alpha1.JSONPath, names []string) (string, string, error) {
	v, field, ok := pick(root, path, names)
	if !ok {
		return "", "", nil
	}
	s, isString := v.(string)
	if !isString {
		return "", "", fmt.Errorf("field %q is not a string", field)
	}
	return s, field, nil
}

func lookup(root map[string]any, path string) (any, bool) {
	var cur any = root
	for _, seg := range strings.Split(path, ".") {
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = obj[seg]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func lastSegment(path string) string {
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		return path[i+1:]
	}
	return path
}

func describe(path v1alpha1.JSONPath, names []string) string {
	if path != "" {
		return string(path)
	}
	return strings.Join(names, ", ")
}

// parseSeconds reads a lifetime in seconds from a JSON number or numeric string.
func parseSeconds(v any) (time.Duration, error) {
	f, err := number(v)
	if err != nil {
		return 0, err
	}
	if f <= 0 || f > maxLifetime.Seconds() || math.IsNaN(f) {
		return 0, fmt.Errorf("%v seconds is out of range", f)
	}
	return time.Duration(f * float64(time.Second)), nil
}

// ParseTime reads an expiry: RFC 3339 (with or without zone), or epoch seconds or milliseconds
// as a number or numeric string.
func ParseTime(v any) (time.Time, error) { return parseTime(v) }

func parseTime(v any) (time.Time, error) {
	if s, ok := v.(string); ok {
		if t, ok := parseTimeString(s); ok {
			return t, nil
		}
	}
	f, err := number(v)
	if err != nil {
		return time.Time{}, errors.New("not an RFC 3339 time or epoch number")
	}
	switch {
	case f >= 1e12 && f < 1e14: // milliseconds
		return time.UnixMilli(int64(f)), nil
	case f >= 1e8 && f < 1e11: // seconds (1973 … 5138)
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(frac*1e9)), nil
	}
	return time.Time{}, fmt.Errorf("epoch %v is out of range", f)
}

// parseTimeString reads the RFC 3339 forms of an expiry time (not the epoch numbers).
func parseTimeString(s string) (time.Time, bool) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05Z07:00", "2006-01-02 15:04:05"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

func number(v any) (float64, error) {
	var s string
	switch x := v.(type) {
	case json.Number:
		s = x.String()
	case string:
		s = strings.TrimSpace(x)
	case float64:
		return x, nil
	default:
		return 0, errors.New("not a number")
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, errors.New("not a number")
	}
	return f, nil
}
