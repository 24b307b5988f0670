// Package manager_test builds the real manager binary and runs it against a real API server:
// it must come up, take the leader Lease, create its webhook certificate, reconcile, serve the
// validation endpoint over TLS, and shut down cleanly on SIGTERM.
package manager_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/testenv"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s: %v", what, err)
}

// process is the manager binary running with every listener on a free loopback port.
type process struct {
	cmd                                      *exec.Cmd
	exited                                   chan error
	logs                                     *testenv.Buffer
	health, metrics, webhookPort, validation int
}

// start runs bin against kubeconfig with env (KEY=VALUE) and extra flags, and waits for /readyz;
// the process is killed when the test ends, its output logged if the test failed.
func start(t *testing.T, bin, kubeconfig, certDir string, env []string, extra ...string) *process {
	t.Helper()
	p := &process{exited: make(chan error, 1), logs: &testenv.Buffer{},
		health: freePort(t), metrics: freePort(t), webhookPort: freePort(t), validation: freePort(t)}
	args := append([]string{"--kubeconfig=" + kubeconfig, "--leader-elect=true",
		"--health-probe-bind-address=127.0.0.1:" + strconv.Itoa(p.health), "--metrics-bind-address=127.0.0.1:" + strconv.Itoa(p.metrics),
		"--webhook-port=" + strconv.Itoa(p.webhookPort), "--validation-bind-address=127.0.0.1:" + strconv.Itoa(p.validation),
		"--webhook-cert-dir=" + certDir, "--zap-encoder=json"}, extra...)
	p.cmd = exec.CommandContext(t.Context(), bin, args...)
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		if t.Failed() {
			t.Logf("manager output:\n%s", p.logs.String())
		}
	})
	waitFor(t, 30*time.Second, "/readyz", func() error {
		if err := p.running(); err != nil {
			t.Fatal(err)
		}
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", p.health))
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
	return p
}

// running is nil while the process runs.
func (p *process) running() error {
	select {
	case err := <-p.exited:
		p.exited <- err
		return fmt.Errorf("the manager exited: %w", err)
	default:
		return nil
	}
}

// stop sends SIGTERM and wants a clean exit within 40 s.
func (p *process) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.exited:
		if err != nil {
			t.Fatalf("manager exited with %v after SIGTERM", err)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("manager did not exit within 40 s of SIGTERM")
	}
}

// clusterIssuerReady creates a ClusterIssuer and waits for the manager to report it Ready.
func clusterIssuerReady(t *testing.T, env *testenv.Env, name string) {
	t.Helper()
	iss := &v1alpha1.ClusterIssuer{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.IssuerSpec{
		URL: "https://login.example.com/token", JSON: &v1alpha1.JSONLogin{}}}
	if err := env.Client.Create(t.Context(), iss); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the ClusterIssuer Ready", func() error {
		if err := env.Client.Get(t.Context(), types.NamespacedName{Name: name}, iss); err != nil {
			return err
		}
		if !meta.IsStatusConditionTrue(iss.Status.Conditions, string(v1alpha1.ConditionReady)) {
			return fmt.Errorf("conditions %v", iss.Status.Conditions)
		}
		return nil
	})
}

func TestManagerBinary(t *testing.T) {
	env := controlPlane(t)
	ctx := t.Context()
	c := env.Client
	dir := t.TempDir()

	bin, kcPath := env.Manager(t, dir)
	p := start(t, bin, kcPath, filepath.Join(dir, "certs"), append(os.Environ(), "POD_NAMESPACE=tokenkeeper-system"))
	validation := p.validation
	waitFor(t, 30*time.Second, "the leader Lease", func() error {
		return c.Get(ctx, types.NamespacedName{Namespace: "tokenkeeper-system", Name: "tokenkeeper.tokenkeeper.io"}, &coordinationv1.Lease{})
	})

	// The self-managed certificate: in its Secret, injected (no webhooks yet, so nothing to
	// patch), and served by the validation endpoint.
	cert := &corev1.Secret{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: "tokenkeeper-system", Name: "tokenkeeper-webhook-cert"}, cert); err != nil {
		t.Fatalf("webhook certificate Secret: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(cert.Data["ca.crt"])
	https := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "tokenkeeper.tokenkeeper-system.svc", MinVersion: tls.VersionTLS12}}}
	waitFor(t, 10*time.Second, "the validation endpoint over TLS", func() error {
		resp, err := https.Get(fmt.Sprintf("https://127.0.0.1:%d/validate/shop/none", validation))
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			return fmt.Errorf("status %d, want 404 for an unknown validator", resp.StatusCode)
		}
		return nil
	})

	// The controllers run: a ClusterIssuer is reconciled to Ready.
	clusterIssuerReady(t, env, "smoke")
	checkSecureMetrics(t, env, p.metrics)
	p.stop(t)
}

// Run outside a cluster (`make run`) against an API server with only the CRDs applied: no
// namespace created, no webhook configuration. The manager keeps running, says once that
// admission webhooks are off, keeps its Lease and certificate in the kubeconfig's namespace,
// serves validation with a certificate for localhost and 127.0.0.1, and reconciles.
func TestManagerOutsideCluster(t *testing.T) {
	env := controlPlane(t)
	ctx := t.Context()
	c := env.Client
	dir := t.TempDir()
	bin, kcPath := env.ManagerBinary(t, dir)
	var environ []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "POD_NAMESPACE=") && !strings.HasPrefix(kv, "KUBERNETES_SERVICE_") {
			environ = append(environ, kv)
		}
	}
	p := start(t, bin, kcPath, filepath.Join(dir, "certs"), environ, "--webhook-bind-address=127.0.0.1")
	validation := p.validation
	waitFor(t, 30*time.Second, "the leader Lease in the kubeconfig's namespace (default)", func() error {
		return c.Get(ctx, types.NamespacedName{Namespace: "default", Name: "tokenkeeper.tokenkeeper.io"}, &coordinationv1.Lease{})
	})
	cert := &corev1.Secret{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: "default", Name: "tokenkeeper-webhook-cert"}, cert); err != nil {
		t.Fatalf("webhook certificate Secret: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(cert.Data["ca.crt"])
	for _, host := range []string{"localhost", "127.0.0.1"} {
		https := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
		resp, err := https.Get(fmt.Sprintf("https://%s:%d/validate/shop/none", host, validation))
		if err != nil {
			t.Fatalf("the validation endpoint at %s: %v", host, err)
		}
		_ = resp.Body.Close()
	}

	clusterIssuerReady(t, env, "local")
	if err := p.running(); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(p.logs.String(), "admission webhooks are off"); n != 1 {
		t.Errorf("%d log lines say admission webhooks are off, want exactly one", n)
	}
	p.stop(t)
}

// checkSecureMetrics: metrics are served over HTTPS to callers the API server authenticates and
// authorizes. No token, a garbage one or one for another audience: 401 (never 500); a
// ServiceAccount without the metrics reader role: 403; one bound to tokenkeeper-metrics-reader (as
// the chart defines it): 200 with tokenkeeper's metrics.
func checkSecureMetrics(t *testing.T, env *testenv.Env, port int) {
	t.Helper()
	ctx := t.Context()
	c := env.Client
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "monitoring"}}))
	must(c.Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "tokenkeeper-metrics-reader"},
		Rules: []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}}}))
	must(c.Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "prometheus-metrics"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "tokenkeeper-metrics-reader"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "prometheus", Namespace: "monitoring"}}}))
	token := func(sa string, audiences ...string) string {
		if err := c.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "monitoring", Name: sa}}); !apierrors.IsAlreadyExists(err) {
			must(err)
		}
		tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](600), Audiences: audiences}}
		must(c.SubResource("token").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "monitoring", Name: sa}}, tr))
		return tr.Status.Token
	}
	scrape := func(bearer string) (int, string) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("https://127.0.0.1:%d/metrics", port), nil)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		// The metrics certificate is self-signed; what this checks is who may read.
		insecure := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}}}
		resp, err := insecure.Do(req)
		if err != nil {
			t.Fatalf("scraping metrics: %v", err)
		}
		defer func() { _ = resp.Body.Close() }()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	cases := []struct {
		name, reason, bearer string
		want                 int
	}{
		{"NoToken", "Without credentials the caller is not authenticated.", "", http.StatusUnauthorized},
		{"Garbage", "A token the API server cannot read is the caller's fault: 401, not a server error.", "not-a-token", http.StatusUnauthorized},
		{"WrongAudience", "A reader's token minted for another audience (a projected token for some other service) is refused as unauthenticated.",
			token("prometheus", "https://vault.example.com"), http.StatusUnauthorized},
		{"NotAuthorized", "A ServiceAccount the API server authenticates but that lacks the reader role is forbidden.", token("someone-else"), http.StatusForbidden},
		{"Reader", "A ServiceAccount bound to tokenkeeper-metrics-reader reads the metrics.", token("prometheus"), http.StatusOK},
	}
	for _, tc := range cases {
		code, body := scrape(tc.bearer)
		if code != tc.want || tc.want == http.StatusOK && !strings.Contains(body, "controller_runtime_reconcile_total") {
			t.Errorf("%s: %s\nscrape got %d (%d bytes), want %d", tc.name, tc.reason, code, len(body), tc.want)
		}
	}
}
