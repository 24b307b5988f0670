// Package policy_test runs the manager with its admission webhooks installed in a real API server
// and checks TokenPolicy enforcement at admission and at runtime.
package policy_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/controllers"
	"github.com/tokenkeeper/tokenkeeper/internal/admission"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer/issuertest"
	"github.com/tokenkeeper/tokenkeeper/internal/testenv"
)

var (
	env *testenv.Env
	seq atomic.Int32
	// seen is the manager's cache: admission reads policies and namespaces from it.
	seen client.Reader
)

func TestMain(m *testing.M) {
	testenv.ExitUnlessAvailable()
	var err error
	if env, err = testenv.StartWithWebhooks(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr)))
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
		Cache:         cache.Options{ByObject: controllers.CacheByObject()},
		WebhookServer: webhook.NewServer(env.WebhookOptions()),
	})
	if err == nil {
		err = controllers.Setup(context.Background(), mgr, controllers.Options{ClusterResourceNamespace: "default"})
	}
	if err == nil {
		err = admission.Setup(mgr)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	seen = mgr.GetCache()
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _ = mgr.Start(ctx) }()
	// Every namespace: only https, and only loopback or example.com issuers.
	err = createWhenWebhookServes(&v1alpha1.TokenPolicy{ObjectMeta: metav1.ObjectMeta{Name: "default"}, Spec: v1alpha1.TokenPolicySpec{
		AllowedIssuers: []v1alpha1.IssuerPattern{"https://127.0.0.1", "https://*.example.com"}, RequireHTTPS: true,
	}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	cancel()
	_ = env.Stop()
	os.Exit(code)
}

// createWhenWebhookServes retries until the manager's webhook server answers.
func createWhenWebhookServes(obj client.Object) error {
	var err error
	for range 100 {
		if err = env.Client.Create(context.Background(), obj); err == nil || !strings.Contains(err.Error(), "failed calling webhook") {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

// namespace creates a namespace labelled for one test and a policy selecting it, and returns once
// the manager has seen both: admission reads them from its cache, so a policy is enforced at
// admission a moment after it is created (and at runtime regardless). CI once created a Credential
// in the milliseconds between.
func namespace(t *testing.T, spec *v1alpha1.TokenPolicySpec) string {
	t.Helper()
	ns := fmt.Sprintf("policy-%d", seq.Add(1))
	waitSeen(t, &v1alpha1.TokenPolicy{ObjectMeta: metav1.ObjectMeta{Name: "default"}}) // TestMain's
	must(t, env.Client.Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"test": ns}}}))
	waitSeen(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	if spec != nil {
		spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"test": ns}}
		must(t, env.Client.Create(t.Context(), &v1alpha1.TokenPolicy{ObjectMeta: metav1.ObjectMeta{Name: ns}, Spec: *spec}))
		waitSeen(t, &v1alpha1.TokenPolicy{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	}
	return ns
}

// waitSeen waits until the manager's cache holds obj (and, given ok, a version ok accepts).
func waitSeen[T client.Object](t *testing.T, obj T, ok ...func(T) bool) {
	t.Helper()
	waitFor(t, 30*time.Second, "the manager to see "+obj.GetName(), func() (bool, string) {
		err := seen.Get(t.Context(), client.ObjectKeyFromObject(obj), obj)
		return err == nil && (len(ok) == 0 || ok[0](obj)), fmt.Sprint(err)
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func dur(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }

// credential creates the Secrets, Issuer and Credential for a conformance server in ns.
func credential(t *testing.T, ns string, srv *issuertest.Server, withInput bool, edit func(*v1alpha1.Credential)) types.NamespacedName {
	t.Helper()
	ctx := t.Context()
	if withInput {
		must(t, env.Client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "login"}, StringData: srv.InputSecretData()}))
	}
	must(t, env.Client.Create(ctx, &v1alpha1.Issuer{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "issuer"}, Spec: srv.Spec()}))
	c := &v1alpha1.Credential{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cred"}, Spec: v1alpha1.CredentialSpec{
		IssuerRef: v1alpha1.IssuerReference{Name: "issuer"}, SecretName: "token",
		Password: &v1alpha1.PasswordLogin{SecretRef: v1alpha1.LocalSecretReference{Name: "login"}},
	}}
	if edit != nil {
		edit(c)
	}
	must(t, env.Client.Create(ctx, c))
	return types.NamespacedName{Namespace: ns, Name: "cred"}
}

func get(t *testing.T, key types.NamespacedName) *v1alpha1.Credential {
	t.Helper()
	c := &v1alpha1.Credential{}
	must(t, env.Client.Get(t.Context(), key, c))
	return c
}

func readyState(c *v1alpha1.Credential) (bool, string) {
	cond := meta.FindStatusCondition(c.Status.Conditions, string(v1alpha1.ConditionReady))
	if cond == nil {
		return false, "no Ready condition"
	}
	return cond.Status == metav1.ConditionTrue, cond.Reason + ": " + cond.Message
}

func token(t *testing.T, ns string) string {
	s := &corev1.Secret{}
	if err := env.Client.Get(t.Context(), types.NamespacedName{Namespace: ns, Name: "token"}, s); err != nil {
		return ""
	}
	return string(s.Data["token"])
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	testenv.WaitFor(t, timeout, what, cond)
}
