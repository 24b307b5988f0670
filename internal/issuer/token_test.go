package issuer

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
)

var now = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func unsignedJWT(t testing.TB, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte("k"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestParseResponse(t *testing.T) {
	jwtTok := unsignedJWT(t, jwt.MapClaims{"exp": now.Add(time.Hour).Unix(), "iat": now.Add(-time.Minute).Unix()})
	cases := map[string]struct {
		reason   string
		body     string
		opts     ParseOptions
		wantErr  string
		expires  time.Time
		source   ExpirySource
		scheme   string
		refresh  string
		field    string
		issuedAt time.Time
	}{
		"OAuth2": {
			reason:  "RFC 6749 §5.1 names.",
			body:    `{"access_token":"abc","token_type":"bearer","expires_in":3600,"refresh_token":"r1"}`,
			expires: now.Add(time.Hour), source: ExpiryFromLifetime, scheme: "Bearer", refresh: "r1", field: "refresh_token",
		},
		"CamelCase": {
			reason:  "Seed 002 names; the refresh field name is kept for the refresh call.",
			body:    `{"accessToken":"abc","refreshToken":"r2","expiresIn":"60"}`,
			expires: now.Add(time.Minute), source: ExpiryFromLifetime, scheme: "Bearer", refresh: "r2", field: "refreshToken",
		},
		"Seed003RFC3339": {
			reason:  "tokenExpiration wins over tokenLifetime.",
			body:    `{"token":"c04c7ff7-5fa1","tokenExpiration":"2026-11-22T13:30:00+00:00","tokenLifetime":3600}`,
			expires: now.Add(90 * time.Minute), source: ExpiryFromResponse, scheme: "Bearer",
		},
		"EpochSeconds": {
			reason:  "expires_at as epoch seconds.",
			body:    `{"token":"abc","expires_at":` + itoa(now.Add(time.Hour).Unix()) + `}`,
			expires: now.Add(time.Hour), source: ExpiryFromResponse, scheme: "Bearer",
		},
		"EpochMilliseconds": {
			reason:  "expires_at as epoch milliseconds.",
			body:    `{"token":"abc","expires_at":` + itoa(now.Add(time.Hour).UnixMilli()) + `}`,
			expires: now.Add(time.Hour), source: ExpiryFromResponse, scheme: "Bearer",
		},
		"JWTExp": {
			reason:  "Seed 004: no expiry in the body, the JWT's exp; iat becomes the issue time.",
			body:    `{"access_token":"` + jwtTok + `"}`,
			expires: now.Add(time.Hour), source: ExpiryFromJWT, scheme: "Bearer", issuedAt: now.Add(-time.Minute),
		},
		"WrappedInData": {
			reason:  "Auto-detection looks inside a data wrapper.",
			body:    `{"status":"success","data":{"token":"abc"}}`,
			opts:    ParseOptions{DefaultLifetime: 10 * time.Hour},
			expires: now.Add(10 * time.Hour), source: ExpiryFromDefault, scheme: "Bearer",
		},
		"ExplicitPaths": {
			reason:  "Explicit paths override auto-detection.",
			body:    `{"token":"wrong","a":{"b":"right","ttl":120,"type":"Token"}}`,
			opts:    ParseOptions{Mapping: v1alpha1.ResponseMapping{Token: "a.b", ExpiresIn: "a.ttl", TokenType: "a.type"}},
			expires: now.Add(2 * time.Minute), source: ExpiryFromLifetime, scheme: "Token",
		},
		"AssumedLifetime": {
			reason:  "Nothing says when it expires: assume the session duration asked for.",
			body:    `{"token":"abc"}`,
			opts:    ParseOptions{AssumedLifetime: 8 * time.Hour},
			expires: now.Add(8 * time.Hour), source: ExpiryAssumed, scheme: "Bearer",
		},
		"NoExpiryAtAll": {
			reason:  "Without any expiry the user must declare defaultLifetime.",
			body:    `{"token":"abc"}`,
			wantErr: "set defaultLifetime",
		},
		"NotAnObject":     {reason: "A JSON array is not a token response.", body: `["abc"]`, wantErr: "not a JSON object"},
		"TrailingData":    {reason: "Two documents are ambiguous.", body: `{"token":"a","expires_in":1}{"token":"b"}`, wantErr: "trailing data"},
		"TokenNotString":  {reason: "A numeric token is malformed.", body: `{"token":123,"expires_in":60}`, wantErr: "not a string"},
		"NegativeExpires": {reason: "Negative lifetimes are absurd.", body: `{"token":"a","expires_in":-5}`, wantErr: "out of range"},
		"HugeExpires":     {reason: "A century-long token is absurd.", body: `{"token":"a","expires_in":9999999999}`, wantErr: "out of range"},
		"BadTimestamp":    {reason: "An unparsable expiry is malformed.", body: `{"token":"a","expires_at":"tomorrow"}`, wantErr: "not an RFC 3339"},
		"IllegalChars":    {reason: "RFC 6750 b64token only.", body: `{"token":"a b","expires_in":60}`, wantErr: "illegal character"},
		"EmptyToken":      {reason: "An empty token is no token.", body: `{"token":"","expires_in":60}`, wantErr: "no access token"},
		"PaddingInMiddle": {reason: "= only at the end.", body: `{"token":"ab=c","expires_in":60}`, wantErr: "after '=' padding"},
		"NestedExpiresMilliseconds": {
			reason:  "The issue's login API: data.expires in epoch milliseconds, no defaultLifetime needed.",
			body:    `{"data":{"token":"abc","expires":` + itoa(now.Add(40*time.Second).UnixMilli()) + `}}`,
			opts:    ParseOptions{DefaultLifetime: 10 * time.Hour},
			expires: now.Add(40 * time.Second), source: ExpiryFromResponse, scheme: "Bearer",
		},
		"NestedExpiresSeconds": {
			reason:  "result.expiresAt in epoch seconds.",
			body:    `{"result":{"accessToken":"abc","expiresAt":` + itoa(now.Add(time.Hour).Unix()) + `}}`,
			expires: now.Add(time.Hour), source: ExpiryFromResponse, scheme: "Bearer",
		},
		"NestedRFC3339": {
			reason:  "session.valid_until in RFC 3339.",
			body:    `{"session":{"token":"abc","valid_until":"2026-11-22T12:30:00Z"}}`,
			expires: now.Add(30 * time.Minute), source: ExpiryFromResponse, scheme: "Bearer",
		},
		"TwoLevelsDeep": {
			reason:  "data.attributes.expiry_date (JSON:API style).",
			body:    `{"data":{"attributes":{"token":"abc","expiry_date":"2026-11-22T14:00:00+00:00"}}}`,
			expires: now.Add(2 * time.Hour), source: ExpiryFromResponse, scheme: "Bearer",
		},
		"VaultLease": {
			reason:  "Vault: auth.client_token with auth.lease_duration in seconds.",
			body:    `{"auth":{"client_token":"hvs.abc","lease_duration":2764800}}`,
			expires: now.Add(2764800 * time.Second), source: ExpiryFromLifetime, scheme: "Bearer",
		},
		"VagueNameHoldsLifetime": {
			reason:  "\"expires\": 3600 is an hour from now, not 1970.",
			body:    `{"token":"abc","expires":3600}`,
			expires: now.Add(time.Hour), source: ExpiryFromLifetime, scheme: "Bearer",
		},
		"AzureExpiresOn": {
			reason:  "expires_on as a numeric string of epoch seconds.",
			body:    `{"access_token":"abc","expires_on":"` + itoa(now.Add(time.Hour).Unix()) + `"}`,
			expires: now.Add(time.Hour), source: ExpiryFromResponse, scheme: "Bearer",
		},
		"TokenObjectIsAWrapper": {
			reason:  "A \"token\" object is looked into, not taken for a token.",
			body:    `{"token":{"value":"x","accessToken":"abc","ttl":"120"}}`,
			expires: now.Add(2 * time.Minute), source: ExpiryFromLifetime, scheme: "Bearer",
		},
		"UnknownScheme": {
			reason:  "Odd token types with illegal characters fall back to Bearer.",
			body:    `{"token":"abc","token_type":"N/A","expires_in":60}`,
			expires: now.Add(time.Minute), source: ExpiryFromLifetime, scheme: "Bearer",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			tc.opts.Now = now
			tok, err := ParseResponse([]byte(tc.body), tc.opts)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("%s\nerror %v, want one containing %q", tc.reason, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("%s\nunexpected error: %v", tc.reason, err)
			}
			if !tok.ExpiresAt.Equal(tc.expires) || tok.ExpirySource != tc.source || tok.Scheme != tc.scheme {
				t.Errorf("%s\ngot expires=%s source=%s scheme=%s, want %s %s %s", tc.reason, tok.ExpiresAt, tok.ExpirySource, tok.Scheme, tc.expires, tc.source, tc.scheme)
			}
			if tok.RefreshToken != tc.refresh || tok.RefreshField != tc.field {
				t.Errorf("%s\nrefresh=%q field=%q, want %q %q", tc.reason, tok.RefreshToken, tok.RefreshField, tc.refresh, tc.field)
			}
			wantIssued := tc.issuedAt
			if wantIssued.IsZero() {
				wantIssued = now
			}
			if !tok.IssuedAt.Equal(wantIssued) {
				t.Errorf("%s\nissuedAt=%s, want %s", tc.reason, tok.IssuedAt, wantIssued)
			}
		})
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// FuzzParseResponse: whatever an issuer sends, parsing never panics, and an accepted token is
// well-formed with a sane expiry.
func FuzzParseResponse(f *testing.F) {
	for _, s := range []string{
		`{"access_token":"abc","token_type":"bearer","expires_in":3600,"refresh_token":"r1"}`,
		`{"accessToken":"abc.def-ghi_","refreshToken":"r2"}`,
		`{"token":"c04c7ff7","tokenExpiration":"2026-11-22T13:30:00+00:00","refreshTokenExpiration":"2026-12-22T13:30:00Z","guid":"g"}`,
		`{"status":"success","data":{"token":"abc"}}`,
		`{"access_token":"eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjE3OTUwMDAwMDB9.sig"}`,
		`{"token":"a","expires_at":1795000000000}`,
		`[]`, `null`, `{"token":{}}`, `{"token":"a","expires_in":"1e400"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		tok, err := ParseResponse(body, ParseOptions{Now: now, DefaultLifetime: time.Hour})
		if err != nil {
			return
		}
		if CheckTokenSyntax(tok.AccessToken) != nil {
			t.Fatalf("accepted a malformed access token")
		}
		if tok.RefreshToken != "" && CheckTokenSyntax(tok.RefreshToken) != nil {
			t.Fatalf("accepted a malformed refresh token")
		}
		if !tok.ExpiresAt.After(now.Add(-clockSkew)) || tok.ExpiresAt.Sub(now) > maxLifetime {
			t.Fatalf("accepted an absurd expiry %s", tok.ExpiresAt)
		}
		if len(tok.AccessToken) >= 8 && strings.Contains(tok.String(), tok.AccessToken) {
			t.Fatalf("String reveals the token")
		}
	})
}

// FuzzParseTime: expiry parsing never panics and never accepts a time before 1973 or after 5138.
func FuzzParseTime(f *testing.F) {
	for _, s := range []string{"2026-11-22T13:30:00+00:00", "1795000000", "1795000000000", "2026-11-22 13:30:00", "-1", "NaN", "1e308"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tm, err := ParseTime(s)
		if err != nil {
			return
		}
		if _, notNumeric := number(s); notNumeric == nil && (tm.Year() < 1973 || tm.Year() > 5138) {
			t.Fatalf("accepted epoch %q as %s", s, tm)
		}
	})
}

// FuzzRenderTemplate: a body template renders valid JSON or fails, and a failure never echoes
// the secret input.
func FuzzRenderTemplate(f *testing.F) {
	f.Add(`{"type":"api-key","key":{{ .key | toJson }},"secret":{{ .secret | toJson }}}`, "s3cr3t-value")
	f.Add(`{"p":{{ .secret }}}`, `x","y":"z`)
	f.Add(`{{ .missing }}`, "s3cr3t-value")
	f.Fuzz(func(t *testing.T, text, secret string) {
		out, err := renderTemplate("body", text, map[string]any{"key": "k", "secret": secret})
		if err != nil {
			if len(secret) >= 6 && strings.Contains(err.Error(), secret) && !strings.Contains(text, secret) {
				t.Fatalf("template error reveals the secret: %v", err)
			}
			return
		}
		if !json.Valid(out) {
			t.Fatalf("rendered invalid JSON")
		}
	})
}

// TestTokensThatCannotBeRenewedInTime: an answer whose expiry is past, or too close to renew the
// token before it, is refused (a failure with backoff) instead of written and renewed every few
// seconds for ever.
func TestTokensThatCannotBeRenewedInTime(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) string { return now.Add(d).Format(time.RFC3339) }
	for name, tc := range map[string]struct {
		reason string
		body   string
		want   string // "" accepted
	}{
		"PastByAFewSeconds": {reason: "GitHub's expires_at 10 s past was accepted within the old 30-s skew.",
			body: `{"token":"ghs_abc","expires_at":"` + at(-10*time.Second) + `"}`, want: "already expired"},
		"PastByAnHour": {reason: "Long expired.", body: `{"token":"ghs_abc","expires_at":"` + at(-time.Hour) + `"}`, want: "already expired"},
		"TooSoon":      {reason: "Expires 2 s after issue: cannot be renewed before it expires.", body: `{"token":"ghs_abc","expires_at":"` + at(2*time.Second) + `"}`, want: "too soon"},
		"ZeroLifetime": {reason: "expires_in 0 stays refused.", body: `{"token":"abc","expires_in":0}`, want: "lifetime"},
		"Usable":       {reason: "An hour is fine.", body: `{"token":"ghs_abc","expires_at":"` + at(time.Hour) + `"}`},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseResponse([]byte(tc.body), ParseOptions{Now: now})
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("%s: refused: %v", tc.reason, err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("%s: got %v, want an error containing %q", tc.reason, err, tc.want)
			}
		})
	}
}

// TestVaultLoginResponse: a real Vault login answer is read without mapping: the token from
// auth.client_token, the lifetime from auth.lease_duration (not the top-level lease_duration 0
// every auth response carries), and Bearer as the scheme (auth.token_type "service" is Vault's
// kind of token, not an HTTP scheme).
func TestVaultLoginResponse(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	body := `{"request_id":"c7d7b8a0-1111-2222-3333-444455556666","lease_id":"","renewable":false,"lease_duration":0,"data":null,
		"auth":{"client_token":"hvs.CAESIJ3fakefakefake","accessor":"hmac.accessor","policies":["default","orders"],
		"token_policies":["default","orders"],"metadata":{"role":"orders"},"lease_duration":3600,"renewable":true,
		"entity_id":"e-1","token_type":"service","orphan":true}}`
	tok, err := ParseResponse([]byte(body), ParseOptions{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if tok.AccessToken != "hvs.CAESIJ3fakefakefake" || tok.Scheme != "Bearer" || tok.ExpiresAt != now.Add(time.Hour) || tok.ExpiryField != "auth.lease_duration" {
		t.Errorf("got token %t, scheme %q, expiry %s from %q; want auth.client_token, Bearer, an hour from auth.lease_duration",
			tok.AccessToken == "hvs.CAESIJ3fakefakefake", tok.Scheme, tok.ExpiresAt.Sub(now), tok.ExpiryField)
	}
}
