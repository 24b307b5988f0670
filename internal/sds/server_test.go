package sds

import (
	"context"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tokenkeeper/tokenkeeper/internal/issuer"
	"github.com/tokenkeeper/tokenkeeper/internal/testenv"
)

// A stream receives the current token (version: its fingerprint, as on the Credential's status),
// and the next one as soon as the target Secret rotates; #token serves the bare token.
func TestStreamPushesRotations(t *testing.T) {
	srv := startServer(t, "", Options{})
	f := newFixture(t, "token-one", "envoy")
	ctx := withToken(t.Context(), saToken(t, f.sa, testAudience))
	client := dial(t, srv.addr)

	for _, tc := range []struct {
		suffix     string
		want, next string
	}{
		{"", "Bearer token-one", "Bearer token-two"},
		{TokenSuffix, "token-two", "token-three"},
	} {
		s, err := client.StreamSecrets(ctx)
		if err != nil {
			t.Fatal(err)
		}
		names := []string{f.resource(tc.suffix)}
		if err := s.Send(&discoveryv3.DiscoveryRequest{TypeUrl: SecretTypeURL, ResourceNames: names}); err != nil {
			t.Fatal(err)
		}
		resp := recv(t, s)
		name, value := secretOf(t, resp)
		tok, _ := strings.CutPrefix(tc.want, "Bearer ")
		if name != names[0] || value != tc.want || resp.GetVersionInfo() != issuer.Fingerprint(tok) {
			t.Fatalf("got %s version %s, want %s version %s (the token's fingerprint)", name, resp.GetVersionInfo(), names[0], issuer.Fingerprint(tok))
		}
		ack(t, s, names, resp)

		next, _ := strings.CutPrefix(tc.next, "Bearer ")
		start := time.Now()
		f.rotate(t, next)
		resp = recv(t, s)
		if _, value := secretOf(t, resp); value != tc.next || resp.GetVersionInfo() != issuer.Fingerprint(next) {
			t.Fatalf("after the rotation: version %s, want %s", resp.GetVersionInfo(), issuer.Fingerprint(next))
		}
		t.Logf("rotation pushed %s after %v", resp.GetVersionInfo(), time.Since(start).Round(time.Millisecond))
		ack(t, s, names, resp)
		_ = s.CloseSend()
	}
	if logs := srv.logs.String(); strings.Contains(logs, "token-") {
		t.Fatalf("a token reached the log:\n%s", logs)
	}
}

// FetchSecrets answers once with the current token.
func TestFetch(t *testing.T) {
	srv := startServer(t, "", Options{})
	f := newFixture(t, "fetched", "envoy")
	resp, err := dial(t, srv.addr).FetchSecrets(withToken(t.Context(), saToken(t, f.sa, testAudience)),
		&discoveryv3.DiscoveryRequest{ResourceNames: []string{f.resource(TokenSuffix)}})
	if err != nil {
		t.Fatal(err)
	}
	if _, value := secretOf(t, resp); value != "fetched" || resp.GetVersionInfo() != issuer.Fingerprint("fetched") {
		t.Fatalf("got version %s", resp.GetVersionInfo())
	}
	// The incremental protocol is not served: Envoy's SDS speaks state of the world.
	d, err := dial(t, srv.addr).DeltaSecrets(withToken(t.Context(), saToken(t, f.sa, testAudience)))
	if err == nil {
		_, err = d.Recv()
	}
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("DeltaSecrets: got %v, want Unimplemented", err)
	}
}

// Who may fetch what: only a ServiceAccount the Credential lists, of its namespace, with a token
// for the SDS audience; everything else is refused with one answer whether or not the Credential
// exists.
func TestAuthorization(t *testing.T) {
	srv := startServer(t, "", Options{})
	client := dial(t, srv.addr)
	granted := newFixture(t, "secret-value", "envoy")
	other := newFixture(t, "other-value", "someone-else") // lists another ServiceAccount
	none := newFixture(t, "unlisted-value")               // no spec.delivery
	sameName := newFixture(t, "same-name-value", "envoy") // lists "envoy", of its own namespace
	good := saToken(t, granted.sa, testAudience)
	otherAudience := saToken(t, granted.sa, "https://kubernetes.default.svc")
	missing := ResourcePrefix + granted.ns + "/does-not-exist"

	const denied = "is not a Credential this ServiceAccount may fetch (spec.delivery.sds.serviceAccounts)"
	deniedBefore := testutil.ToFloat64(refusals.WithLabelValues(codes.PermissionDenied.String()))
	for name, tc := range map[string]struct {
		reason   string
		token    string
		resource string
		code     codes.Code
	}{
		"granted":           {"the Credential lists the ServiceAccount", good, granted.resource(""), codes.OK},
		"not listed":        {"the Credential lists another ServiceAccount", good, ResourcePrefix + other.ns + "/api", codes.PermissionDenied},
		"no delivery":       {"the Credential serves no SDS", good, ResourcePrefix + none.ns + "/api", codes.PermissionDenied},
		"other namespace":   {"a ServiceAccount of the same name in another namespace is another ServiceAccount", good, sameName.resource(""), codes.PermissionDenied},
		"missing":           {"a Credential that does not exist is refused as one that is not granted", good, missing, codes.PermissionDenied},
		"other audience":    {"a token for the API server is not a token for SDS", otherAudience, granted.resource(""), codes.Unauthenticated},
		"garbage":           {"a token the API server does not know", "not-a-token", granted.resource(""), codes.Unauthenticated},
		"no token":          {"no authorization metadata", "", granted.resource(""), codes.Unauthenticated},
		"huge token":        {"a token over 16 KiB is refused before any review", strings.Repeat("x", 20<<10), granted.resource(""), codes.Unauthenticated},
		"malformed name":    {"resource names are tokenkeeper:<namespace>/<name>", good, "tokenkeeper:" + granted.ns, codes.InvalidArgument},
		"other name prefix": {"names of other SDS servers are not ours", good, "default", codes.InvalidArgument},
	} {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			if tc.token != "" {
				ctx = withToken(ctx, tc.token)
			}
			req := &discoveryv3.DiscoveryRequest{TypeUrl: SecretTypeURL, ResourceNames: []string{tc.resource}}
			_, ferr := client.FetchSecrets(ctx, req)
			s, err := client.StreamSecrets(ctx)
			if err != nil {
				t.Fatal(err)
			}
			// io.EOF: the server ended the stream before the request arrived (a refusal of its
			// token when the stream opens); Recv has the status.
			if err := s.Send(req); err != nil && !errors.Is(err, io.EOF) {
				t.Fatal(err)
			}
			_, serr := s.Recv()
			for _, err := range []error{ferr, serr} {
				st := status.Convert(err)
				if st.Code() != tc.code {
					t.Fatalf("%s: got %v, want %v", tc.reason, err, tc.code)
				}
				if tc.code == codes.PermissionDenied && st.Message() != tc.resource+" "+denied {
					t.Fatalf("%s: the refusal %q differs from the one for every refused resource", tc.reason, st.Message())
				}
				if strings.Contains(st.Message(), "value") || tc.token != "" && len(tc.token) > 8 && strings.Contains(st.Message(), tc.token) {
					t.Fatalf("%s: the error %q shows a secret", tc.reason, st.Message())
				}
			}
		})
	}
	// Four refused resources, each fetched and streamed.
	if d := testutil.ToFloat64(refusals.WithLabelValues(codes.PermissionDenied.String())) - deniedBefore; d != 8 {
		t.Errorf("tokenkeeper_sds_refusals_total{code=PermissionDenied} +%v, want +8", d)
	}
	if logs := srv.logs.String(); strings.Contains(logs, "-value") || strings.Contains(logs, good) || strings.Contains(logs, otherAudience) {
		t.Fatalf("a token reached the log:\n%s", logs)
	}
}

// A Credential that stops listing the ServiceAccount ends its streams: PermissionDenied.
func TestRevokedGrantEndsStream(t *testing.T) {
	srv := startServer(t, "", Options{})
	f := newFixture(t, "revoked-soon", "envoy")
	s, err := dial(t, srv.addr).StreamSecrets(withToken(t.Context(), saToken(t, f.sa, testAudience)))
	if err != nil {
		t.Fatal(err)
	}
	names := []string{f.resource("")}
	if err := s.Send(&discoveryv3.DiscoveryRequest{TypeUrl: SecretTypeURL, ResourceNames: names}); err != nil {
		t.Fatal(err)
	}
	ack(t, s, names, recv(t, s))
	f.cred.Spec.Delivery.SDS.ServiceAccounts = []string{"another"}
	if err := env.Client.Update(t.Context(), f.cred); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("got %v, want PermissionDenied", err)
	}
}

// A NACK is logged without the secret (even where Envoy's message quotes it), and the current
// version is sent again after the backoff, with a new nonce; an ACK ends the retries.
func TestNACKRetried(t *testing.T) {
	srv := startServer(t, "", Options{NACKBackoff: 50 * time.Millisecond})
	f := newFixture(t, "nacked-token", "envoy")
	nacked, retried := testutil.ToFloat64(nacks), testutil.ToFloat64(responses.WithLabelValues(reasonRetry))
	s, err := dial(t, srv.addr).StreamSecrets(withToken(t.Context(), saToken(t, f.sa, testAudience)))
	if err != nil {
		t.Fatal(err)
	}
	names := []string{f.resource("")}
	if err := s.Send(&discoveryv3.DiscoveryRequest{TypeUrl: SecretTypeURL, ResourceNames: names}); err != nil {
		t.Fatal(err)
	}
	first := recv(t, s)
	for range 2 {
		if err := s.Send(&discoveryv3.DiscoveryRequest{TypeUrl: SecretTypeURL, ResourceNames: names, ResponseNonce: first.GetNonce(),
			ErrorDetail: &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: "cannot use Bearer nacked-token here"}}); err != nil {
			t.Fatal(err)
		}
		again := recv(t, s)
		if again.GetVersionInfo() != first.GetVersionInfo() || again.GetNonce() == first.GetNonce() {
			t.Fatalf("the retry has version %s nonce %s after version %s nonce %s", again.GetVersionInfo(), again.GetNonce(), first.GetVersionInfo(), first.GetNonce())
		}
		first = again
	}
	if n, r := testutil.ToFloat64(nacks)-nacked, testutil.ToFloat64(responses.WithLabelValues(reasonRetry))-retried; n != 2 || r != 2 {
		t.Fatalf("tokenkeeper_sds_nacks_total +%v, responses_total{reason=retry} +%v; want +2 each", n, r)
	}
	logs := srv.logs.String()
	if !strings.Contains(logs, "Envoy refused a secret") || !strings.Contains(logs, first.GetVersionInfo()) {
		t.Fatalf("the NACK was not logged with its version:\n%s", logs)
	}
	if strings.Contains(logs, "nacked-token") {
		t.Fatalf("the token reached the log:\n%s", logs)
	}
}

// A restarted server (a new instance on the same port and the same cluster state) answers the
// streams Envoy opens again with the current version, never the one Envoy had, whatever
// version_info Envoy sends.
func TestRestartResumesWithCurrentVersion(t *testing.T) {
	srv := startServer(t, "", Options{})
	f := newFixture(t, "before-restart", "envoy")
	ctx := withToken(t.Context(), saToken(t, f.sa, testAudience))
	client := dial(t, srv.addr)
	names := []string{f.resource("")}
	s, err := client.StreamSecrets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&discoveryv3.DiscoveryRequest{TypeUrl: SecretTypeURL, ResourceNames: names}); err != nil {
		t.Fatal(err)
	}
	old := recv(t, s)
	ack(t, s, names, old)

	srv.stop()
	<-srv.done
	if _, err := s.Recv(); err == nil {
		t.Fatal("the stream outlived its server")
	}
	f.rotate(t, "after-restart") // while no server runs
	startServer(t, srv.addr, Options{})
	var s2 secretv3.SecretDiscoveryService_StreamSecretsClient
	for deadline := time.Now().Add(30 * time.Second); ; {
		if s2, err = client.StreamSecrets(ctx); err == nil {
			if err = s2.Send(&discoveryv3.DiscoveryRequest{TypeUrl: SecretTypeURL, ResourceNames: names,
				VersionInfo: old.GetVersionInfo(), ResponseNonce: old.GetNonce()}); err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	resp := recv(t, s2)
	if _, value := secretOf(t, resp); value != "Bearer after-restart" || resp.GetVersionInfo() != issuer.Fingerprint("after-restart") {
		t.Fatalf("after the restart: version %s, want %s (not the stale %s)", resp.GetVersionInfo(), issuer.Fingerprint("after-restart"), old.GetVersionInfo())
	}
}

// What one client may hold or send is bounded: streams per ServiceAccount and in all, resource
// names per request, message size, requests per second on a stream.
func TestBounds(t *testing.T) {
	srv := startServer(t, "", Options{MaxStreams: 3, MaxStreamsPerServiceAccount: 2, MaxResourcesPerRequest: 2, RequestsPerSecond: 1, RequestBurst: 5})
	a := newFixture(t, "bounded-a", "envoy")
	b := newFixture(t, "bounded-b", "envoy")
	client := dial(t, srv.addr)
	ctxA := withToken(t.Context(), saToken(t, a.sa, testAudience))
	ctxB := withToken(t.Context(), saToken(t, b.sa, testAudience))
	open := func(ctx context.Context, f *fixture) (secretv3.SecretDiscoveryService_StreamSecretsClient, error) {
		s, err := client.StreamSecrets(ctx)
		if err != nil {
			return nil, err
		}
		// io.EOF: the server refused the stream before the request arrived; Recv has the status.
		if err := s.Send(&discoveryv3.DiscoveryRequest{TypeUrl: SecretTypeURL, ResourceNames: []string{f.resource("")}}); err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		_, err = s.Recv()
		return s, err
	}
	for range 2 {
		if _, err := open(ctxA, a); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := open(ctxA, a); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a third stream of one ServiceAccount: got %v, want ResourceExhausted", err)
	}
	sb, err := open(ctxB, b)
	if err != nil {
		t.Fatalf("another ServiceAccount is not held back by the first: %v", err)
	}
	if _, err := open(ctxB, b); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a fourth stream in all: got %v, want ResourceExhausted", err)
	}
	_ = sb.CloseSend()
	testenv.WaitFor(t, 10*time.Second, "the closed stream's slot", func() (bool, string) {
		return srv.Streams() == 2, "streams open"
	})

	// Each of the rest runs on a fresh stream of b.
	for name, tc := range map[string]struct {
		reason string
		req    func() []*discoveryv3.DiscoveryRequest
		code   codes.Code
	}{
		"too many names": {"at most MaxResourcesPerRequest names in a request", func() []*discoveryv3.DiscoveryRequest {
			return []*discoveryv3.DiscoveryRequest{{TypeUrl: SecretTypeURL, ResourceNames: []string{b.resource(""), b.resource("#token"), b.resource("x")}}}
		}, codes.InvalidArgument},
		"too large": {"a request larger than maxRequestSize is refused by gRPC before it is read", func() []*discoveryv3.DiscoveryRequest {
			return []*discoveryv3.DiscoveryRequest{{TypeUrl: SecretTypeURL, ResourceNames: []string{b.resource("")}, VersionInfo: strings.Repeat("x", maxRequestSize)}}
		}, codes.ResourceExhausted},
		"too fast": {"more requests than the stream's rate allows end it", func() []*discoveryv3.DiscoveryRequest {
			var reqs []*discoveryv3.DiscoveryRequest
			for range 20 {
				reqs = append(reqs, &discoveryv3.DiscoveryRequest{TypeUrl: SecretTypeURL, ResourceNames: []string{b.resource("")}, ResponseNonce: "stale"})
			}
			return reqs
		}, codes.ResourceExhausted},
		"wrong type": {"only secrets are served", func() []*discoveryv3.DiscoveryRequest {
			return []*discoveryv3.DiscoveryRequest{{TypeUrl: "type.googleapis.com/envoy.config.cluster.v3.Cluster", ResourceNames: []string{b.resource("")}}}
		}, codes.InvalidArgument},
	} {
		t.Run(name, func(t *testing.T) {
			s, err := client.StreamSecrets(ctxB)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range tc.req() {
				if err := s.Send(r); err != nil {
					break // the server ended the stream
				}
			}
			var rerr error
			for rerr == nil {
				_, rerr = s.Recv()
			}
			if status.Code(rerr) != tc.code {
				t.Fatalf("%s: got %v, want %v", tc.reason, rerr, tc.code)
			}
		})
	}
}

// 1,000 streams hold at once, each gets its token, and a rotation reaches every one of them. The
// memory they take (server and client sides together, in this process) is logged per stream.
func TestThousandStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 streams")
	}
	const n = 1000
	srv := startServer(t, "", Options{MaxStreams: n, MaxStreamsPerServiceAccount: n})
	f := newFixture(t, "many-one", "envoy")
	ctx := withToken(t.Context(), saToken(t, f.sa, testAudience))
	client := dial(t, srv.addr)
	names := []string{f.resource("")}
	before := heap()
	streams := make([]secretv3.SecretDiscoveryService_StreamSecretsClient, n)
	for i := range streams {
		s, err := client.StreamSecrets(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Send(&discoveryv3.DiscoveryRequest{TypeUrl: SecretTypeURL, ResourceNames: names}); err != nil {
			t.Fatal(err)
		}
		streams[i] = s
	}
	for _, s := range streams {
		ack(t, s, names, recv(t, s))
	}
	after := heap()
	t.Logf("%d streams open: %d bytes of heap and stacks per stream, server and client together (%d in all)",
		srv.Streams(), (after-before)/n, after-before)
	if got := srv.Streams(); got != n {
		t.Fatalf("%d streams open, want %d", got, n)
	}
	f.rotate(t, "many-two")
	for _, s := range streams {
		if resp := recv(t, s); resp.GetVersionInfo() != issuer.Fingerprint("many-two") {
			t.Fatalf("a stream got version %s after the rotation", resp.GetVersionInfo())
		}
	}
}

// heap is the memory in use by the heap and goroutine stacks, after a collection.
func heap() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse + m.StackInuse)
}
