package validation

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	clocktesting "k8s.io/utils/clock/testing"
)

func newTestValidator(t testing.TB, k *keyServer, clk *clocktesting.FakeClock, edit func(*Config)) *Validator {
	t.Helper()
	keys := NewKeySet(k.URL, k.Client(), clk)
	cfg := Config{
		Issuers:        []TrustedIssuer{{Name: "ClusterIssuer/idp", Iss: testIss, Keys: keys}},
		Audiences:      []string{"orders"},
		RequiredScopes: []string{"orders.read"},
		Algorithms:     []string{"RS256", "ES256", "EdDSA"},
		ForwardClaims:  map[string]string{"email": "X-Email"},
		MaxTokenAge:    2 * time.Hour,
		Clock:          clk,
	}
	if edit != nil {
		edit(&cfg)
	}
	if err := keys.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	return New(cfg)
}

// attackCase is one request of the attack table, and the answer it must get.
type attackCase struct {
	reason string
	auth   []string // the Authorization header values
	status int
	code   string // the RFC 6750 error code
	why    string // the Denial's Reason (the metrics label); "" when any will do
}

// attackResult is what one transport answers to one request of the table.
type attackResult struct {
	status int
	// challenge is the WWW-Authenticate header.
	challenge string
	// reason is the Denial's Reason where the transport shows it; "" where only the metrics do.
	reason string
	// headers are the identity headers of an accepted request.
	headers map[string]string
}

// attackCases is the attack table: every way a token can be forged, replayed, stretched or
// mangled, for a validator made by newTestValidator at now. attackerURL serves a key set no
// request may fetch. Every transport (the Validator itself, /validate, gRPC ext_authz) runs it.
func attackCases(t testing.TB, k *keyServer, now time.Time, attackerURL string) map[string]attackCase {
	t.Helper()
	attackerKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	pubPEM := func() []byte {
		der, _ := x509.MarshalPKIXPublicKey(&k.rsa["rsa1"].PublicKey)
		return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}()
	signWith := func(key *rsa.PrivateKey, kid string, c jwt.MapClaims, hdr map[string]any) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, c)
		tok.Header["kid"] = kid
		for h, val := range hdr {
			tok.Header[h] = val
		}
		s, _ := tok.SignedString(key)
		return s
	}
	valid := k.sign(t, "RS256", "rsa1", claims(now, nil), nil)
	parts := strings.Split(valid, ".")
	header := func(h map[string]any) string { return b64json(t, h) }
	payload := b64json(t, claims(now, nil))
	// A key that was in the JWKS and was rotated out.
	oldKey := k.rsa["rsa1"]
	rotatedOut := signWith(oldKey, "rsa-old", claims(now, nil), nil)

	type tc = attackCase
	bearer := func(tok string) []string { return []string{"Bearer " + tok} }
	return map[string]tc{
		"ValidRS256":  {reason: "control: a good RS256 token passes", auth: bearer(valid), status: 200},
		"ValidES256":  {reason: "control: ES256", auth: bearer(k.sign(t, "ES256", "ec1", claims(now, nil), nil)), status: 200},
		"ValidEdDSA":  {reason: "control: EdDSA", auth: bearer(k.sign(t, "EdDSA", "ed1", claims(now, nil), nil)), status: 200},
		"AlgNone":     {reason: "alg none is never accepted", auth: bearer(header(map[string]any{"alg": "none", "typ": "JWT"}) + "." + payload + "."), status: 401, code: "invalid_token", why: "algorithm"},
		"AlgNoneCase": {reason: "nor a case variant of it", auth: bearer(header(map[string]any{"alg": "NoNe"}) + "." + payload + "."), status: 401, code: "invalid_token", why: "algorithm"},
		"HS256WithRSAPublicKey": {reason: "key confusion: HMAC keyed with the RSA public key",
			auth: bearer(func() string {
				tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims(now, nil))
				tok.Header["kid"] = "rsa1"
				s, _ := tok.SignedString(pubPEM)
				return s
			}()), status: 401, code: "invalid_token", why: "algorithm"},
		"Expired":       {reason: "exp in the past beyond leeway", auth: bearer(k.sign(t, "RS256", "rsa1", claims(now, func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Hour).Unix() }), nil)), status: 401, code: "invalid_token", why: "expired"},
		"NotYetValid":   {reason: "nbf in the future", auth: bearer(k.sign(t, "RS256", "rsa1", claims(now, func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Hour).Unix() }), nil)), status: 401, code: "invalid_token", why: "not_yet_valid"},
		"IssuedFuture":  {reason: "iat in the future", auth: bearer(k.sign(t, "RS256", "rsa1", claims(now, func(c jwt.MapClaims) { c["iat"] = now.Add(time.Hour).Unix() }), nil)), status: 401, code: "invalid_token", why: "issued_in_future"},
		"TooOld":        {reason: "iat older than the maximum token age", auth: bearer(k.sign(t, "RS256", "rsa1", claims(now, func(c jwt.MapClaims) { c["iat"] = now.Add(-3 * time.Hour).Unix() }), nil)), status: 401, code: "invalid_token", why: "too_old"},
		"NoExp":         {reason: "a token without exp lives forever: refused", auth: bearer(k.sign(t, "RS256", "rsa1", claims(now, func(c jwt.MapClaims) { delete(c, "exp") }), nil)), status: 401, code: "invalid_token", why: "claim_missing"},
		"WrongIssuer":   {reason: "iss not trusted", auth: bearer(k.sign(t, "RS256", "rsa1", claims(now, func(c jwt.MapClaims) { c["iss"] = "https://evil.test" }), nil)), status: 401, code: "invalid_token", why: "issuer"},
		"NoIssuer":      {reason: "no iss at all", auth: bearer(k.sign(t, "RS256", "rsa1", claims(now, func(c jwt.MapClaims) { delete(c, "iss") }), nil)), status: 401, code: "invalid_token", why: "issuer"},
		"OtherAudience": {reason: "a trusted issuer's token for another validator's audience", auth: bearer(k.sign(t, "RS256", "rsa1", claims(now, func(c jwt.MapClaims) { c["aud"] = "billing" }), nil)), status: 401, code: "invalid_token", why: "audience"},
		"UnknownKid":    {reason: "kid not in the key set", auth: bearer(k.sign(t, "RS256", "rsa1", claims(now, nil), map[string]any{"kid": "nope"})), status: 401, code: "invalid_token", why: "unverifiable"},
		"KidPathChars":  {reason: "kid with path characters", auth: bearer(signWith(oldKey, "../../etc/passwd", claims(now, nil), nil)), status: 401, code: "invalid_token", why: "unverifiable"},
		"JKUIgnored": {reason: "jku pointing at the attacker's key set is never fetched",
			auth: bearer(signWith(attackerKey, "attacker", claims(now, nil), map[string]any{"jku": attackerURL})), status: 401, code: "invalid_token", why: "unverifiable"},
		"X5UIgnored": {reason: "x5u likewise",
			auth: bearer(signWith(attackerKey, "attacker2", claims(now, nil), map[string]any{"x5u": attackerURL + "/cert.pem"})), status: 401, code: "invalid_token", why: "unverifiable"},
		"EmbeddedJWK": {reason: "a key embedded in the header is not trusted",
			auth: bearer(signWith(attackerKey, "rsa1", claims(now, nil), map[string]any{"jwk": map[string]any{"kty": "RSA", "n": base64.RawURLEncoding.EncodeToString(attackerKey.N.Bytes()), "e": "AQAB"}})), status: 401, code: "invalid_token", why: "signature"},
		"ForgedSignature": {reason: "a known kid with another key's signature", auth: bearer(signWith(attackerKey, "rsa1", claims(now, nil), nil)), status: 401, code: "invalid_token", why: "signature"},
		"UnknownCrit":     {reason: "a critical header we do not understand", auth: bearer(k.sign(t, "RS256", "rsa1", claims(now, nil), map[string]any{"crit": []string{"exp-v2"}, "exp-v2": 1})), status: 401, code: "invalid_token", why: "crit"},
		"Truncated":       {reason: "signature cut short", auth: bearer(valid[:len(valid)-10]), status: 401, code: "invalid_token", why: "signature"},
		"TamperedClaims":  {reason: "claims changed after signing", auth: bearer(parts[0] + "." + b64json(t, claims(now, func(c jwt.MapClaims) { c["sub"] = "admin" })) + "." + parts[2]), status: 401, code: "invalid_token", why: "signature"},
		"ExtraSegments":   {reason: "four segments is not a JWS", auth: bearer(valid + ".extra"), status: 401, code: "invalid_token"},
		"BadBase64":       {reason: "segments that are not base64url", auth: bearer("eyJhbGciOiJSUzI1NiJ9.e30~~~.c2ln"), status: 401, code: "invalid_token", why: "malformed"},
		"ES256ZeroRS": {reason: "ES256 signature with r = s = 0 (CVE-2022-21449 style)",
			auth: bearer(header(map[string]any{"alg": "ES256", "kid": "ec1"}) + "." + payload + "." + base64.RawURLEncoding.EncodeToString(make([]byte, 64))), status: 401, code: "invalid_token", why: "signature"},
		"RotatedOut":            {reason: "a key no longer in the JWKS", auth: bearer(rotatedOut), status: 401, code: "invalid_token", why: "unverifiable"},
		"MissingScope":          {reason: "a valid token without the required scope", auth: bearer(k.sign(t, "RS256", "rsa1", claims(now, func(c jwt.MapClaims) { c["scope"] = "profile" }), nil)), status: 403, code: "insufficient_scope", why: "scope"},
		"OversizeHeader":        {reason: "headers over 8 KiB are refused before parsing", auth: bearer(strings.Repeat("a", 9000)), status: 400, code: "invalid_request", why: "oversize"},
		"IllegalChars":          {reason: "characters outside RFC 6750 b64token", auth: []string{"Bearer abc<script>"}, status: 400, code: "invalid_request", why: "charset"},
		"Empty":                 {reason: "Bearer with nothing after it", auth: []string{"Bearer "}, status: 400, code: "invalid_request", why: "empty"},
		"WrongScheme":           {reason: "Basic credentials are not a Bearer token", auth: []string{"Basic dXNlcjpwYXNz"}, status: 401, why: "wrong_scheme"},
		"TokenScheme":           {reason: "Token scheme only when the validator accepts it", auth: []string{"Token " + valid}, status: 401, why: "wrong_scheme"},
		"NoHeader":              {reason: "no credentials at all", auth: nil, status: 401, why: "missing"},
		"TwoHeaders":            {reason: "two Authorization headers are ambiguous", auth: []string{"Bearer " + valid, "Bearer " + valid}, status: 400, code: "invalid_request", why: "multiple_headers"},
		"OpaqueNoIntrospection": {reason: "an opaque token where no issuer can introspect", auth: bearer("c04c7ff7-5fa1-48fb-aa2a-bcf97a6b8a79"), status: 401, code: "invalid_token", why: "malformed"},
	}
}

// runAttacks runs the attack table through call. counted names the validator whose metrics the
// transport records, for the denial reasons it does not show; "" when it records none.
func runAttacks(t *testing.T, cases map[string]attackCase, counted string, call func(t *testing.T, auth []string) attackResult) {
	t.Helper()
	rejected := 0
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			var denials prometheus.Counter
			var before float64
			if counted != "" && c.why != "" {
				denials = Validations.WithLabelValues(counted, "denied", c.why)
				before = testutil.ToFloat64(denials)
			}
			got := call(t, c.auth)
			if c.status == 200 {
				if got.status != 200 {
					t.Fatalf("%s\nrejected: %d %s", c.reason, got.status, got.challenge)
				}
				if got.headers["X-Auth-Subject"] != "user-1" || got.headers["X-Email"] != "u@example.com" {
					t.Fatalf("%s\nidentity headers %v", c.reason, got.headers)
				}
				return
			}
			rejected++
			if got.status == 200 {
				t.Fatalf("%s\naccepted, want %d %s", c.reason, c.status, c.code)
			}
			if got.status != c.status || (c.code != "" && !strings.Contains(got.challenge, `error="`+c.code+`"`)) ||
				(c.code == "" && strings.Contains(got.challenge, "error=")) || (c.why != "" && got.reason != "" && got.reason != c.why) {
				t.Fatalf("%s\ngot %d %q (%s), want %d %q (%s)", c.reason, got.status, got.challenge, got.reason, c.status, c.code, c.why)
			}
			if !strings.HasPrefix(got.challenge, "Bearer ") {
				t.Fatalf("%s\nWWW-Authenticate %q", c.reason, got.challenge)
			}
			if denials != nil {
				if n := testutil.ToFloat64(denials) - before; n != 1 {
					t.Fatalf("%s\n%v denials counted with reason %s, want 1", c.reason, n, c.why)
				}
			}
		})
	}
	if rejected < 25 {
		t.Fatalf("the attack suite has %d rejected cases, want at least 25", rejected)
	}
}

// authenticateDirect is the attack table's transport that calls the Validator itself.
func authenticateDirect(v *Validator) func(t *testing.T, auth []string) attackResult {
	return func(t *testing.T, auth []string) attackResult {
		id, d := v.Authenticate(t.Context(), auth)
		if d != nil {
			return attackResult{status: d.Status, challenge: d.Challenge(), reason: d.Reason}
		}
		return attackResult{status: 200, headers: id.Headers}
	}
}

// TestAttacks: every way a token can be forged, replayed, stretched or mangled is rejected with
// the right status and RFC 6750 error, and no URL from a token is ever fetched.
func TestAttacks(t *testing.T) {
	k := newKeyServer(t)
	clk := clocktesting.NewFakeClock(time.Now())
	now := clk.Now()
	v := newTestValidator(t, k, clk, nil)

	var attackerHits atomic.Int32
	attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		attackerHits.Add(1)
		_, _ = w.Write([]byte(`{"keys":[]}`))
	}))
	defer attacker.Close()
	bearer := func(tok string) []string { return []string{"Bearer " + tok} }
	// With a required typ, an ID token (typ JWT) is not an access token.
	typed := newTestValidator(t, k, clk, func(c *Config) { c.RequiredType = "at+jwt" })
	if _, d := typed.Authenticate(t.Context(), bearer(k.sign(t, "RS256", "rsa1", claims(now, nil), map[string]any{"typ": "JWT"}))); d == nil || d.Reason != "type" {
		t.Errorf("typ JWT where at+jwt is required: %v, want rejected for its type", d)
	}
	if _, d := typed.Authenticate(t.Context(), bearer(k.sign(t, "RS256", "rsa1", claims(now, nil), map[string]any{"typ": "application/AT+JWT"}))); d != nil {
		t.Errorf("typ application/AT+JWT where at+jwt is required: %v", d)
	}
	runAttacks(t, attackCases(t, k, now, attacker.URL), "", authenticateDirect(v))
	if n := attackerHits.Load(); n != 0 {
		t.Fatalf("a URL from a token was fetched %d times", n)
	}
}

// A key is used only for the algorithm its key set publishes it for, and a signature is read
// only in its one canonical base64url form.
func TestKeyAlgorithmAndCanonicalSignature(t *testing.T) {
	k := newKeyServer(t)
	clk := clocktesting.NewFakeClock(time.Now())
	v := newTestValidator(t, k, clk, func(c *Config) { c.Algorithms = []string{"RS256", "PS256", "ES256", "ES384", "EdDSA"} })
	now := clk.Now()
	bearer := func(tok string) []string { return []string{"Bearer " + tok} }
	header := func(h map[string]any) string { return b64json(t, h) }
	if _, d := v.Authenticate(t.Context(), bearer(k.sign(t, "RS256", "rsa1", claims(now, nil), nil))); d != nil {
		t.Fatalf("RS256 with the key published for RS256: %v", d)
	}
	if _, d := v.Authenticate(t.Context(), bearer(k.sign(t, "PS256", "rsa1", claims(now, nil), nil))); d == nil || d.Reason != "algorithm" {
		t.Errorf("PS256 signed with a key published for RS256: %v, want rejected for its algorithm", d)
	}
	// The EC key has no alg: its curve decides. A P-256 key never verifies ES384.
	es := k.sign(t, "ES256", "ec1", claims(now, nil), nil)
	if _, d := v.Authenticate(t.Context(), bearer(es)); d != nil {
		t.Fatalf("ES256 with the P-256 key: %v", d)
	}
	parts := strings.Split(es, ".")
	forged := header(map[string]any{"alg": "ES384", "kid": "ec1"}) + "." + parts[1] + "." + parts[2]
	if _, d := v.Authenticate(t.Context(), bearer(forged)); d == nil || d.Reason != "algorithm" {
		t.Errorf("ES384 claimed with a P-256 key: %v, want rejected for its algorithm", d)
	}
	// A 256-byte RS256 signature ends in a base64url character carrying 2 data bits and 4 zero
	// bits; setting one of those gives another spelling of the same bytes, which must not pass.
	tok := k.sign(t, "RS256", "rsa1", claims(now, nil), nil)
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, tok[len(tok)-1])
	mangled := tok[:len(tok)-1] + string(alphabet[last^1])
	if _, d := v.Authenticate(t.Context(), bearer(mangled)); d == nil || d.Reason != "malformed" {
		t.Errorf("non-canonical signature encoding: %v, want rejected as malformed", d)
	}
	// A key set entry whose alg does not fit its key is skipped altogether.
	keys, err := ParseJWKS([]byte(`{"keys":[{"kty":"OKP","kid":"x","crv":"Ed25519","alg":"RS256","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}`))
	if err != nil || len(keys) != 0 {
		t.Errorf("an Ed25519 key published for RS256 was kept: %v %v", keys, err)
	}
}

// A rejected claim is named: an empty aud is an audience problem, not a missing exp.
func TestDenialsNameTheClaim(t *testing.T) {
	k := newKeyServer(t)
	clk := clocktesting.NewFakeClock(time.Now())
	v := newTestValidator(t, k, clk, nil)
	for name, tc := range map[string]struct {
		edit   func(jwt.MapClaims)
		reason string
		desc   string
	}{
		"EmptyAud":    {func(c jwt.MapClaims) { c["aud"] = []string{} }, "audience", "aud is missing or empty"},
		"EmptyAudStr": {func(c jwt.MapClaims) { c["aud"] = "" }, "audience", "aud is missing or empty"},
		"NoAud":       {func(c jwt.MapClaims) { delete(c, "aud") }, "audience", "aud is missing or empty"},
		"NoExp":       {func(c jwt.MapClaims) { delete(c, "exp") }, "claim_missing", "required claim exp"},
	} {
		t.Run(name, func(t *testing.T) {
			_, d := v.Authenticate(t.Context(), []string{"Bearer " + k.sign(t, "RS256", "rsa1", claims(clk.Now(), tc.edit), nil)})
			if d == nil || d.Reason != tc.reason || !strings.Contains(d.Description, tc.desc) {
				t.Fatalf("denial %+v, want reason %s naming %q", d, tc.reason, tc.desc)
			}
		})
	}
}

// requiredClaims are met only by a string claim with exactly that value.
func TestRequiredClaimsAreExact(t *testing.T) {
	k := newKeyServer(t)
	clk := clocktesting.NewFakeClock(time.Now())
	v := newTestValidator(t, k, clk, func(c *Config) { c.RequiredClaims = map[string]string{"tenant": "acme"} })
	for name, tc := range map[string]struct {
		value any
		ok    bool
	}{
		"Exact": {"acme", true}, "Other": {"acme-evil", false}, "Prefix": {"acm", false},
		"ListContaining": {[]string{"evil", "acme"}, false}, "ListOfOne": {[]string{"acme"}, false},
		"Number": {42, false}, "Missing": {nil, false},
	} {
		t.Run(name, func(t *testing.T) {
			tok := k.sign(t, "RS256", "rsa1", claims(clk.Now(), func(c jwt.MapClaims) {
				if tc.value != nil {
					c["tenant"] = tc.value
				}
			}), nil)
			_, d := v.Authenticate(t.Context(), []string{"Bearer " + tok})
			if tc.ok != (d == nil) {
				t.Fatalf("tenant=%v: denial %v, want accepted=%v", tc.value, d, tc.ok)
			}
			if d != nil && (d.Status != 403 || !strings.Contains(d.Description, `"tenant"`)) {
				t.Fatalf("denial %d %q should be 403 and name the claim", d.Status, d.Description)
			}
		})
	}
}

// A claim cannot inject a header into the forward-auth response.
func TestClaimsCannotInjectHeaders(t *testing.T) {
	k := newKeyServer(t)
	clk := clocktesting.NewFakeClock(time.Now())
	v := newTestValidator(t, k, clk, nil)
	tok := k.sign(t, "RS256", "rsa1", claims(clk.Now(), func(c jwt.MapClaims) { c["email"] = "u@example.com\r\nX-Admin: true" }), nil)
	id, d := v.Authenticate(t.Context(), []string{"Bearer " + tok})
	if d != nil {
		t.Fatal(d)
	}
	if strings.ContainsAny(id.Headers["X-Email"], "\r\n") {
		t.Fatalf("header value carries a line break: %q", id.Headers["X-Email"])
	}
}

// Key rotation at the issuer: a token signed with a new key is accepted after one refresh,
// without restart; refreshes on unknown kids are rate limited.
func TestKeyRotation(t *testing.T) {
	k := newKeyServer(t)
	clk := clocktesting.NewFakeClock(time.Now())
	v := newTestValidator(t, k, clk, nil)
	fetches := k.hits.Load()
	k.rotate(t)
	tok := k.sign(t, "RS256", "rsa2", claims(clk.Now(), nil), nil)
	// Within the rate limit the unknown kid fetches nothing.
	if _, d := v.Authenticate(t.Context(), []string{"Bearer " + tok}); d == nil || d.Reason != "unverifiable" {
		t.Fatalf("within the refresh rate limit: %v, want unverifiable", d)
	}
	if n := k.hits.Load() - fetches; n != 0 {
		t.Fatalf("%d fetches within the rate limit, want 0", n)
	}
	clk.Step(minRefreshInterval + time.Second)
	if _, d := v.Authenticate(t.Context(), []string{"Bearer " + k.sign(t, "RS256", "rsa2", claims(clk.Now(), nil), nil)}); d != nil {
		t.Fatalf("after rotation and one refresh: %v", d)
	}
	if n := k.hits.Load() - fetches; n != 1 {
		t.Fatalf("%d key set fetches for one rotation, want 1", n)
	}
}
