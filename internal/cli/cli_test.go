package cli

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/tokenkeeper/tokenkeeper/controllers"
	"github.com/tokenkeeper/tokenkeeper/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// renewNamespace is the only namespace the test manager watches: the other tests write status
// themselves, for fixed golden output.
const renewNamespace = "cli-renew"

var (
	env        *testenv.Env
	kubeconfig string
	logs       = &testenv.Buffer{}
	// now is the clock of every command, for golden output.
	now = time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)
)

func TestMain(m *testing.M) {
	testenv.ExitUnlessAvailable()
	flag.Parse()
	var err error
	if env, err = testenv.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		dir, err := os.MkdirTemp("", "kubectl-tokenkeeper")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer func() { _ = os.RemoveAll(dir) }()
		kc, err := env.AdminKubeconfig()
		if err == nil {
			kubeconfig = filepath.Join(dir, "kubeconfig")
			err = os.WriteFile(kubeconfig, kc, 0o600)
		}
		if err == nil {
			var stop func()
			stop, err = startManager()
			if stop != nil {
				defer stop()
			}
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return m.Run()
	}()
	_ = env.Stop()
	os.Exit(code)
}

// startManager runs the controllers on renewNamespace only.
func startManager() (func(), error) {
	ctrl.SetLogger(zap.New(zap.WriteTo(logs), zap.UseDevMode(true)))
	ctx := context.Background()
	for _, ns := range []string{renewNamespace, "tokenkeeper-system"} {
		if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return nil, err
		}
	}
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
		Cache:      cache.Options{ByObject: controllers.CacheByObject(), DefaultNamespaces: map[string]cache.Config{renewNamespace: {}}},
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	if err := controllers.Setup(ctx, mgr, controllers.Options{ClusterResourceNamespace: "tokenkeeper-system"}); err != nil {
		cancel()
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "manager:", err)
		}
	}()
	return func() { cancel(); <-done }, nil
}

// result is one run of the plugin.
type result struct {
	out, err string
	code     int
}

// run runs kubectl-tokenkeeper with args against the test cluster, the clock at now.
func run(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	streams := genericiooptions.IOStreams{In: strings.NewReader(stdin), Out: &out, ErrOut: &errOut}
	cmd := newCommand(&Options{IOStreams: streams, Now: func() time.Time { return now }})
	code := execute(cmd, streams, append([]string{"--kubeconfig", kubeconfig}, args...))
	return result{out.String(), errOut.String(), code}
}

// golden compares got with testdata/NAME.golden (rewritten with -update).
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		must(t, os.MkdirAll("testdata", 0o755))
		must(t, os.WriteFile(path, []byte(got), 0o644))
	}
	want, err := os.ReadFile(path)
	must(t, err)
	if got != string(want) {
		t.Errorf("%s differs from %s (run `go test ./internal/cli -update` after checking):\n--- got\n%s\n--- want\n%s", name, path, got, want)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func createNamespace(t *testing.T, name string, labels map[string]string) {
	t.Helper()
	must(t, env.Client.Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}))
}

func create(t *testing.T, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		must(t, env.Client.Create(t.Context(), o))
	}
}

// noSecret fails when any of secrets appears in text.
func noSecret(t *testing.T, text string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s != "" && strings.Contains(text, s) {
			t.Fatalf("the output shows a secret or token:\n%s", text)
		}
	}
}
