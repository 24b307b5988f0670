// Package sds serves Credentials' tokens to Envoy over the Secret Discovery Service
// (envoy.service.secret.v3.SecretDiscoveryService), as generic_secret resources for Envoy's
// credential injector, to the ServiceAccounts each Credential names in spec.delivery.sds. New
// tokens are pushed to open streams as the target Secret rotates.
package sds

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
)

const (
	// ResourcePrefix starts every resource name: tokenkeeper:<namespace>/<credential>.
	ResourcePrefix = "tokenkeeper:"
	// TokenSuffix ends the name of the resource holding the bare token instead of the
	// Authorization header value: tokenkeeper:<namespace>/<credential>#token.
	TokenSuffix = "#token"
	// SecretTypeURL is the type of every resource served.
	SecretTypeURL = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
)

// resource is one requested resource: a Credential, and whether the bare token is wanted.
type resource struct {
	name  string // as requested
	cred  types.NamespacedName
	token bool // the bare token, not the authorization value
}

// parseResource reads tokenkeeper:<namespace>/<credential>[#token].
func parseResource(name string) (resource, error) {
	rest, ok := strings.CutPrefix(name, ResourcePrefix)
	if !ok || len(name) > 1+len(ResourcePrefix)+63+253+len(TokenSuffix) {
		return resource{}, fmt.Errorf("resource name %q is not %s<namespace>/<credential>[%s]", bounded(name), ResourcePrefix, TokenSuffix)
	}
	r := resource{name: name}
	rest, r.token = strings.CutSuffix(rest, TokenSuffix)
	ns, cred, ok := strings.Cut(rest, "/")
	if !ok || len(validation.IsDNS1123Label(ns)) > 0 || len(validation.IsDNS1123Subdomain(cred)) > 0 {
		return resource{}, fmt.Errorf("resource name %q is not %s<namespace>/<credential>[%s]", bounded(name), ResourcePrefix, TokenSuffix)
	}
	r.cred = types.NamespacedName{Namespace: ns, Name: cred}
	return r, nil
}

// bounded cuts what a client sent to a length fit for an error message.
func bounded(s string) string {
	const limit = 128
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "…"
}
