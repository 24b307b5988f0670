package issuer_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer"
)

// TestVendorMessages checks that the issuer's own explanation, wherever a vendor puts it, reaches
// the error (and so the Credential's status and Events) bounded, without control characters and
// without any secret it echoes.
func TestVendorMessages(t *testing.T) {
	const password = "pw-Qx9-echoed-secret"
	cases := map[string]struct {
		reason  string
		refresh bool // the failing call is a refresh, after a good login
		status  int
		body    string
		class   issuer.Class
		want    []string
		wantNot []string
	}{
		"StringError": {
			reason: "The simplest shape: error is the message.",
			status: 401, body: `{"error": "Invalid email or password"}`,
			class: issuer.ClassInvalidCredentials, want: []string{"(HTTP 401): Invalid email or password"},
		},
		"ErrorObjectMessage": {
			reason: "Issue #27: a vendor's nested error.message appeared nowhere.",
			status: 401, body: `{"error": {"code": 1001, "message": "Account locked until 18:00"}}`,
			class: issuer.ClassInvalidCredentials, want: []string{"Account locked until 18:00"},
		},
		"OAuth2ErrorDescription": {
			reason: "RFC 6749 §5.2: the code and its description.",
			status: 400, body: `{"error": "invalid_grant", "error_description": "Wrong password for admin"}`,
			class: issuer.ClassInvalidCredentials, want: []string{"invalid_grant: Wrong password for admin"},
		},
		"Message": {
			reason: "message at the top level.",
			status: 403, body: `{"status": 403, "message": "Source IP not allowed"}`,
			class: issuer.ClassInvalidCredentials, want: []string{"Source IP not allowed"},
		},
		"ProblemDetail": {
			reason: "RFC 9457 problem details: title and detail.",
			status: 401, body: `{"type": "about:blank", "title": "Unauthorized", "detail": "Signature does not match"}`,
			class: issuer.ClassInvalidCredentials, want: []string{"Signature does not match"},
		},
		"ErrorsArrayMessage": {
			reason: "GraphQL-style errors[0].message.",
			status: 401, body: `{"errors": [{"message": "User is disabled"}, {"message": "second"}]}`,
			class: issuer.ClassInvalidCredentials, want: []string{"User is disabled"}, wantNot: []string{"second"},
		},
		"ErrorsArrayDetail": {
			reason: "JSON:API errors[0].detail.",
			status: 401, body: `{"errors": [{"status": "401", "detail": "API key revoked"}]}`,
			class: issuer.ClassInvalidCredentials, want: []string{"API key revoked"},
		},
		"WrappedUnderData": {
			reason: "The message one level inside a common wrapper.",
			status: 401, body: `{"data": {"error": {"message": "Tenant suspended"}}}`,
			class: issuer.ClassInvalidCredentials, want: []string{"Tenant suspended"},
		},
		"WrappedUnderResult": {
			reason: "A 4xx with success=false and result.message.",
			status: 400, body: `{"success": false, "result": {"message": "Wrong one-time code"}}`,
			class: issuer.ClassInvalidCredentials, want: []string{"Wrong one-time code"},
		},
		"EchoedPasswordRedacted": {
			reason: "A vendor that echoes the submitted password never leaks it.",
			status: 401, body: `{"error": {"message": "password ` + password + ` is wrong"}}`,
			class: issuer.ClassInvalidCredentials, want: []string{"password [redacted] is wrong"}, wantNot: []string{password},
		},
		"ControlCharactersStripped": {
			reason: "Terminal escapes, newlines and bidi overrides could forge what a reader sees.",
			status: 401, body: `{"message": "bad\u001b[31m login\nok\u202e"}`,
			class: issuer.ClassInvalidCredentials, want: []string{"bad [31m login ok"}, wantNot: []string{"\x1b", "\n", "\u202e"},
		},
		"Bounded": {
			reason: "A novel from the issuer is cut at 200 bytes.",
			status: 401, body: `{"error": {"message": "` + strings.Repeat("very long explanation ", 40) + `"}}`,
			class: issuer.ClassInvalidCredentials, want: []string{"explanation ve…"},
		},
		"RefreshRejected": {
			reason:  "A refused refresh quotes the vendor too.",
			refresh: true, status: 401, body: `{"error": {"message": "Session revoked by admin"}}`,
			class: issuer.ClassRefreshRejected, want: []string{"Session revoked by admin"},
		},
		"MalformedCarriesMessage": {
			reason: "A 200 without a token that says why (some vendors answer 200 to everything).",
			status: 200, body: `{"status": "error", "error": {"message": "Account requires MFA"}}`,
			class: issuer.ClassMalformedResponse, want: []string{`malformed response (HTTP 200): the issuer says "Account requires MFA": response has no access token`},
		},
		"MalformedTokenInMessageRedacted": {
			reason: "A 200 whose message repeats the new token: the token is a secret though it was not sent.",
			status: 200, body: `{"token": "tok-Abc123xyz-987", "message": "issued tok-Abc123xyz-987 for admin"}`,
			class: issuer.ClassMalformedResponse, want: []string{`the issuer says "issued [redacted] for admin"`, "response gives no expiry"},
			wantNot: []string{"tok-Abc123xyz-987"},
		},
		"MalformedBareTokenNotQuoted": {
			reason: "A 200 whose body is a bare token, not JSON: never quoted.",
			status: 200, body: `eyJhbGciOiJub25lIn0.eyJzdWIiOiIxMjMifQ.sig0123456789`,
			class: issuer.ClassMalformedResponse, want: []string{"response is not JSON"}, wantNot: []string{"eyJ"},
		},
		"MalformedMessageThatIsAToken": {
			reason: "A message that is one long word of token characters may be a token under an unknown name: not quoted.",
			status: 200, body: `{"status": "ok", "message": "a8F3kQ0zLm2Xw9Ty7Rb"}`,
			class: issuer.ClassMalformedResponse, want: []string{"response has no access token"}, wantNot: []string{"a8F3kQ0zLm2Xw9Ty7Rb", "issuer says"},
		},
		"NoExpiryHint": {
			reason: "Issue #27: the no-expiry hint survives the client's bounds and names the Issuer line.",
			status: 200, body: `{"result": {"token": "abc", "valid_for": 180}}`,
			class: issuer.ClassMalformedResponse,
			want:  []string{"result.valid_for = 180", "spec.json.response.expiresIn: result.valid_for", "defaultLifetime"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				if tc.refresh && r.URL.Path == "/login" {
					_, _ = w.Write([]byte(`{"token": "t-1", "refresh_token": "r-1", "expires_in": 600}`))
					return
				}
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			c, err := issuer.New(issuer.Config{Spec: v1alpha1.IssuerSpec{
				URL: v1alpha1.EndpointURL(srv.URL + "/login"), JSON: &v1alpha1.JSONLogin{}, CABundle: string(pemOf(srv)),
				Refresh: &v1alpha1.Endpoint{URL: v1alpha1.EndpointURL(srv.URL + "/refresh")},
			}})
			if err != nil {
				t.Fatal(err)
			}
			req := issuer.Request{Kind: issuer.LoginPassword, Inputs: map[string]string{"username": "svc", "password": password}}
			tok, err := c.Login(t.Context(), req)
			if tc.refresh {
				if err != nil {
					t.Fatalf("Login: %v", err)
				}
				_, err = c.Refresh(t.Context(), req, tok)
			}
			if err == nil {
				t.Fatalf("%s\nno error", tc.reason)
			}
			if got := issuer.ClassOf(err); got != tc.class {
				t.Errorf("%s\nclass %q, want %q (%v)", tc.reason, got, tc.class, err)
			}
			msg := err.Error()
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
			if len(msg) > 1000 {
				t.Errorf("%s\nmessage is %d bytes: too long for an Event", tc.reason, len(msg))
			}
		})
	}
}
