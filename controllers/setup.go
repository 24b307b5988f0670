// Package controllers registers every tokenkeeper reconciler with a manager.
package controllers

import (
	"context"
	"maps"
	"net/http"

	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/controllers/clustercredential"
	"github.com/tokenkeeper/tokenkeeper/controllers/credential"
	"github.com/tokenkeeper/tokenkeeper/controllers/issuer"
	"github.com/tokenkeeper/tokenkeeper/controllers/podrefresh"
	"github.com/tokenkeeper/tokenkeeper/controllers/tokenpolicy"
	"github.com/tokenkeeper/tokenkeeper/controllers/tokenvalidator"
	"github.com/tokenkeeper/tokenkeeper/internal/egress"
	"github.com/tokenkeeper/tokenkeeper/internal/metrics"
	"github.com/tokenkeeper/tokenkeeper/internal/validation"
)

// Options configure the reconcilers.
type Options struct {
	// ClusterResourceNamespace holds the Secrets ClusterIssuers refer to without a namespace:
	// the manager's own namespace.
	ClusterResourceNamespace string
	// Transport replaces the issuer HTTP transport, for tests. Optional.
	Transport http.RoundTripper
	// Validation receives the TokenValidators' validators; nil leaves them out.
	Validation *validation.Server
	// Egress refuses outbound connections to addresses tenants must not reach; nil checks
	// nothing (tests against local issuers).
	Egress *egress.Policy
	// IssuerCallsPerNamespace bounds the issuer calls in flight per namespace and per issuer.
	IssuerCallsPerNamespace int
	// Restarts bound the rollout restarts of Credentials' spec.rolloutRestart manager-wide.
	Restarts credential.RestartOptions
	// ClusterCredentialNamespace holds ClusterCredentials' child Credentials and their input
	// Secrets; empty: ClusterResourceNamespace.
	ClusterCredentialNamespace string
	// ClusterCredentialMaxNamespaces bounds the namespaces one ClusterCredential copies into;
	// 0: clustercredential.DefaultMaxNamespaces.
	ClusterCredentialMaxNamespaces int
	// PodRefresh bounds the refreshes of running pods that mount a rotated token; its zero
	// value turns them off.
	PodRefresh podrefresh.Options
}

// CacheByObject restricts the manager's cache: of Secrets it holds only tokenkeeper's own, of
// pods only running ones, reduced to the Secrets they mount.
func CacheByObject() map[client.Object]cache.ByObject {
	by := credential.CacheByObject()
	maps.Copy(by, podrefresh.CacheByObject())
	return by
}

// Setup registers every reconciler with mgr.
func Setup(ctx context.Context, mgr ctrl.Manager, opts Options) error {
	for _, newIssuer := range []func() v1alpha1.GenericIssuer{
		func() v1alpha1.GenericIssuer { return &v1alpha1.Issuer{} },
		func() v1alpha1.GenericIssuer { return &v1alpha1.ClusterIssuer{} },
	} {
		r := &issuer.Reconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), New: newIssuer,
			ClusterResourceNamespace: opts.ClusterResourceNamespace, Transport: opts.Transport, Egress: opts.Egress}
		if err := r.SetupWithManager(mgr); err != nil {
			return err
		}
	}
	if err := (&tokenpolicy.Reconciler{Client: mgr.GetClient()}).SetupWithManager(mgr); err != nil {
		return err
	}
	refs, err := credential.NewRefs(mgr)
	if err != nil {
		return err
	}
	cr := &credential.Reconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Scheme: mgr.GetScheme(),
		Recorder: mgr.GetEventRecorder("tokenkeeper"), Clock: clock.RealClock{},
		ClusterResourceNamespace: opts.ClusterResourceNamespace, Transport: opts.Transport,
		CallsPerNamespace: opts.IssuerCallsPerNamespace, Refs: refs, Egress: opts.Egress, Restarts: opts.Restarts,
	}
	if err := cr.SetupWithManager(ctx, mgr); err != nil {
		return err
	}
	home := opts.ClusterCredentialNamespace
	if home == "" {
		home = opts.ClusterResourceNamespace
	}
	ccr := &clustercredential.Reconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(),
		Recorder: mgr.GetEventRecorder("tokenkeeper"), Clock: clock.RealClock{}, Namespace: home,
		MaxNamespaces: opts.ClusterCredentialMaxNamespaces}
	if err := ccr.SetupWithManager(mgr); err != nil {
		return err
	}
	if opts.PodRefresh.MaxPodsPerRotation > 0 {
		pr := &podrefresh.Reconciler{Client: mgr.GetClient(), Clock: clock.RealClock{}, Options: opts.PodRefresh}
		if err := pr.SetupWithManager(ctx, mgr); err != nil {
			return err
		}
	}
	// Every Credential's series, read from the manager's cache at each scrape (by the leader).
	if err := metrics.RegisterCredentials(metrics.NewCredentialCollector(mgr.GetCache(), mgr.Elected())); err != nil {
		return err
	}
	if opts.Validation == nil {
		return nil
	}
	tv := &tokenvalidator.Reconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Server: opts.Validation,
		ClusterResourceNamespace: opts.ClusterResourceNamespace, Clock: clock.RealClock{}, Refs: refs,
		Egress: opts.Egress}
	return tv.SetupWithManager(mgr)
}
