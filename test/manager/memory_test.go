package manager_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/testenv"
)

// chartMemoryLimit is the Helm chart's default memory limit for the manager (sized for 10,000
// Credentials; test/install checks the chart's value).
const chartMemoryLimit = 512 << 20

// Forty tenants each sign a token of megabytes (a selfSigned Issuer whose 32 claims each stay
// under the template bound): the real manager refuses every one as InvalidConfiguration naming
// the bound, holds none of them, and stays far under the chart's memory limit. (v0.2 went from
// 228 to 546 MB with these, and stayed at 488 MB after they were deleted.)
func TestTenantsCannotExhaustMemory(t *testing.T) {
	env := controlPlane(t)
	c, ctx, dir := env.Client, t.Context(), t.TempDir()
	bin, kcPath := env.ManagerBinary(t, dir)
	p := start(t, bin, kcPath, filepath.Join(dir, "certs"), os.Environ(), "--webhook-bind-address=127.0.0.1", "--webhooks=off")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	claims := map[string]v1alpha1.BodyTemplate{}
	for i := range 32 {
		claims[fmt.Sprintf("c%02d", i)] = "{{ .big }}{{ .big }}{{ .big }}{{ .big }}{{ .big }}" // 60,000 bytes each
	}
	const tenants = 40
	for i := range tenants {
		ns := fmt.Sprintf("tenant-%02d", i)
		must(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
		must(c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "key"}, StringData: map[string]string{
			"private_key": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), "big": strings.Repeat("x", 12000)}}))
		must(c.Create(ctx, &v1alpha1.Issuer{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "huge"},
			Spec: v1alpha1.IssuerSpec{SelfSigned: &v1alpha1.SelfSignedJWT{Claims: claims}}}))
		must(c.Create(ctx, &v1alpha1.Credential{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cred"}, Spec: v1alpha1.CredentialSpec{
			IssuerRef: v1alpha1.IssuerReference{Name: "huge"}, SecretName: "token",
			PrivateKey: &v1alpha1.PrivateKeyLogin{SecretRef: v1alpha1.LocalSecretReference{Name: "key"}}}}))
	}
	waitFor(t, 90*time.Second, "every Credential refused with the bound named", func() error {
		for i := range tenants {
			cred := &v1alpha1.Credential{}
			must(c.Get(ctx, types.NamespacedName{Namespace: fmt.Sprintf("tenant-%02d", i), Name: "cred"}, cred))
			cond := meta.FindStatusCondition(cred.Status.Conditions, string(v1alpha1.ConditionReady))
			if cond == nil || cond.Reason != string(v1alpha1.ReasonInvalidConfig) || !strings.Contains(cond.Message, "MaxTokenLength") {
				return fmt.Errorf("tenant %d: %v", i, cond)
			}
		}
		return nil
	})
	time.Sleep(2 * time.Second) // retries of the refused logins, if any, run meanwhile
	rss := testenv.ResidentBytes(t, p.cmd.Process.Pid)
	t.Logf("manager RSS with %d refused multi-megabyte tokens: %d MiB (chart limit %d MiB)", tenants, rss>>20, chartMemoryLimit>>20)
	if rss > chartMemoryLimit/4 {
		t.Errorf("the manager holds %d MiB, over a quarter of the chart's %d MiB limit", rss>>20, chartMemoryLimit>>20)
	}
	if err := p.running(); err != nil {
		t.Fatal(err)
	}
}
