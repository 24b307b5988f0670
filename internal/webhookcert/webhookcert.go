// Package webhookcert gives the admission webhook server a TLS certificate without cert-manager:
// a self-signed CA and a serving certificate kept in one Secret that every replica shares,
// written to the webhook server's certificate directory, renewed before expiry, and the CA
// injected into the webhook configurations.
package webhookcert

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"slices"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
)

// Validity periods. The serving certificate is renewed a month before it expires; the CA too.
const (
	CAValidity   = 10 * 365 * 24 * time.Hour
	CertValidity = 365 * 24 * time.Hour
	RenewBefore  = 30 * 24 * time.Hour
	checkEvery   = time.Hour
)

// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=validatingwebhookconfigurations,verbs=get;update

// Manager keeps the webhook certificate. It runs on every replica (not only the leader): each
// serves webhooks.
type Manager struct {
	// Client talks to the API server directly (the manager's cache is not started yet at first).
	Client client.Client
	// Secret holds ca.crt, ca.key, tls.crt and tls.key.
	Secret types.NamespacedName
	// CertDir receives tls.crt and tls.key for the webhook server.
	CertDir string
	// DNSNames of the webhook Service, such as tokenkeeper-webhook.tokenkeeper-system.svc
	// (and localhost when the manager runs outside a cluster).
	DNSNames []string
	// IPAddresses the certificate also names: 127.0.0.1 and ::1 outside a cluster.
	IPAddresses []net.IP
	// WebhookConfigurations are the ValidatingWebhookConfigurations to inject the CA into.
	WebhookConfigurations []string
	Clock                 clock.PassiveClock
}

// NeedLeaderElection: every replica needs its certificate files.
func (m *Manager) NeedLeaderElection() bool { return false }

// Start keeps the certificate fresh until ctx ends.
func (m *Manager) Start(ctx context.Context) error {
	t := time.NewTicker(checkEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := m.Ensure(ctx); err != nil {
				logf.FromContext(ctx).Error(err, "renewing the webhook certificate")
			}
		}
	}
}

// Ensure makes the Secret hold a valid CA and serving certificate (creating or renewing them),
// writes the files and injects the CA bundle.
func (m *Manager) Ensure(ctx context.Context) error {
	var sec *corev1.Secret
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var err error
		sec, err = m.ensureSecret(ctx)
		return err
	})
	if err != nil {
		return fmt.Errorf("webhook certificate Secret %s: %w", m.Secret, err)
	}
	if err := m.writeFiles(sec); err != nil {
		return err
	}
	return m.inject(ctx, sec.Data["ca.crt"])
}

func (m *Manager) ensureSecret(ctx context.Context) (*corev1.Secret, error) {
	sec := &corev1.Secret{}
	err := m.Client.Get(ctx, m.Secret, sec)
	if apierrors.IsNotFound(err) {
		sec = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: m.Secret.Namespace, Name: m.Secret.Name,
			Labels: map[string]string{"app.kubernetes.io/managed-by": "tokenkeeper"}}, Type: corev1.SecretTypeTLS}
		if sec.Data, err = m.issue(nil); err != nil {
			return nil, err
		}
		if err := m.Client.Create(ctx, sec); apierrors.IsAlreadyExists(err) {
			return nil, apierrors.NewConflict(corev1.Resource("secrets"), m.Secret.Name, err) // another replica won: read theirs
		} else if err != nil {
			return nil, err
		}
		return sec, nil
	}
	if err != nil {
		return nil, err
	}
	if m.fresh(sec.Data) {
		return sec, nil
	}
	if sec.Data, err = m.issue(sec.Data); err != nil {
		return nil, err
	}
	return sec, m.Client.Update(ctx, sec)
}

// fresh reports whether the Secret's CA and certificate are valid beyond RenewBefore and the
// certificate names the configured DNS names and is signed by the CA.
func (m *Manager) fresh(data map[string][]byte) bool {
	ca, caErr := parseCert(data["ca.crt"])
	cert, certErr := parseCert(data["tls.crt"])
	if caErr != nil || certErr != nil || len(data["ca.key"]) == 0 || len(data["tls.key"]) == 0 {
		return false
	}
	deadline := m.Clock.Now().Add(RenewBefore)
	if ca.NotAfter.Before(deadline) || cert.NotAfter.Before(deadline) || !slices.Equal(cert.DNSNames, m.DNSNames) ||
		!slices.EqualFunc(cert.IPAddresses, m.IPAddresses, net.IP.Equal) {
		return false
	}
	return cert.CheckSignatureFrom(ca) == nil
}

// issue returns a new serving certificate, reusing the CA in old when it is still good.
func (m *Manager) issue(old map[string][]byte) (map[string][]byte, error) {
	now := m.Clock.Now()
	caCert, caErr := parseCert(old["ca.crt"])
	caKey, keyErr := parseKey(old["ca.key"])
	caPEM, caKeyPEM := old["ca.crt"], old["ca.key"]
	if caErr != nil || keyErr != nil || caCert.NotAfter.Before(now.Add(RenewBefore)) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		tmpl := &x509.Certificate{
			SerialNumber: serial(), Subject: pkix.Name{CommonName: "tokenkeeper-webhook-ca"},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(CAValidity), IsCA: true, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			return nil, err
		}
		if caCert, err = x509.ParseCertificate(der); err != nil {
			return nil, err
		}
		caKey = key
		caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
		if caKeyPEM, err = keyPEM(key); err != nil {
			return nil, err
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: m.DNSNames[0]}, DNSNames: m.DNSNames, IPAddresses: m.IPAddresses,
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(CertValidity),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	tlsKey, err := keyPEM(key)
	if err != nil {
		return nil, err
	}
	return map[string][]byte{
		"ca.crt": caPEM, "ca.key": caKeyPEM,
		corev1.TLSCertKey: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), corev1.TLSPrivateKeyKey: tlsKey,
	}, nil
}

// writeFiles writes tls.crt and tls.key when they differ; the webhook server's certificate
// watcher picks them up.
func (m *Manager) writeFiles(sec *corev1.Secret) error {
	if err := os.MkdirAll(m.CertDir, 0o700); err != nil {
		return err
	}
	dir, err := os.OpenRoot(m.CertDir) // every file operation stays inside the directory
	if err != nil {
		return err
	}
	defer func() { _ = dir.Close() }()
	for _, name := range []string{corev1.TLSPrivateKeyKey, corev1.TLSCertKey} {
		if cur, err := dir.ReadFile(name); err == nil && bytes.Equal(cur, sec.Data[name]) {
			continue
		}
		if err := dir.WriteFile(name+".tmp", sec.Data[name], 0o600); err != nil {
			return err
		}
		if err := dir.Rename(name+".tmp", name); err != nil {
			return err
		}
	}
	return nil
}

// inject sets the CA bundle of every webhook in the configurations.
func (m *Manager) inject(ctx context.Context, ca []byte) error {
	var errs []error
	for _, name := range m.WebhookConfigurations {
		errs = append(errs, retry.RetryOnConflict(retry.DefaultRetry, func() error {
			cfg := &admissionregistrationv1.ValidatingWebhookConfiguration{}
			if err := m.Client.Get(ctx, types.NamespacedName{Name: name}, cfg); err != nil {
				if apierrors.IsNotFound(err) {
					return nil // webhooks not installed (a run outside the cluster): nothing to inject
				}
				return err
			}
			changed := false
			for i := range cfg.Webhooks {
				if !bytes.Equal(cfg.Webhooks[i].ClientConfig.CABundle, ca) {
					cfg.Webhooks[i].ClientConfig.CABundle, changed = ca, true
				}
			}
			if !changed {
				return nil
			}
			return m.Client.Update(ctx, cfg)
		}))
	}
	return errors.Join(errs...)
}

func parseCert(p []byte) (*x509.Certificate, error) {
	b, _ := pem.Decode(p)
	if b == nil {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(b.Bytes)
}

func parseKey(p []byte) (*ecdsa.PrivateKey, error) {
	b, _ := pem.Decode(p)
	if b == nil {
		return nil, errors.New("no PEM key")
	}
	return x509.ParseECPrivateKey(b.Bytes)
}

func keyPEM(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}
