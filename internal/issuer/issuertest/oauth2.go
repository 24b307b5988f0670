package issuertest

import (
	"crypto/subtle"
	"net/http"
	"net/url"
	"time"
)

// OAuth2: discovery, JWKS, the token endpoint (client_credentials, password, refresh_token with
// rotation and reuse detection), RFC 7009 revocation and RFC 7662 introspection.
func (s *Server) serveOAuth2(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/.well-known/openid-configuration":
		s.count(OpDiscovery)
		base := s.issuerURL()
		writeJSON(w, 200, map[string]any{
			"issuer": base, "token_endpoint": base + "/oauth/token", "revocation_endpoint": base + "/oauth/revoke",
			"introspection_endpoint": base + "/oauth/introspect", "jwks_uri": base + "/jwks",
			"grant_types_supported": []string{"client_credentials", "password", "refresh_token"},
		})
	case "/jwks":
		s.count(OpJWKS)
		s.mu.Lock()
		keys := []any{jwk(&s.key.PublicKey, s.kid)}
		s.mu.Unlock()
		writeJSON(w, 200, map[string]any{"keys": keys})
	case "/oauth/token":
		s.oauthToken(w, r)
	case "/oauth/revoke":
		s.count(OpRevoke)
		if !s.clientOK(r) {
			oauthError(w, 401, "invalid_client", "client authentication failed")
			return
		}
		tok := r.PostFormValue("token")
		s.locked(func() {
			if se := s.byRefresh[tok]; se != nil {
				se.revoke()
			} else if se := s.byAccess[tok]; se != nil {
				se.revoke()
			}
		})
		w.WriteHeader(200) // RFC 7009 §2.2: 200 for unknown tokens too
	case "/oauth/introspect":
		s.count(OpInspect)
		if !s.clientOK(r) {
			oauthError(w, 401, "invalid_client", "client authentication failed")
			return
		}
		s.mu.Lock()
		se := s.byAccess[r.PostFormValue("token")]
		active := se != nil && !se.over(time.Now())
		body := map[string]any{"active": active}
		if active {
			body["sub"], body["scope"], body["exp"], body["client_id"] = se.subject, se.scope, se.expires.Unix(), ClientID
		}
		s.mu.Unlock()
		writeJSON(w, 200, body)
	default:
		s.protected(w, r, "Bearer")
	}
}

func (s *Server) oauthToken(w http.ResponseWriter, r *http.Request) {
	grant := r.PostFormValue("grant_type")
	op := OpLogin
	if grant == "refresh_token" {
		op = OpRefresh
	}
	s.count(op)
	if s.malformedAnswer(w) {
		return
	}
	if grant != "urn:ietf:params:oauth:grant-type:jwt-bearer" && !s.clientOK(r) { // the assertion authenticates
		oauthError(w, 401, "invalid_client", "client authentication failed")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var se *session
	switch grant {
	case "urn:ietf:params:oauth:grant-type:jwt-bearer":
		sub, err := s.verifyAssertion(r.PostFormValue("assertion"))
		if err != nil {
			oauthError(w, 400, "invalid_grant", "assertion rejected: "+err.Error())
			return
		}
		se = s.newSession(sub, r.PostFormValue("scope"), s.lifetime)
		delete(s.byRefresh, se.refresh)
		se.refresh = ""
	case "client_credentials":
		se = s.newSession(ClientID, r.PostFormValue("scope"), s.lifetime)
		delete(s.byRefresh, se.refresh)
		se.refresh = "" // RFC 6749 §4.4.3: no refresh token for client credentials
	case "password":
		if r.PostFormValue("username") != Username || r.PostFormValue("password") != s.password {
			oauthError(w, 400, "invalid_grant", "invalid resource owner credentials")
			return
		}
		se = s.newSession(Username, r.PostFormValue("scope"), s.lifetime)
	case "refresh_token":
		var why string
		if se, why = s.useRefresh(r.PostFormValue("refresh_token"), s.lifetime); se == nil {
			oauthError(w, 400, "invalid_grant", why)
			return
		}
	default:
		oauthError(w, 400, "unsupported_grant_type", "grant type not supported")
		return
	}
	body := map[string]any{"access_token": se.access, "token_type": "bearer", "expires_in": int(time.Until(se.expires).Round(time.Second).Seconds())}
	if se.refresh != "" {
		body["refresh_token"] = se.refresh
	}
	if se.scope != "" {
		body["scope"] = se.scope
	}
	writeJSON(w, 200, body)
}

// clientOK checks client authentication by HTTP Basic (form-encoded parts), body parameters, or
// a client assertion (private_key_jwt) signed by a key trusted for the client ID.
func (s *Server) clientOK(r *http.Request) bool {
	if r.PostFormValue("client_assertion_type") == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
		s.mu.Lock()
		defer s.mu.Unlock()
		sub, err := s.verifyAssertion(r.PostFormValue("client_assertion"))
		return err == nil && sub == r.PostFormValue("client_id")
	}
	id, secret, basic := r.BasicAuth()
	if basic {
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	} else {
		id, secret = r.PostFormValue("client_id"), r.PostFormValue("client_secret")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return id == ClientID && subtle.ConstantTimeCompare([]byte(secret), []byte(s.clientSecret)) == 1
}

func oauthError(w http.ResponseWriter, status int, code, desc string) {
	if status == 401 {
		w.Header().Set("WWW-Authenticate", `Basic realm="oauth"`)
	}
	writeJSON(w, status, map[string]any{"error": code, "error_description": desc})
}
