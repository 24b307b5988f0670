package issuer_test

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"testing"
	"time"

	_ "github.com/tokenkeeper/tokenkeeper/internal/issuer" // the package whose roots are tested
)

// With no certificate on the filesystem at all (SSL_CERT_FILE and SSL_CERT_DIR point nowhere, as
// in the manager's image), a public chain still verifies: its root comes from the roots compiled
// into the binary. The check runs in a child process, since Go loads the system roots once.
func TestPublicRootsWithoutFilesystem(t *testing.T) {
	if os.Getenv("TOKENKEEPER_ROOTS_CHILD") == "1" {
		verifyPublicChain(t)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestPublicRootsWithoutFilesystem$", "-test.v")
	cmd.Env = append(os.Environ(), "TOKENKEEPER_ROOTS_CHILD=1", "SSL_CERT_FILE=/nonexistent/ca.pem", "SSL_CERT_DIR=/nonexistent")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the public chain does not verify without a filesystem bundle: %v\n%s", err, out)
	}
}

func verifyPublicChain(t *testing.T) {
	read := func(name string) *x509.Certificate {
		data, err := os.ReadFile("testdata/publicchain/" + name)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := pem.Decode(data)
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	leaf, inter := read("leaf.pem"), read("intermediate.pem")
	intermediates := x509.NewCertPool()
	intermediates.AddCert(inter)
	// Roots nil is what a TLS client without caBundle uses: the system pool.
	chains, err := leaf.Verify(x509.VerifyOptions{DNSName: "www.google.com", Intermediates: intermediates,
		CurrentTime: time.Unix(1677615892, 0)})
	if err != nil {
		t.Fatalf("verifying www.google.com with no roots on the filesystem: %v", err)
	}
	if root := chains[0][len(chains[0])-1]; root.Subject.CommonName != "GTS Root R1" {
		t.Fatalf("chain ends in %q, want GTS Root R1", root.Subject.CommonName)
	}
}
