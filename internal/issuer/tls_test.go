package issuer_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer"
	"github.com/tokenkeeper/tokenkeeper/internal/version"
)

// An expired certificate, even from a trusted CA, is a configuration problem with its reason
// spelled out, and every request names tokenkeeper in its User-Agent.
func TestExpiredCertificateAndUserAgent(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "issuer"},
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	agents := make(chan string, 4)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		agents <- r.UserAgent()
		_, _ = w.Write([]byte(`{"token":"abc","expires_in":60}`))
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	srv.StartTLS()
	defer srv.Close()
	caPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	spec := v1alpha1.IssuerSpec{URL: v1alpha1.EndpointURL(srv.URL + "/login"), JSON: &v1alpha1.JSONLogin{}, CABundle: caPEM}
	c, err := issuer.New(issuer.Config{Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Login(t.Context(), issuer.Request{Kind: issuer.LoginPassword, Inputs: map[string]string{"username": "u", "password": "p"}})
	if issuer.ClassOf(err) != issuer.ClassConfig || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired certificate: %v (class %s), want a configuration error saying it expired", err, issuer.ClassOf(err))
	}

	// The same server with a valid certificate: the login and a request through HTTPClient (as
	// key-set fetches make) both carry the User-Agent.
	valid := httptest.NewTLSServer(srv.Config.Handler)
	defer valid.Close()
	spec.URL, spec.CABundle = v1alpha1.EndpointURL(valid.URL+"/login"), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: valid.Certificate().Raw}))
	if c, err = issuer.New(issuer.Config{Spec: spec}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Login(t.Context(), issuer.Request{Kind: issuer.LoginPassword, Inputs: map[string]string{"username": "u", "password": "p"}}); err != nil {
		t.Fatal(err)
	}
	resp, err := c.HTTPClient().Get(valid.URL + "/jwks")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	for range 2 {
		if ua := <-agents; ua != version.UserAgent() || !strings.HasPrefix(ua, "tokenkeeper/") {
			t.Errorf("User-Agent %q, want %q", ua, version.UserAgent())
		}
	}
}

// Close releases the client's idle connections: a client is built per reconcile, and one that
// kept its keep-alive connections would leak a connection per reconcile.
func TestCloseReleasesConnections(t *testing.T) {
	var open atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"token":"abc","expires_in":60}`))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			open.Add(1)
		case http.StateClosed, http.StateHijacked:
			open.Add(-1)
		}
	}
	srv.StartTLS()
	defer srv.Close()
	spec := v1alpha1.IssuerSpec{URL: v1alpha1.EndpointURL(srv.URL + "/login"), JSON: &v1alpha1.JSONLogin{},
		CABundle: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))}
	for range 5 {
		c, err := issuer.New(issuer.Config{Spec: spec})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Login(t.Context(), issuer.Request{Kind: issuer.LoginPassword, Inputs: map[string]string{"username": "u", "password": "p"}}); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for open.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := open.Load(); n != 0 {
		t.Fatalf("%d connections still open after every client was closed", n)
	}
}
