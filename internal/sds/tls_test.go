package sds

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/tokenkeeper/tokenkeeper/internal/testenv"
)

// writeCert writes a self-signed certificate for 127.0.0.1 as tls.crt and tls.key into dir, as
// the manager's certificate directory holds them, and returns its pool.
func writeCert(t *testing.T, dir string) *x509.CertPool {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tokenkeeper"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for name, block := range map[string]*pem.Block{"tls.crt": {Type: "CERTIFICATE", Bytes: der}, "tls.key": {Type: "PRIVATE KEY", Bytes: kder}} {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool
}

// The manager's listener serves SDS over TLS with the certificate of its certificate directory,
// and nothing in plaintext.
func TestListenerTLS(t *testing.T) {
	dir := t.TempDir()
	pool := writeCert(t, dir)
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
