package sds

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, &env) }

const testAudience = "tokenkeeper.io/sds-test"

// logBuffer collects a Server's log lines, to check that no token reaches them.
type logBuffer struct {
	mu    sync.Mutex
	lines []string
}

func (b *logBuffer) logger() logr.Logger {
	return funcr.New(func(prefix, args string) {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.lines = append(b.lines, prefix+" "+args)
	}, funcr.Options{Verbosity: 10})
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.lines, "\n")
}

// newCache is the manager's cache as far as SDS reads it: Credentials, and only Secrets labelled
// as tokenkeeper's (controllers.CacheByObject).
func newCache(t *testing.T, ctx context.Context) cache.Cache {
	t.Helper()
	c, err := cache.New(env.Config, cache.Options{Scheme: env.Scheme, ByObject: map[client.Object]cache.ByObject{
		&corev1.Secret{}: {Label: labels.SelectorFromSet(labels.Set{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue})},
	}})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = c.Start(ctx) }()
	return c
}

// testServer is a Server on a loopback port, watching its own cache of the test API server.
type testServer struct {
	*Server
	addr string
	logs *logBuffer
	stop context.CancelFunc
	done chan struct{}
}

// startServer serves SDS on addr ("" for any free loopback port) until the test ends or stop.
func startServer(t *testing.T, addr string, opts Options) *testServer {
	t.Helper()
	if addr == "" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr = ln.Addr().String()
		_ = ln.Close()
	}
	ctx, cancel := context.WithCancel(context.Background())
	logs := &logBuffer{}
	c := newCache(t, ctx)
	auth := &Authenticator{Reviewer: env.Client, Audience: testAudience}
	s := &testServer{Server: NewServer(c, auth, opts, logs.logger()), addr: addr, logs: logs, stop: cancel, done: make(chan struct{})}
	l := &Listener{Addr: addr, Server: s.Server, Cache: c, Plaintext: true}
	errc := make(chan error, 1)
	go func() { errc <- l.Start(ctx); close(s.done) }()
	t.Cleanup(func() { cancel(); <-s.done })
	// Ready when it accepts connections.
	testenv.WaitFor(t, 30*time.Second, "the SDS listener", func() (bool, string) {
		select {
		case err := <-errc:
			t.Fatalf("the SDS listener ended: %v", err)
		default:
		}
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			return false, err.Error()
		}
		_ = conn.Close()
		return true, ""
	})
	return s
}

// client is an SDS client: a grpc-go connection with go-control-plane's generated client.
func dial(t *testing.T, addr string) secretv3.SecretDiscoveryServiceClient {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return secretv3.NewSecretDiscoveryServiceClient(conn)
}

// withToken puts a ServiceAccount token in the call's metadata, as Envoy's call credentials do.
func withToken(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

var nsCount atomic.Int32

// fixture is a namespace with a ServiceAccount, a Credential that grants it SDS, and the
// Credential's token Secret as the controller writes it.
type fixture struct {
	ns     string
	sa     *corev1.ServiceAccount
	cred   *v1alpha1.Credential
	secret *corev1.Secret
}

func newFixture(t *testing.T, token string, grant ...string) *fixture {
	t.Helper()
	ctx := t.Context()
	f := &fixture{ns: fmt.Sprintf("sds-%d-%d", time.Now().UnixNano()%100000, nsCount.Add(1))}
	create(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: f.ns}})
	f.sa = &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "envoy"}}
	create(t, f.sa)
	f.cred = &v1alpha1.Credential{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "api"}, Spec: v1alpha1.CredentialSpec{
		IssuerRef:  v1alpha1.IssuerReference{Name: "issuer"},
		Password:   &v1alpha1.PasswordLogin{SecretRef: v1alpha1.LocalSecretReference{Name: "login"}},
		SecretName: "api-token",
	}}
	if len(grant) > 0 {
		f.cred.Spec.Delivery = &v1alpha1.Delivery{SDS: &v1alpha1.SDSDelivery{ServiceAccounts: grant}}
	}
	create(t, f.cred)
	f.secret = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "api-token", Labels: map[string]string{
		v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue, v1alpha1.LabelCredential: "api", v1alpha1.LabelRole: "token"}},
		Data: tokenData(token)}
	if err := controllerutil.SetControllerReference(f.cred, f.secret, env.Scheme); err != nil {
		t.Fatal(err)
	}
	create(t, f.secret)
	_ = ctx
	return f
}

func tokenData(token string) map[string][]byte {
	return map[string][]byte{
		v1alpha1.SecretKeyToken: []byte(token), v1alpha1.SecretKeyAuthorization: []byte("Bearer " + token),
		v1alpha1.SecretKeyTokenType: []byte("Bearer"), v1alpha1.SecretKeyExpiresAt: []byte(time.Now().Add(time.Hour).UTC().Format(time.RFC3339)),
	}
}

func create(t *testing.T, obj client.Object) {
	t.Helper()
	if err := env.Client.Create(t.Context(), obj); err != nil {
		t.Fatal(err)
	}
}

// rotate writes a new token into the target Secret, as the controller does at a rotation.
func (f *fixture) rotate(t *testing.T, token string) {
	t.Helper()
	f.secret.Data = tokenData(token)
	if err := env.Client.Update(t.Context(), f.secret); err != nil {
		t.Fatal(err)
	}
}

// saToken is a token of sa for the audiences (TokenRequest).
func saToken(t *testing.T, sa *corev1.ServiceAccount, audiences ...string) string {
	t.Helper()
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](600), Audiences: audiences}}
	if err := env.Client.SubResource("token").Create(t.Context(), sa, tr); err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

func (f *fixture) resource(suffix string) string {
	return ResourcePrefix + f.ns + "/" + f.cred.Name + suffix
}

// secretOf reads the one generic secret of a response: its name and value.
func secretOf(t *testing.T, resp *discoveryv3.DiscoveryResponse) (string, string) {
	t.Helper()
	if len(resp.GetResources()) != 1 || resp.GetTypeUrl() != SecretTypeURL {
		t.Fatalf("want one %s resource, got %d of %s", SecretTypeURL, len(resp.GetResources()), resp.GetTypeUrl())
	}
	sec := &tlsv3.Secret{}
	if err := resp.GetResources()[0].UnmarshalTo(sec); err != nil {
		t.Fatal(err)
	}
	if err := sec.ValidateAll(); err != nil {
		t.Fatalf("an invalid Secret: %v", err)
	}
	return sec.GetName(), string(sec.GetGenericSecret().GetSecret().GetInlineBytes())
}

// recv receives one response within a generous deadline (no timing assertion: a failure means
// the push never came).
func recv(t *testing.T, s secretv3.SecretDiscoveryService_StreamSecretsClient) *discoveryv3.DiscoveryResponse {
	t.Helper()
	type result struct {
		resp *discoveryv3.DiscoveryResponse
		err  error
	}
	c := make(chan result, 1)
	go func() { r, err := s.Recv(); c <- result{r, err} }()
	select {
	case r := <-c:
		if r.err != nil {
			t.Fatalf("receiving: %v", r.err)
		}
		return r.resp
	case <-time.After(30 * time.Second):
		t.Fatal("no response within 30s")
		return nil
	}
}

// ack acknowledges resp, as Envoy does when it applied it.
func ack(t *testing.T, s secretv3.SecretDiscoveryService_StreamSecretsClient, names []string, resp *discoveryv3.DiscoveryResponse) {
	t.Helper()
	if err := s.Send(&discoveryv3.DiscoveryRequest{TypeUrl: SecretTypeURL, ResourceNames: names, VersionInfo: resp.GetVersionInfo(),
		ResponseNonce: resp.GetNonce()}); err != nil {
		t.Fatal(err)
	}
}
