package webhookcert_test

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	"github.com/tokenkeeper/tokenkeeper/internal/testenv"
	"github.com/tokenkeeper/tokenkeeper/internal/webhookcert"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, &env) }

func cert(t *testing.T, p []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(p)
	if b == nil {
		t.Fatal("no PEM")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The manager creates the certificate, shares it between replicas, injects the CA, and renews
// the serving certificate a month before expiry while keeping the CA.
func TestCertificateLifecycle(t *testing.T) {
	ctx := t.Context()
	c := env.Client
	must(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "tokenkeeper-system"}}))
	none := admissionregistrationv1.SideEffectClassNone
	cfg := &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "tokenkeeper"},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{Name: "vcredential.tokenkeeper.io", SideEffects: &none,
			AdmissionReviewVersions: []string{"v1"},
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{Namespace: "tokenkeeper-system", Name: "tokenkeeper-webhook", Path: ptr.To("/v")}}}}}
	must(t, c.Create(ctx, cfg))

	clk := clocktesting.NewFakeClock(time.Now())
	replica := func() *webhookcert.Manager {
		return &webhookcert.Manager{Client: c, Clock: clk, CertDir: t.TempDir(),
			Secret:                types.NamespacedName{Namespace: "tokenkeeper-system", Name: "tokenkeeper-webhook-cert"},
			DNSNames:              []string{"tokenkeeper-webhook.tokenkeeper-system.svc", "tokenkeeper-webhook.tokenkeeper-system.svc.cluster.local"},
			WebhookConfigurations: []string{"tokenkeeper"}}
	}
	a, b := replica(), replica()
	must(t, a.Ensure(ctx))
	must(t, b.Ensure(ctx))

	files := func(m *webhookcert.Manager) []byte {
		crt, err := os.ReadFile(filepath.Join(m.CertDir, "tls.crt"))
		must(t, err)
		return crt
	}
	if string(files(a)) != string(files(b)) {
		t.Fatalf("two replicas serve different certificates")
	}
	must(t, c.Get(ctx, types.NamespacedName{Name: "tokenkeeper"}, cfg))
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(cfg.Webhooks[0].ClientConfig.CABundle) {
		t.Fatalf("no CA bundle injected")
	}
	first := cert(t, files(a))
	if _, err := first.Verify(x509.VerifyOptions{Roots: pool, DNSName: "tokenkeeper-webhook.tokenkeeper-system.svc", CurrentTime: clk.Now()}); err != nil {
		t.Fatalf("serving certificate does not verify against the injected CA: %v", err)
	}

	// Eleven and a half months later: inside the renewal window.
	clk.Step(CertAge)
	must(t, a.Ensure(ctx))
	renewed := cert(t, files(a))
	if renewed.SerialNumber.Cmp(first.SerialNumber) == 0 || !renewed.NotAfter.After(first.NotAfter) {
		t.Fatalf("serving certificate not renewed inside the renewal window")
	}
	if _, err := renewed.Verify(x509.VerifyOptions{Roots: pool, DNSName: "tokenkeeper-webhook.tokenkeeper-system.svc", CurrentTime: clk.Now()}); err != nil {
		t.Fatalf("renewed certificate does not verify against the unchanged CA: %v", err)
	}
	must(t, b.Ensure(ctx))
	if string(files(b)) != string(files(a)) {
		t.Fatalf("the other replica did not pick up the renewed certificate")
	}
}

// CertAge puts the clock inside the serving certificate's renewal window.
const CertAge = webhookcert.CertValidity - webhookcert.RenewBefore + 24*time.Hour

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
