// Package servingcert serves the manager's certificate (the webhook/validation one, tls.crt and
// tls.key in a directory) on its TLS ports, reloaded as it changes.
package servingcert

import (
	"context"
	"crypto/tls"
	"fmt"
	"path/filepath"

	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
)

// TLSConfig is the TLS configuration of a port that serves certDir's tls.crt and tls.key,
// reloaded as they change until ctx ends; TLS 1.2 at least. The validation port, the ext_authz
// TLS port and the SDS port serve the same certificate this way.
func TLSConfig(ctx context.Context, certDir string) (*tls.Config, error) {
	w, err := certwatcher.New(filepath.Join(certDir, "tls.crt"), filepath.Join(certDir, "tls.key"))
	if err != nil {
		return nil, fmt.Errorf("reading the serving certificate: %w", err)
	}
	go func() { _ = w.Start(ctx) }()
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: w.GetCertificate}, nil
}
