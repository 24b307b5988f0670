// Command demo-issuer serves the five seed APIs and OAuth2 (the conformance issuers of
// internal/issuer/issuertest) over HTTPS on one address, with tokens that live a few minutes, and
// writes the manifests that use them: input Secrets, Issuers and Credentials in one namespace.
// `make demo` runs it on the node address so that the manager's pods can reach it.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer/issuertest"
)

func main() {
	ip := flag.String("ip", "127.0.0.1", "address to serve on (the node IP for pods)")
	port := flag.Int("port", 9100, "first port; the six issuers use consecutive ports")
	lifetime := flag.Duration("lifetime", 3*time.Minute, "access token lifetime")
	namespace := flag.String("namespace", "demo", "namespace of the generated objects")
	out := flag.String("manifests", "bin/demo/issuers.yaml", "where to write the manifests")
	flag.Parse()
	if err := run(*ip, *port, *lifetime, *namespace, *out); err != nil {
		fmt.Fprintln(os.Stderr, "demo-issuer:", err)
		os.Exit(1)
	}
}

func run(ip string, port int, lifetime time.Duration, namespace, out string) error {
	cert, err := selfSigned(ip)
	if err != nil {
		return err
	}
	var docs []any
	docs = append(docs, &corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}, ObjectMeta: metav1.ObjectMeta{Name: namespace}})
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})
	docs = append(docs, &corev1.ConfigMap{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "demo-issuer-ca"}, Data: map[string]string{"ca.crt": string(caPEM)}})
	app := appPod(namespace)
	for i, f := range issuertest.Flavors {
		s, err := issuertest.StartOn(f, net.JoinHostPort(ip, strconv.Itoa(port+i)), cert)
		if err != nil {
			return err
		}
		defer s.Close()
		s.SetLifetime(lifetime)
		docs = append(docs, objects(s, namespace, lifetime)...)
		addTarget(app, string(f), s.URL()+s.ProtectedPath())
		fmt.Printf("demo-issuer: %s at %s (tokens live %s)\n", f, s.URL(), lifetime)
	}
	docs = append(docs, app)
	var buf []byte
	for _, d := range docs {
		b, err := yaml.Marshal(d)
		if err != nil {
			return err
		}
		buf = append(append(buf, "---\n"...), b...)
	}
	if err := os.WriteFile(out, buf, 0o600); err != nil {
		return err
	}
	fmt.Printf("demo-issuer: manifests in %s\n", out)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	<-sigs
	return nil
}

// objects are the input Secrets, the Issuer and the Credential for one conformance server. The
// Credential writes Secret <flavor>-token.
func objects(s *issuertest.Server, ns string, lifetime time.Duration) []any {
	name := string(s.Flavor)
	meta := func(n string) metav1.ObjectMeta { return metav1.ObjectMeta{Namespace: ns, Name: n} }
	secret := func(n string, data map[string]string) *corev1.Secret {
		return &corev1.Secret{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"}, ObjectMeta: meta(n), StringData: data}
	}
	docs := []any{secret(name+"-login", s.InputSecretData())}
	spec := s.Spec()
	if spec.DefaultLifetime != nil {
		// Seed 000 says nothing of expiry: the Issuer declares what the server grants.
		spec.DefaultLifetime = &metav1.Duration{Duration: lifetime}
	}
	if data := s.HeaderSecretData(); data != nil {
		docs = append(docs, secret(issuertest.HeaderSecretName, data))
	}
	tm := metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String()}
	iss := &v1alpha1.Issuer{TypeMeta: tm, ObjectMeta: meta(name), Spec: spec}
	iss.Kind = "Issuer"
	cred := &v1alpha1.Credential{TypeMeta: tm, ObjectMeta: meta(name), Spec: v1alpha1.CredentialSpec{
		IssuerRef: v1alpha1.IssuerReference{Name: name}, SecretName: name + "-token"}}
	cred.Kind = "Credential"
	s.SetLogin(&cred.Spec, name+"-login")
	return append(docs, iss, cred)
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

// appPod is the demo application: it mounts every Credential's token Secret.
func appPod(ns string) *corev1.Pod {
	return &corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app"},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "app", Image: "docker.io/local/demo-app:1", ImagePullPolicy: corev1.PullNever,
				Env:          []corev1.EnvVar{{Name: "CA_FILE", Value: "/etc/demo-ca/ca.crt"}, {Name: "TARGETS"}},
				VolumeMounts: []corev1.VolumeMount{{Name: "ca", MountPath: "/etc/demo-ca", ReadOnly: true}}}},
			Volumes: []corev1.Volume{{Name: "ca", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: "demo-issuer-ca"}}}}},
		}}
}

// addTarget mounts flavor's token Secret into the app and adds its protected URL to TARGETS.
func addTarget(p *corev1.Pod, flavor, url string) {
	dir := "/var/run/secrets/" + flavor
	c := &p.Spec.Containers[0]
	c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: flavor, MountPath: dir, ReadOnly: true})
	p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: flavor, VolumeSource: corev1.VolumeSource{
		Secret: &corev1.SecretVolumeSource{SecretName: flavor + "-token"}}})
	c.Env[1].Value = strings.TrimSpace(c.Env[1].Value + " " + flavor + "=" + url + "=" + dir)
}
