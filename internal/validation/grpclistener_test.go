package validation

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"k8s.io/apimachinery/pkg/types"

	"github.com/tokenkeeper/tokenkeeper/internal/issuer"
)

// The ext_authz ports on grpc-go's own transport, h2c and TLS, keep the validation port's bounds:
// a peer flooding one with silent connections (never an HTTP/2 preface, nor a TLS ClientHello)
// and with gRPC connections idle after one call holds at most its share, and a client on another
// address is served throughout. Connections are "busy" only while a call is in flight (the
// listener's interceptor tells the guard).
func TestGRPCConnectionFlood(t *testing.T) {
	const perPeer = 600
	raiseFileLimit(t, 4*perPeer+MaxConnections+1024)
	for _, withTLS := range []bool{false, true} {
		t.Run(map[bool]string{false: "H2C", true: "TLS"}[withTLS], func(t *testing.T) {
			a, err := NewExtAuthz(NewServer(), "")
			if err != nil {
				t.Fatal(err)
			}
			l := &GRPCListener{ExtAuthz: a, MaxConnectionsPerClient: 256, maxConnections: 512}
			creds := insecure.NewCredentials()
			if withTLS {
				var clientTLS *tls.Config
				l.CertDir, clientTLS = writeServingCert(t)
				clientTLS.NextProtos = nil // gRPC asks for h2
				creds = credentials.NewTLS(clientTLS)
			}
			addr := serveOnLoopback(t, l)
			silent := flood(t, addr, "127.0.0.1", perPeer, false, nil)
			idle := grpcClientsFrom(t, addr, "127.0.0.3", 300, creds)
			for _, c := range idle {
				_, _ = c.Check(t.Context(), checkRequest([]string{"Bearer x"}, nil, true)) // one call each, then idle
			}
			if n := stillOpen(silent); n > 256 {
				t.Errorf("the silent peer holds %d connections, more than its share of 256", n)
			}
			victim := grpcClientsFrom(t, addr, "127.0.0.2", 1, creds)[0]
			for i := range 5 {
				ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
				resp, err := victim.Check(ctx, checkRequest([]string{"Bearer x"}, nil, true))
				cancel()
				if err != nil {
					t.Fatalf("call %d from 127.0.0.2 during the flood: %v", i+1, err)
				}
				if resp.GetDeniedResponse() == nil {
					t.Fatalf("call %d: %v, want a denial (no validator)", i+1, resp)
				}
			}
			// Silent connections never complete the handshake (grpc-go reports no ConnEnd for
			// them): once they close, nothing of them is kept.
			for _, c := range silent {
				if c != nil {
					_ = c.Close()
				}
			}
			deadline := time.Now().Add(10 * time.Second)
			for l.conns.tracked() > 300+1 && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
			if n := l.conns.tracked(); n > 300+1 {
				t.Errorf("%d connections still tracked after the silent ones closed; at most the 301 gRPC clients may be", n)
			}
		})
	}
}

// A connection with a call in flight is never the one given up: a client at its connection limit
// whose first connection waits on a slow introspection keeps it, and its idle connections go
// first; the call completes. Over both transports (the interceptor finds the connection through
// the AuthInfo each one's credentials hand it).
func TestGRPCBusyConnectionKept(t *testing.T) {
	for _, withTLS := range []bool{false, true} {
		t.Run(map[bool]string{false: "H2C", true: "TLS"}[withTLS], func(t *testing.T) {
			release, entered := make(chan struct{}), make(chan struct{}, 1)
			inspect := func(ctx context.Context, _ string) (*issuer.Introspection, error) {
				select {
				case entered <- struct{}{}:
				default:
				}
				select {
				case <-release:
				case <-ctx.Done():
					return nil, ctx.Err()
				}
				return &issuer.Introspection{Active: true, ExpiresAt: time.Now().Add(time.Hour),
					Claims: map[string]any{"sub": "svc-1", "aud": "orders"}}, nil
			}
			s := NewServer()
			s.Set(types.NamespacedName{Namespace: "crm", Name: "api"}, New(Config{
				Issuers: []TrustedIssuer{{Name: "Issuer/crm", Inspect: inspect}}, Audiences: []string{"orders"}, DisableCache: true}))
			a, err := NewExtAuthz(s, "")
			if err != nil {
				t.Fatal(err)
			}
			l := &GRPCListener{ExtAuthz: a, MaxConnectionsPerClient: 2}
			creds := insecure.NewCredentials()
			if withTLS {
				var clientTLS *tls.Config
				l.CertDir, clientTLS = writeServingCert(t)
				clientTLS.NextProtos = nil
				creds = credentials.NewTLS(clientTLS)
			}
			addr := serveOnLoopback(t, l)
			busy := grpcClientsFrom(t, addr, "127.0.0.7", 1, creds)[0]
			result := make(chan error, 1)
			go func() {
				ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
				defer cancel()
				resp, err := busy.Check(ctx, checkRequest([]string{"Bearer opaque-token"}, map[string]string{ValidatorContextKey: "crm/api"}, false))
				if err == nil && resp.GetOkResponse() == nil {
					err = fmt.Errorf("denied: %v", resp.GetStatus())
				}
				result <- err
			}()
			select {
			case <-entered:
			case <-time.After(10 * time.Second):
				t.Fatal("the call never reached the introspection")
			}
			// The same client opens four more connections, twice its limit, and says nothing.
			idle := flood(t, addr, "127.0.0.7", 4, false, nil)
			deadline := time.Now().Add(5 * time.Second)
			for l.conns.tracked() > 2 && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if n := stillOpen(idle); n > 1 {
				t.Errorf("%d idle connections kept beside the busy one, want at most 1 (limit 2)", n)
			}
			close(release)
			if err := <-result; err != nil {
				t.Fatalf("the call in flight: %v (its connection was given up)", err)
			}
		})
	}
}

// grpcClientsFrom opens n gRPC connections to addr from the loopback address src, with creds.
func grpcClientsFrom(t *testing.T, addr, src string, n int, creds credentials.TransportCredentials) []authv3.AuthorizationClient {
	t.Helper()
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	out := make([]authv3.AuthorizationClient, n)
	for i := range out {
		conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(creds),
			grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) { return dialer.DialContext(ctx, "tcp", a) }))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		out[i] = authv3.NewAuthorizationClient(conn)
	}
	return out
}
