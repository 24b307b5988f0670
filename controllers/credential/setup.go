package credential

import (
	"context"
	"fmt"
	"hash/fnv"
	"time"

	"golang.org/x/time/rate"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer"
	"github.com/tokenkeeper/tokenkeeper/internal/login"
	"github.com/tokenkeeper/tokenkeeper/internal/resolve"
)

// Field indexes.
const (
	indexInputSecret  = "credential.inputSecret"    // Credential → its input Secret's name
	indexTargetSecret = "credential.targetSecret"   // Credential → its target Secret's name
	indexIssuer       = "credential.issuer"         // Credential → "Issuer/name" or "ClusterIssuer/name"
	indexSA           = "credential.serviceAccount" // Credential → its ServiceAccount's name
	indexIssuerRefs   = resolve.IndexIssuerRefs
)

// SetupWithManager registers the controller: Credentials, their Secrets, the input Secrets
// (metadata only, through an index), issuers and policies.
func (r *Reconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	if r.Refs == nil {
		refs, err := NewRefs(mgr)
		if err != nil {
			return err
		}
		r.Refs = refs
	}
	r.echoes = newEchoes()
	r.store = newStateStore(mgr.GetClient(), mgr.GetAPIReader(), mgr.GetScheme(), r.echoes)
	r.clients = issuer.NewPool(issuerClients)
	// Input Secrets and issuer Secrets are read again only when their resourceVersion changed.
	r.inputs = resolve.NewVersionedReader(mgr.GetAPIReader(), r.Refs)
	r.resolver = &resolve.Resolver{Client: mgr.GetClient(), APIReader: r.inputs, ClusterResourceNamespace: r.ClusterResourceNamespace}
	r.engine = &login.Engine{Resolver: r.resolver, Inputs: r.inputs, Clients: r.clients, Clock: r.Clock, Transport: r.Transport, Egress: r.Egress}
	r.slots = newCallSlots(r.CallsPerNamespace)
	r.rotationEvents = newEventGate(rotationEventInterval)
	idx := mgr.GetFieldIndexer()
	if err := idx.IndexField(ctx, &v1alpha1.Credential{}, indexInputSecret, func(o client.Object) []string {
		return []string{login.InputSecretName(&o.(*v1alpha1.Credential).Spec)}
	}); err != nil {
		return err
	}
	// A target Secret that is not (or no longer) owned by its Credential brings the Credential
	// back when it changes or goes: deleting a conflicting Secret lets the Credential recover.
	if err := idx.IndexField(ctx, &v1alpha1.Credential{}, indexTargetSecret, func(o client.Object) []string {
		return []string{o.(*v1alpha1.Credential).Spec.SecretName}
	}); err != nil {
		return err
	}
	if err := idx.IndexField(ctx, &v1alpha1.Credential{}, indexSA, func(o client.Object) []string {
		if sa := o.(*v1alpha1.Credential).Spec.ServiceAccount; sa != nil {
			return []string{sa.Name}
		}
		return nil
	}); err != nil {
		return err
	}
	if err := idx.IndexField(ctx, &v1alpha1.Credential{}, indexIssuer, func(o client.Object) []string {
		return []string{resolve.IssuerKey(o.(*v1alpha1.Credential).Spec.IssuerRef)}
	}); err != nil {
		return err
	}
	for _, obj := range []v1alpha1.GenericIssuer{&v1alpha1.Issuer{}, &v1alpha1.ClusterIssuer{}} {
		if err := idx.IndexField(ctx, obj, indexIssuerRefs, func(o client.Object) []string {
			return resolve.IssuerReferences(o.(v1alpha1.GenericIssuer), r.ClusterResourceNamespace)
		}); err != nil {
			return err
		}
	}
	if err := r.setupWorkloads(ctx, mgr); err != nil {
		return err
	}

	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.Credential{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}, predicate.LabelChangedPredicate{}))).
		// Its own Secret writes do not bring a Credential back: only others' changes do.
		Owns(&corev1.Secret{}, builder.WithPredicates(r.echoes.predicate())).
		// Input, issuer and conflicting Secrets, CA bundle ConfigMaps: only those referred to are kept.
		WatchesRawSource(r.Refs.Secrets.Source(r.forSecret)).
		// A ServiceAccount that appears (or changes) brings back the Credentials logging in as it.
		WatchesRawSource(r.Refs.ServiceAccounts.Source(func(ctx context.Context, sa *metav1.PartialObjectMetadata) []reconcile.Request {
			return r.list(ctx, client.InNamespace(sa.Namespace), client.MatchingFields{indexSA: sa.Name})
		})).
		WatchesRawSource(r.Refs.ConfigMaps.Source(r.forConfigMap)).
		// Only spec changes of issuers and policies matter to Credentials: an issuer's status
		// update (each Issuer reconciler pass) must not queue its thousand Credentials again.
		Watches(&v1alpha1.Issuer{}, handler.EnqueueRequestsFromMapFunc(r.forIssuer(v1alpha1.IssuerKindNamespaced)),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&v1alpha1.ClusterIssuer{}, handler.EnqueueRequestsFromMapFunc(r.forIssuer(v1alpha1.IssuerKindCluster)),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&v1alpha1.TokenPolicy{}, r.spreadOverAll(), builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.inNamespace),
			builder.WithPredicates(predicate.LabelChangedPredicate{})).
		WithOptions(controller.Options{RateLimiter: errorRetries()}).
		Complete(r)
}

// maxErrorRetry caps the wait before a Credential whose reconcile returned an error is tried
// again. Such errors are the API server's (issuer failures have their own backoff, in status);
// with controller-runtime's default (5 ms doubling to 1000 s) the retries of an API server outage
// of a few seconds grew to seconds, and Secrets kept expired tokens for 10 s and more after it
// came back.
const maxErrorRetry = 2 * time.Second

// errorRetries is the default controller rate limiter with its per-item backoff capped at
// maxErrorRetry: exponential from 5 ms, and 10 retries a second overall (burst 100).
func errorRetries() workqueue.TypedRateLimiter[reconcile.Request] {
	return workqueue.NewTypedMaxOfRateLimiter(
		workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](5*time.Millisecond, maxErrorRetry),
		&workqueue.TypedBucketRateLimiter[reconcile.Request]{Limiter: rate.NewLimiter(rate.Limit(10), 100)},
	)
}

// setupWorkloads indexes workloads by the Secrets they read and registers the restarter and the
// controller that keeps status.consumers and status.rolloutRestart: a controller of its own, so
// that a workload's change never queues a renewal pass.
func (r *Reconciler) setupWorkloads(ctx context.Context, mgr ctrl.Manager) error {
	r.restarts = newRestarter(mgr.GetClient(), r.Recorder, r.Clock, r.Restarts)
	if err := mgr.Add(r.restarts); err != nil {
		return err
	}
	b := ctrl.NewControllerManagedBy(mgr).Named("credential-workloads").For(&v1alpha1.Credential{}).
		WatchesRawSource(source.Channel(r.restarts.notify, &handler.EnqueueRequestForObject{}))
	for _, kind := range workloadKinds {
		if err := mgr.GetFieldIndexer().IndexField(ctx, newWorkload(kind), indexWorkloadSecrets, workloadSecrets); err != nil {
			return err
		}
		// Only changes of the pod template (generation) or labels change what a workload reads
		// or whether a selector picks it; rollout progress is the restarter's to look at.
		b = b.Watches(newWorkload(kind), handler.EnqueueRequestsFromMapFunc(r.forWorkload),
			builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, predicate.LabelChangedPredicate{})))
	}
	return b.Complete(&workloadsReconciler{Client: mgr.GetClient(), restarts: r.restarts})
}

// NewRefs returns the reference watches, added to mgr: input Secrets are watched through them,
// names and versions only, and only those something refers to are kept.
func NewRefs(mgr ctrl.Manager) (*resolve.Refs, error) {
	mc, err := metadata.NewForConfig(mgr.GetConfig())
	if err != nil {
		return nil, fmt.Errorf("creating the metadata client: %w", err)
	}
	refs := resolve.NewRefs(mc)
	for _, w := range refs.All() {
		if err := mgr.Add(w); err != nil {
			return nil, err
		}
	}
	return refs, nil
}

func managedByUs(o metav1.Object) bool { return o.GetLabels()[LabelManagedBy] == ManagedByValue }

// forSecret maps a Secret to the Credentials that read it, directly or through their issuer,
// and to those that write it unless it is one of tokenkeeper's own: changes to those (the
// manager's own writes among them) come through the watch of owned Secrets, which passes only
// changes the manager did not make. A Secret of that name that is not tokenkeeper's (a conflict)
// brings its Credential back when it changes or goes.
func (r *Reconciler) forSecret(ctx context.Context, s *metav1.PartialObjectMetadata) []reconcile.Request {
	reqs := r.list(ctx, client.InNamespace(s.Namespace), client.MatchingFields{indexInputSecret: s.Name})
	if !managedByUs(s) {
		reqs = append(reqs, r.list(ctx, client.InNamespace(s.Namespace), client.MatchingFields{indexTargetSecret: s.Name})...)
	}
	return append(reqs, r.usersOf(ctx, "Secret/"+s.Namespace+"/"+s.Name)...)
}

// forConfigMap maps a ConfigMap to the Credentials whose issuer reads it (a CA bundle).
func (r *Reconciler) forConfigMap(ctx context.Context, cm *metav1.PartialObjectMetadata) []reconcile.Request {
	return r.usersOf(ctx, "ConfigMap/"+cm.Namespace+"/"+cm.Name)
}

// usersOf lists the Credentials whose issuer reads ref ("Secret/ns/name", "ConfigMap/ns/name").
func (r *Reconciler) usersOf(ctx context.Context, ref string) []reconcile.Request {
	var reqs []reconcile.Request
	var issuers v1alpha1.IssuerList
	if err := r.List(ctx, &issuers, client.MatchingFields{indexIssuerRefs: ref}); err == nil {
		for _, i := range issuers.Items {
			reqs = append(reqs, r.list(ctx, client.InNamespace(i.Namespace), client.MatchingFields{indexIssuer: "Issuer/" + i.Name})...)
		}
	}
	var clusterIssuers v1alpha1.ClusterIssuerList
	if err := r.List(ctx, &clusterIssuers, client.MatchingFields{indexIssuerRefs: ref}); err == nil {
		for _, i := range clusterIssuers.Items {
			reqs = append(reqs, r.list(ctx, client.MatchingFields{indexIssuer: "ClusterIssuer/" + i.Name})...)
		}
	}
	return reqs
}

func (r *Reconciler) forIssuer(kind v1alpha1.IssuerKind) handler.MapFunc {
	return func(ctx context.Context, o client.Object) []reconcile.Request {
		opts := []client.ListOption{client.MatchingFields{indexIssuer: string(kind) + "/" + o.GetName()}}
		if kind == v1alpha1.IssuerKindNamespaced {
			opts = append(opts, client.InNamespace(o.GetNamespace()))
		}
		return r.list(ctx, opts...)
	}
}

// policySpread is the window over which a policy change re-evaluates every Credential.
const policySpread = 5 * time.Second

// spreadOverAll re-evaluates every Credential when a policy changes, each after its own
// deterministic delay within policySpread, so that a policy edit is no storm at the issuers.
func (r *Reconciler) spreadOverAll() handler.EventHandler {
	enqueue := func(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		for _, req := range r.list(ctx) {
			h := fnv.New32a()
			_, _ = h.Write([]byte(req.String()))
			q.AddAfter(req, time.Duration(h.Sum32()%1000)*policySpread/1000)
		}
	}
	return handler.Funcs{
		CreateFunc: func(ctx context.Context, _ event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			enqueue(ctx, q)
		},
		UpdateFunc: func(ctx context.Context, _ event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			enqueue(ctx, q)
		},
		DeleteFunc: func(ctx context.Context, _ event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			enqueue(ctx, q)
		},
	}
}

// inNamespace re-evaluates a namespace's Credentials when its labels (and so its policies) change.
func (r *Reconciler) inNamespace(ctx context.Context, ns client.Object) []reconcile.Request {
	return r.list(ctx, client.InNamespace(ns.GetName()))
}

func (r *Reconciler) list(ctx context.Context, opts ...client.ListOption) []reconcile.Request {
	var creds v1alpha1.CredentialList
	if err := r.List(ctx, &creds, opts...); err != nil {
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(creds.Items))
	for _, c := range creds.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: c.Namespace, Name: c.Name}})
	}
	return reqs
}

// CacheByObject restricts the manager's Secret cache to tokenkeeper's own Secrets, and reduces
// the cached workloads to their Secret references, labels and rollout progress (stripWorkload).
func CacheByObject() map[client.Object]cache.ByObject {
	sel, err := metav1.LabelSelectorAsSelector(&metav1.LabelSelector{MatchLabels: map[string]string{LabelManagedBy: ManagedByValue}})
	if err != nil {
		panic(err)
	}
	return map[client.Object]cache.ByObject{
		&corev1.Secret{}:      {Label: sel},
		&appsv1.Deployment{}:  {Transform: stripWorkload},
		&appsv1.StatefulSet{}: {Transform: stripWorkload},
		&appsv1.DaemonSet{}:   {Transform: stripWorkload},
	}
}
