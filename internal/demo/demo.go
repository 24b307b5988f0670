// Package demo serves the conformance issuers (seeds 000–004 and OAuth2) where pods can reach
// them, and builds the manifests that use them: input Secrets, an Issuer and a Credential each,
// and an application pod that calls every issuer's protected API with the token from the Secret
// it mounts. `make demo` (hack/demo-issuer) and the end-to-end suite (test/e2e) both use it.
package demo

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer/issuertest"
)

// AppImage is the demo application's image (hack/demo-app), imported into the node's containerd.
const AppImage = "docker.io/local/demo-app:1"

// Names of the objects the demo creates besides one Credential per flavor.
const (
	CAConfigMap = "demo-issuer-ca"
	AppPod      = "app"
)

// Issuers are the running conformance issuers and the manifests that use them.
type Issuers struct {
	Namespace string
	Servers   []*issuertest.Server
	// Cert is the issuers' certificate (its own CA, in the CA ConfigMap), for more servers on ip.
	Cert tls.Certificate
	// Objects are, in order of creation: the namespace, the CA ConfigMap, per flavor the input
	// Secrets, the Issuer and the Credential, and last the application pod.
	Objects []client.Object
}

// Start serves one issuer per flavor over HTTPS on ip, on consecutive ports from port (0: any
// free ports), each granting tokens that live lifetime.
func Start(ip string, port int, lifetime time.Duration, namespace string) (*Issuers, error) {
	cert, err := selfSigned(ip)
	if err != nil {
		return nil, err
	}
	d := &Issuers{Namespace: namespace, Cert: cert}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})
	d.Objects = append(d.Objects,
		&corev1.Namespace{TypeMeta: typeMeta("Namespace"), ObjectMeta: metav1.ObjectMeta{Name: namespace}},
		&corev1.ConfigMap{TypeMeta: typeMeta("ConfigMap"), ObjectMeta: d.meta(CAConfigMap), Data: map[string]string{"ca.crt": string(caPEM)}})
	app := d.appPod()
	for i, f := range issuertest.Flavors {
		addr := net.JoinHostPort(ip, "0")
		if port != 0 {
			addr = net.JoinHostPort(ip, strconv.Itoa(port+i))
		}
		s, err := issuertest.StartOn(f, addr, cert)
		if err != nil {
			d.Close()
			return nil, err
		}
		s.SetLifetime(lifetime)
		d.Servers = append(d.Servers, s)
		d.Objects = append(d.Objects, d.objects(s, lifetime)...)
		addTarget(app, string(f), s.URL()+s.ProtectedPath())
	}
	d.Objects = append(d.Objects, app)
	return d, nil
}

// Close stops every issuer.
func (d *Issuers) Close() {
	for _, s := range d.Servers {
		s.Close()
	}
}

// YAML is every object as one multi-document manifest for kubectl apply.
func (d *Issuers) YAML() ([]byte, error) {
	var buf []byte
	for _, o := range d.Objects {
		b, err := yaml.Marshal(o)
		if err != nil {
			return nil, err
		}
		buf = append(append(buf, "---\n"...), b...)
	}
	return buf, nil
}

// TokenSecret is the Secret the Credential for flavor f writes.
func TokenSecret(f issuertest.Flavor) string { return string(f) + "-token" }

func typeMeta(kind string) metav1.TypeMeta { return metav1.TypeMeta{APIVersion: "v1", Kind: kind} }

func (d *Issuers) meta(name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: d.Namespace, Name: name}
}

// objects are the input Secrets, the Issuer and the Credential for one conformance server.
func (d *Issuers) objects(s *issuertest.Server, lifetime time.Duration) []client.Object {
	name := string(s.Flavor)
	secret := func(n string, data map[string]string) *corev1.Secret {
		return &corev1.Secret{TypeMeta: typeMeta("Secret"), ObjectMeta: d.meta(n), StringData: data}
	}
	objs := []client.Object{secret(name+"-login", s.InputSecretData())}
	if data := s.HeaderSecretData(); data != nil {
		objs = append(objs, secret(issuertest.HeaderSecretName, data))
	}
	spec := s.Spec()
	if spec.DefaultLifetime != nil {
		// Seed 000 says nothing of expiry: the Issuer declares what the server grants.
		spec.DefaultLifetime = &metav1.Duration{Duration: lifetime}
	}
	tm := func(kind string) metav1.TypeMeta {
		return metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: kind}
	}
	iss := &v1alpha1.Issuer{TypeMeta: tm("Issuer"), ObjectMeta: d.meta(name), Spec: spec}
	cred := &v1alpha1.Credential{TypeMeta: tm("Credential"), ObjectMeta: d.meta(name), Spec: v1alpha1.CredentialSpec{
		IssuerRef: v1alpha1.IssuerReference{Name: name}, SecretName: TokenSecret(s.Flavor)}}
	s.SetLogin(&cred.Spec, name+"-login")
	return append(objs, iss, cred)
}

// appPod is the application: it trusts the issuers' CA and mounts every token Secret.
func (d *Issuers) appPod() *corev1.Pod {
	return &corev1.Pod{TypeMeta: typeMeta("Pod"), ObjectMeta: d.meta(AppPod),
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "app", Image: AppImage, ImagePullPolicy: corev1.PullNever,
				Env:          []corev1.EnvVar{{Name: "CA_FILE", Value: "/etc/demo-ca/ca.crt"}, {Name: "TARGETS"}},
				VolumeMounts: []corev1.VolumeMount{{Name: "ca", MountPath: "/etc/demo-ca", ReadOnly: true}}}},
			Volumes: []corev1.Volume{{Name: "ca", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: CAConfigMap}}}}},
		}}
}

// addTarget mounts flavor's token Secret into the app and adds its protected URL to TARGETS
// (name=url=dir, as hack/demo-app reads it).
func addTarget(p *corev1.Pod, flavor, url string) {
	dir := "/var/run/secrets/" + flavor
	c := &p.Spec.Containers[0]
	c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: flavor, MountPath: dir, ReadOnly: true})
	p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: flavor, VolumeSource: corev1.VolumeSource{
		Secret: &corev1.SecretVolumeSource{SecretName: TokenSecret(issuertest.Flavor(flavor))}}})
	c.Env[1].Value = strings.TrimSpace(fmt.Sprintf("%s %s=%s=%s", c.Env[1].Value, flavor, url, dir))
}

// selfSigned is a certificate for ip that is its own CA, so an Issuer's caBundle can trust it.
func selfSigned(ip string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "tokenkeeper-demo-issuer"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(30 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, IPAddresses: []net.IP{net.ParseIP(ip)},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
}
