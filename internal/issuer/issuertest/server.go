// Package issuertest runs local token services that speak each seed API (000–004) and OAuth2,
// and can be told to misbehave. Tests of the issuer engine and the controllers use them, and so
// does the demo. Every operation is counted.
package issuertest

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Flavor is the API a Server speaks.
type Flavor string

const (
	Seed000 Flavor = "seed000" // JSON login → data.token, scheme "Token", 10 h, logout
	Seed001 Flavor = "seed001" // POST /token → token, refresh_token, expires_in (JWT)
	Seed002 Flavor = "seed002" // Api-Key header, accessToken/refreshToken, refresh, logout, token-info
	Seed003 Flavor = "seed003" // login with account_id → token, refreshToken, tokenExpiration, guid
	Seed004 Flavor = "seed004" // POST /v1/sessions api-key → access_token JWT (exp only), 400 on bad credentials
	OAuth2  Flavor = "oauth2"  // RFC 6749 grants, RFC 7009, RFC 7662, OIDC discovery, JWKS
)

// Flavors lists every flavor.
var Flavors = []Flavor{Seed000, Seed001, Seed002, Seed003, Seed004, OAuth2}

// Op is a counted operation.
type Op string

const (
	OpLogin     Op = "login"
	OpRefresh   Op = "refresh"
	OpRevoke    Op = "revoke"
	OpInspect   Op = "inspect"
	OpUse       Op = "use" // a call to the protected API with the token
	OpDiscovery Op = "discovery"
	OpJWKS      Op = "jwks"
)

// Malformation is a way to answer a login or refresh with something unusable.
type Malformation string

const (
	NotJSON     Malformation = "not-json"
	NoToken     Malformation = "no-token"
	HugeBody    Malformation = "huge-body"
	PastExpiry  Malformation = "past-expiry"
	BadTokenSet Malformation = "bad-token-charset"
)

// Well-known inputs every server accepts until told otherwise.
const (
	Username     = "svc@example.com"
	Password     = "correct-horse-battery-staple"
	APIKey       = "ak_live_5f2b8c"     // seed 004's key, seed 002's application Api-Key
	APISecret    = "as_live_9d1e7a4c0b" // seed 004's secret
	ClientID     = "orders-client"
	ClientSecret = "cs_8b3f1e9a7d2c"
	AccountID    = "42"
)

type session struct {
	id        string
	subject   string
	access    string
	refresh   string
	expires   time.Time
	refreshEx time.Time
	revoked   bool
	revokedAt time.Time
	// ends is when the issuer ends the session, earlier than the expiry it stated; zero: at expiry.
	ends  time.Time
	scope string
}

// over reports whether the session has ended by now: revoked, expired, or ended early.
func (se *session) over(now time.Time) bool {
	return se.revoked || now.After(se.expires) || !se.ends.IsZero() && now.After(se.ends)
}

// revoke ends the session, remembering when it first was.
func (se *session) revoke() {
	if !se.revoked {
		se.revoked, se.revokedAt = true, time.Now()
	}
}

// Server is one conformance issuer.
type Server struct {
	Flavor Flavor
	// TLS is the HTTPS server; HTTP answers every plain-http request with a 301 to it (seed 004's
	// behaviour, available for every flavor).
	TLS  *httptest.Server
	HTTP *httptest.Server

	mu              sync.Mutex
	lifetime        time.Duration
	refreshLifetime time.Duration
	password        string
	secret          string
	clientSecret    string
	rotate          bool
	byAccess        map[string]*session
	byRefresh       map[string]*session
	retired         map[string]*session // rotated-out refresh tokens: reuse kills the session
	calls           map[Op]int
	failStatus      int
	failCount       int // calls left to fail; -1 forever
	retryAfter      string
	hang            time.Duration
	malformed       Malformation
	sessionAsked    time.Duration
	key             *rsa.PrivateKey
	kid             string
	hmacKey         []byte
	issued          []string
	grants          []Grant
	reuses          int
	inFlight        int
	maxInFlight     int
	closing         chan struct{} // closed by Close: hanging handlers return
	killNew         bool          // sessions end as soon as they start
	endAfter        time.Duration // sessions end this long after they start, whatever their stated expiry
	assertionKeys   map[string]trustedKey
	assertionAud    string
	assertionLives  []time.Duration
	seenJTIs        map[string]bool
	appKey          *rsa.PrivateKey // GitHubApp: the app's key
	rateLimited     int             // GitHubApp: token requests left to answer with a secondary rate limit
	githubAsked     []GitHubAsk
}

// Grant is one access token the server issued, at a login or a refresh.
type Grant struct {
	At    time.Time
	Token string
}

// Start starts a Server of the given flavor on loopback. Callers Close it.
func Start(f Flavor) *Server {
	s := New(f)
	s.TLS = httptest.NewTLSServer(s)
	s.HTTP = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, s.TLS.URL+r.URL.RequestURI(), http.StatusMovedPermanently)
	}))
	return s
}

// StartOn starts a Server of the given flavor on addr with cert (the demo serves pods on the
// node's address this way). Its URL is https://addr.
func StartOn(f Flavor, addr string, cert tls.Certificate) (*Server, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := New(f)
	s.TLS = httptest.NewUnstartedServer(s)
	_ = s.TLS.Listener.Close()
	s.TLS.Listener = l
	s.TLS.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	s.TLS.StartTLS()
	return s, nil
}

// New returns a Server without listeners, to be served by the caller.
func New(f Flavor) *Server {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	s := &Server{
		Flavor: f, password: Password, secret: APISecret, clientSecret: ClientSecret,
		lifetime: defaultLifetime(f), refreshLifetime: 30 * 24 * time.Hour,
		rotate:   f == OAuth2 || f == Seed001 || f == Seed002 || f == Seed003,
		byAccess: map[string]*session{}, byRefresh: map[string]*session{}, retired: map[string]*session{},
		calls: map[Op]int{}, key: key, kid: randHex(8), hmacKey: []byte(randHex(32)), closing: make(chan struct{}),
	}
	return s
}

func defaultLifetime(f Flavor) time.Duration {
	switch f {
	case Seed000:
		return 10 * time.Hour
	case Seed002:
		return 15 * time.Minute
	}
	return time.Hour
}

// Close stops the listeners; handlers told to hang return at once.
func (s *Server) Close() {
	s.mu.Lock()
	select {
	case <-s.closing:
	default:
		close(s.closing)
	}
	s.mu.Unlock()
	if s.TLS != nil {
		s.TLS.CloseClientConnections()
		s.TLS.Close()
	}
	if s.HTTP != nil {
		s.HTTP.Close()
	}
}

// URL is the HTTPS base URL.
func (s *Server) URL() string { return s.TLS.URL }

// CABundle is the PEM of the TLS server's certificate, to trust it.
func (s *Server) CABundle() string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.TLS.Certificate().Raw}))
}

// Client is an HTTP client that trusts the server.
func (s *Server) Client() *http.Client { return s.TLS.Client() }

// ---- controls ---------------------------------------------------------------------------------

// SetLifetime sets the access-token lifetime of new tokens.
func (s *Server) SetLifetime(d time.Duration) { s.locked(func() { s.lifetime = d }) }

// SetRefreshLifetime sets the refresh-token lifetime of new sessions.
func (s *Server) SetRefreshLifetime(d time.Duration) { s.locked(func() { s.refreshLifetime = d }) }

// SetPassword changes the accepted password (seed 004: the API secret; OAuth2: the client secret),
// so that the current inputs are rejected.
func (s *Server) SetPassword(p string) {
	s.locked(func() { s.password, s.secret, s.clientSecret = p, p, p })
}

// Fail makes the next n calls (every call when n < 0) answer status, with Retry-After when set.
// Fail(0, 0, "") clears it.
func (s *Server) Fail(n, status int, retryAfter string) {
	s.locked(func() { s.failCount, s.failStatus, s.retryAfter = n, status, retryAfter })
}

// Hang makes every call wait d (or until the client gives up) before answering.
func (s *Server) Hang(d time.Duration) { s.locked(func() { s.hang = d }) }

// Malform makes logins and refreshes answer with m ("" clears it).
func (s *Server) Malform(m Malformation) { s.locked(func() { s.malformed = m }) }

// ExpireRefreshTokens makes every current refresh token expired.
func (s *Server) ExpireRefreshTokens() {
	s.locked(func() {
		for _, se := range s.byRefresh {
			se.refreshEx = time.Now().Add(-time.Second)
		}
	})
}

// KillNewSessions makes every session end as soon as it starts (its tokens are rejected by the
// protected API at once), as an issuer that ends sessions early does at its worst.
func (s *Server) KillNewSessions(kill bool) { s.locked(func() { s.killNew = kill }) }

// EndSessionsAfter makes the protected API reject each new access token d after it was issued,
// whatever expiry the response stated (0: at that expiry), as an issuer that cuts sessions short.
func (s *Server) EndSessionsAfter(d time.Duration) { s.locked(func() { s.endAfter = d }) }

// RevokeAll ends every session.
func (s *Server) RevokeAll() {
	s.locked(func() {
		for _, se := range s.byAccess {
			se.revoke()
		}
	})
}

// Calls counts the operations of kind op so far.
func (s *Server) Calls(op Op) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[op]
}

// MaxInFlight is the most requests the server was answering at once.
func (s *Server) MaxInFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxInFlight
}

// Reuses counts refreshes with a refresh token that had already been used: each one made the
// server revoke the whole session, as reuse detection does.
func (s *Server) Reuses() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reuses
}

// Grants lists the access tokens issued so far, oldest first.
func (s *Server) Grants() []Grant {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Grant(nil), s.grants...)
}

// RevokedAt is when the session of an access token was revoked, or zero.
func (s *Server) RevokedAt(token string) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if se := s.byAccess[token]; se != nil {
		return se.revokedAt
	}
	return time.Time{}
}

// SessionAsked is the session duration the last login asked for (seed 000), or 0.
func (s *Server) SessionAsked() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessionAsked
}

// Valid reports whether the protected API accepts token now.
func (s *Server) Valid(token string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	se := s.byAccess[token]
	return se != nil && !se.over(time.Now())
}

// Why says why the protected API rejects token, or "valid".
func (s *Server) Why(token string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	se := s.byAccess[token]
	switch {
	case se == nil:
		return "unknown token"
	case se.revoked:
		return "session revoked"
	case !time.Now().Before(se.expires):
		return "expired " + time.Since(se.expires).Round(time.Second).String() + " ago"
	case se.over(time.Now()):
		return "session ended by the issuer " + time.Since(se.ends).Round(time.Second).String() + " ago, before its stated expiry"
	}
	return "valid"
}

func (s *Server) locked(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f()
}

// ---- sessions ---------------------------------------------------------------------------------

// newSession issues tokens for subject; callers hold mu.
func (s *Server) newSession(subject, scope string, lifetime time.Duration) *session {
	se := &session{id: randHex(8), subject: subject, scope: scope, refreshEx: time.Now().Add(s.refreshLifetime)}
	s.issue(se, lifetime)
	return se
}

// issue gives se a fresh access token (and refresh token); callers hold mu.
func (s *Server) issue(se *session, lifetime time.Duration) {
	now := time.Now()
	se.expires = now.Add(lifetime)
	switch s.Flavor {
	case Seed000:
		se.access = randHex(20)
	case Seed003:
		se.access = uuid()
	case Seed002:
		se.access = s.sign(jwt.SigningMethodHS256, s.hmacKey, "", se, now)
	default:
		se.access = s.sign(jwt.SigningMethodRS256, s.key, s.kid, se, now)
	}
	s.byAccess[se.access] = se
	se.ends = time.Time{}
	if s.endAfter > 0 {
		se.ends = now.Add(s.endAfter)
	}
	if s.killNew {
		se.revoke()
	}
	s.issued = append(s.issued, se.access)
	s.grants = append(s.grants, Grant{At: now, Token: se.access})
	if s.Flavor == Seed000 || s.Flavor == Seed004 {
		return // no refresh tokens
	}
	if se.refresh != "" {
		delete(s.byRefresh, se.refresh)
		s.retired[se.refresh] = se
	}
	if s.Flavor == Seed003 {
		se.refresh = uuid()
	} else {
		se.refresh = randB64(32)
	}
	s.byRefresh[se.refresh] = se
	s.issued = append(s.issued, se.refresh)
}

func (s *Server) sign(m jwt.SigningMethod, key any, kid string, se *session, now time.Time) string {
	claims := jwt.MapClaims{
		"iss": s.issuerURL(), "sub": se.subject, "aud": "orders", "iat": now.Unix(),
		"exp": se.expires.Unix(), "jti": randHex(8), "sid": se.id,
	}
	if se.scope != "" {
		claims["scope"] = se.scope
	}
	t := jwt.NewWithClaims(m, claims)
	if kid != "" {
		t.Header["kid"] = kid
	}
	out, err := t.SignedString(key)
	if err != nil {
		panic(err)
	}
	return out
}

func (s *Server) issuerURL() string {
	if s.TLS != nil {
		return s.TLS.URL
	}
	return "https://issuer.invalid"
}

// useRefresh trades a refresh token; a retired (already used) one kills its session. Callers hold mu.
func (s *Server) useRefresh(rt string, lifetime time.Duration) (*session, string) {
	if se, reused := s.retired[rt]; reused {
		s.reuses++
		se.revoke()
		delete(s.byRefresh, se.refresh)
		return nil, "refresh token reuse detected: session revoked"
	}
	se := s.byRefresh[rt]
	switch {
	case se == nil:
		return nil, "unknown refresh token"
	case se.revoked:
		return nil, "session revoked"
	case time.Now().After(se.refreshEx):
		return nil, "refresh token expired"
	}
	if s.rotate {
		s.issue(se, lifetime)
	} else {
		old := se.refresh
		s.issue(se, lifetime)
		delete(s.byRefresh, se.refresh)
		delete(s.retired, old)
		se.refresh = old
		s.byRefresh[old] = se
	}
	return se, ""
}

// ---- HTTP -------------------------------------------------------------------------------------

// ServeHTTP applies the configured faults, then routes by flavor.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.inFlight++
	s.maxInFlight = max(s.maxInFlight, s.inFlight)
	defer s.locked(func() { s.inFlight-- })
	hang, status, retry := s.hang, 0, s.retryAfter
	if s.failCount != 0 {
		status = s.failStatus
		if s.failCount > 0 {
			s.failCount--
		}
	}
	s.mu.Unlock()
	if hang > 0 {
		// Read the body first: only then does net/http notice a client that gives up, and the
		// handler ends with it (MaxInFlight counts what clients are waiting for).
		body, _ := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		r.Body = io.NopCloser(bytes.NewReader(body))
		select {
		case <-time.After(hang):
		case <-r.Context().Done():
			return
		case <-s.closing:
			return
		}
	}
	if status != 0 {
		s.count(opOf(s.Flavor, r))
		if retry != "" {
			w.Header().Set("Retry-After", retry)
		}
		writeJSON(w, status, map[string]any{"error": "temporarily_unavailable", "message": http.StatusText(status)})
		return
	}
	switch s.Flavor {
	case Seed000:
		s.serve000(w, r)
	case Seed001:
		s.serve001(w, r)
	case Seed002:
		s.serve002(w, r)
	case Seed003:
		s.serve003(w, r)
	case Seed004:
		s.serve004(w, r)
	case OAuth2:
		s.serveOAuth2(w, r)
	case GitHubApp:
		s.serveGitHub(w, r)
	}
}

func (s *Server) count(op Op) {
	if op != "" {
		s.locked(func() { s.calls[op]++ })
	}
}

// opOf names the operation a request is, for counting failed calls too.
func opOf(f Flavor, r *http.Request) Op {
	p := r.URL.Path
	switch {
	case f == GitHubApp && strings.HasSuffix(p, "/access_tokens"):
		return OpLogin
	case f == GitHubApp && p == "/installation/token":
		return OpRevoke
	case strings.HasSuffix(p, "/refresh") || (f == OAuth2 && p == "/oauth/token" && r.FormValue("grant_type") == "refresh_token"):
		return OpRefresh
	case strings.Contains(p, "login") || p == "/token" || p == "/v1/sessions" || p == "/oauth/token":
		return OpLogin
	case strings.Contains(p, "logout") || strings.Contains(p, "revoke"):
		return OpRevoke
	case strings.Contains(p, "token-info") || strings.Contains(p, "introspect"):
		return OpInspect
	case strings.Contains(p, "well-known"):
		return OpDiscovery
	case p == "/jwks":
		return OpJWKS
	}
	return OpUse
}

// malformedAnswer writes the configured malformation for a token response; it reports whether it did.
func (s *Server) malformedAnswer(w http.ResponseWriter) bool {
	s.mu.Lock()
	m := s.malformed
	s.mu.Unlock()
	switch m {
	case "":
		return false
	case NotJSON:
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte("<html><body>Service maintenance</body></html>"))
	case NoToken:
		writeJSON(w, 200, map[string]any{"status": "success", "expires_in": 3600})
	case HugeBody:
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"token":"` + strings.Repeat("a", 2<<20) + `"}`))
	case PastExpiry:
		// GitHub's shape, seconds in the past (the old 30-s skew tolerance wrote such tokens).
		writeJSON(w, 200, map[string]any{"token": randB64(24), "expires_at": time.Now().Add(-10 * time.Second).UTC().Format(time.RFC3339)})
	case BadTokenSet:
		writeJSON(w, 200, map[string]any{"access_token": "abc def<script>", "expires_in": 3600})
	}
	return true
}

// authorized finds the session of an Authorization header with the given scheme.
func (s *Server) authorized(r *http.Request, scheme string) *session {
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, scheme+" ")
	if !ok {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.valid(tok)
}

// authorizedLocked is authorized for callers holding mu.
func (s *Server) authorizedLocked(r *http.Request, scheme string) *session {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), scheme+" ")
	if !ok {
		return nil
	}
	return s.valid(tok)
}

// valid returns the live session of an access token; callers hold mu.
func (s *Server) valid(tok string) *session {
	se := s.byAccess[tok]
	if se == nil || se.over(time.Now()) {
		return nil
	}
	return se
}

func decode(r *http.Request) map[string]any {
	var m map[string]any
	_ = json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20)).Decode(&m)
	return m
}

func str(m map[string]any, k string) string {
	v, _ := m[k].(string)
	return v
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func randB64(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func uuid() string {
	h := randHex(16)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// jwk is an RSA public key as a JWK.
func jwk(k *rsa.PublicKey, kid string) map[string]any {
	return map[string]any{
		"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
		"n": base64.RawURLEncoding.EncodeToString(k.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(k.E)).Bytes()),
	}
}
