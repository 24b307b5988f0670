package issuer

// The manager trusts Mozilla's root certificates even where the filesystem has none: the image
// holds only the binary, and a node's /etc/ssl is not ours to rely on. The fallback roots apply
// only when the system offers none, so a bundle mounted at SSL_CERT_FILE or SSL_CERT_DIR (a
// corporate or trust-manager bundle) still takes precedence. An Issuer's caBundle replaces both.
import _ "golang.org/x/crypto/x509roots/fallback"
