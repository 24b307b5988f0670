package validation

import (
	"context"
	"crypto/tls"
	"fmt"
	"path/filepath"

	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
)

// servingTLS is the TLS configuration of a port that serves certDir's tls.crt and tls.key (the
// webhook/validation certificate), reloaded as they change until ctx ends; TLS 1.2 at least. The
// validation port and the ext_authz TLS port serve the same certificate this way.
func servingTLS(ctx context.Context, certDir string) (*tls.Config, error) {
	w, err := certwatcher.New(filepath.Join(certDir, "tls.crt"), filepath.Join(certDir, "tls.key"))
	if err != nil {
		return nil, fmt.Errorf("reading the serving certificate: %w", err)
	}
	go func() { _ = w.Start(ctx) }()
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: w.GetCertificate}, nil
}
