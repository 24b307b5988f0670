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

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer/issuertest"
	"github.com/tokenkeeper/tokenkeeper/internal/testenv"
	"github.com/tokenkeeper/tokenkeeper/internal/validation"
)

// The manager binary serves Envoy's ext_authz Check on all three of its ports: the validation port
// (TLS, beside /validate), the TLS ext_authz port (--ext-authz-bind-address) and the h2c port
// (--ext-authz-h2c-bind-address), the TLS ones with its self-managed certificate. Each allows the
// token a Credential keeps, with the identity header, and denies a forged one with 401; the TLS
// ext_authz port refuses a plaintext client.
func TestManagerServesExtAuthz(t *testing.T) {
	env := controlPlane(t)
	ctx := t.Context()
	c := env.Client
	dir := t.TempDir()
	bin, kcPath := env.Manager(t, dir)
	tlsPort, h2cPort := freePort(t), freePort(t)
	p := start(t, bin, kcPath, filepath.Join(dir, "certs"), append(os.Environ(), "POD_NAMESPACE=tokenkeeper-system"),
		"--allow-egress-cidrs=127.0.0.0/8", "--ext-authz-bind-address=127.0.0.1:"+strconv.Itoa(tlsPort),
		"--ext-authz-h2c-bind-address=127.0.0.1:"+strconv.Itoa(h2cPort))

	srv := issuertest.Start(issuertest.OAuth2)
	t.Cleanup(srv.Close)
	srv.SetLifetime(time.Hour)
	cred := &v1alpha1.Credential{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "orders"}, Spec: v1alpha1.CredentialSpec{
		IssuerRef: v1alpha1.IssuerReference{Kind: v1alpha1.IssuerKindNamespaced, Name: "orders"}, SecretName: "orders-token"}}
	srv.SetLogin(&cred.Spec, "orders-login")
	tv := &v1alpha1.TokenValidator{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "orders"}, Spec: v1alpha1.TokenValidatorSpec{
		Issuers: []v1alpha1.IssuerReference{{Kind: v1alpha1.IssuerKindNamespaced, Name: "orders"}}, Audiences: []string{"orders"}}}
	for _, obj := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "orders-login"}, StringData: srv.InputSecretData()},
		&v1alpha1.Issuer{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "orders"}, Spec: srv.Spec()},
		cred, tv,
	} {
		if err := c.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	key := types.NamespacedName{Namespace: "shop", Name: "orders"}
	testenv.WaitFor(t, 60*time.Second, "the Credential and the TokenValidator Ready", func() (bool, string) {
		if err := c.Get(ctx, key, cred); err != nil {
			return false, err.Error()
		}
		if err := c.Get(ctx, key, tv); err != nil {
			return false, err.Error()
		}
		return meta.IsStatusConditionTrue(cred.Status.Conditions, string(v1alpha1.ConditionReady)) &&
			meta.IsStatusConditionTrue(tv.Status.Conditions, string(v1alpha1.ConditionReady)), fmt.Sprint(cred.Status.Conditions, tv.Status.Conditions)
	})
	target := &corev1.Secret{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: "shop", Name: "orders-token"}, target); err != nil {
		t.Fatal(err)
	}
	token := string(target.Data[v1alpha1.SecretKeyToken])

	cert := &corev1.Secret{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: "tokenkeeper-system", Name: "tokenkeeper-webhook-cert"}, cert); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(cert.Data["ca.crt"])
	withTLS := credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "tokenkeeper.tokenkeeper-system.svc", MinVersion: tls.VersionTLS12})
	check := func(t *testing.T, port int, creds credentials.TransportCredentials, bearer string) (*authv3.CheckResponse, error) {
		t.Helper()
		conn, err := grpc.NewClient(fmt.Sprintf("passthrough:///127.0.0.1:%d", port), grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = conn.Close() }()
		req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: "GET", Path: "/orders/1", Host: "shop.example", Headers: map[string]string{"authorization": "Bearer " + bearer}}},
			ContextExtensions: map[string]string{validation.ValidatorContextKey: "shop/orders"},
		}}
		return authv3.NewAuthorizationClient(conn).Check(ctx, req)
	}
	for _, port := range []struct {
		name  string
		port  int
		creds credentials.TransportCredentials
	}{
		{"validation port (TLS)", p.validation, withTLS},
		{"ext_authz TLS port", tlsPort, withTLS},
		{"ext_authz h2c port", h2cPort, insecure.NewCredentials()},
	} {
		t.Run(port.name, func(t *testing.T) {
			resp, err := check(t, port.port, port.creds, token)
			if err != nil {
				t.Fatal(err)
			}
			ok := resp.GetOkResponse()
			if codes.Code(resp.GetStatus().GetCode()) != codes.OK || ok == nil {
				t.Fatalf("the Credential's token: %v, want allowed", resp.GetStatus())
			}
			if subject := header(ok.GetHeaders(), "X-Auth-Subject"); subject == "" {
				t.Fatalf("allowed without X-Auth-Subject: %v", ok.GetHeaders())
			}
			resp, err = check(t, port.port, port.creds, token[:len(token)-4]+"AAAA")
			if err != nil {
				t.Fatal(err)
			}
			if denied := resp.GetDeniedResponse(); denied == nil || denied.GetStatus().GetCode() != 401 {
				t.Fatalf("a forged token: %v, want a 401 denial", resp.GetStatus())
			}
		})
	}
	if _, err := check(t, tlsPort, insecure.NewCredentials(), token); status.Code(err) != codes.Unavailable {
		t.Fatalf("a plaintext client on the TLS ext_authz port: %v, want Unavailable", err)
	}
}

func header(hs []*corev3.HeaderValueOption, name string) string {
	for _, h := range hs {
		if h.GetHeader().GetKey() == name {
			return h.GetHeader().GetValue()
		}
	}
	return ""
}
