//go:build bench

package peers_test

import (
	"context"
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

	// Authorino binds its five ports on every interface: a port freeAddr just saw free can be
	// taken again before Authorino binds it, so a start that exits early is tried again.
	valid := p.tokens(t, 1)[0]
	for attempt := 1; ; attempt++ {
		g, exited := startAuthorino(t, bin, filepath.Join(dir, "kubeconfig"))
		conn := g.dial(t, 1)[0]
		deadline := time.Now().Add(60 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			resp, err := conn.Check(ctx, checkRequest(valid))
			cancel()
			if err == nil && allowed(resp) {
				return g // the AuthConfig is loaded and the JWKS fetched
			}
			select {
			case err := <-exited:
				if attempt < 3 {
					t.Logf("%s exited (%v), starting it again:\n%s", g.name, err, tail(g.output.String(), 1000))
					break
				}
				t.Fatalf("%s exited before it was ready (%v):\n%s", g.name, err, tail(g.output.String(), 4000))
			default:
				if time.Now().After(deadline) {
					t.Fatalf("%s did not allow a valid token after 60 s (%v %v):\n%s", g.name, err, resp.GetStatus(), tail(g.output.String(), 4000))
				}
				time.Sleep(200 * time.Millisecond)
				continue
			}
			break
		}
	}
}

// startAuthorino starts Authorino's authorization server on free ports, and tells when it exits.
func startAuthorino(t *testing.T, bin, kubeconfig string) (*grpcServer, <-chan error) {
	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	port2 := func() string { _, p, _ := net.SplitHostPort(freeAddr(t)); return p }
	cmd := exec.Command(bin, "server", "--ext-auth-grpc-port", port, "--ext-auth-http-port", port2(),
		"--oidc-http-port", port2(), "--metrics-addr", freeAddr(t), "--health-probe-addr", freeAddr(t),
		"--log-level", "error", "--watch-namespace", "default")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	s := &server{name: "Authorino ext_authz", cmd: cmd, output: &outputBuffer{}}
	cmd.Stdout, cmd.Stderr = s.output, s.output
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", s.name, err)
	}
	exited, done := make(chan error, 1), make(chan struct{})
	go func() { exited <- cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("%s output:\n%s", s.name, tail(s.output.String(), 4000))
		}
	})
	return &grpcServer{server: s, addr: "127.0.0.1:" + port}, exited
}
