package credential_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/controllers"
	"github.com/tokenkeeper/tokenkeeper/controllers/credential"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer/issuertest"
	"github.com/tokenkeeper/tokenkeeper/internal/testenv"
)

const resourceNamespace = "tokenkeeper-system"

var defaultRestartOpts = credential.RestartOptions{Budget: 5, Window: 2 * time.Second, Timeout: 3 * time.Second}

var (
	env  *testenv.Env
	logs = &testenv.Buffer{}

	mgrMu   sync.Mutex
	stopMgr context.CancelFunc
	mgrDone chan struct{}
	mgrSeen client.Reader // the running manager's cache
	// restartOpts are the next manager's restart bounds: short, as envtest runs no rollouts
	// (a restarted Deployment never finishes and holds its slot until Timeout).
	restartOpts = defaultRestartOpts

	serversMu sync.Mutex
	servers   []*issuertest.Server
	// extraSecrets are key material tests used, for the leak check.
	extraSecrets []string
)

// addSecret adds a value the leak check must find nowhere.
func addSecret(v string) {
	serversMu.Lock()
	defer serversMu.Unlock()
	extraSecrets = append(extraSecrets, v)
}

func TestMain(m *testing.M) {
	testenv.ExitUnlessAvailable()
	var err error
	if env, err = testenv.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// Every log line of the manager, at every verbosity, goes to logs for the leak check.
	ctrl.SetLogger(zap.New(zap.WriteTo(logs), zap.UseDevMode(true), zap.Level(zapcore.Level(-5))))
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: resourceNamespace}}
	if err := env.Client.Create(context.Background(), ns); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := startManager(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	if code == 0 {
		code = leakCheck()
	}
	stopManager()
	for _, s := range servers {
		s.Close()
	}
	_ = env.Stop()
	os.Exit(code)
}

func startManager() error {
	mgrMu.Lock()
	defer mgrMu.Unlock()
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme:                 env.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  cache.Options{ByObject: controllers.CacheByObject()},
		Controller:             config.Controller{SkipNameValidation: ptr.To(true), MaxConcurrentReconciles: 4}, // as the manager's default
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := controllers.Setup(ctx, mgr, controllers.Options{ClusterResourceNamespace: resourceNamespace, Restarts: restartOpts}); err != nil {
		cancel()
		return err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "manager:", err)
		}
	}()
	stopMgr, mgrDone, mgrSeen = cancel, done, mgr.GetCache()
	return nil
}

// waitSeen waits until the running manager's cache holds obj: a test that counts issuer requests
// must not create the Credential while the manager has yet to see the policy that forbids them.
func waitSeen(t *testing.T, obj client.Object) {
	t.Helper()
	mgrMu.Lock()
	seen := mgrSeen
	mgrMu.Unlock()
	waitFor(t, 30*time.Second, "the manager to see "+obj.GetName(), func() (bool, string) {
		err := seen.Get(t.Context(), client.ObjectKeyFromObject(obj), obj)
		return err == nil, fmt.Sprint(err)
	})
}

func stopManager() {
	mgrMu.Lock()
	defer mgrMu.Unlock()
	stopMgr()
	<-mgrDone
}

// leakCheck looks for every password, API secret and token the conformance issuers accepted or
// issued in every log line, Event and Credential status the suite produced.
func leakCheck() int {
	ctx := context.Background()
	secrets := append([]string{}, issuertest.Secrets...)
	serversMu.Lock()
	for _, s := range servers {
		secrets = append(secrets, s.IssuedTokens()...)
	}
	secrets = append(secrets, extraSecrets...)
	serversMu.Unlock()
	var events eventsv1.EventList
	var creds v1alpha1.CredentialList
	if err := env.Client.List(ctx, &events); err != nil {
		fmt.Fprintln(os.Stderr, "leak check: listing events:", err)
		return 1
	}
	if err := env.Client.List(ctx, &creds); err != nil {
		fmt.Fprintln(os.Stderr, "leak check: listing credentials:", err)
		return 1
	}
	var texts strings.Builder
	texts.WriteString(logs.String())
	for _, e := range events.Items {
		texts.WriteString(e.Note + "\n" + e.Reason + "\n")
	}
	for _, c := range creds.Items {
		b, _ := json.Marshal(c.Status)
		texts.Write(b)
	}
	all := texts.String()
	// The check must have something to look at, or it proves nothing.
	if !strings.Contains(all, "token rotated") || len(events.Items) == 0 || len(secrets) <= len(issuertest.Secrets) {
		fmt.Fprintf(os.Stderr, "leak check: too little to check (%d events, %d secrets, rotations logged: %t)\n",
			len(events.Items), len(secrets), strings.Contains(all, "token rotated"))
		return 1
	}
	for _, s := range secrets {
		if strings.Contains(all, s) {
			i := strings.Index(all, s)
			fmt.Fprintf(os.Stderr, "leak check: a secret or token appears in logs, Events or status near: %q\n", all[max(0, i-120):i])
			return 1
		}
	}
	fmt.Printf("leak check: %d secrets and tokens absent from %d bytes of logs, %d Events and %d statuses\n",
		len(secrets), len(all), len(events.Items), len(creds.Items))
	return 0
}

func startServer(t *testing.T, f issuertest.Flavor) *issuertest.Server {
	t.Helper()
	s := issuertest.Start(f)
	serversMu.Lock()
	servers = append(servers, s)
	serversMu.Unlock()
	return s
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	testenv.WaitFor(t, timeout, what, cond)
}
