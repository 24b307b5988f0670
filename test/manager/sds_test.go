package manager_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer/issuertest"
	"github.com/tokenkeeper/tokenkeeper/internal/sds"
	"github.com/tokenkeeper/tokenkeeper/internal/testenv"
)

// The manager binary with --sds-bind-address serves a Credential's token over SDS (TLS with its
// self-managed certificate) to the ServiceAccount the Credential lists, and pushes the token the
// controller writes at a renewal on the open stream.
func TestManagerServesSDS(t *testing.T) {
	env := controlPlane(t)
	ctx := t.Context()
	c := env.Client
	dir := t.TempDir()
	bin, kcPath := env.Manager(t, dir)
	port := freePort(t)
	start(t, bin, kcPath, filepath.Join(dir, "certs"), append(os.Environ(), "POD_NAMESPACE=tokenkeeper-system"),
		"--allow-egress-cidrs=127.0.0.0/8", "--sds-bind-address=127.0.0.1:"+strconv.Itoa(port))

	srv := issuertest.Start(issuertest.Seed001)
	t.Cleanup(srv.Close)
	srv.SetLifetime(time.Hour)
	input := srv.InputSecretData()
	input["username"], input["password"] = issuertest.Username, issuertest.Password
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "envoy"}}
	cred := &v1alpha1.Credential{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "orders"}, Spec: v1alpha1.CredentialSpec{
		IssuerRef: v1alpha1.IssuerReference{Kind: v1alpha1.IssuerKindNamespaced, Name: "orders"}, SecretName: "orders-token",
		Password: &v1alpha1.PasswordLogin{SecretRef: v1alpha1.LocalSecretReference{Name: "orders-login"}},
		Delivery: &v1alpha1.Delivery{SDS: &v1alpha1.SDSDelivery{ServiceAccounts: []string{"envoy"}}},
	}}
	for _, obj := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, sa,
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "orders-login"}, StringData: input},
		&v1alpha1.Issuer{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "orders"}, Spec: srv.Spec()},
		cred,
	} {
		if err := c.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	key := types.NamespacedName{Namespace: "shop", Name: "orders"}
	fingerprint := func() string {
		t.Helper()
		if err := c.Get(ctx, key, cred); err != nil {
			t.Fatal(err)
		}
		if !meta.IsStatusConditionTrue(cred.Status.Conditions, string(v1alpha1.ConditionReady)) {
			return ""
		}
		return cred.Status.TokenFingerprint
	}
	testenv.WaitFor(t, 60*time.Second, "the Credential Ready", func() (bool, string) { return fingerprint() != "", "not Ready" })

	cert := &corev1.Secret{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: "tokenkeeper-system", Name: "tokenkeeper-webhook-cert"}, cert); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(cert.Data["ca.crt"])
	conn, err := grpc.NewClient(fmt.Sprintf("passthrough:///127.0.0.1:%d", port), grpc.WithTransportCredentials(credentials.NewTLS(
		&tls.Config{RootCAs: pool, ServerName: "tokenkeeper.tokenkeeper-system.svc", MinVersion: tls.VersionTLS12})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](600), Audiences: []string{sds.DefaultAudience}}}
	if err := c.SubResource("token").Create(ctx, sa, tr); err != nil {
		t.Fatal(err)
	}
	stream, err := secretv3.NewSecretDiscoveryServiceClient(conn).StreamSecrets(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tr.Status.Token))
	if err != nil {
		t.Fatal(err)
	}
	names := []string{sds.ResourcePrefix + "shop/orders"}
	if err := stream.Send(&discoveryv3.DiscoveryRequest{TypeUrl: sds.SecretTypeURL, ResourceNames: names}); err != nil {
		t.Fatal(err)
	}
	// value is the Authorization header value the response carries, checked against the Secret.
	value := func(resp *discoveryv3.DiscoveryResponse) string {
		t.Helper()
		s := &tlsv3.Secret{}
		if len(resp.GetResources()) != 1 || resp.GetResources()[0].UnmarshalTo(s) != nil {
			t.Fatalf("want one Secret, got %d resources", len(resp.GetResources()))
		}
		target := &corev1.Secret{}
		if err := c.Get(ctx, types.NamespacedName{Namespace: "shop", Name: "orders-token"}, target); err != nil {
			t.Fatal(err)
		}
		got := string(s.GetGenericSecret().GetSecret().GetInlineBytes())
		if got != string(target.Data[v1alpha1.SecretKeyAuthorization]) || !srv.Valid(string(target.Data[v1alpha1.SecretKeyToken])) {
			t.Fatal("the SDS value is not the target Secret's current authorization value")
		}
		return got
	}
	first, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if fp := fingerprint(); first.GetVersionInfo() != fp {
		t.Fatalf("version %s, want status.tokenFingerprint %s", first.GetVersionInfo(), fp)
	}
	before := value(first)
	if err := stream.Send(&discoveryv3.DiscoveryRequest{TypeUrl: sds.SecretTypeURL, ResourceNames: names, VersionInfo: first.GetVersionInfo(),
		ResponseNonce: first.GetNonce()}); err != nil {
		t.Fatal(err)
	}

	// A renewal: the controller logs in again and writes the new token; SDS pushes it.
	patch := client.MergeFrom(cred.DeepCopy())
	metav1.SetMetaDataAnnotation(&cred.ObjectMeta, v1alpha1.AnnotationRenewRequestedAt, time.Now().UTC().Format(time.RFC3339Nano))
	if err := c.Patch(ctx, cred, patch); err != nil {
		t.Fatal(err)
	}
	asked := time.Now()
	next, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if next.GetVersionInfo() == first.GetVersionInfo() || value(next) == before {
		t.Fatal("the push after the renewal carries the old token")
	}
	t.Logf("renewal asked, new token %s pushed after %v", next.GetVersionInfo(), time.Since(asked).Round(time.Millisecond))
	testenv.WaitFor(t, 10*time.Second, "status.tokenFingerprint to show the pushed version", func() (bool, string) {
		fp := fingerprint()
		return fp == next.GetVersionInfo(), fp
	})
}
