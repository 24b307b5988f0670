package clustercredential_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/controllers"
	"github.com/tokenkeeper/tokenkeeper/internal/admission"
	"github.com/tokenkeeper/tokenkeeper/internal/testenv"
)

// home is the cluster-credential namespace of the suite's manager.
const home = "tokenkeeper-system"

var (
	env     *testenv.Env
	logs    = &testenv.Buffer{}
	mgrSeen client.Reader // the running manager's cache
)

func TestMain(m *testing.M) {
	testenv.ExitUnlessAvailable()
	var err error
	if env, err = testenv.StartWithWebhooks(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// Every log line of the manager goes to logs, for the leak check of each test.
	ctrl.SetLogger(zap.New(zap.WriteTo(logs), zap.UseDevMode(true), zap.Level(zapcore.Level(-5))))
	ctx, cancel := context.WithCancel(context.Background())
	code := 1
	if err := start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
	} else {
		code = m.Run()
	}
	cancel()
	_ = env.Stop()
	os.Exit(code)
}

// start creates the cluster-credential namespace and runs a manager with every controller, as
// cmd/main.go does, with at most maxNamespaces copies per ClusterCredential.
func start(ctx context.Context) error {
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: home}}); err != nil {
		return err
	}
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme:                 env.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  cache.Options{ByObject: controllers.CacheByObject(), DefaultTransform: cache.TransformStripManagedFields()},
		Controller:             config.Controller{SkipNameValidation: ptr.To(true), MaxConcurrentReconciles: 8},
		WebhookServer:          webhook.NewServer(env.WebhookOptions()),
	})
	if err != nil {
		return err
	}
	if err := controllers.Setup(ctx, mgr, controllers.Options{ClusterResourceNamespace: home, ClusterCredentialMaxNamespaces: maxNamespaces}); err != nil {
		return err
	}
	// The admission webhooks, as the chart serves them; the conformance issuers are on loopback.
	if err := admission.Setup(mgr, netip.MustParsePrefix("127.0.0.0/8")); err != nil {
		return err
	}
	mgrSeen = mgr.GetCache()
	go func() {
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "manager:", err)
		}
	}()
	// Objects are admitted only once the webhook server answers.
	probe := &v1alpha1.ClusterCredential{ObjectMeta: metav1.ObjectMeta{Name: "probe"}, Spec: v1alpha1.ClusterCredentialSpec{
		NamespaceSelector: metav1.LabelSelector{MatchLabels: map[string]string{"probe": "true"}}, Target: "probe",
		Credential: v1alpha1.CredentialTemplate{IssuerRef: v1alpha1.IssuerReference{Kind: v1alpha1.IssuerKindCluster, Name: "probe"},
			APIKey: &v1alpha1.APIKeyLogin{SecretRef: v1alpha1.LocalSecretReference{Name: "probe"}}},
	}}
	for range 100 {
		if err = env.Client.Create(ctx, probe.DeepCopy(), client.DryRunAll); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("the webhook server does not answer: %w", err)
}

// maxNamespaces is the suite manager's --cluster-credential-max-namespaces.
const maxNamespaces = 250

// waitSeen waits until the manager's cache holds obj: a policy must be in force before the
// ClusterCredential it forbids.
func waitSeen(t *testing.T, obj client.Object) {
	t.Helper()
	testenv.WaitFor(t, 30*time.Second, "the manager to see "+obj.GetName(), func() (bool, string) {
		err := mgrSeen.Get(t.Context(), client.ObjectKeyFromObject(obj), obj)
		return err == nil, fmt.Sprint(err)
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
