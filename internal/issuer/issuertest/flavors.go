package issuertest

import (
	"crypto/subtle"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Seed 000: POST /3/auth/login/ {username, password, session_duration} → {"data":{"token"}};
// "Authorization: Token …"; POST /3/auth/logout/; GET /3/user/.
func (s *Server) serve000(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/3/auth/login/":
		s.count(OpLogin)
		if s.malformedAnswer(w) {
			return
		}
		in := decode(r)
		s.mu.Lock()
		ok := str(in, "username") == Username && str(in, "password") == s.password
		lifetime := s.lifetime
		s.sessionAsked = 0
		if d, isNum := in["session_duration"].(float64); isNum && d > 0 {
			lifetime = time.Duration(d) * time.Second
			s.sessionAsked = lifetime
		}
		if !ok {
			s.mu.Unlock()
			writeJSON(w, 400, map[string]any{"status": "error", "message": "Unable to log in with provided credentials."})
			return
		}
		se := s.newSession(Username, "", lifetime)
		s.mu.Unlock()
		writeJSON(w, 201, map[string]any{"status": "success", "data": map[string]any{"token": se.access, "user": map[string]any{"id": "u-1"}}})
	case "/3/auth/logout/":
		s.count(OpRevoke)
		se := s.authorized(r, "Token")
		if se == nil {
			writeJSON(w, 401, map[string]any{"status": "error", "message": "Invalid token."})
			return
		}
		s.locked(func() { se.revoke() })
		writeJSON(w, 200, map[string]any{"status": "success"})
	default:
		s.protected(w, r, "Token")
	}
}

// Seed 001: POST /token {username, password} → token, refresh_token, token_type, expires_in;
// POST /token/refresh {refresh_token}.
func (s *Server) serve001(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/token":
		s.count(OpLogin)
		if s.malformedAnswer(w) {
			return
		}
		in := decode(r)
		s.mu.Lock()
		if str(in, "username") != Username || str(in, "password") != s.password {
			s.mu.Unlock()
			writeJSON(w, 401, map[string]any{"error": "invalid_credentials", "message": "Invalid email or password"})
			return
		}
		se := s.newSession(Username, "", s.lifetime)
		s.mu.Unlock()
		s.write001(w, se)
	case "/token/refresh":
		s.count(OpRefresh)
		if s.malformedAnswer(w) {
			return
		}
		in := decode(r)
		s.mu.Lock()
		se, why := s.useRefresh(str(in, "refresh_token"), s.lifetime)
		s.mu.Unlock()
		if se == nil {
			writeJSON(w, 401, map[string]any{"error": "invalid_refresh_token", "message": why})
			return
		}
		s.write001(w, se)
	default:
		s.protected(w, r, "Bearer")
	}
}

func (s *Server) write001(w http.ResponseWriter, se *session) {
	s.mu.Lock()
	body := map[string]any{"token": se.access, "refresh_token": se.refresh, "token_type": "Bearer",
		"expires_in": int(time.Until(se.expires).Round(time.Second).Seconds())}
	s.mu.Unlock()
	writeJSON(w, 200, body)
}

var b64urlDot = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// Seed 002: an Api-Key header on every call; POST /auth/login → accessToken, refreshToken (no
// expiry in the body: the JWT's exp); /auth/refresh; /auth/logout; GET /auth/token-info.
func (s *Server) serve002(w http.ResponseWriter, r *http.Request) {
	if subtle.ConstantTimeCompare([]byte(r.Header.Get("Api-Key")), []byte(APIKey)) != 1 {
		s.count(opOf(s.Flavor, r))
		writeJSON(w, 401, map[string]any{"message": "Missing or invalid Api-Key"})
		return
	}
	if h := r.Header.Get("Authorization"); h != "" && !b64urlDot.MatchString(strings.TrimPrefix(h, "Bearer ")) {
		s.count(opOf(s.Flavor, r))
		writeJSON(w, 401, map[string]any{"message": "Corrupt token"})
		return
	}
	switch r.URL.Path {
	case "/auth/login":
		s.count(OpLogin)
		if s.malformedAnswer(w) {
			return
		}
		in := decode(r)
		s.mu.Lock()
		if str(in, "username") != Username || str(in, "password") != s.password {
			s.mu.Unlock()
			writeJSON(w, 401, map[string]any{"message": "Bad credentials"})
			return
		}
		se := s.newSession(Username, "", s.lifetime)
		body := map[string]any{"accessToken": se.access, "refreshToken": se.refresh}
		s.mu.Unlock()
		writeJSON(w, 200, body)
	case "/auth/refresh":
		s.count(OpRefresh)
		if s.malformedAnswer(w) {
			return
		}
		in := decode(r)
		s.mu.Lock()
		se, why := s.useRefresh(str(in, "refreshToken"), s.lifetime)
		if se == nil {
			s.mu.Unlock()
			writeJSON(w, 401, map[string]any{"message": why})
			return
		}
		body := map[string]any{"accessToken": se.access, "refreshToken": se.refresh}
		s.mu.Unlock()
		writeJSON(w, 200, body)
	case "/auth/logout":
		s.count(OpRevoke)
		se := s.authorized(r, "Bearer")
		if se == nil {
			writeJSON(w, 401, map[string]any{"message": "Token expired"})
			return
		}
		s.locked(func() { se.revoke() })
		writeJSON(w, 200, map[string]any{"message": "Logged out"})
	case "/auth/token-info":
		s.count(OpInspect)
		se := s.authorized(r, "Bearer")
		if se == nil {
			writeJSON(w, 401, map[string]any{"message": "Token expired or invalid"})
			return
		}
		s.mu.Lock()
		body := map[string]any{"sub": se.subject, "exp": se.expires.Unix(), "sid": se.id}
		s.mu.Unlock()
		writeJSON(w, 200, body)
	default:
		s.protected(w, r, "Bearer")
	}
}

// Seed 003: POST /rest/v1/login {username, password, account_id} → token, refreshToken, guid,
// tokenExpiration, tokenLifetime, refreshTokenExpiration; POST /rest/v1/refresh {refreshToken};
// 401 or 403 when expired.
func (s *Server) serve003(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/rest/v1/login":
		s.count(OpLogin)
		if s.malformedAnswer(w) {
			return
		}
		in := decode(r)
		acct, isNum := in["account_id"].(float64)
		s.mu.Lock()
		if str(in, "username") != Username || str(in, "password") != s.password || !isNum || strconv.Itoa(int(acct)) != AccountID {
			s.mu.Unlock()
			writeJSON(w, 401, map[string]any{"success": false, "message": "Invalid username, password or account"})
			return
		}
		se := s.newSession(Username, "", s.lifetime)
		s.mu.Unlock()
		s.write003(w, se)
	case "/rest/v1/refresh":
		s.count(OpRefresh)
		if s.malformedAnswer(w) {
			return
		}
		in := decode(r)
		s.mu.Lock()
		se, why := s.useRefresh(str(in, "refreshToken"), s.lifetime)
		s.mu.Unlock()
		if se == nil {
			writeJSON(w, 403, map[string]any{"success": false, "message": why})
			return
		}
		s.write003(w, se)
	default:
		s.protected(w, r, "Bearer")
	}
}

func (s *Server) write003(w http.ResponseWriter, se *session) {
	s.mu.Lock()
	body := map[string]any{
		"success": true, "guid": se.id + "-0000-4000-8000-000000000000", "token": se.access,
		"tokenExpiration": se.expires.UTC().Format(time.RFC3339), "tokenLifetime": int(time.Until(se.expires).Round(time.Second).Seconds()),
		"refreshToken": se.refresh, "refreshTokenExpiration": se.refreshEx.UTC().Format(time.RFC3339),
	}
	s.mu.Unlock()
	writeJSON(w, 200, body)
}

// Seed 004: POST /v1/sessions {"type":"api-key", key, secret} → {access_token} (a JWT; exp is
// the only expiry); 400 on bad credentials.
func (s *Server) serve004(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/sessions" {
		s.protected(w, r, "Bearer")
		return
	}
	s.count(OpLogin)
	if s.malformedAnswer(w) {
		return
	}
	in := decode(r)
	s.mu.Lock()
	if str(in, "type") != "api-key" || str(in, "key") != APIKey || str(in, "secret") != s.secret {
		s.mu.Unlock()
		writeJSON(w, 400, map[string]any{"statusCode": 400, "error": "Bad Request", "message": "Invalid API key or secret"})
		return
	}
	se := s.newSession("api-key:"+APIKey, "", s.lifetime)
	s.mu.Unlock()
	writeJSON(w, 201, map[string]any{"access_token": se.access})
}

// protected is the API the tokens are for: 200 with the subject, or 401.
func (s *Server) protected(w http.ResponseWriter, r *http.Request, scheme string) {
	s.count(OpUse)
	se := s.authorized(r, scheme)
	if se == nil {
		w.Header().Set("WWW-Authenticate", scheme+` error="invalid_token"`)
		writeJSON(w, 401, map[string]any{"message": "You must specify a valid " + scheme + " token in the Authorization header"})
		return
	}
	writeJSON(w, 200, map[string]any{"subject": se.subject})
}
