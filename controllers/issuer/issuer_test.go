package issuer_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/controllers/issuer"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer/issuertest"
	"github.com/tokenkeeper/tokenkeeper/internal/testenv"
)

const resourceNS = "tokenkeeper-system"

var env *testenv.Env

func TestMain(m *testing.M) {
	testenv.ExitUnlessAvailable()
	var err error
	if env, err = testenv.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"}})
	for _, newObj := range []func() v1alpha1.GenericIssuer{
		func() v1alpha1.GenericIssuer { return &v1alpha1.Issuer{} },
		func() v1alpha1.GenericIssuer { return &v1alpha1.ClusterIssuer{} },
	} {
		if err == nil {
			err = (&issuer.Reconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), New: newObj, ClusterResourceNamespace: resourceNS}).SetupWithManager(mgr)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _ = mgr.Start(ctx) }()
	code := m.Run()
	cancel()
	_ = env.Stop()
	os.Exit(code)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func readyOf(t *testing.T, obj v1alpha1.GenericIssuer) func() (bool, string) {
	return func() (bool, string) {
		must(t, env.Client.Get(t.Context(), client.ObjectKeyFromObject(obj), obj))
		c := meta.FindStatusCondition(obj.GetStatus().Conditions, string(v1alpha1.ConditionReady))
		if c == nil {
			return false, "no condition"
		}
		return c.Status == metav1.ConditionTrue, c.Reason + ": " + c.Message
	}
}

func withHeader(secret string) v1alpha1.IssuerSpec {
	return v1alpha1.IssuerSpec{URL: "https://crm.example.com/auth/login", JSON: &v1alpha1.JSONLogin{},
		Headers: []v1alpha1.Header{{Name: "Api-Key", ValueFrom: &v1alpha1.HeaderValueSource{
			SecretKeyRef: v1alpha1.SecretKeySelector{Name: secret, Key: "api-key"}}}}}
}

func TestIssuerReadiness(t *testing.T) {
	ctx := t.Context()
	for _, ns := range []string{"shop", resourceNS} {
		must(t, env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	}
	must(t, env.Client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "crm-app-key"},
		StringData: map[string]string{"api-key": "k"}}))
	must(t, env.Client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: resourceNS, Name: "vendor-key"},
		StringData: map[string]string{"api-key": "k"}}))

	cases := map[string]struct {
		reason string
		obj    v1alpha1.GenericIssuer
		ready  bool
		want   string
	}{
		"IssuerWithSecret": {reason: "An Issuer whose header Secret exists in its namespace is Ready.",
			obj: &v1alpha1.Issuer{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "crm"}, Spec: withHeader("crm-app-key")}, ready: true},
		"IssuerMissingSecret": {reason: "A missing Secret is named, with the field that refers to it.",
			obj:  &v1alpha1.Issuer{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "broken"}, Spec: withHeader("nope")},
			want: "SecretNotFound: headers[Api-Key]: Secret shop/nope not found"},
		"ClusterIssuerResourceNamespace": {reason: "A ClusterIssuer's Secrets default to the manager's namespace.",
			obj: &v1alpha1.ClusterIssuer{ObjectMeta: metav1.ObjectMeta{Name: "vendor"}, Spec: withHeader("vendor-key")}, ready: true},
		"BadTemplate": {reason: "A body template that does not parse is reported before any login.",
			obj: &v1alpha1.ClusterIssuer{ObjectMeta: metav1.ObjectMeta{Name: "bad-template"}, Spec: v1alpha1.IssuerSpec{
				URL: "https://consent.example.com/v1/sessions", JSON: &v1alpha1.JSONLogin{Body: `{"key":{{ .key | toJson }`}}},
			want: "InvalidConfiguration: spec.json.body"},
		"UnboundedTemplate": {reason: "A body template with a loop (6,000,000 copies of an input took 1.38 GB) is refused before any login.",
			obj: &v1alpha1.ClusterIssuer{ObjectMeta: metav1.ObjectMeta{Name: "loop-template"}, Spec: v1alpha1.IssuerSpec{
				URL: "https://consent.example.com/v1/sessions", JSON: &v1alpha1.JSONLogin{Body: `{"k":"{{ range 6000000 }}{{ $.key }}{{ end }}"}`}}},
			want: "InvalidConfiguration: spec.json.body: range is not allowed"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			must(t, env.Client.Create(ctx, tc.obj))
			testenv.WaitFor(t, 10*time.Second, "the issuer's Ready condition", func() (bool, string) {
				ok, state := readyOf(t, tc.obj)()
				if tc.ready {
					return ok, state
				}
				return !ok && strings.HasPrefix(state, tc.want), state
			})
			if got := tc.obj.GetStatus().ObservedGeneration; got != tc.obj.GetGeneration() {
				t.Errorf("%s\nobservedGeneration %d, want %d", tc.reason, got, tc.obj.GetGeneration())
			}
		})
	}
}

// An issuer's CA bundle can come from a ConfigMap (a trust-manager bundle) or a Secret: a
// missing one and one without a PEM certificate are named in status; a ClusterIssuer reads the
// manager's namespace; and an OAuth2 issuer configured by its issuer URL shows the token
// endpoint its discovery document names, fetched with that CA.
func TestCABundleFromAndDiscoveredTokenURL(t *testing.T) {
	ctx := t.Context()
	must(t, env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ca-from"}}))
	idp := issuertest.Start(issuertest.OAuth2)
	defer idp.Close()
	must(t, env.Client.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: resourceNS, Name: "corp-roots"},
		Data: map[string]string{"ca.crt": idp.CABundle()}}))
	must(t, env.Client.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ca-from", Name: "no-pem"},
		Data: map[string]string{"ca.crt": "not a certificate"}}))
	fromConfigMap := func(name string) *v1alpha1.CABundleSource {
		return &v1alpha1.CABundleSource{ConfigMapKeyRef: &v1alpha1.ConfigMapKeySelector{Name: name, Key: "ca.crt"}}
	}
	oauth2 := v1alpha1.IssuerSpec{OAuth2: &v1alpha1.OAuth2{IssuerURL: v1alpha1.EndpointURL(idp.URL())}, CABundleFrom: fromConfigMap("corp-roots")}
	cases := map[string]struct {
		obj   v1alpha1.GenericIssuer
		ready bool
		want  string
	}{
		"MissingConfigMap": {obj: &v1alpha1.Issuer{ObjectMeta: metav1.ObjectMeta{Namespace: "ca-from", Name: "missing"},
			Spec: v1alpha1.IssuerSpec{OAuth2: oauth2.OAuth2, CABundleFrom: fromConfigMap("corp-roots")}},
			want: "SecretNotFound: caBundleFrom: ConfigMap ca-from/corp-roots not found"},
		"NoPEM": {obj: &v1alpha1.Issuer{ObjectMeta: metav1.ObjectMeta{Namespace: "ca-from", Name: "no-pem"},
			Spec: v1alpha1.IssuerSpec{OAuth2: oauth2.OAuth2, CABundleFrom: fromConfigMap("no-pem")}},
			want: "InvalidConfiguration: spec.caBundleFrom: the key holds no PEM certificate"},
		"ClusterIssuerDiscovers": {obj: &v1alpha1.ClusterIssuer{ObjectMeta: metav1.ObjectMeta{Name: "corp-idp"}, Spec: oauth2}, ready: true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			must(t, env.Client.Create(ctx, tc.obj))
			testenv.WaitFor(t, 10*time.Second, "the issuer's Ready condition", func() (bool, string) {
				ok, state := readyOf(t, tc.obj)()
				if tc.ready {
					return ok && tc.obj.GetStatus().TokenURL != "", state + "; tokenURL " + tc.obj.GetStatus().TokenURL
				}
				return !ok && strings.HasPrefix(state, tc.want), state
			})
			if tc.ready {
				if got, want := tc.obj.GetStatus().TokenURL, idp.URL()+"/oauth/token"; got != want {
					t.Errorf("status.tokenURL %q, want the discovered %q", got, want)
				}
			}
		})
	}
}
