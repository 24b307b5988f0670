//go:build bench

// Package peers_test measures tokenkeeper's Bearer validation against the validators platform
// teams would otherwise deploy, Ory Oathkeeper and oauth2-proxy, on the same machine in the same
// run: `make bench-peers` (part of `make bench`) builds both from Go modules (hack/build-module.sh) and
// runs TestPeers. Every server is its own process on loopback, plain HTTP with keep-alive, and
// checks the same RS256 JWTs against the same JWKS; one load generator drives them in turn, in
// alternating order, for BENCH_PEER_ROUNDS rounds of BENCH_PEER_ROUND each, with one token
// repeated and with BENCH_PEER_TOKENS distinct tokens cycled (many clients, short tokens). The
// README quotes the table it prints. BENCH_PEER_CPU_PROFILE=file saves a CPU profile of the
// tokenkeeper process under distinct tokens in the first round.
package peers_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/pprof"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/tokenkeeper/tokenkeeper/internal/validation"
)

const (
	audience = "bench"
	kid      = "bench-rsa"
	// serveEnv makes the test binary a server process instead of running tests: "tokenkeeper",
	// "tokenkeeper-grpc", "tokenkeeper-grpc-tls", "tokenkeeper-grpc-shared" or "bare", listening on serveAddrEnv and trusting serveIssuerEnv.
	serveEnv       = "TOKENKEEPER_PEERS_SERVE"
	serveAddrEnv   = "TOKENKEEPER_PEERS_ADDR"
	serveIssuerEnv = "TOKENKEEPER_PEERS_ISSUER"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(serveEnv); mode != "" {
		if err := serve(mode, os.Getenv(serveAddrEnv), os.Getenv(serveIssuerEnv)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// serve runs tokenkeeper's validation endpoint as the manager runs it (validation.Listener,
// Server and a Validator for one TokenValidator: the issuer's JWKS, audience, RS256, the cache
// on) but over plain HTTP like the peers, with the manager's metrics on /metrics; or a bare
// net/http handler that only checks an Authorization header is present.
func serve(mode, addr, iss string) error {
	ctx := context.Background()
	switch mode {
	case "bare":
		bare := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") == "" {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			w.WriteHeader(http.StatusOK)
		})
		return (&validation.Listener{Addr: addr, Handler: bare}).Start(ctx)
	case "tokenkeeper", "tokenkeeper-grpc", "tokenkeeper-grpc-tls", "tokenkeeper-grpc-shared":
		keys := validation.NewKeySet(iss+"/jwks", &http.Client{Timeout: 10 * time.Second}, clock.RealClock{})
		if err := keys.Refresh(ctx); err != nil {
			return err
		}
		srv := validation.NewServer()
		srv.Set(types.NamespacedName{Namespace: "bench", Name: "v"}, validation.New(validation.Config{
			Issuers:   []validation.TrustedIssuer{{Name: "ClusterIssuer/bench", Iss: iss, Keys: keys}},
			Audiences: []string{audience}, Algorithms: []string{"RS256"},
		}))
		mux := http.NewServeMux()
		mux.Handle("/", srv)
		mux.Handle("/metrics", promhttp.HandlerFor(ctrlmetrics.Registry, promhttp.HandlerOpts{}))
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		l := &validation.Listener{Addr: addr, Handler: mux}
		switch mode {
		case "tokenkeeper-grpc", "tokenkeeper-grpc-tls":
			// ext_authz as the manager serves it with --ext-authz-h2c-bind-address or
			// --ext-authz-bind-address: grpc-go's own HTTP/2 transport (grpc_test.go).
			return serveGRPC(ctx, srv, addr, os.Getenv(serveCertDirEnv), mux)
		case "tokenkeeper-grpc-shared":
			// ext_authz the way the validation port serves it: the gRPC service beside the HTTP
			// endpoints behind net/http's HTTP/2 server, over TLS (grpc_test.go); /healthz also
			// in plain HTTP on a second port.
			a, err := validation.NewExtAuthz(srv, "")
			if err != nil {
				return err
			}
			l.Handler, l.CertDir = validation.GRPCHandler(a.GRPCServer(), mux), os.Getenv(serveCertDirEnv)
			return firstError(ctx, l, &validation.Listener{Addr: os.Getenv(serveHealthEnv), Handler: mux})
		}
		return l.Start(ctx)
	}
	return fmt.Errorf("unknown %s=%q", serveEnv, mode)
}

// idp is the token issuer every validator trusts: OIDC discovery and a JWKS with one RSA key.
type idp struct {
	*httptest.Server
	key *rsa.PrivateKey
}

func newIDP(t *testing.T) *idp {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p := &idp{key: key}
	b64 := base64.RawURLEncoding.EncodeToString
	jwks, _ := json.Marshal(map[string]any{"keys": []map[string]string{{"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
		"n": b64(key.N.Bytes()), "e": b64(big.NewInt(int64(key.E)).Bytes())}}})
	mux := http.NewServeMux()
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(jwks)
	})
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": p.URL, "jwks_uri": p.URL + "/jwks", "authorization_endpoint": p.URL + "/authorize",
			"token_endpoint": p.URL + "/token", "response_types_supported": []string{"code"},
			"subject_types_supported": []string{"public"}, "id_token_signing_alg_values_supported": []string{"RS256"},
		})
	})
	p.Server = httptest.NewServer(mux)
	t.Cleanup(p.Close)
	return p
}

// tokens signs n distinct RS256 tokens valid for an hour, on every core.
func (p *idp) tokens(t *testing.T, n int) []string {
	out := make([]string, n)
	now := time.Now()
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
					"iss": p.URL, "aud": audience, "sub": fmt.Sprintf("client-%d", i), "jti": strconv.Itoa(i),
					"email": fmt.Sprintf("client-%d@example.com", i), "email_verified": true,
					"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
				})
				tok.Header["kid"] = kid
				s, err := tok.SignedString(p.key)
				if err != nil {
					t.Error(err)
					return
				}
				out[i] = s
			}
		})
	}
	wg.Wait()
	return out
}

// server is one validator under load: its process, the URL a forward-auth request goes to and
// the status it answers for a valid token.
type server struct {
	name   string
	url    string
	ok     int
	cmd    *exec.Cmd
	output *outputBuffer
}

// outputBuffer keeps a process's output: exec's copying goroutines write it while the test may
// read it (a readiness failure, a retry), so both go through one lock.
type outputBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *outputBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *outputBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String()
}

// start runs cmd and waits until ready answers.
func start(t *testing.T, name string, cmd *exec.Cmd, url string, ok int, ready string) *server {
	s := &server{name: name, url: url, ok: ok, cmd: cmd, output: &outputBuffer{}}
	cmd.Stdout, cmd.Stderr = s.output, s.output
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		if err := <-exited; err != nil && t.Failed() {
			t.Logf("%s exited: %v", name, err)
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", name, tail(s.output.String(), 4000))
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("%s exited before it was ready (%v)", name, err)
		default:
		}
		resp, err := http.Get(ready)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode < 500 {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready at %s after 60 s (%v):\n%s", name, ready, err, tail(s.output.String(), 4000))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

func self(t *testing.T, mode, iss string) *server {
	addr := freeAddr(t)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), serveEnv+"="+mode, serveAddrEnv+"="+addr, serveIssuerEnv+"="+iss)
	if mode == "bare" {
		return start(t, "bare net/http handler", cmd, "http://"+addr+"/", http.StatusOK, "http://"+addr+"/")
	}
	return start(t, "tokenkeeper", cmd, "http://"+addr+"/validate/bench/v", http.StatusOK, "http://"+addr+"/healthz")
}

// oathkeeper runs Ory Oathkeeper's decision API with one rule: the jwt authenticator (this JWKS,
// issuer, audience, RS256), the allow authorizer and the noop mutator.
func oathkeeper(t *testing.T, bin string, p *idp) *server {
	dir := t.TempDir()
	api, proxy := freeAddr(t), freeAddr(t)
	_, apiPort, _ := net.SplitHostPort(api)
	_, proxyPort, _ := net.SplitHostPort(proxy)
	rules := `[{"id":"bench","match":{"url":"<.*>","methods":["GET"]},"authenticators":[{"handler":"jwt"}],` +
		`"authorizer":{"handler":"allow"},"mutators":[{"handler":"noop"}]}]`
	config := fmt.Sprintf(`log:
  level: error
serve:
  api: {host: 127.0.0.1, port: %s}
  proxy: {host: 127.0.0.1, port: %s}
access_rules:
  matching_strategy: regexp
  repositories: ["file://%s"]
authenticators:
  jwt:
    enabled: true
    config:
      jwks_urls: ["%s/jwks"]
      trusted_issuers: ["%s"]
      target_audience: ["%s"]
      allowed_algorithms: ["RS256"]
authorizers:
  allow: {enabled: true}
mutators:
  noop: {enabled: true}
`, apiPort, proxyPort, filepath.Join(dir, "rules.json"), p.URL, p.URL, audience)
	write(t, filepath.Join(dir, "rules.json"), rules)
	write(t, filepath.Join(dir, "config.yaml"), config)
	cmd := exec.Command(bin, "serve", "--config", filepath.Join(dir, "config.yaml"))
	return start(t, "Ory Oathkeeper", cmd, "http://"+api+"/decisions/bench", http.StatusOK, "http://"+api+"/health/ready")
}

// oauth2Proxy runs oauth2-proxy's auth endpoint for Bearer JWTs (--skip-jwt-bearer-tokens) from
// the same OIDC issuer, with the audience as its client ID.
func oauth2Proxy(t *testing.T, bin string, p *idp) *server {
	addr := freeAddr(t)
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	cmd := exec.Command(bin, "--http-address="+addr, "--provider=oidc", "--oidc-issuer-url="+p.URL,
		"--client-id="+audience, "--client-secret=unused", "--cookie-secret="+base64.URLEncoding.EncodeToString(secret),
		"--cookie-secure=false", "--email-domain=*", "--skip-jwt-bearer-tokens=true", "--upstream=static://200",
		"--redirect-url=http://"+addr+"/oauth2/callback", "--request-logging=false", "--auth-logging=false",
		"--standard-logging=false")
	return start(t, "oauth2-proxy", cmd, "http://"+addr+"/oauth2/auth", http.StatusAccepted, "http://"+addr+"/ping")
}

func write(t *testing.T, path, content string) {
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// load sends forward-auth GETs from clients goroutines for d, each with the next token of
// tokens (one shared counter), and returns requests per second; any answer other than s.ok fails.
func load(t *testing.T, s *server, clients int, d time.Duration, tokens []string, next *atomic.Uint64) float64 {
	transport := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: 10 * time.Second}
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	var done atomic.Int64
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	begin := time.Now()
	for range clients {
		wg.Go(func() {
			for ctx.Err() == nil {
				req, _ := http.NewRequest(http.MethodGet, s.url, nil)
				req.Header.Set("Authorization", "Bearer "+tokens[next.Add(1)%uint64(len(tokens))])
				resp, err := client.Do(req)
				if err != nil {
					errs <- fmt.Errorf("%s: %w", s.name, err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode != s.ok {
					errs <- fmt.Errorf("%s answered %d to a valid token, want %d", s.name, resp.StatusCode, s.ok)
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(begin)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return float64(done.Load()) / elapsed.Seconds()
}

// inProcess is the RS256 verify rate with no HTTP and no cache: validation.Validator with the
// cache off, from clients goroutines, over tokens.
func inProcess(t *testing.T, v *validation.Validator, clients int, d time.Duration, tokens []string, next *atomic.Uint64) float64 {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	var done atomic.Int64
	var wg sync.WaitGroup
	begin := time.Now()
	for range clients {
		wg.Go(func() {
			for ctx.Err() == nil {
				if _, den := v.AuthenticateToken(ctx, tokens[next.Add(1)%uint64(len(tokens))]); den != nil {
					t.Errorf("in process: %v", den)
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	return float64(done.Load()) / time.Since(begin).Seconds()
}

// rejects checks a server refuses a token signed by another key, so a fast answer is a checked one.
func rejects(t *testing.T, s *server, forged string) {
	req, _ := http.NewRequest(http.MethodGet, s.url, nil)
	req.Header.Set("Authorization", "Bearer "+forged)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode == s.ok {
		t.Fatalf("%s accepted a token signed by another key", s.name)
	}
}

// cacheHits reads tokenkeeper's verified-token cache hits from its /metrics.
func cacheHits(t *testing.T, s *server) float64 {
	resp, err := http.Get(strings.TrimSuffix(s.url, "/validate/bench/v") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "tokenkeeper_validation_cache_hits_total{") && strings.Contains(line, `cache="verified"`) {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			return v
		}
	}
	t.Fatal("tokenkeeper's /metrics has no tokenkeeper_validation_cache_hits_total for the verified cache")
	return 0
}

// saveProfile writes a CPU profile of the tokenkeeper process over d to file.
func saveProfile(t *testing.T, s *server, file string, d time.Duration) {
	resp, err := http.Get(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", strings.TrimSuffix(s.url, "/validate/bench/v"), int(d.Seconds())))
	if err != nil {
		t.Error(err)
		return
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err == nil {
		err = os.WriteFile(file, body, 0o600)
	}
	if err != nil {
		t.Error(err)
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func TestPeers(t *testing.T) {
	okBin, o2pBin := os.Getenv("BENCH_OATHKEEPER"), os.Getenv("BENCH_OAUTH2_PROXY")
	if okBin == "" || o2pBin == "" {
		t.Fatal("BENCH_OATHKEEPER and BENCH_OAUTH2_PROXY name the peers' binaries: run `make bench-peers`")
	}
	rounds, clients := envInt("BENCH_PEER_ROUNDS", 6), envInt("BENCH_PEER_CLIENTS", 32)
	round, err := time.ParseDuration(os.Getenv("BENCH_PEER_ROUND"))
	if err != nil {
		round = 5 * time.Second
	}
	p := newIDP(t)
	began := time.Now()
	// 200,000: enough that no token comes back to tokenkeeper while its door keeper (16,384 slots)
	// still remembers it, so none is admitted to the cache (with 50,000, 3.7% of requests hit).
	distinct := p.tokens(t, envInt("BENCH_PEER_TOKENS", 200000))
	t.Logf("signed %d distinct RS256 tokens in %s", len(distinct), time.Since(began).Round(time.Second))
	repeated := distinct[:1]
	other := &idp{Server: p.Server}
	other.key, _ = rsa.GenerateKey(rand.Reader, 2048)
	forged := other.tokens(t, 1)[0]

	tk := self(t, "tokenkeeper", p.URL)
	servers := []*server{self(t, "bare", p.URL), tk, oathkeeper(t, okBin, p), oauth2Proxy(t, o2pBin, p)}
	for _, s := range servers[1:] {
		rejects(t, s, forged)
	}
	keys := validation.NewKeySet(p.URL+"/jwks", p.Client(), clock.RealClock{})
	if err := keys.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	verify := validation.New(validation.Config{Issuers: []validation.TrustedIssuer{{Name: "ClusterIssuer/bench", Iss: p.URL, Keys: keys}},
		Audiences: []string{audience}, Algorithms: []string{"RS256"}, DisableCache: true})

	// rates[case][name] holds one figure per round.
	rates := map[string]map[string][]float64{"repeated": {}, "distinct": {}}
	// Each server walks the distinct tokens in order with its own position, kept across rounds:
	// a token comes back to the same server only after all the others.
	next := map[string]*atomic.Uint64{"in process": {}}
	for _, s := range servers {
		next[s.name] = &atomic.Uint64{}
	}
	var distinctHits, distinctRequests float64
	for r := range rounds {
		order := slices.Clone(servers)
		if r%2 == 1 {
			slices.Reverse(order)
		}
		rates["distinct"]["in process"] = append(rates["distinct"]["in process"], inProcess(t, verify, clients, round, distinct, next["in process"]))
		for _, s := range order {
			for _, c := range []string{"repeated", "distinct"} {
				toks, pos := distinct, next[s.name]
				if c == "repeated" {
					// Its own counter: sharing the distinct one would jump that position back
					// to tokens the server has just seen (12% cache hits in an earlier run).
					toks, pos = repeated, &atomic.Uint64{}
				}
				load(t, s, clients, round/5, toks, pos) // warm up: connections, the repeated token cached
				hits := 0.0
				if s == tk && c == "distinct" {
					hits = cacheHits(t, tk)
					if profile := os.Getenv("BENCH_PEER_CPU_PROFILE"); profile != "" && r == 0 {
						go saveProfile(t, tk, profile, round-time.Second)
					}
				}
				rate := load(t, s, clients, round, toks, pos)
				rates[c][s.name] = append(rates[c][s.name], rate)
				if s == tk && c == "distinct" {
					distinctHits += cacheHits(t, tk) - hits
					distinctRequests += rate * round.Seconds()
				}
			}
		}
		t.Logf("round %d of %d done", r+1, rounds)
	}
	// What this machine allows: if a verify cost nothing over HTTP but its own CPU, the rate would
	// be that of the HTTP round trip (the bare handler) and the verify (in process) one after the
	// other on the same cores: 1 / (1/bare + 1/in-process), per round.
	for i := range rates["distinct"]["in process"] {
		bare, verify := rates["distinct"]["bare net/http handler"][i], rates["distinct"]["in process"][i]
		rates["distinct"]["ceiling"] = append(rates["distinct"]["ceiling"], 1/(1/bare+1/verify))
	}
	ratio := func(c, a, b string) float64 {
		var rs []float64
		for i := range rates[c][a] {
			rs = append(rs, rates[c][a][i]/rates[c][b][i])
		}
		return median(rs)
	}
	fmt.Printf("\n%d rounds of %s per server and case, %d clients, %d distinct tokens, GOMAXPROCS %d\n\n",
		rounds, round, clients, len(distinct), runtime.GOMAXPROCS(0))
	fmt.Println("| validator | one token repeated, req/s (median) | distinct tokens, req/s (median) |")
	fmt.Println("| --- | ---: | ---: |")
	for _, s := range servers {
		fmt.Printf("| %s | %.0f | %.0f |\n", s.name, median(rates["repeated"][s.name]), median(rates["distinct"][s.name]))
	}
	fmt.Printf("| in-process RS256 verify, no cache | | %.0f |\n", median(rates["distinct"]["in process"]))
	fmt.Printf("| ceiling: HTTP round trip + verify, 1/(1/bare + 1/in-process) | | %.0f |\n\n", median(rates["distinct"]["ceiling"]))
	fmt.Println("| ratio (median of per-round ratios) | value | target |")
	fmt.Println("| --- | ---: | ---: |")
	for _, row := range []struct {
		label, c, a, b, target string
	}{
		{"distinct: tokenkeeper / Oathkeeper", "distinct", "tokenkeeper", "Ory Oathkeeper", "≥ 2"},
		{"distinct: tokenkeeper / oauth2-proxy", "distinct", "tokenkeeper", "oauth2-proxy", "≥ 2"},
		{"distinct: tokenkeeper over HTTP / in-process verify", "distinct", "tokenkeeper", "in process", "≥ 0.5"},
		{"distinct: the ceiling / in-process verify", "distinct", "ceiling", "in process", ""},
		{"distinct: tokenkeeper / the ceiling", "distinct", "tokenkeeper", "ceiling", ""},
		{"repeated: tokenkeeper / bare handler", "repeated", "tokenkeeper", "bare net/http handler", "≥ 0.8"},
		{"repeated: tokenkeeper / Oathkeeper", "repeated", "tokenkeeper", "Ory Oathkeeper", ""},
		{"repeated: tokenkeeper / oauth2-proxy", "repeated", "tokenkeeper", "oauth2-proxy", ""},
	} {
		fmt.Printf("| %s | %.2f | %s |\n", row.label, ratio(row.c, row.a, row.b), row.target)
	}
	// The distinct tokens are cycled in order: by the time one comes back, tokenkeeper's door
	// keeper has forgotten it, so it is never cached: every request is a verify.
	fmt.Printf("\ntokenkeeper cache hits under distinct tokens: %.0f of about %.0f requests\n", distinctHits, distinctRequests)
}
