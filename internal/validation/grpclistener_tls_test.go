package validation

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
)

// serveGRPCTLS serves l over TLS, with a fresh self-signed certificate for 127.0.0.1 in its
// CertDir, on a loopback port until the test ends; clientTLS trusts that certificate.
func serveGRPCTLS(t *testing.T, l *GRPCListener) (addr string, clientTLS *tls.Config) {
	t.Helper()
	l.CertDir, clientTLS = writeServingCert(t)
	clientTLS.NextProtos = nil // gRPC asks for h2
	return serveOnLoopback(t, l), clientTLS
}

// authzClient is a grpc-go Authorization client of addr with creds, closed when the test ends.
func authzClient(t *testing.T, addr string, creds credentials.TransportCredentials) authv3.AuthorizationClient {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return authv3.NewAuthorizationClient(conn)
}

// With a CertDir, GRPCListener serves ext_authz over TLS (the certificate of the directory, TLS
// 1.2 or later, ALPN h2): a grpc-go client that trusts the certificate is allowed or denied as
// over the other ports, and nothing is served in plaintext.
func TestGRPCListenerTLS(t *testing.T) {
	k := newKeyServer(t)
	clk := clocktesting.NewFakeClock(time.Now())
	s := NewServer()
	s.Set(types.NamespacedName{Namespace: "shop", Name: "orders-api"}, newTestValidator(t, k, clk, nil))
	a, err := NewExtAuthz(s, "shop/orders-api")
	if err != nil {
		t.Fatal(err)
	}
	addr, clientTLS := serveGRPCTLS(t, &GRPCListener{ExtAuthz: a})

	c := authzClient(t, addr, credentials.NewTLS(clientTLS))
	ok := check(t, c, checkRequest([]string{"Bearer " + k.sign(t, "RS256", "rsa1", claims(clk.Now(), nil), nil)}, nil, false))
	if ok.status != 200 || ok.headers["X-Auth-Subject"] != "user-1" {
		t.Fatalf("valid token over TLS: %d %v, want 200 with X-Auth-Subject user-1", ok.status, ok.headers)
	}
	if none := check(t, c, checkRequest(nil, nil, false)); none.status != 401 || none.challenge != `Bearer realm="tokenkeeper"` {
		t.Fatalf("no credentials over TLS: %+v, want 401", none)
	}
	if bad := check(t, c, checkRequest([]string{"Bearer not-a-token"}, nil, true)); bad.status != 401 {
		t.Fatalf("a malformed token over TLS: %+v, want 401", bad)
	}

	plain := authzClient(t, addr, insecure.NewCredentials())
	if resp, err := plain.Check(t.Context(), checkRequest(nil, nil, false)); status.Code(err) != codes.Unavailable {
		t.Fatalf("a plaintext (h2c) client: %v, %v; want the connection refused (Unavailable)", resp, err)
	}

	h2 := clientTLS.Clone()
	h2.NextProtos = []string{"h2"}
	conn, err := tls.Dial("tcp", addr, h2)
	if err != nil {
		t.Fatalf("TLS with ALPN h2: %v", err)
	}
	if cs := conn.ConnectionState(); cs.NegotiatedProtocol != "h2" || cs.Version < tls.VersionTLS12 {
		t.Errorf("negotiated %q over TLS version %#x, want h2 over TLS 1.2 or later", cs.NegotiatedProtocol, cs.Version)
	}
	_ = conn.Close()
	refused := map[string]func(*tls.Config){
		"TLS 1.1":          func(c *tls.Config) { c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS11 },
		"an untrusted key": func(c *tls.Config) { c.RootCAs = nil },
	}
	for name, edit := range refused {
		cfg := clientTLS.Clone()
		edit(cfg)
		if conn, err := tls.Dial("tcp", addr, cfg); err == nil {
			_ = conn.Close()
			t.Errorf("a TLS handshake with %s succeeded", name)
		}
	}
	// Go's TLS server completes a handshake without ALPN, or with http/1.1 alone; grpc-go then
	// closes the connection: HTTP/2 only.
	for name, protos := range map[string][]string{"ALPN http/1.1": {"http/1.1"}, "no ALPN": nil} {
		cfg := clientTLS.Clone()
		cfg.NextProtos = protos
		conn, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			continue
		}
		if closed, after := closedByServer(conn, 3*time.Second); !closed {
			t.Errorf("a TLS connection with %s (negotiated %q) is still open after %v", name, conn.ConnectionState().NegotiatedProtocol, after)
		}
		_ = conn.Close()
	}
}

// closedByServer reads from c until the server closes it (true) or wait has passed (false).
func closedByServer(c net.Conn, wait time.Duration) (bool, time.Duration) {
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(wait))
	var err error
	for err == nil { // TLS 1.3 sends its session tickets after the handshake
		_, err = c.Read(make([]byte, 512))
	}
	var ne net.Error
	return !errors.As(err, &ne) || !ne.Timeout(), time.Since(start)
}

// The TLS port serves the certificate its CertDir holds now: one rotated in the directory (as
// the self-managed certificate or cert-manager rotates it) is served to the next connection.
func TestGRPCListenerTLSCertRotation(t *testing.T) {
	a, err := NewExtAuthz(NewServer(), "")
	if err != nil {
		t.Fatal(err)
	}
	l := &GRPCListener{ExtAuthz: a}
	addr, oldTLS := serveGRPCTLS(t, l)
	if resp, err := authzClient(t, addr, credentials.NewTLS(oldTLS)).Check(t.Context(), checkRequest(nil, nil, false)); err != nil || resp.GetDeniedResponse() == nil {
		t.Fatalf("before the rotation: %v, %v; want a denial (no validator)", resp, err)
	}
	newDir, newTLS := writeServingCert(t)
	newTLS.NextProtos = []string{"h2"}
	if conn, err := tls.Dial("tcp", addr, newTLS); err == nil {
		_ = conn.Close()
		t.Fatal("the new certificate is served before it is in the directory")
	}
	for _, name := range []string{"tls.key", "tls.crt"} {
		pem, err := os.ReadFile(filepath.Join(newDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(l.CertDir, name), pem, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(25 * time.Second) // certwatcher: file events, and a poll every 10 s
	for {
		conn, err := tls.Dial("tcp", addr, newTLS)
		if err == nil {
			_ = conn.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the rotated certificate was not served within 25 s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	newTLS.NextProtos = nil
	if resp, err := authzClient(t, addr, credentials.NewTLS(newTLS)).Check(t.Context(), checkRequest(nil, nil, false)); err != nil || resp.GetDeniedResponse() == nil {
		t.Fatalf("a new gRPC client trusting the rotated certificate: %v, %v; want a denial (no validator)", resp, err)
	}
}

// A connection to the TLS port that does not complete its handshakes — no ClientHello, a
// ClientHello cut short, or TLS done and never an HTTP/2 preface — is closed after the handshake
// timeout (5 s; shortened here), and forgotten.
func TestGRPCListenerTLSHandshakeTimeout(t *testing.T) {
	a, err := NewExtAuthz(NewServer(), "")
	if err != nil {
		t.Fatal(err)
	}
	const timeout = 300 * time.Millisecond
	l := &GRPCListener{ExtAuthz: a, handshakeTimeout: timeout}
	addr, clientTLS := serveGRPCTLS(t, l)
	stalls := map[string]func(t *testing.T, c net.Conn) net.Conn{
		"Silent": func(*testing.T, net.Conn) net.Conn { return nil },
		"PartialClientHello": func(t *testing.T, c net.Conn) net.Conn {
			// A handshake record header announcing 512 bytes, and three of them.
			if _, err := c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01}); err != nil {
				t.Fatal(err)
			}
			return nil
		},
		"NoHTTP2Preface": func(t *testing.T, c net.Conn) net.Conn {
			cfg := clientTLS.Clone()
			cfg.NextProtos, cfg.ServerName = []string{"h2"}, "127.0.0.1"
			tc := tls.Client(c, cfg)
			if err := tc.HandshakeContext(t.Context()); err != nil {
				t.Fatal(err)
			}
			return tc
		},
	}
	for name, stall := range stalls {
		t.Run(name, func(t *testing.T) {
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Close() })
			read := c
			if tc := stall(t, c); tc != nil {
				read = tc
			}
			if closed, after := closedByServer(read, 3*time.Second); !closed {
				t.Fatalf("the connection is still open after %v (handshake timeout %v)", after, timeout)
			}
		})
	}
	deadline := time.Now().Add(5 * time.Second)
	for l.conns.tracked() > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := l.conns.tracked(); n != 0 {
		t.Errorf("%d connections still tracked after the server closed them", n)
	}

	// The default: 5 s, as on the h2c and validation ports.
	if grpcHandshakeTimeout != 5*time.Second {
		t.Errorf("the default handshake timeout is %v, want 5s", grpcHandshakeTimeout)
	}
}
