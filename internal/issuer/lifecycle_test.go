package issuer_test

import (
	"errors"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer/issuertest"
)

func seedSpec(s *issuertest.Server) v1alpha1.IssuerSpec { return s.Spec() }

func seedHeaders(f issuertest.Flavor) map[string]string {
	return (&issuertest.Server{Flavor: f}).HeaderValues()
}

func seedRequest(f issuertest.Flavor) issuer.Request {
	switch f {
	case issuertest.Seed004:
		return issuer.Request{Kind: issuer.LoginAPIKey, Inputs: map[string]string{"key": issuertest.APIKey, "secret": issuertest.APISecret}}
	case issuertest.OAuth2:
		return issuer.Request{Kind: issuer.LoginClientCredentials, Inputs: map[string]string{"client_id": issuertest.ClientID, "client_secret": issuertest.ClientSecret}}
	}
	return issuer.Request{Kind: issuer.LoginPassword, Inputs: map[string]string{
		"username": issuertest.Username, "password": issuertest.Password, "account_id": issuertest.AccountID,
	}}
}

func newClient(t *testing.T, s *issuertest.Server, spec v1alpha1.IssuerSpec) *issuer.Client {
	t.Helper()
	c, err := issuer.New(issuer.Config{Spec: spec, Headers: seedHeaders(s.Flavor)})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

func TestLifecycle(t *testing.T) {
	cases := map[string]struct {
		reason       string
		flavor       issuertest.Flavor
		mutate       func(*v1alpha1.IssuerSpec, *issuer.Request)
		scheme       string
		expiry       issuer.ExpirySource
		lifetime     time.Duration
		refresh      bool
		inspect      bool
		revoke       bool
		wantExtraKey string
	}{
		"Seed000": {
			reason: "Token scheme, data.token path, a session duration asked through session_duration, logout.",
			flavor: issuertest.Seed000, scheme: "Token", expiry: issuer.ExpiryFromDefault, lifetime: 4 * time.Hour,
			mutate: func(_ *v1alpha1.IssuerSpec, r *issuer.Request) { r.SessionDuration = 4 * time.Hour },
			revoke: true,
		},
		"Seed000DefaultLifetime": {
			reason: "Without a requested session the issuer's 10 h default applies.",
			flavor: issuertest.Seed000, scheme: "Token", expiry: issuer.ExpiryFromDefault, lifetime: 10 * time.Hour, revoke: true,
		},
		"Seed001": {
			reason: "Auto-detected token, refresh_token, token_type and expires_in; refresh with refresh_token.",
			flavor: issuertest.Seed001, scheme: "Bearer", expiry: issuer.ExpiryFromLifetime, lifetime: time.Hour, refresh: true,
		},
		"Seed002": {
			reason: "Api-Key on every call, camelCase fields, expiry from the JWT, refresh, token-info, logout.",
			flavor: issuertest.Seed002, scheme: "Bearer", expiry: issuer.ExpiryFromJWT, lifetime: 15 * time.Minute,
			refresh: true, inspect: true, revoke: true,
		},
		"Seed003": {
			reason: "account_id through a template, tokenExpiration (RFC 3339), guid kept, separate refresh call.",
			flavor: issuertest.Seed003, scheme: "Bearer", expiry: issuer.ExpiryFromResponse, lifetime: time.Hour,
			refresh: true, wantExtraKey: "guid",
		},
		"Seed004": {
			reason: "Nested api-key body through a template; the JWT's exp is the only expiry.",
			flavor: issuertest.Seed004, scheme: "Bearer", expiry: issuer.ExpiryFromJWT, lifetime: time.Hour,
		},
		"OAuth2ClientCredentials": {
			reason: "Discovery finds the token, introspection and revocation endpoints; Basic client auth.",
			flavor: issuertest.OAuth2, scheme: "Bearer", expiry: issuer.ExpiryFromLifetime, lifetime: time.Hour,
			inspect: true, revoke: true,
		},
		"OAuth2PasswordBodyAuth": {
			reason: "The password grant with client credentials in the body, refresh with rotation.",
			flavor: issuertest.OAuth2, scheme: "Bearer", expiry: issuer.ExpiryFromLifetime, lifetime: time.Hour,
			mutate: func(s *v1alpha1.IssuerSpec, r *issuer.Request) {
				s.OAuth2.ClientAuthentication = v1alpha1.ClientAuthBody
				r.Kind = issuer.LoginPassword
				r.Inputs["username"], r.Inputs["password"] = issuertest.Username, issuertest.Password
			},
			refresh: true, inspect: true, revoke: true,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			srv := issuertest.Start(tc.flavor)
			defer srv.Close()
			spec, req := seedSpec(srv), seedRequest(tc.flavor)
			if tc.mutate != nil {
				tc.mutate(&spec, &req)
			}
			c := newClient(t, srv, spec)
			ctx := t.Context()

			tok, err := c.Login(ctx, req)
			if err != nil {
				t.Fatalf("%s\nLogin: %v", tc.reason, err)
			}
			if !srv.Valid(tok.AccessToken) {
				t.Fatalf("%s\nthe issuer does not accept the token it issued", tc.reason)
			}
			if tok.Scheme != tc.scheme || tok.ExpirySource != tc.expiry {
				t.Errorf("%s\nscheme=%q expiry source=%q, want %q %q", tc.reason, tok.Scheme, tok.ExpirySource, tc.scheme, tc.expiry)
			}
			if got := time.Until(tok.ExpiresAt); got < tc.lifetime-time.Minute || got > tc.lifetime+time.Minute {
				t.Errorf("%s\ntoken lives %s, want about %s", tc.reason, got, tc.lifetime)
			}
			if tc.wantExtraKey != "" && tok.Extra[tc.wantExtraKey] == "" {
				t.Errorf("%s\nextra identifier %q not kept: %v", tc.reason, tc.wantExtraKey, tok.Extra)
			}
			if tc.flavor == issuertest.Seed000 && req.SessionDuration > 0 && srv.SessionAsked() != req.SessionDuration {
				t.Errorf("%s\nissuer was asked for %s, want %s", tc.reason, srv.SessionAsked(), req.SessionDuration)
			}

			next, err := c.Refresh(ctx, req, tok)
			switch {
			case !tc.refresh && !errors.Is(err, issuer.ErrUnsupported):
				t.Errorf("%s\nRefresh without support: got %v, want ErrUnsupported", tc.reason, err)
			case tc.refresh && err != nil:
				t.Fatalf("%s\nRefresh: %v", tc.reason, err)
			case tc.refresh:
				if next.AccessToken == tok.AccessToken || !srv.Valid(next.AccessToken) {
					t.Errorf("%s\nrefresh did not produce a new valid token", tc.reason)
				}
				if got := srv.Calls(issuertest.OpRefresh); got != 1 {
					t.Errorf("%s\nissuer saw %d refresh calls, want 1", tc.reason, got)
				}
				tok = next
			}

			info, err := c.Inspect(ctx, req, tok.AccessToken)
			switch {
			case !tc.inspect && !errors.Is(err, issuer.ErrUnsupported):
				t.Errorf("%s\nInspect without support: got %v, want ErrUnsupported", tc.reason, err)
			case tc.inspect && (err != nil || !info.Active):
				t.Fatalf("%s\nInspect: active=%v err=%v, want active", tc.reason, info != nil && info.Active, err)
			}

			err = c.Revoke(ctx, req, tok)
			switch {
			case !tc.revoke && !errors.Is(err, issuer.ErrUnsupported):
				t.Errorf("%s\nRevoke without support: got %v, want ErrUnsupported", tc.reason, err)
			case tc.revoke && err != nil:
				t.Fatalf("%s\nRevoke: %v", tc.reason, err)
			case tc.revoke:
				if srv.Valid(tok.AccessToken) {
					t.Errorf("%s\ntoken still valid after revoke", tc.reason)
				}
				if tc.inspect {
					if info, err := c.Inspect(ctx, req, tok.AccessToken); err != nil || info.Active {
						t.Errorf("%s\nInspect after revoke: active=%v err=%v, want inactive", tc.reason, info != nil && info.Active, err)
					}
				}
				// Revoking twice is fine: the session is already gone.
				if err := c.Revoke(ctx, req, tok); err != nil {
					t.Errorf("%s\nsecond Revoke: %v", tc.reason, err)
				}
			}
			if got := srv.Calls(issuertest.OpLogin); got != 1 {
				t.Errorf("%s\nissuer saw %d logins, want 1", tc.reason, got)
			}
		})
	}
}

func TestRefreshTokenLogin(t *testing.T) {
	srv := issuertest.Start(issuertest.OAuth2)
	defer srv.Close()
	spec := seedSpec(srv)
	c := newClient(t, srv, spec)
	req := issuer.Request{Kind: issuer.LoginPassword, Inputs: map[string]string{
		"client_id": issuertest.ClientID, "client_secret": issuertest.ClientSecret,
		"username": issuertest.Username, "password": issuertest.Password,
	}}
	first, err := c.Login(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	// A Credential seeded with only a refresh token logs in by refreshing.
	req = issuer.Request{Kind: issuer.LoginRefreshToken, Inputs: map[string]string{
		"client_id": issuertest.ClientID, "client_secret": issuertest.ClientSecret, "refresh_token": first.RefreshToken,
	}}
	tok, err := c.Login(t.Context(), req)
	if err != nil {
		t.Fatalf("Login with a refresh token: %v", err)
	}
	if !srv.Valid(tok.AccessToken) || tok.RefreshToken == first.RefreshToken {
		t.Errorf("want a valid token and a rotated refresh token")
	}
}
