package sds

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/tokenkeeper/tokenkeeper/internal/servingcert/servingcerttest"
	"github.com/tokenkeeper/tokenkeeper/internal/testenv"
)

// The manager's listener serves SDS over TLS with the certificate of its certificate directory,
// and nothing in plaintext.
func TestListenerTLS(t *testing.T) {
	dir, pool := servingcerttest.Write(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	c := newCache(t, ctx)
	srv := NewServer(c, &Authenticator{Reviewer: env.Client, Audience: testAudience}, Options{}, (&logBuffer{}).logger())
	go func() { _ = (&Listener{Addr: addr, CertDir: dir, Server: srv, Cache: c}).Start(ctx); close(done) }()
	testenv.WaitFor(t, 30*time.Second, "the SDS listener", func() (bool, string) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			return false, err.Error()
		}
		_ = conn.Close()
		return true, ""
	})

	f := newFixture(t, "over-tls", "envoy")
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	resp, err := secretv3.NewSecretDiscoveryServiceClient(conn).FetchSecrets(withToken(t.Context(), saToken(t, f.sa, testAudience)),
		&discoveryv3.DiscoveryRequest{ResourceNames: []string{f.resource("")}})
	if err != nil {
		t.Fatal(err)
	}
	if _, value := secretOf(t, resp); value != "Bearer over-tls" {
		t.Fatal("the token did not come over TLS")
	}

	plain, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = plain.Close() })
	_, err = secretv3.NewSecretDiscoveryServiceClient(plain).FetchSecrets(withToken(t.Context(), saToken(t, f.sa, testAudience)),
		&discoveryv3.DiscoveryRequest{ResourceNames: []string{f.resource("")}})
	if err == nil {
		t.Fatal("served a ServiceAccount token's request in plaintext")
	}
	t.Logf("plaintext: %v", status.Code(err))
}
