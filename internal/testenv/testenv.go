// Package testenv starts a real kube-apiserver and etcd (controller-runtime envtest) with the
// tokenkeeper CRDs installed, for the test suites of every package that needs a cluster.
package testenv

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	apiruntime "k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	tokenkeeperv1alpha1 "github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
)

// Env is a running control plane.
type Env struct {
	Config *rest.Config
	Client client.Client
	Scheme *apiruntime.Scheme
	env    *envtest.Environment
	// apiserver is the kube-apiserver started by RestartAPIServer, once it has been restarted.
	apiserver *exec.Cmd
	exited    chan struct{}
}

// Scheme returns a scheme with the Kubernetes and tokenkeeper types.
func Scheme() *apiruntime.Scheme {
	s := apiruntime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(tokenkeeperv1alpha1.AddToScheme(s))
	return s
}

// RepoRoot is the repository's top directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// SkipMessage is what a suite prints when it exits without running because no control plane can
// be started.
const SkipMessage = "envtest suite skipped: KUBEBUILDER_ASSETS is unset (run make test)"

// Available reports whether a control plane can be started: KUBEBUILDER_ASSETS names the
// directory holding kube-apiserver and etcd.
func Available() bool { return os.Getenv("KUBEBUILDER_ASSETS") != "" }

// ExitUnlessAvailable is the first statement of the TestMain of every suite that needs a control
// plane. Without KUBEBUILDER_ASSETS (a plain `go test ./...`, `make test-unit`) it prints
// SkipMessage and ends the test binary with exit code 0, so that the package reads as skipped
// ("ok … [no tests to run]"), not failed. `make test` always sets KUBEBUILDER_ASSETS (and fails
// when it cannot build kube-apiserver and etcd), so there every suite runs as before.
func ExitUnlessAvailable() {
	if Available() {
		return
	}
	// go test shows a passing package's output only with -v; the second line makes it add
	// "[no tests to run]" to the package's "ok" line in every mode.
	_, _ = fmt.Fprintln(os.Stdout, SkipMessage)
	_, _ = fmt.Fprintln(os.Stdout, "testing: warning: no tests to run")
	os.Exit(0)
}

// Start starts kube-apiserver and etcd from KUBEBUILDER_ASSETS (set by `make test`) and installs
// the CRDs. Callers defer Stop.
func Start() (*Env, error) { return start(false) }

// StartWithWebhooks also installs the validating webhook configurations from config/webhook,
// pointed at a local webhook server whose address and certificates are in WebhookOptions.
func StartWithWebhooks() (*Env, error) { return start(true) }

// WebhookOptions are the host, port and certificate directory the manager's webhook server
// must use for the API server to reach it.
func (e *Env) WebhookOptions() webhook.Options {
	o := e.env.WebhookInstallOptions
	return webhook.Options{Host: o.LocalServingHost, Port: o.LocalServingPort, CertDir: o.LocalServingCertDir}
}

func start(webhooks bool) (*Env, error) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		return nil, fmt.Errorf("KUBEBUILDER_ASSETS is not set: run the tests with `make test`, which builds kube-apiserver and etcd into bin/k8s")
	}
	scheme := Scheme()
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(RepoRoot(), "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		Scheme:                scheme,
	}
	if webhooks {
		env.WebhookInstallOptions = envtest.WebhookInstallOptions{Paths: []string{filepath.Join(RepoRoot(), "config", "webhook", "manifests.yaml")}}
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting envtest: %w", err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		_ = env.Stop()
		return nil, fmt.Errorf("creating client: %w", err)
	}
	return &Env{Config: cfg, Client: c, Scheme: scheme, env: env}, nil
}

// AdminKubeconfig returns a kubeconfig for a cluster admin, for running the manager binary.
func (e *Env) AdminKubeconfig() ([]byte, error) {
	u, err := e.env.AddUser(envtest.User{Name: "tokenkeeper-test-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, err
	}
	return u.KubeConfig()
}

// Manager builds the manager binary (with the given build tags) into dir and prepares what it
// needs to run against this control plane: an admin kubeconfig in dir, and what the chart
// installs before the manager starts (its namespace, and the empty webhook configuration it
// injects its CA into). It returns the binary's and the kubeconfig's paths.
func (e *Env) Manager(t testing.TB, dir string, tags ...string) (bin, kubeconfig string) {
	t.Helper()
	bin, kubeconfig = e.ManagerBinary(t, dir, tags...)
	ctx := context.Background()
	for _, obj := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "tokenkeeper-system"}},
		&admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "tokenkeeper"}},
	} {
		if err := e.Client.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	return bin, kubeconfig
}

// ManagerBinary builds the manager binary (with the given build tags) into dir and writes an
// admin kubeconfig there, and installs nothing: a run outside the cluster against the CRDs only.
func (e *Env) ManagerBinary(t testing.TB, dir string, tags ...string) (bin, kubeconfig string) {
	t.Helper()
	bin = filepath.Join(dir, "manager")
	args := []string{"build", "-o", bin}
	if len(tags) > 0 {
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	build := exec.Command("go", append(args, "./cmd")...) //nolint:gosec // go build of this repository
	build.Dir = RepoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the manager: %v\n%s", err, out)
	}
	kc, err := e.AdminKubeconfig()
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	return bin, kubeconfig
}

// Stop stops the control plane.
func (e *Env) Stop() error {
	if e.apiserver != nil {
		_ = e.apiserver.Process.Kill()
		<-e.exited
	}
	return e.env.Stop()
}

// RestartAPIServer stops kube-apiserver with SIGTERM, keeps it down for down, and starts it
// again with the same flags, port and certificates, so that every client's credentials stay
// valid and etcd keeps the data. It returns when the API server answers again. Watches break and
// caches relist, as after a real control-plane restart.
func (e *Env) RestartAPIServer(ctx context.Context, down time.Duration) error {
	pid, args, err := e.apiServerProcess()
	if err != nil {
		return err
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("stopping kube-apiserver: %w", err)
	}
	if e.apiserver != nil {
		<-e.exited
	} else {
		for syscall.Kill(pid, 0) == nil { // envtest reaps its own child
			time.Sleep(50 * time.Millisecond)
		}
	}
	time.Sleep(down)
	cmd := exec.Command(args[0], args[1:]...) //nolint:gosec // the command line envtest started it with
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting kube-apiserver again: %w", err)
	}
	e.apiserver, e.exited = cmd, make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); close(done) }(e.exited)
	for {
		var nss corev1.NamespaceList
		if err := e.Client.List(ctx, &nss, client.Limit(1)); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-e.exited:
			return fmt.Errorf("kube-apiserver exited after its restart")
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// apiServerProcess finds the running kube-apiserver and its command line.
func (e *Env) apiServerProcess() (int, []string, error) {
	if e.apiserver != nil {
		return e.apiserver.Process.Pid, e.apiserver.Args, nil
	}
	port := "--secure-port=" + e.env.ControlPlane.APIServer.Port
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		raw, err := os.ReadFile(filepath.Join(d, "cmdline")) //nolint:gosec // /proc/<pid>/cmdline
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		if filepath.Base(args[0]) == "kube-apiserver" && slices.Contains(args, port) {
			pid, _ := strconv.Atoi(filepath.Base(d))
			return pid, args, nil
		}
	}
	return 0, nil, fmt.Errorf("no kube-apiserver process with %s", port)
}

// Main starts the control plane, runs the tests and stops it, for TestMain functions without
// further setup. *env is set before the tests run. Without KUBEBUILDER_ASSETS the suite is
// skipped (ExitUnlessAvailable).
func Main(m *testing.M, env **Env) {
	ExitUnlessAvailable()
	e, err := Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	*env = e
	code := m.Run()
	if err := e.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping envtest:", err)
	}
	os.Exit(code)
}

// Buffer collects output that one goroutine (or process) writes while a test reads it.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// WaitFor polls cond every 200 ms until it holds, failing the test after timeout with the last
// state cond reported.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s; last seen: %s", timeout, what, last)
}

// ResidentBytes is a process's resident set size, read from /proc (Linux).
func ResidentBytes(t testing.TB, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc status")
	return 0
}
