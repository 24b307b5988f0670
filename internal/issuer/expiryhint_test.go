package issuer

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
)

func TestNoExpiryHint(t *testing.T) {
	const json = "spec.json.response"
	cases := map[string]struct {
		reason  string
		body    string
		mapping v1alpha1.ResponseMapping
		field   string // ParseOptions.MappingField
		want    []string
		wantNot []string
	}{
		"LifetimeUnderResult": {
			reason: "Issue #27: a lifetime under a name auto-detection does not know is listed with its value, with the exact line that maps it.",
			body:   `{"result": {"token": "abc", "valid_for": 180}}`, field: json,
			want: []string{"result.valid_for = 180", "add to the Issuer spec.json.response.expiresIn: result.valid_for", "else set defaultLifetime on the issuer"},
		},
		"TimeUnderData": {
			reason: "An RFC 3339 time ahead is shown (a time is no secret) and suggested as expiresAt.",
			body:   `{"data": {"token": "abc", "good_through": "2026-11-22T13:00:00Z"}}`, field: json,
			want: []string{`data.good_through = "2026-11-22T13:00:00Z"`, "spec.json.response.expiresAt: data.good_through"},
		},
		"EpochMilliseconds": {
			reason: "An epoch in milliseconds ahead is a time: expiresAt.",
			body:   `{"token": "abc", "deadline": ` + strconv.FormatInt(now.Add(time.Hour).UnixMilli(), 10) + `}`, field: json,
			want: []string{"deadline = " + strconv.FormatInt(now.Add(time.Hour).UnixMilli(), 10), "spec.json.response.expiresAt: deadline"},
		},
		"NumericStringNotShown": {
			reason: "A numeric string may be a PIN or a numeric token: named, its value never shown.",
			body:   `{"token": "abc", "otp": "493817"}`, field: json,
			want:    []string{"otp (a numeric string)"},
			wantNot: []string{"493817"},
		},
		"WordsNeverListed": {
			reason: "A string that is neither a number nor a time may be a secret: not listed at all.",
			body:   `{"token": "abc", "session_key": "s3cr3t-Value-x9", "note": "hello"}`, field: json,
			want:    []string{"it holds no other number or time: set defaultLifetime on the issuer"},
			wantNot: []string{"s3cr3t", "session_key", "hello"},
		},
		"NumericTokenNotListed": {
			reason: "The token itself may be digits: it is the token, not an expiry, and never shown or suggested.",
			body:   `{"token": "12345678901234"}`, field: json,
			want:    []string{"holds no other number or time"},
			wantNot: []string{"12345678901234", "token (a numeric string)"},
		},
		"ExpiryNamesFirst": {
			reason: "A name that says expiry goes first and gets the line, whatever the key order.",
			body:   `{"token": "abc", "user_id": 42, "session": {"ttl_seconds": 900}}`, field: json,
			want: []string{"session.ttl_seconds = 900, user_id = 42", "spec.json.response.expiresIn: session.ttl_seconds"},
		},
		"RefreshLifetimeNotSuggested": {
			reason: "The refresh token's lifetime is no help for the access token: listed after, never suggested.",
			body:   `{"token": "abc", "refresh_token": "r-1", "refresh_valid_for": 86400, "lifetime_secs": 600}`, field: json,
			want: []string{"lifetime_secs = 600, refresh_valid_for = 86400", "expiresIn: lifetime_secs"},
		},
		"PastTimeOnly": {
			reason: "A time already past cannot be the expiry: listed, but no line suggests it.",
			body:   `{"token": "abc", "created_at": "2026-11-22T11:00:00Z"}`, field: json,
			want:    []string{`created_at = "2026-11-22T11:00:00Z"`, "None is a lifetime or a time ahead", "defaultLifetime"},
			wantNot: []string{"expiresAt: created_at"},
		},
		"ListCapped": {
			reason: "A response full of numbers lists five of them and counts the rest.",
			body:   `{"token": "abc", "a": 11, "b": 12, "c": 13, "d": 14, "e": 15, "f": 16, "g": 17, "h": 18}`, field: json,
			want:    []string{"a = 11, b = 12, c = 13, d = 14, e = 15 and 3 more"},
			wantNot: []string{"f = 16"},
		},
		"UnmappableKeysLeftOut": {
			reason: "A key no JSONPath can name (a dot, a space) cannot be mapped: not suggested.",
			body:   `{"token": "abc", "valid for": 60, "x.ttl": 60}`, field: json,
			want: []string{"holds no other number or time"},
		},
		"ExplicitMappingFindsNothing": {
			reason: "A mapped path that leads nowhere is named, so a typo shows.",
			body:   `{"token": "abc", "result": {"ttl": 60}}`, field: json, mapping: v1alpha1.ResponseMapping{ExpiresIn: "reslt.ttl"},
			want: []string{"(spec.json.response.expiresIn reslt.ttl finds nothing)", "expiresIn: result.ttl"},
		},
		"NoResponseMapping": {
			reason:  "An issuer without a response mapping (OAuth2) is not told to add one.",
			body:    `{"access_token": "abc", "valid_for": 60}`,
			want:    []string{"valid_for = 60", "This issuer has no response mapping: set defaultLifetime on the issuer"},
			wantNot: []string{"spec.json"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ParseResponse([]byte(tc.body), ParseOptions{Now: now, Mapping: tc.mapping, MappingField: tc.field})
			if err == nil {
				t.Fatalf("%s\nno error", tc.reason)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "response gives no expiry") {
				t.Errorf("%s\nmessage %q is not the no-expiry one", tc.reason, msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("%s\nmessage %q\ndoes not contain %q", tc.reason, msg, w)
				}
			}
			for _, w := range tc.wantNot {
				if strings.Contains(msg, w) {
					t.Errorf("%s\nmessage %q\ncontains %q", tc.reason, msg, w)
				}
			}
			if len(msg) > maxParseReasonLen {
				t.Errorf("%s\nmessage is %d bytes, more than %d", tc.reason, len(msg), maxParseReasonLen)
			}
		})
	}
}

// FuzzNoExpiryHint: whatever the response, the hint of a failed parse stays within its bound and
// never shows the token the response holds.
func FuzzNoExpiryHint(f *testing.F) {
	for _, s := range []string{
		`{"result": {"token": "abc", "valid_for": 180}}`,
		`{"token": "12345678901234", "a": {"b": {"c": {"d": 7, "e": "2026-11-22T13:00:00Z"}}}}`,
		`{"token": "abcdefgh", "otp": "abcdefgh", "n": 1e400, "t": "2026-11-22 13:00:00"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		tok, err := parseResponse(body, ParseOptions{Now: now, MappingField: "spec.json.response"})
		if err == nil {
			return
		}
		msg := err.Error()
		if strings.HasPrefix(msg, "response gives no expiry") && len(msg) > maxParseReasonLen {
			t.Fatalf("hint is %d bytes: %s", len(msg), msg)
		}
		// Its name may be a key too ({"token": "ttl", "ttl": 60}); as a value it is never shown.
		if a := tok.AccessToken; a != "" {
			for _, shown := range []string{"= " + a + ",", "= " + a + ".", "= " + a + " ", strconv.Quote(a)} {
				if strings.Contains(msg, shown) {
					t.Fatalf("hint shows the token: %s", msg)
				}
			}
		}
	})
}
