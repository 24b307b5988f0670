//go:build bench

package peers_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
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

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/tokenkeeper/tokenkeeper/internal/servingcert/servingcerttest"
	"github.com/tokenkeeper/tokenkeeper/internal/validation"
)

// opaPolicy is the OPA peer's decision: the same RS256 JWT checks as tokenkeeper's TokenValidator
// (signature by the issuer's JWKS, iss, aud, exp and nbf) with io.jwt.decode_verify, on the
// Bearer token of the request's Authorization header.
const opaPolicy = `package envoy.authz

import rego.v1

default allow := false

allow if {
	[valid, _, _] := io.jwt.decode_verify(bearer_token, {"cert": data.jwks, "iss": data.iss, "aud": data.aud, "alg": "RS256"})
	valid
}

bearer_token := t if {
	v := input.attributes.request.http.headers.authorization
	startswith(v, "Bearer ")
	t := substring(v, count("Bearer "), -1)
}
`

// grpcServer is an ext_authz server under load: its process, its gRPC address (h2c, or TLS when
// creds is set) and the address of its /healthz and pprof endpoints.
type grpcServer struct {
	*server
	addr, http string
	creds      credentials.TransportCredentials // nil for h2c
}

// selfGRPC runs tokenkeeper's ext_authz: mode "tokenkeeper-grpc" as the manager serves it on
// --ext-authz-h2c-bind-address, "tokenkeeper-grpc-tls" as on --ext-authz-bind-address (both
// validation.GRPCListener: grpc-go's own transport, with /healthz on a second port for
// readiness), or "tokenkeeper-grpc-shared" the way the validation port serves it (grpc-go behind
// net/http's HTTP/2 server, beside /validate, TLS).
func selfGRPC(t *testing.T, name, mode, iss string) *grpcServer {
	addr, httpAddr := freeAddr(t), freeAddr(t)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), serveEnv+"="+mode, serveAddrEnv+"="+addr, serveIssuerEnv+"="+iss, serveHealthEnv+"="+httpAddr)
	var creds credentials.TransportCredentials
	if mode != "tokenkeeper-grpc" {
		dir, pool := servingcerttest.Write(t)
		cmd.Env = append(cmd.Env, serveCertDirEnv+"="+dir)
		creds = credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	}
	return &grpcServer{server: start(t, name, cmd, "", 0, "http://"+httpAddr+"/healthz"), addr: addr, http: httpAddr, creds: creds}
}

const (
	// serveHealthEnv is the HTTP address of the gRPC modes' /healthz (and pprof).
	serveHealthEnv = "TOKENKEEPER_PEERS_HEALTH_ADDR"
	// serveCertDirEnv holds the TLS modes' tls.crt and tls.key.
	serveCertDirEnv = "TOKENKEEPER_PEERS_CERT_DIR"
)

// serveGRPC serves the Authorization service of srv as the manager's ext_authz ports do on addr
// (TLS with certDir's certificate, or h2c), and mux (/healthz, pprof) over HTTP on
// serveHealthEnv's address.
func serveGRPC(ctx context.Context, srv *validation.Server, addr, certDir string, mux http.Handler) error {
	a, err := validation.NewExtAuthz(srv, "")
	if err != nil {
		return err
	}
	return firstError(ctx, &validation.GRPCListener{Addr: addr, CertDir: certDir, ExtAuthz: a},
		&validation.Listener{Addr: os.Getenv(serveHealthEnv), Handler: mux})
}

// firstError runs the listeners until ctx ends or one of them stops: whichever stops first (a
// port taken, a certificate unreadable) ends the serving process with its error, and the others
// with it.
func firstError(ctx context.Context, listeners ...interface{ Start(context.Context) error }) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(listeners))
	for _, l := range listeners {
		go func() { errs <- l.Start(ctx) }()
	}
	return <-errs
}

// opaExtAuthz runs OPA's Rego engine behind ext_authz (test/peers/opaextauthz) with opaPolicy and
// the issuer's JWKS as data.
func opaExtAuthz(t *testing.T, bin string, p *idp) *grpcServer {
	dir := t.TempDir()
	resp, err := http.Get(p.URL + "/jwks")
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	data, _ := json.Marshal(map[string]string{"jwks": string(jwks), "iss": p.URL, "aud": audience})
	write(t, filepath.Join(dir, "policy.rego"), opaPolicy)
	write(t, filepath.Join(dir, "data.json"), string(data))
	addr := freeAddr(t)
	cmd := exec.Command(bin, "-addr", addr, "-policy", filepath.Join(dir, "policy.rego"), "-data", filepath.Join(dir, "data.json"))
	s := &server{name: "OPA ext_authz", cmd: cmd, output: &outputBuffer{}}
	cmd.Stdout, cmd.Stderr = s.output, s.output
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", s.name, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("%s output:\n%s", s.name, tail(s.output.String(), 4000))
		}
	})
	g := &grpcServer{server: s, addr: addr}
	deadline := time.Now().Add(60 * time.Second)
	for {
		c := g.dial(t, 1)
		_, err := c[0].Check(t.Context(), checkRequest("x"))
		if err == nil {
			return g
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after 60 s (%v):\n%s", s.name, err, tail(s.output.String(), 4000))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// connect opens n connections to g (h2c, or TLS with g.creds), closed at the end of the test.
func (g *grpcServer) connect(t *testing.T, n int) []*grpc.ClientConn {
	creds := g.creds
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	var out []*grpc.ClientConn
	for range n {
		conn, err := grpc.NewClient("passthrough:///"+g.addr, grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		out = append(out, conn)
	}
	return out
}

// dial opens n connections to g as Authorization clients.
func (g *grpcServer) dial(t *testing.T, n int) []authv3.AuthorizationClient {
	var out []authv3.AuthorizationClient
	for _, conn := range g.connect(t, n) {
		out = append(out, authv3.NewAuthorizationClient(conn))
	}
	return out
}

// checkRequest is what Envoy sends for GET /orders/1 with this Bearer token, on a route that names
// tokenkeeper's TokenValidator bench/v (the peers ignore the context extension; Authorino picks its
// AuthConfig by the host).
func checkRequest(token string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "1", Method: "GET", Path: "/orders/1", Host: "shop.example", Scheme: "https", Protocol: "HTTP/1.1",
			Headers: map[string]string{":method": "GET", ":path": "/orders/1", ":authority": "shop.example",
				"authorization": "Bearer " + token, "user-agent": "bench", "x-request-id": "1"},
		}},
		ContextExtensions: map[string]string{validation.ValidatorContextKey: "bench/v"},
	}}
}

func allowed(resp *authv3.CheckResponse) bool {
	_, ok := resp.GetHttpResponse().(*authv3.CheckResponse_OkResponse)
	return ok && resp.GetStatus().GetCode() == int32(codes.OK)
}

// checkDecisions: g allows valid tokens and denies the forged one and every one of wrong, so a
// fast answer is a checked one.
func checkDecisions(t *testing.T, g *grpcServer, valid []string, forged string, wrong map[string]string) {
	c := g.dial(t, 1)[0]
	for _, tok := range valid {
		resp, err := c.Check(t.Context(), checkRequest(tok))
		if err != nil || !allowed(resp) {
			t.Fatalf("%s denied a valid token: %v %v", g.name, err, resp.GetStatus())
		}
	}
	resp, err := c.Check(t.Context(), checkRequest(forged))
	if err != nil || allowed(resp) {
		t.Fatalf("%s allowed a token signed by another key (%v)", g.name, err)
	}
	for what, tok := range wrong {
		resp, err := c.Check(t.Context(), checkRequest(tok))
		if err != nil || allowed(resp) {
			t.Fatalf("%s allowed a token with %s (%v)", g.name, what, err)
		}
	}
}

// wrongTokens are tokens signed by p's key that every validator must still deny: each breaks one
// of the checks they are configured with (issuer, audience, expiry, not-before).
func (p *idp) wrongTokens(t *testing.T) map[string]string {
	now := time.Now()
	claims := func(change func(jwt.MapClaims)) string {
		c := jwt.MapClaims{"iss": p.URL, "aud": audience, "sub": "wrong", "iat": now.Unix(), "nbf": now.Unix(),
			"exp": now.Add(time.Hour).Unix()}
		change(c)
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, c)
		tok.Header["kid"] = kid
		s, err := tok.SignedString(p.key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	return map[string]string{
		"another issuer":     claims(func(c jwt.MapClaims) { c["iss"] = "https://elsewhere.example" }),
		"another audience":   claims(func(c jwt.MapClaims) { c["aud"] = "elsewhere" }),
		"an expiry passed":   claims(func(c jwt.MapClaims) { c["exp"] = now.Add(-10 * time.Minute).Unix() }),
		"a not-before ahead": claims(func(c jwt.MapClaims) { c["nbf"] = now.Add(10 * time.Minute).Unix() }),
	}
}

// tokenSet is the tokens of one case, and the CheckRequests carrying them, encoded.
type tokenSet struct {
	tokens   []string
	requests [][]byte
}

// result is one measurement: requests per second and the 99th percentile latency.
type result struct {
	rps float64
	p99 time.Duration
	// cpu is the server process's CPU time (user and system) per answered call: what a check
	// costs the server, whatever the load generator beside it costs on the same cores.
	cpu time.Duration
	// calls is how many calls were answered: measured divides the server's CPU time by it.
	calls int64
}

// cpuTime is the CPU time (user and system) process pid has used so far, from /proc (Linux,
// clock ticks of 10 ms).
func cpuTime(t *testing.T, pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// After "pid (comm) ": state is field 3, utime 14 and stime 15.
	fields := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+1:]))
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// measured runs do against the server process pid and adds its CPU time per answered call. The
// window may hold more than the calls (ghz writing its request file, starting up): the server is
// idle then, so that time costs it nothing, and the calls counted are the ones do reports.
func measured(t *testing.T, pid int, do func() result) result {
	before := cpuTime(t, pid)
	r := do()
	if r.calls > 0 {
		r.cpu = (cpuTime(t, pid) - before) / time.Duration(r.calls)
	}
	return r
}

// recorder keeps the latencies of one run.
type recorder struct {
	mu  sync.Mutex
	all []time.Duration
}

func (r *recorder) add(l []time.Duration) {
	r.mu.Lock()
	r.all = append(r.all, l...)
	r.mu.Unlock()
}

func (r *recorder) p99() time.Duration {
	if len(r.all) == 0 {
		return 0
	}
	slices.Sort(r.all)
	return r.all[len(r.all)*99/100]
}

// loadHTTP is load with latencies: forward-auth GETs from clients goroutines, one connection each.
func loadHTTP(t *testing.T, s *server, clients int, d time.Duration, tokens []string, next *atomic.Uint64) result {
	transport := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: 10 * time.Second}
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	var rec recorder
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	begin := time.Now()
	for range clients {
		wg.Go(func() {
			var local []time.Duration
			defer func() { rec.add(local) }()
			for ctx.Err() == nil {
				req, _ := http.NewRequest(http.MethodGet, s.url, nil)
				req.Header.Set("Authorization", "Bearer "+tokens[next.Add(1)%uint64(len(tokens))])
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					errs <- fmt.Errorf("%s: %w", s.name, err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				local = append(local, time.Since(t0))
				if resp.StatusCode != s.ok {
					errs <- fmt.Errorf("%s answered %d to a valid token, want %d", s.name, resp.StatusCode, s.ok)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(begin)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return result{rps: float64(len(rec.all)) / elapsed.Seconds(), p99: rec.p99(), calls: int64(len(rec.all))}
}

// loadGRPC is loadHTTP for ext_authz: Check calls from clients goroutines spread over conns
// HTTP/2 connections (as Envoy's workers each keep one), every answer must allow. The calls carry
// CheckRequests encoded before the run (requests), as ghz sends them from its file and as Envoy
// builds them in C++: the generator's own protobuf encoding is not what is measured.
func loadGRPC(t *testing.T, g *grpcServer, conns []*grpc.ClientConn, clients int, d time.Duration, requests [][]byte, next *atomic.Uint64) result {
	// Cancelled at the end, without a deadline: a deadline travels as grpc-timeout, which a server
	// can see pass before the client does (Authorino then answers with a denial, Unavailable).
	ctx, cancel := context.WithCancel(t.Context())
	defer time.AfterFunc(d, cancel).Stop()
	defer cancel()
	var rec recorder
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	begin := time.Now()
	for i := range clients {
		c := conns[i%len(conns)]
		wg.Go(func() {
			var local []time.Duration
			defer func() { rec.add(local) }()
			for ctx.Err() == nil {
				req := encoded(requests[next.Add(1)%uint64(len(requests))])
				resp := &authv3.CheckResponse{}
				t0 := time.Now()
				err := c.Invoke(ctx, authv3.Authorization_Check_FullMethodName, req, resp, grpc.ForceCodecV2(preEncoded{}))
				if err != nil {
					if ctx.Err() != nil {
						return // the run ended during the call
					}
					errs <- fmt.Errorf("%s: %w", g.name, err)
					return
				}
				if ctx.Err() != nil {
					return // the run ended during the call
				}
				local = append(local, time.Since(t0))
				if !allowed(resp) {
					errs <- fmt.Errorf("%s denied a valid token: %v", g.name, resp.GetStatus())
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(begin)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return result{rps: float64(len(rec.all)) / elapsed.Seconds(), p99: rec.p99(), calls: int64(len(rec.all))}
}

// encodeRequests encodes the CheckRequest of each token, on every core.
func encodeRequests(t *testing.T, tokens []string) [][]byte {
	out := make([][]byte, len(tokens))
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(tokens); i += workers {
				raw, err := proto.Marshal(checkRequest(tokens[i]))
				if err != nil {
					t.Error(err)
					return
				}
				out[i] = raw
			}
		})
	}
	wg.Wait()
	return out
}

// encoded is a message already in its wire form.
type encoded []byte

// preEncoded is the client's codec: requests go as they are, answers are decoded.
type preEncoded struct{}

func (preEncoded) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.(encoded))}, nil
}

func (preEncoded) Unmarshal(data mem.BufferSlice, v any) error {
	return proto.Unmarshal(data.Materialize(), v.(proto.Message))
}

func (preEncoded) Name() string { return "proto" }

// protoset writes the descriptors of envoy.service.auth.v3 and everything it imports, for ghz.
func protoset(t *testing.T, dir string) string {
	set := &descriptorpb.FileDescriptorSet{}
	seen := map[string]bool{}
	var add func(fd protoreflect.FileDescriptor)
	add = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		imports := fd.Imports()
		for i := range imports.Len() {
			add(imports.Get(i).FileDescriptor)
		}
		set.File = append(set.File, protodesc.ToFileDescriptorProto(fd))
	}
	add(authv3.File_envoy_service_auth_v3_external_auth_proto)
	raw, err := proto.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "auth.protoset")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// ghzRun drives g with ghz (a separate process) for d: clients concurrent calls over conns
// connections, each call the next of the count-delimited CheckRequests in a binary file
// written from tokens at *next (n of them, fewer when the list is shorter), and advances *next by
// the calls made. ghz cannot tell an allow from a deny (both are gRPC OK): checkDecisions has
// checked the server before, and a run with any non-OK status fails.
func ghzRun(t *testing.T, bin, protosetFile string, g *grpcServer, clients, conns int, d time.Duration, tokens []string, next *atomic.Uint64, n int) result {
	n = min(n, len(tokens))
	start := next.Load()
	var data []byte
	for i := range n {
		msg, err := proto.Marshal(checkRequest(tokens[(start+uint64(i))%uint64(len(tokens))]))
		if err != nil {
			t.Fatal(err)
		}
		data = protowire.AppendVarint(data, uint64(len(msg)))
		data = append(data, msg...)
	}
	file := filepath.Join(t.TempDir(), "calls.bin")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "--insecure", "--protoset", protosetFile,
		"--call", "envoy.service.auth.v3.Authorization.Check", "--binary-file", file,
		"-c", strconv.Itoa(clients), "--connections", strconv.Itoa(conns), "-z", d.String(),
		"--format", "json", g.addr).Output()
	if err != nil {
		t.Fatalf("ghz against %s: %v\n%s", g.name, err, tail(string(stderrOf(err)), 2000))
	}
	var report struct {
		Count                  int64
		Rps                    float64
		StatusCodeDistribution map[string]int64
		ErrorDistribution      map[string]int64
		LatencyDistribution    []struct {
			Percentage int
			Latency    time.Duration
		}
	}
	if err := json.Unmarshal(out, &report); err != nil {
		t.Fatalf("ghz's report: %v\n%s", err, tail(string(out), 2000))
	}
	// -z ends the calls in flight when the time is up (Canceled, or Unavailable when the
	// connection closes under them): at most one per concurrent caller. Anything else fails.
	var ended int64
	for code, c := range report.StatusCodeDistribution {
		switch code {
		case "OK":
		case "Canceled", "Unavailable":
			ended += c
		default:
			t.Fatalf("ghz against %s: %d calls ended %s: %v", g.name, c, code, report.ErrorDistribution)
		}
	}
	if ended > int64(clients) {
		t.Fatalf("ghz against %s: %d calls ended early, more than the %d in flight: %v", g.name, ended, clients, report.ErrorDistribution)
	}
	if report.Count > int64(n) && n < len(tokens) {
		t.Logf("ghz against %s: %d calls over %d distinct requests: some tokens came back within the run", g.name, report.Count, n)
	}
	next.Add(uint64(report.Count))
	r := result{rps: report.Rps, calls: report.StatusCodeDistribution["OK"]}
	for _, l := range report.LatencyDistribution {
		if l.Percentage == 99 {
			r.p99 = l.Latency
		}
	}
	return r
}

func stderrOf(err error) []byte {
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		return ee.Stderr
	}
	return nil
}

// TestGRPC measures ext_authz over gRPC: tokenkeeper's Check (on grpc-go's own transport as the
// manager's ext_authz ports serve it, h2c and TLS, and behind net/http's HTTP/2 server as the
// shared validation port does, TLS) against tokenkeeper's own HTTP forward-auth path
// (/validate, HTTP/1.1 keep-alive) and against two gRPC ext_authz peers: Kuadrant Authorino (its
// jwt authentication by JWKS, issuer and audience by pattern matching, uncached as its docs
// advise) and OPA's Rego engine behind the same gRPC service (io.jwt.decode_verify, its JWT
// cache on). Every server is its own process checking the same RS256 JWTs, with one token
// repeated and with distinct tokens cycled. Two load generators: ghz (a separate process, the
// common gRPC benchmark tool) and an in-process grpc-go client built like the HTTP one
// (same goroutines, same process; requests encoded before the run, as ghz and Envoy send them), so gRPC and HTTP are also compared with like generators.
// `make bench-grpc` (part of `make bench`) builds ghz and the peers.
// BENCH_GRPC_CPU_PROFILE=file saves a CPU profile of tokenkeeper's gRPC process under a repeated
// token from the grpc-go client in the first round.
func TestGRPC(t *testing.T) {
	ghzBin, opaBin := os.Getenv("BENCH_GHZ"), os.Getenv("BENCH_OPA_EXT_AUTHZ")
	authorinoBin, authorinoCRD := os.Getenv("BENCH_AUTHORINO"), os.Getenv("BENCH_AUTHORINO_CRD")
	if ghzBin == "" || opaBin == "" || authorinoBin == "" || authorinoCRD == "" {
		t.Fatal("BENCH_GHZ, BENCH_OPA_EXT_AUTHZ, BENCH_AUTHORINO and BENCH_AUTHORINO_CRD name ghz's and the peers' binaries " +
			"and Authorino's AuthConfig CRD (Authorino also needs KUBEBUILDER_ASSETS): run `make bench-grpc`")
	}
	rounds, clients := envInt("BENCH_GRPC_ROUNDS", 5), envInt("BENCH_GRPC_CLIENTS", 32)
	conns := envInt("BENCH_GRPC_CONNECTIONS", 4)
	round, err := time.ParseDuration(os.Getenv("BENCH_GRPC_ROUND"))
	if err != nil {
		round = 5 * time.Second
	}
	p := newIDP(t)
	began := time.Now()
	distinct := tokenSet{tokens: p.tokens(t, envInt("BENCH_GRPC_TOKENS", 200000))}
	distinct.requests = encodeRequests(t, distinct.tokens)
	t.Logf("signed and encoded %d distinct RS256 tokens in %s", len(distinct.tokens), time.Since(began).Round(time.Second))
	repeated := tokenSet{distinct.tokens[:1], distinct.requests[:1]}
	other := &idp{Server: p.Server}
	other.key, _ = rsa.GenerateKey(rand.Reader, 2048)
	forged := other.tokens(t, 1)[0]
	protosetFile := protoset(t, t.TempDir())
	// ghz reads its calls from a file: enough distinct ones for a round at a rate well above
	// what 2 cores verify, fewer on a bigger machine's faster rounds only if BENCH_GRPC_TOKENS is.
	perRun := envInt("BENCH_GRPC_GHZ_CALLS", 100000)

	httpTK := self(t, "tokenkeeper", p.URL)
	grpcTK := selfGRPC(t, "tokenkeeper gRPC", "tokenkeeper-grpc", p.URL)
	tlsTK := selfGRPC(t, "tokenkeeper gRPC over TLS", "tokenkeeper-grpc-tls", p.URL)
	sharedTK := selfGRPC(t, "tokenkeeper gRPC through net/http", "tokenkeeper-grpc-shared", p.URL)
	opa := opaExtAuthz(t, opaBin, p)
	authorino := authorinoExtAuthz(t, authorinoBin, authorinoCRD, p)
	rejects(t, httpTK, forged)
	for _, g := range []*grpcServer{grpcTK, tlsTK, sharedTK, opa, authorino} {
		checkDecisions(t, g, distinct.tokens[:100], forged, p.wrongTokens(t))
	}
	tkConns, tlsConns, sharedConns := grpcTK.connect(t, conns), tlsTK.connect(t, conns), sharedTK.connect(t, conns)
	opaConns, authorinoConns := opa.connect(t, conns), authorino.connect(t, conns)

	type run struct {
		name string
		pid  int // the server's process
		do   func(set tokenSet, pos *atomic.Uint64, d time.Duration) result
	}
	grpcGo := func(name string, g *grpcServer, cs []*grpc.ClientConn) run {
		return run{name + " (grpc-go client)", g.cmd.Process.Pid, func(set tokenSet, pos *atomic.Uint64, d time.Duration) result {
			return loadGRPC(t, g, cs, clients, d, set.requests, pos)
		}}
	}
	ghz := func(name string, g *grpcServer) run {
		return run{name + " (ghz)", g.cmd.Process.Pid, func(set tokenSet, pos *atomic.Uint64, d time.Duration) result {
			return ghzRun(t, ghzBin, protosetFile, g, clients, conns, d, set.tokens, pos, perRun)
		}}
	}
	runs := []run{
		{"tokenkeeper HTTP /validate (Go net/http client)", httpTK.cmd.Process.Pid, func(set tokenSet, pos *atomic.Uint64, d time.Duration) result {
			return loadHTTP(t, httpTK, clients, d, set.tokens, pos)
		}},
		grpcGo("tokenkeeper gRPC Check", grpcTK, tkConns),                                              // 1
		ghz("tokenkeeper gRPC Check", grpcTK),                                                          // 2
		grpcGo("tokenkeeper gRPC Check over TLS, the ext_authz port", tlsTK, tlsConns),                 // 3
		grpcGo("tokenkeeper gRPC through net/http, the validation port's path", sharedTK, sharedConns), // 4
		grpcGo("OPA ext_authz", opa, opaConns),                                                         // 5
		ghz("OPA ext_authz", opa),                                                                      // 6
		grpcGo("Authorino ext_authz", authorino, authorinoConns),                                       // 7
		ghz("Authorino ext_authz", authorino),                                                          // 8
	}
	// results[case][run] holds one result per round.
	results := map[string]map[string][]result{"repeated": {}, "distinct": {}}
	// Each server walks the distinct tokens with its own position, kept across rounds and
	// generators, so no token comes back to a server before all the others have.
	positions := map[int]*atomic.Uint64{}
	for _, rn := range runs {
		if positions[rn.pid] == nil {
			positions[rn.pid] = &atomic.Uint64{}
		}
	}
	for r := range rounds {
		order := slices.Clone(runs)
		if r%2 == 1 {
			slices.Reverse(order)
		}
		for _, rn := range order {
			for _, c := range []string{"repeated", "distinct"} {
				set, pos := distinct, positions[rn.pid]
				if c == "repeated" {
					set, pos = repeated, &atomic.Uint64{}
				}
				rn.do(set, pos, round/5) // warm up: connections, the repeated token cached
				if profile := os.Getenv("BENCH_GRPC_CPU_PROFILE"); profile != "" && r == 0 && c == "repeated" && rn.name == runs[1].name {
					go saveProfile(t, &server{url: "http://" + grpcTK.http + "/validate/bench/v"}, profile, round-time.Second)
				}
				results[c][rn.name] = append(results[c][rn.name], measured(t, rn.pid, func() result { return rn.do(set, pos, round) }))
			}
		}
		t.Logf("round %d of %d done", r+1, rounds)
	}

	med := func(c, name string) (float64, time.Duration, time.Duration) {
		var rps, p99, cpu []float64
		for _, x := range results[c][name] {
			rps, p99, cpu = append(rps, x.rps), append(p99, float64(x.p99)), append(cpu, float64(x.cpu))
		}
		return median(rps), time.Duration(median(p99)), time.Duration(median(cpu))
	}
	// ratio is the median of per-round ratios of a's req/s to b's; cpuRatio of b's server CPU
	// per check to a's (a's checks per server CPU-second over b's).
	ratio := func(c, a, b string, of func(x, y result) float64) float64 {
		var rs []float64
		for i := range results[c][a] {
			rs = append(rs, of(results[c][a][i], results[c][b][i]))
		}
		return median(rs)
	}
	rps := func(x, y result) float64 { return x.rps / y.rps }
	cpu := func(x, y result) float64 { return float64(y.cpu) / float64(x.cpu) }
	fmt.Printf("\n%d rounds of %s per server, generator and case, %d concurrent calls (gRPC over %d connections, HTTP over %d), "+
		"%d distinct tokens, GOMAXPROCS %d; server CPU: the server process's CPU time per answered call\n\n",
		rounds, round, clients, conns, clients, len(distinct.tokens), runtime.GOMAXPROCS(0))
	fmt.Println("| server (load generator) | repeated token: req/s | p99 | server CPU | distinct tokens: req/s | p99 | server CPU |")
	fmt.Println("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, rn := range runs {
		rr, rp, rc := med("repeated", rn.name)
		dr, dp, dc := med("distinct", rn.name)
		fmt.Printf("| %s | %.0f | %s | %s | %.0f | %s | %s |\n", rn.name, rr, rp.Round(10*time.Microsecond), rc.Round(100*time.Nanosecond),
			dr, dp.Round(10*time.Microsecond), dc.Round(100*time.Nanosecond))
	}
	fmt.Println("\n| ratio (median of per-round ratios) | repeated | distinct | target |")
	fmt.Println("| --- | ---: | ---: | ---: |")
	for _, row := range []struct {
		label, a, b, target string
		of                  func(x, y result) float64
	}{
		{"req/s: tokenkeeper gRPC / tokenkeeper HTTP (like Go generators)", runs[1].name, runs[0].name, "≥ 0.9", rps},
		{"checks per server CPU-second: tokenkeeper gRPC / tokenkeeper HTTP", runs[1].name, runs[0].name, "≥ 0.9", cpu},
		{"req/s: tokenkeeper gRPC (ghz) / tokenkeeper HTTP (Go net/http)", runs[2].name, runs[0].name, "", rps},
		{"req/s: tokenkeeper gRPC / OPA ext_authz (ghz)", runs[2].name, runs[6].name, "≥ 2", rps},
		{"req/s: tokenkeeper gRPC / OPA ext_authz (grpc-go client)", runs[1].name, runs[5].name, "≥ 2", rps},
		{"req/s: tokenkeeper gRPC / Authorino ext_authz (ghz)", runs[2].name, runs[8].name, "≥ 2", rps},
		{"req/s: tokenkeeper gRPC / Authorino ext_authz (grpc-go client)", runs[1].name, runs[7].name, "≥ 2", rps},
		{"checks per server CPU-second: tokenkeeper gRPC / Authorino", runs[1].name, runs[7].name, "", cpu},
		{"checks per server CPU-second: tokenkeeper gRPC / OPA", runs[1].name, runs[5].name, "", cpu},
		{"req/s: the TLS ext_authz port / the validation port's gRPC", runs[3].name, runs[4].name, "", rps},
		{"req/s: the validation port's gRPC (net/http) / tokenkeeper HTTP", runs[4].name, runs[0].name, "", rps},
	} {
		fmt.Printf("| %s | %.2f | %.2f | %s |\n", row.label, ratio("repeated", row.a, row.b, row.of), ratio("distinct", row.a, row.b, row.of), row.target)
	}
}
