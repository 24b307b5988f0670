package tokenvalidator_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/controllers"
	"github.com/tokenkeeper/tokenkeeper/controllers/tokenvalidator"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer/issuertest"
	"github.com/tokenkeeper/tokenkeeper/internal/testenv"
	"github.com/tokenkeeper/tokenkeeper/internal/validation"
)

var (
	env      *testenv.Env
	endpoint *httptest.Server
)

func TestMain(m *testing.M) {
	testenv.ExitUnlessAvailable()
	var err error
	if env, err = testenv.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr)))
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0", Cache: cache.Options{ByObject: controllers.CacheByObject()}})
	server := validation.NewServer()
	if err == nil {
		err = controllers.Setup(context.Background(), mgr, controllers.Options{ClusterResourceNamespace: "default", Validation: server})
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	endpoint = httptest.NewServer(server)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _ = mgr.Start(ctx) }()
	code := m.Run()
	cancel()
	endpoint.Close()
	_ = env.Stop()
	os.Exit(code)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func ready(t *testing.T, key types.NamespacedName) (bool, string, *v1alpha1.TokenValidator) {
	tv := &v1alpha1.TokenValidator{}
	must(t, env.Client.Get(t.Context(), key, tv))
	c := meta.FindStatusCondition(tv.Status.Conditions, string(v1alpha1.ConditionReady))
	if c == nil {
		return false, "no condition", tv
	}
	return c.Status == metav1.ConditionTrue, c.Reason + ": " + c.Message, tv
}

// answer is a forward-auth response: its status and headers.
type answer struct {
	StatusCode int
	Header     http.Header
}

func validate(t *testing.T, path, authorization string) answer {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, endpoint.URL+path, nil)
	req.Header.Set("Authorization", authorization)
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	_ = resp.Body.Close()
	return answer{resp.StatusCode, resp.Header}
}

// A Credential's token, issued by an OAuth2 server, is accepted by a TokenValidator trusting that
// server (keys found by OIDC discovery); a token from another issuer and a forged one are not.
func TestCredentialTokenAccepted(t *testing.T) {
	ctx := t.Context()
	idp := issuertest.Start(issuertest.OAuth2)
	defer idp.Close()
	other := issuertest.Start(issuertest.Seed001)
	defer other.Close()
	ns := "shop"
	must(t, env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	must(t, env.Client.Create(ctx, &v1alpha1.ClusterIssuer{ObjectMeta: metav1.ObjectMeta{Name: "corp-idp"}, Spec: idp.Spec()}))
	must(t, env.Client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "orders-client"}, StringData: idp.InputSecretData()}))
	must(t, env.Client.Create(ctx, &v1alpha1.Credential{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "orders"}, Spec: v1alpha1.CredentialSpec{
		IssuerRef: v1alpha1.IssuerReference{Kind: v1alpha1.IssuerKindCluster, Name: "corp-idp"}, SecretName: "orders-token",
		ClientCredentials: &v1alpha1.ClientCredentialsLogin{SecretRef: v1alpha1.LocalSecretReference{Name: "orders-client"}},
	}}))
	key := types.NamespacedName{Namespace: ns, Name: "orders-api"}
	must(t, env.Client.Create(ctx, &v1alpha1.TokenValidator{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "orders-api"}, Spec: v1alpha1.TokenValidatorSpec{
		Issuers:   []v1alpha1.IssuerReference{{Kind: v1alpha1.IssuerKindCluster, Name: "corp-idp"}},
		Audiences: []string{"orders"}, RequiredScopes: []string{"orders.read"},
		ForwardClaims: map[string]v1alpha1.HeaderName{"sub": "X-User"},
	}}))
	waitFor(t, 20*time.Second, "the TokenValidator Ready with keys", func() (bool, string) {
		ok, state, tv := ready(t, key)
		return ok && tv.Status.Keys >= 1 && tv.Status.LastKeyRefresh != nil, state
	})
	var authorization string
	waitFor(t, 20*time.Second, "the Credential's Secret", func() (bool, string) {
		s := &corev1.Secret{}
		if err := env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "orders-token"}, s); err != nil {
			return false, err.Error()
		}
		authorization = string(s.Data["authorization"])
		return authorization != "", "empty"
	})
	resp := validate(t, "/validate/shop/orders-api", authorization)
	if resp.StatusCode != 200 || resp.Header.Get("X-User") != issuertest.ClientID {
		t.Fatalf("the Credential's token: %d, X-User %q", resp.StatusCode, resp.Header.Get("X-User"))
	}
	// A token from an issuer the validator does not trust.
	c, err := issuer.New(issuer.Config{Spec: other.Spec()})
	must(t, err)
	foreign, err := c.Login(ctx, issuer.Request{Kind: issuer.LoginPassword, Inputs: other.InputSecretData()})
	must(t, err)
	if resp := validate(t, "/validate/shop/orders-api", foreign.Authorization()); resp.StatusCode != 401 ||
		!strings.Contains(resp.Header.Get("WWW-Authenticate"), `error_description="token issuer not trusted"`) {
		t.Fatalf("foreign token: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	// The Credential's token with its signature replaced.
	parts := strings.Split(strings.TrimPrefix(authorization, "Bearer "), ".")
	forged := "Bearer " + parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2]))
	if resp := validate(t, "/validate/shop/orders-api", forged); resp.StatusCode != 401 {
		t.Fatalf("forged token: %d", resp.StatusCode)
	}
}

func TestMissingIssuerNotReady(t *testing.T) {
	ctx := t.Context()
	must(t, env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "lonely"}}))
	must(t, env.Client.Create(ctx, &v1alpha1.TokenValidator{ObjectMeta: metav1.ObjectMeta{Namespace: "lonely", Name: "v"}, Spec: v1alpha1.TokenValidatorSpec{
		Issuers: []v1alpha1.IssuerReference{{Name: "nowhere"}}}}))
	waitFor(t, 10*time.Second, "IssuerNotFound", func() (bool, string) {
		ok, state, _ := ready(t, types.NamespacedName{Namespace: "lonely", Name: "v"})
		return !ok && strings.HasPrefix(state, string(v1alpha1.ReasonIssuerNotFound)), state
	})
	if resp := validate(t, "/validate/lonely/v", "Bearer abc"); resp.StatusCode != 404 {
		t.Fatalf("a validator that is not Ready serves nothing: got %d", resp.StatusCode)
	}
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	testenv.WaitFor(t, timeout, what, cond)
}

// A replica that does not lead still serves every TokenValidator (the validation Service sends
// requests to all replicas) and leaves their status to the leader.
func TestFollowerServesValidations(t *testing.T) {
	ctx := t.Context()
	// Someone else holds the Lease for an hour: the follower's manager never leads.
	holder, hour := "another-replica", int32(3600)
	must(t, env.Client.Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "follower-test"},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &hour,
			AcquireTime: &metav1.MicroTime{Time: time.Now()}, RenewTime: &metav1.MicroTime{Time: time.Now()}}}))
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0", Cache: cache.Options{ByObject: controllers.CacheByObject()},
		LeaderElection: true, LeaderElectionID: "follower-test", LeaderElectionNamespace: "default",
		Controller: config.Controller{SkipNameValidation: ptr.To(true)}}) // a second replica in one process
	must(t, err)
	var statusWrites atomic.Int32
	server := validation.NewServer()
	r := &tokenvalidator.Reconciler{Client: statusCounter{mgr.GetClient(), &statusWrites}, APIReader: mgr.GetAPIReader(),
		Server: server, ClusterResourceNamespace: "default", Clock: clock.RealClock{}}
	must(t, r.SetupWithManager(mgr))
	mctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = mgr.Start(mctx) }()
	follower := httptest.NewServer(server)
	defer follower.Close()

	idp := issuertest.Start(issuertest.OAuth2)
	defer idp.Close()
	must(t, env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "follower"}}))
	must(t, env.Client.Create(ctx, &v1alpha1.Issuer{ObjectMeta: metav1.ObjectMeta{Namespace: "follower", Name: "idp"}, Spec: idp.Spec()}))
	must(t, env.Client.Create(ctx, &v1alpha1.TokenValidator{ObjectMeta: metav1.ObjectMeta{Namespace: "follower", Name: "api"}, Spec: v1alpha1.TokenValidatorSpec{
		Issuers: []v1alpha1.IssuerReference{{Name: "idp"}}, Audiences: []string{"orders"}}}))
	c, err := issuer.New(issuer.Config{Spec: idp.Spec()})
	must(t, err)
	tok, err := c.Login(ctx, issuer.Request{Kind: issuer.LoginClientCredentials, Inputs: idp.InputSecretData()})
	must(t, err)
	waitFor(t, 20*time.Second, "the follower accepting the token", func() (bool, string) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, follower.URL+"/validate/follower/api", nil)
		req.Header.Set("Authorization", tok.Authorization())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false, err.Error()
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK, fmt.Sprintf("status %d", resp.StatusCode)
	})
	select {
	case <-mgr.Elected():
		t.Fatal("the follower was elected")
	default:
	}
	if n := statusWrites.Load(); n != 0 {
		t.Fatalf("the follower wrote status %d times", n)
	}
}

// statusCounter counts status writes.
type statusCounter struct {
	client.Client
	writes *atomic.Int32
}

func (c statusCounter) Status() client.SubResourceWriter {
	return statusWriter{c.Client.Status(), c.writes}
}

type statusWriter struct {
	client.SubResourceWriter
	writes *atomic.Int32
}

func (w statusWriter) Patch(ctx context.Context, obj client.Object, p client.Patch, opts ...client.SubResourcePatchOption) error {
	w.writes.Add(1)
	return w.SubResourceWriter.Patch(ctx, obj, p, opts...)
}

func (w statusWriter) Update(ctx context.Context, obj client.Object, opts ...client.SubResourceUpdateOption) error {
	w.writes.Add(1)
	return w.SubResourceWriter.Update(ctx, obj, opts...)
}
