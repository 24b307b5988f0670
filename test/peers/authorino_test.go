//go:build bench

package peers_test

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"
)

// authConfig is the Authorino peer's configuration: the same RS256 JWT checks as tokenkeeper's
// TokenValidator. Authorino's jwt authentication verifies the signature by the JWKS, exp and nbf
// (go-oidc, issuer and client-ID checks off), so the issuer and the audience are checked by
// pattern-matching authorization on the verified claims. As Authorino's caching guide advises,
// JWT validation is not cached ("relatively cheap compared to accessing and managing the cache").
const authConfig = `apiVersion: authorino.kuadrant.io/v1beta3
kind: AuthConfig
metadata:
  name: bench
  namespace: default
spec:
  hosts: ["shop.example"]
  authentication:
    bench-jwt:
      jwt:
        jwksUrl: %s/jwks
  authorization:
    issuer-and-audience:
      patternMatching:
        patterns:
        - selector: auth.identity.iss
          operator: eq
          value: %s
        - selector: auth.identity.aud
          operator: eq
          value: %s
`

// authorinoExtAuthz runs Kuadrant Authorino's authorization server (its gRPC ext_authz port, h2c)
// with authConfig for the issuer p. Authorino reads AuthConfigs from a Kubernetes API server: an
// envtest one (KUBEBUILDER_ASSETS) with Authorino's own AuthConfig CRD (crd, shipped in its module).
func authorinoExtAuthz(t *testing.T, bin, crd string, p *idp) *grpcServer {
	env := &envtest.Environment{CRDInstallOptions: envtest.CRDInstallOptions{Paths: []string{crd}, ErrorIfPathMissing: true}}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting an API server for Authorino (KUBEBUILDER_ASSETS=%q): %v", os.Getenv("KUBEBUILDER_ASSETS"), err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	user, err := env.AddUser(envtest.User{Name: "authorino", Groups: []string{"system:masters"}}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write(t, filepath.Join(dir, "kubeconfig"), string(kubeconfig))

	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	obj := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(fmt.Appendf(nil, authConfig, p.URL, p.URL, audience), &obj.Object); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(t.Context(), obj); err != nil {
		t.Fatalf("creating Authorino's AuthConfig: %v", err)
	}

	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	port2 := func() string { _, p, _ := net.SplitHostPort(freeAddr(t)); return p }
	cmd := exec.Command(bin, "server", "--ext-auth-grpc-port", port, "--ext-auth-http-port", port2(),
		"--oidc-http-port", port2(), "--metrics-addr", freeAddr(t), "--health-probe-addr", freeAddr(t),
		"--log-level", "error", "--watch-namespace", "default")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+filepath.Join(dir, "kubeconfig"))
	s := &server{name: "Authorino ext_authz", cmd: cmd, output: &bytes.Buffer{}}
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
	// Ready when a valid token is allowed: the AuthConfig is loaded and the JWKS fetched.
	g := &grpcServer{s, "127.0.0.1:" + port, ""}
	valid := p.tokens(t, 1)[0]
	conn := g.dial(t, 1)[0]
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := conn.Check(t.Context(), checkRequest(valid))
		if err == nil && allowed(resp) {
			return g
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not allow a valid token after 60 s (%v %v):\n%s", s.name, err, resp.GetStatus(), tail(s.output.String(), 4000))
		}
		time.Sleep(200 * time.Millisecond)
	}
}
