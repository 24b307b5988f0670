// Package issuer reconciles Issuers and ClusterIssuers with one code path: it reports Ready when
// the configuration is usable and every Secret and ConfigMap it refers to exists, and shows the
// token endpoint in use (from OIDC discovery when the issuer is configured by its issuer URL).
package issuer

import (
	"context"
	"crypto/x509"
	"errors"
	"net/http"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/egress"
	issuerclient "github.com/tokenkeeper/tokenkeeper/internal/issuer"
	"github.com/tokenkeeper/tokenkeeper/internal/resolve"
	"github.com/tokenkeeper/tokenkeeper/internal/status"
)

// recheckMissing is how often an issuer waiting for a Secret looks again.
const recheckMissing = time.Minute

// Reconciler reconciles one kind: Issuer or ClusterIssuer.
type Reconciler struct {
	client.Client
	// APIReader reads referenced Secrets without caching them.
	APIReader client.Reader
	// New returns an empty object of the reconciled kind.
	New func() v1alpha1.GenericIssuer
	// ClusterResourceNamespace holds the Secrets ClusterIssuers refer to without a namespace.
	ClusterResourceNamespace string
	// Transport replaces the HTTP transport of discovery requests, for tests. Optional.
	Transport http.RoundTripper
	// Egress refuses discovery connections to addresses tenants must not reach; nil checks nothing.
	Egress *egress.Policy
}

// discoveryTimeout bounds the OIDC discovery that fills status.tokenURL.
const discoveryTimeout = 10 * time.Second

// +kubebuilder:rbac:groups=tokenkeeper.io,resources=issuers;clusterissuers,verbs=get;list;watch
// +kubebuilder:rbac:groups=tokenkeeper.io,resources=issuers/status;clusterissuers/status,verbs=get;update;patch

// Reconcile validates one issuer.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, reterr error) {
	iss := r.New()
	if err := r.Get(ctx, req.NamespacedName, iss); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	before := iss.DeepCopyObject().(v1alpha1.GenericIssuer)
	defer func() { reterr = errors.Join(reterr, r.patchStatus(ctx, before, iss)) }()
	status := iss.GetStatus()
	changed := status.ObservedGeneration != iss.GetGeneration()
	status.ObservedGeneration = iss.GetGeneration()

	res := &resolve.Resolver{Client: r.Client, APIReader: r.APIReader, ClusterResourceNamespace: r.ClusterResourceNamespace}
	in, err := r.check(ctx, res, iss)
	cond := metav1.Condition{Type: string(v1alpha1.ConditionReady), Status: metav1.ConditionTrue, Reason: string(v1alpha1.ReasonValid),
		Message: "configuration valid", ObservedGeneration: iss.GetGeneration()}
	b, blocked := resolve.AsBlocked(err)
	switch {
	case blocked:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, string(b.Reason), b.Message
	case err != nil:
		return ctrl.Result{}, err
	}
	meta.SetStatusCondition(&status.Conditions, cond)
	if blocked {
		status.TokenURL = string(iss.GetSpec().URL)
		if b.Reason == v1alpha1.ReasonSecretNotFound {
			return ctrl.Result{RequeueAfter: recheckMissing}, nil
		}
		return ctrl.Result{}, nil
	}
	return r.tokenURL(ctx, res, iss, in, changed), nil
}

// tokenURL fills status.tokenURL: spec.url, or for an OAuth2 issuer configured by its issuer URL
// the token endpoint its discovery document names (fetched when the spec changes, and again
// every rediscover while it cannot be read).
func (r *Reconciler) tokenURL(ctx context.Context, res *resolve.Resolver, iss v1alpha1.GenericIssuer, in resolve.IssuerInputs, changed bool) ctrl.Result {
	spec, status := iss.GetSpec(), iss.GetStatus()
	if spec.URL != "" || spec.OAuth2 == nil || spec.OAuth2.IssuerURL == "" {
		status.TokenURL = string(spec.URL)
		return ctrl.Result{}
	}
	if status.TokenURL != "" && !changed {
		return ctrl.Result{}
	}
	eff, err := res.Policy(ctx, iss.GetNamespace(), nil)
	if err != nil {
		return ctrl.Result{RequeueAfter: rediscover}
	}
	withCA := *spec
	withCA.CABundle = in.CABundle
	c, err := issuerclient.New(issuerclient.Config{Spec: withCA, Headers: in.Headers, CheckURL: eff.CheckURL, Transport: r.Transport, Egress: r.Egress})
	if err != nil {
		return ctrl.Result{}
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, discoveryTimeout)
	defer cancel()
	d, err := c.Discover(ctx)
	if err != nil {
		logf.FromContext(ctx).Info("OIDC discovery failed; status.tokenURL stays empty", "error", err.Error())
		status.TokenURL = ""
		return ctrl.Result{RequeueAfter: rediscover}
	}
	status.TokenURL = d.TokenEndpoint
	return ctrl.Result{}
}

// rediscover is how often discovery is retried while it fails.
const rediscover = 10 * time.Minute

// check resolves what the issuer reads and reports, as a *resolve.Blocked error, why it cannot be
// used; other errors are transient.
func (r *Reconciler) check(ctx context.Context, res *resolve.Resolver, iss v1alpha1.GenericIssuer) (resolve.IssuerInputs, error) {
	spec := iss.GetSpec()
	if invalid := issuerclient.Validate(spec); invalid != nil {
		return resolve.IssuerInputs{}, resolve.Block(v1alpha1.ReasonInvalidConfig, "%v", invalid)
	}
	in, err := res.IssuerInputs(ctx, iss)
	if err != nil {
		return in, err
	}
	if spec.CABundleFrom != nil && !x509.NewCertPool().AppendCertsFromPEM([]byte(in.CABundle)) {
		return in, resolve.Block(v1alpha1.ReasonInvalidConfig, "spec.caBundleFrom: the key holds no PEM certificate")
	}
	if ref := spec.HMACSecretRef; ref != nil {
		if _, _, err := res.SecretValue(ctx, types.NamespacedName{Namespace: res.Namespace(iss, ref.Namespace), Name: ref.Name}, ref.Key); err != nil {
			if b, ok := resolve.AsBlocked(err); ok {
				b.Message = "hmacSecretRef: " + b.Message
			}
			return in, err
		}
	}
	return in, nil
}

func (r *Reconciler) patchStatus(ctx context.Context, before, iss v1alpha1.GenericIssuer) error {
	return status.Patch(ctx, r.Client, before, iss, func(i v1alpha1.GenericIssuer) any { return i.GetStatus() })
}
