package issuer_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer/issuertest"
)

func TestFailureClasses(t *testing.T) {
	type op func(t *testing.T, c *issuer.Client, srv *issuertest.Server, req issuer.Request) error
	login := func(t *testing.T, c *issuer.Client, _ *issuertest.Server, req issuer.Request) error {
		_, err := c.Login(t.Context(), req)
		return err
	}
	// refreshAfter logs in, applies break, then refreshes.
	refreshAfter := func(brk func(*issuertest.Server, *issuer.Token)) op {
		return func(t *testing.T, c *issuer.Client, srv *issuertest.Server, req issuer.Request) error {
			tok, err := c.Login(t.Context(), req)
			if err != nil {
				t.Fatalf("Login: %v", err)
			}
			brk(srv, tok)
			_, err = c.Refresh(t.Context(), req, tok)
			return err
		}
	}
	cases := map[string]struct {
		reason      string
		flavor      issuertest.Flavor
		setup       func(*issuertest.Server, *v1alpha1.IssuerSpec, *issuer.Request)
		do          op
		class       issuer.Class
		retryAfter  time.Duration
		msgContains string
		noRequest   bool
	}{
		"WrongPassword401": {
			reason: "Seed 001 answers 401 to a wrong password: the user must fix the Secret.",
			flavor: issuertest.Seed001, do: login, class: issuer.ClassInvalidCredentials,
			setup:       func(s *issuertest.Server, _ *v1alpha1.IssuerSpec, _ *issuer.Request) { s.SetPassword("rotated") },
			msgContains: "Invalid email or password",
		},
		"WrongSecret400": {
			reason: "Seed 004 answers 400 to bad credentials.",
			flavor: issuertest.Seed004, do: login, class: issuer.ClassInvalidCredentials,
			setup:       func(s *issuertest.Server, _ *v1alpha1.IssuerSpec, _ *issuer.Request) { s.SetPassword("rotated") },
			msgContains: "Invalid API key or secret",
		},
		"WrongPassword403Seed003": {
			reason: "Seed 003 answers 401 with success=false.",
			flavor: issuertest.Seed003, do: login, class: issuer.ClassInvalidCredentials,
			setup: func(s *issuertest.Server, _ *v1alpha1.IssuerSpec, _ *issuer.Request) { s.SetPassword("rotated") },
		},
		"MissingAPIKeyHeader": {
			reason: "Seed 002 refuses any call without its Api-Key header.",
			flavor: issuertest.Seed002, do: login, class: issuer.ClassInvalidCredentials,
			setup:       func(_ *issuertest.Server, s *v1alpha1.IssuerSpec, _ *issuer.Request) { s.Headers = nil },
			msgContains: "Api-Key",
		},
		"OAuth2InvalidClient": {
			reason: "invalid_client is a credentials problem.",
			flavor: issuertest.OAuth2, do: login, class: issuer.ClassInvalidCredentials,
			setup:       func(s *issuertest.Server, _ *v1alpha1.IssuerSpec, _ *issuer.Request) { s.SetPassword("rotated") },
			msgContains: "invalid_client",
		},
		"OAuth2InvalidGrantOnLogin": {
			reason: "invalid_grant on a password login means a wrong password.",
			flavor: issuertest.OAuth2, do: login, class: issuer.ClassInvalidCredentials,
			setup: func(_ *issuertest.Server, _ *v1alpha1.IssuerSpec, r *issuer.Request) {
				r.Kind, r.Inputs["username"], r.Inputs["password"] = issuer.LoginPassword, issuertest.Username, "wrong"
			},
			msgContains: "invalid_grant",
		},
		"RefreshTokenExpired": {
			reason: "An expired refresh token means a full login, not a failure.",
			flavor: issuertest.Seed001, class: issuer.ClassRefreshRejected,
			do: refreshAfter(func(s *issuertest.Server, _ *issuer.Token) { s.ExpireRefreshTokens() }),
		},
		"RefreshRejected403Seed003": {
			reason: "Seed 003 answers 403 to an expired refresh token.",
			flavor: issuertest.Seed003, class: issuer.ClassRefreshRejected,
			do: refreshAfter(func(s *issuertest.Server, _ *issuer.Token) { s.ExpireRefreshTokens() }),
		},
		"RefreshRevokedOAuth2": {
			reason: "invalid_grant on refresh is RefreshRejected.",
			flavor: issuertest.OAuth2, class: issuer.ClassRefreshRejected,
			setup: func(_ *issuertest.Server, _ *v1alpha1.IssuerSpec, r *issuer.Request) {
				r.Kind, r.Inputs["username"], r.Inputs["password"] = issuer.LoginPassword, issuertest.Username, issuertest.Password
			},
			do:          refreshAfter(func(s *issuertest.Server, _ *issuer.Token) { s.RevokeAll() }),
			msgContains: "invalid_grant",
		},
		"RefreshReuseKillsSession": {
			reason: "Reusing a rotated refresh token is an attack signal: the issuer kills the session.",
			flavor: issuertest.Seed002, class: issuer.ClassRefreshRejected,
			do: func(t *testing.T, c *issuer.Client, srv *issuertest.Server, req issuer.Request) error {
				tok, err := c.Login(t.Context(), req)
				if err != nil {
					t.Fatal(err)
				}
				next, err := c.Refresh(t.Context(), req, tok)
				if err != nil {
					t.Fatal(err)
				}
				_, err = c.Refresh(t.Context(), req, tok) // the old refresh token again
				if srv.Valid(next.AccessToken) {
					t.Errorf("session survived refresh token reuse")
				}
				return err
			},
			msgContains: "reuse",
		},
		"RateLimitedSeconds": {
			reason: "429 with Retry-After in seconds.",
			flavor: issuertest.Seed001, do: login, class: issuer.ClassRateLimited, retryAfter: 7 * time.Second,
			setup: func(s *issuertest.Server, _ *v1alpha1.IssuerSpec, _ *issuer.Request) { s.Fail(-1, 429, "7") },
		},
		"RateLimitedHTTPDate": {
			reason: "429 with Retry-After as an HTTP date.",
			flavor: issuertest.Seed001, do: login, class: issuer.ClassRateLimited, retryAfter: 2 * time.Minute,
			setup: func(s *issuertest.Server, _ *v1alpha1.IssuerSpec, _ *issuer.Request) {
				s.Fail(-1, 429, time.Now().Add(2*time.Minute).UTC().Format(http.TimeFormat))
			},
		},
		"ServerError": {
			reason: "5xx is transient.",
			flavor: issuertest.Seed003, do: login, class: issuer.ClassUnavailable,
			setup: func(s *issuertest.Server, _ *v1alpha1.IssuerSpec, _ *issuer.Request) { s.Fail(-1, 503, "") },
		},
		"ServerErrorOnRefresh": {
			reason: "5xx on refresh is transient too, not a rejected refresh token.",
			flavor: issuertest.Seed001, class: issuer.ClassUnavailable,
			do: refreshAfter(func(s *issuertest.Server, _ *issuer.Token) { s.Fail(-1, 502, "") }),
		},
		"Hang": {
			reason: "An issuer that never answers times out and is transient.",
			flavor: issuertest.Seed001, do: login, class: issuer.ClassUnavailable, msgContains: "in time",
			setup: func(s *issuertest.Server, spec *v1alpha1.IssuerSpec, _ *issuer.Request) {
				s.Hang(3 * time.Second)
				spec.Timeout = &metav1.Duration{Duration: 300 * time.Millisecond}
			},
		},
		"NotJSON": {
			reason: "An HTML maintenance page is not a token.",
			flavor: issuertest.Seed001, do: login, class: issuer.ClassMalformedResponse, msgContains: "not JSON",
			setup: func(s *issuertest.Server, _ *v1alpha1.IssuerSpec, _ *issuer.Request) { s.Malform(issuertest.NotJSON) },
		},
		"NoToken": {
			reason: "A 200 without a token is malformed.",
			flavor: issuertest.Seed001, do: login, class: issuer.ClassMalformedResponse, msgContains: "no access token",
			setup: func(s *issuertest.Server, _ *v1alpha1.IssuerSpec, _ *issuer.Request) { s.Malform(issuertest.NoToken) },
		},
		"HugeBody": {
			reason: "Bodies are capped at 1 MiB.",
			flavor: issuertest.Seed001, do: login, class: issuer.ClassMalformedResponse, msgContains: "1 MiB",
			setup: func(s *issuertest.Server, _ *v1alpha1.IssuerSpec, _ *issuer.Request) { s.Malform(issuertest.HugeBody) },
		},
		"PastExpiry": {
			reason: "A token that is already expired is absurd.",
			flavor: issuertest.Seed001, do: login, class: issuer.ClassMalformedResponse, msgContains: "already expired",
			setup: func(s *issuertest.Server, _ *v1alpha1.IssuerSpec, _ *issuer.Request) {
				s.Malform(issuertest.PastExpiry)
			},
		},
		"IllegalTokenCharacters": {
			reason: "Tokens outside the RFC 6750 charset are corrupt (seed 002's check).",
			flavor: issuertest.Seed001, do: login, class: issuer.ClassMalformedResponse, msgContains: "illegal character",
			setup: func(s *issuertest.Server, _ *v1alpha1.IssuerSpec, _ *issuer.Request) {
				s.Malform(issuertest.BadTokenSet)
			},
		},
		"PlainHTTPRedirectsToHTTPS": {
			reason: "Seed 004 answers plain http with 301: tell the user to use https, never follow.",
			flavor: issuertest.Seed004, do: login, class: issuer.ClassConfig, msgContains: "use https in the issuer URL",
			setup: func(s *issuertest.Server, spec *v1alpha1.IssuerSpec, _ *issuer.Request) {
				spec.URL = v1alpha1.EndpointURL(s.HTTP.URL + "/v1/sessions")
				spec.AllowInsecureHTTP = true
			},
		},
		"PlainHTTPNotAllowed": {
			reason: "Plain http without allowInsecureHTTP never sends a request.",
			flavor: issuertest.Seed004, do: login, class: issuer.ClassConfig, msgContains: "plain http", noRequest: true,
			setup: func(s *issuertest.Server, spec *v1alpha1.IssuerSpec, _ *issuer.Request) {
				spec.URL = v1alpha1.EndpointURL(s.HTTP.URL + "/v1/sessions")
			},
		},
		"NotFound": {
			reason: "A wrong path is a configuration error, not bad credentials.",
			flavor: issuertest.Seed004, do: login, class: issuer.ClassConfig,
			setup: func(s *issuertest.Server, spec *v1alpha1.IssuerSpec, _ *issuer.Request) {
				spec.URL = v1alpha1.EndpointURL(s.URL() + "/v2/nothing-here")
				s.Fail(-1, 404, "")
			},
		},
		"TemplateRendersInvalidJSON": {
			reason: "An unquoted string in a template is a configuration error that must not echo the secret.",
			flavor: issuertest.Seed004, do: login, class: issuer.ClassConfig, msgContains: "valid JSON", noRequest: true,
			setup: func(_ *issuertest.Server, spec *v1alpha1.IssuerSpec, _ *issuer.Request) {
				spec.JSON.Body = `{"key":{{ .key }},"secret":{{ .secret }}}`
			},
		},
		"TemplateMissingKey": {
			reason: "A template naming a key the Secret lacks says which key.",
			flavor: issuertest.Seed003, do: login, class: issuer.ClassConfig, msgContains: "account_id", noRequest: true,
			setup: func(_ *issuertest.Server, _ *v1alpha1.IssuerSpec, r *issuer.Request) { delete(r.Inputs, "account_id") },
		},
		"UntrustedCertificate": {
			reason: "Without the CA bundle the issuer's certificate is not trusted: only a configuration change fixes that.",
			flavor: issuertest.Seed001, do: login, class: issuer.ClassConfig, msgContains: "signed by an authority tokenkeeper does not trust: set caBundle",
			setup: func(_ *issuertest.Server, spec *v1alpha1.IssuerSpec, _ *issuer.Request) { spec.CABundle = "" },
		},
		"CertificateNameMismatch": {
			reason: "The test certificate names 127.0.0.1 and example.com, not localhost.",
			flavor: issuertest.Seed001, do: login, class: issuer.ClassConfig, msgContains: "is not valid for that name",
			setup: func(s *issuertest.Server, spec *v1alpha1.IssuerSpec, _ *issuer.Request) {
				spec.URL = v1alpha1.EndpointURL(strings.Replace(s.URL(), "127.0.0.1", "localhost", 1) + "/token")
			},
		},
		"ConnectionRefused": {
			reason: "An issuer that is down is transient.",
			flavor: issuertest.Seed001, do: login, class: issuer.ClassUnavailable, msgContains: "cannot reach",
			setup: func(s *issuertest.Server, _ *v1alpha1.IssuerSpec, _ *issuer.Request) { s.TLS.Close() },
		},
		"PolicyDeniesURL": {
			reason: "The policy check runs before any request: no SSRF to disallowed hosts.",
			flavor: issuertest.OAuth2, do: login, class: issuer.ClassConfig, msgContains: "not allowed", noRequest: true,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			srv := issuertest.Start(tc.flavor)
			defer srv.Close()
			spec, req := seedSpec(srv), seedRequest(tc.flavor)
			if tc.setup != nil {
				tc.setup(srv, &spec, &req)
			}
			cfg := issuer.Config{Spec: spec}
			if spec.Headers != nil {
				cfg.Headers = seedHeaders(tc.flavor) // the controller resolves spec.headers from Secrets
			}
			if name == "PolicyDeniesURL" {
				cfg.CheckURL = func(u *url.URL) error { return errors.New(u.Host + " is not allowed by TokenPolicy default") }
			}
			c, err := issuer.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			err = tc.do(t, c, srv, req)
			if err == nil {
				t.Fatalf("%s\nwant a %s error, got none", tc.reason, tc.class)
			}
			if got := issuer.ClassOf(err); got != tc.class {
				t.Fatalf("%s\nclass %q, want %q (error: %v)", tc.reason, got, tc.class, err)
			}
			if tc.retryAfter > 0 {
				if got := issuer.RetryAfterOf(err); got < tc.retryAfter-2*time.Second || got > tc.retryAfter {
					t.Errorf("%s\nRetry-After %s, want %s", tc.reason, got, tc.retryAfter)
				}
			}
			if !strings.Contains(err.Error(), tc.msgContains) {
				t.Errorf("%s\nmessage %q does not contain %q", tc.reason, err.Error(), tc.msgContains)
			}
			if tc.noRequest {
				for _, op := range []issuertest.Op{issuertest.OpLogin, issuertest.OpDiscovery} {
					if n := srv.Calls(op); n != 0 {
						t.Errorf("%s\nissuer received %d %s requests, want none", tc.reason, n, op)
					}
				}
			}
		})
	}
}

// TestNoSecretInErrors runs every operation against an issuer that echoes whatever it receives in
// its error messages, and checks that no submitted secret or returned token reaches an error.
func TestNoSecretInErrors(t *testing.T) {
	const (
		password     = "pw-Zq8#secret-value"
		apiSecret    = "as-Kk2-secret-value"
		clientSecret = "cs-Yy7-secret-value"
		refreshTok   = "rt-Pp4-refresh-value"
		accessTok    = "at-Mm1-access-value"
		headerSecret = "hk-Ww3-header-value"
	)
	secrets := []string{password, apiSecret, clientSecret, refreshTok, accessTok, headerSecret}
	echo := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reqBody, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(reqBody))
		_ = r.ParseForm()
		body := r.Form.Encode() + " " + r.Header.Get("Authorization") + " " + r.Header.Get("Api-Key")
		w.Header().Set("Content-Type", "application/json")
		switch {
		case strings.Contains(r.URL.Path, "well-known"):
			_, _ = w.Write([]byte(`{"issuer":"` + "https://" + r.Host + `","token_endpoint":"https://` + r.Host + `/token","revocation_endpoint":"https://` + r.Host + `/revoke","introspection_endpoint":"https://` + r.Host + `/introspect"}`))
		case strings.Contains(r.URL.Path, "ok"):
			// A 200 that echoes the request (and so the password) instead of a token.
			_, _ = w.Write([]byte(`{"token":"bad token ` + password + `","message":"` + body + `"}`))
		default:
			w.WriteHeader(400)
			// Echo everything received, raw and decoded, as some issuers do in their errors.
			raw, _ := url.QueryUnescape(body)
			desc, _ := json.Marshal("rejected " + body + " " + raw + " " + string(reqBody))
			_, _ = w.Write([]byte(`{"error":"invalid_grant","error_description":` + string(desc) + `}`))
		}
	}))
	defer echo.Close()
	ca := string(pemOf(echo))
	specs := map[string]v1alpha1.IssuerSpec{
		"json": {URL: v1alpha1.EndpointURL(echo.URL + "/login"), JSON: &v1alpha1.JSONLogin{}, CABundle: ca,
			Refresh: &v1alpha1.Endpoint{URL: v1alpha1.EndpointURL(echo.URL + "/refresh")}, Revoke: &v1alpha1.Endpoint{URL: v1alpha1.EndpointURL(echo.URL + "/revoke")},
			TokenInfo: &v1alpha1.Endpoint{URL: v1alpha1.EndpointURL(echo.URL + "/info")}, Probe: &v1alpha1.TokenProbe{URL: v1alpha1.EndpointURL(echo.URL + "/probe")}},
		"json-200-echo": {URL: v1alpha1.EndpointURL(echo.URL + "/ok"), JSON: &v1alpha1.JSONLogin{}, CABundle: ca},
		"json-template": {URL: v1alpha1.EndpointURL(echo.URL + "/login"), CABundle: ca,
			JSON: &v1alpha1.JSONLogin{Body: `{"p":{{ .password }}}`}},
		"oauth2": {OAuth2: &v1alpha1.OAuth2{IssuerURL: v1alpha1.EndpointURL(echo.URL)}, CABundle: ca},
	}
	requests := []issuer.Request{
		{Kind: issuer.LoginPassword, Inputs: map[string]string{"username": "svc", "password": password, "client_id": "c", "client_secret": clientSecret}},
		{Kind: issuer.LoginAPIKey, Inputs: map[string]string{"key": "k", "secret": apiSecret}},
		{Kind: issuer.LoginClientCredentials, Inputs: map[string]string{"client_id": "c", "client_secret": clientSecret}},
		{Kind: issuer.LoginRefreshToken, Inputs: map[string]string{"refresh_token": refreshTok, "client_id": "c", "client_secret": clientSecret}},
	}
	tok := &issuer.Token{AccessToken: accessTok, RefreshToken: refreshTok, Scheme: "Bearer"}
	checked := 0
	for name, spec := range specs {
		c, err := issuer.New(issuer.Config{Spec: spec, Headers: map[string]string{"Api-Key": headerSecret}})
		if err != nil {
			t.Fatal(err)
		}
		for _, req := range requests {
			// Every secret is also among the inputs, as it would be in the input Secret.
			req.Inputs["extra"] = password
			var errs []error
			_, err := c.Login(t.Context(), req)
			errs = append(errs, err)
			_, err = c.Refresh(t.Context(), req, tok)
			errs = append(errs, err)
			errs = append(errs, c.Revoke(t.Context(), req, tok))
			_, err = c.Inspect(t.Context(), req, accessTok)
			errs = append(errs, err)
			if c.CanProbe() {
				errs = append(errs, c.Probe(t.Context(), tok))
			}
			for i, err := range errs {
				if err == nil {
					continue
				}
				checked++
				for _, s := range secrets {
					if strings.Contains(err.Error(), s) {
						t.Errorf("%s/%s op %d: error reveals a secret: %v", name, req.Kind, i, err)
					}
				}
			}
		}
	}
	if checked < 20 {
		t.Fatalf("only %d errors were checked; the test lost its teeth", checked)
	}
	// A Token printed by mistake reveals nothing either.
	for _, s := range []string{tok.String(), tok.GoString()} {
		if strings.Contains(s, accessTok) || strings.Contains(s, refreshTok) {
			t.Errorf("Token formatting reveals a token: %s", s)
		}
	}
}
