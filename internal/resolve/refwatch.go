package resolve

import (
	"context"
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"
)

// Mapper maps an object's metadata to the requests of the objects that refer to it.
type Mapper func(ctx context.Context, o *metav1.PartialObjectMetadata) []reconcile.Request

// RefWatch watches the metadata of one kind (Secrets, ConfigMaps, ServiceAccounts) in every
// namespace and keeps in memory only the objects something refers to: each event is offered to
// the subscribers' mappers, and an object no mapper claims costs nothing but that call. A tenant
// creating a million Secrets no Credential names costs the manager no memory; each referenced one
// costs its name and resourceVersion. Get answers from what is kept (NotFound otherwise), and
// Remember adds what a reader fetched itself, so that an object referenced before any event for
// it is read again only when it changes.
type RefWatch struct {
	gvk    schema.GroupVersionKind
	lw     cache.ListerWatcher
	ctx    context.Context
	mu     sync.RWMutex
	items  map[types.NamespacedName]string // resourceVersion of each kept object
	subs   []*subscriber
	synced chan struct{}
	once   sync.Once
}

type subscriber struct {
	mapper Mapper
	mu     sync.Mutex
	queue  workqueue.TypedRateLimitingInterface[reconcile.Request]
}

// NewRefWatch returns a RefWatch of resource (secrets, configmaps, serviceaccounts) of the core
// group; add it to the manager to run it.
func NewRefWatch(client metadata.Interface, resource, kind string) *RefWatch {
	gvr := schema.GroupVersionResource{Version: "v1", Resource: resource}
	res := client.Resource(gvr)
	return &RefWatch{
		gvk: schema.GroupVersionKind{Version: "v1", Kind: kind},
		lw: &cache.ListWatch{
			ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
				return res.List(ctx, opts)
			},
			WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
				return res.Watch(ctx, opts)
			},
		},
		items:  map[types.NamespacedName]string{},
		synced: make(chan struct{}),
	}
}

// Source returns a controller source that queues mapper's requests for every change of an
// object mapper claims. Subscribe before the manager starts.
func (w *RefWatch) Source(mapper Mapper) source.Source {
	s := &subscriber{mapper: mapper}
	w.mu.Lock()
	w.subs = append(w.subs, s)
	w.mu.Unlock()
	return source.Func(func(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
		s.mu.Lock()
		s.queue = q
		s.mu.Unlock()
		return nil
	})
}

// Start runs the watch until ctx ends (manager.Runnable).
func (w *RefWatch) Start(ctx context.Context) error {
	w.ctx = ctx
	r := cache.NewNamedReflector("tokenkeeper-refs-"+w.gvk.Kind, w.lw, &metav1.PartialObjectMetadata{}, (*refStore)(w), 0)
	r.RunWithContext(ctx)
	return nil
}

// NeedLeaderElection is false: every replica keeps its own view.
func (w *RefWatch) NeedLeaderElection() bool { return false }

// WaitForSync blocks until the first list was seen or ctx ends.
func (w *RefWatch) WaitForSync(ctx context.Context) bool {
	select {
	case <-w.synced:
		return true
	case <-ctx.Done():
		return false
	}
}

// Len is the number of objects kept.
func (w *RefWatch) Len() int {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return len(w.items)
}

// Get fills obj (a PartialObjectMetadata) with the name and resourceVersion of a kept object.
func (w *RefWatch) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	w.mu.RLock()
	rv, ok := w.items[key]
	w.mu.RUnlock()
	if !ok {
		return apierrors.NewNotFound(schema.GroupResource{Resource: w.gvk.Kind}, key.Name)
	}
	obj.SetNamespace(key.Namespace)
	obj.SetName(key.Name)
	obj.SetResourceVersion(rv)
	return nil
}

// List is not served: a RefWatch holds only what is referenced.
func (w *RefWatch) List(context.Context, client.ObjectList, ...client.ListOption) error {
	return fmt.Errorf("a RefWatch of %s does not list", w.gvk.Kind)
}

// Remember keeps the version of an object a reader fetched itself, unless the watch already
// holds one (which is as new or newer).
func (w *RefWatch) Remember(obj client.Object) {
	key := client.ObjectKeyFromObject(obj)
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.items[key]; !ok {
		w.items[key] = obj.GetResourceVersion()
	}
}

// Forget drops an object (a reader found it gone).
func (w *RefWatch) Forget(key client.ObjectKey) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.items, key)
}

// offer maps o for every subscriber, queues what they return and says whether any claimed it.
func (w *RefWatch) offer(o *metav1.PartialObjectMetadata) bool {
	ctx := w.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	w.mu.RLock()
	subs := w.subs
	w.mu.RUnlock()
	claimed := false
	for _, s := range subs {
		reqs := s.mapper(ctx, o)
		if len(reqs) == 0 {
			continue
		}
		claimed = true
		s.mu.Lock()
		q := s.queue
		s.mu.Unlock()
		if q == nil {
			continue // the controller has not started: it reconciles everything when it does
		}
		for _, r := range reqs {
			q.Add(r)
		}
	}
	return claimed
}

// refStore is the reflector's store: it keeps what a subscriber claims.
type refStore RefWatch

func meta(obj any) (*metav1.PartialObjectMetadata, bool) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	m, ok := obj.(*metav1.PartialObjectMetadata)
	return m, ok
}

func (s *refStore) put(obj any) {
	w := (*RefWatch)(s)
	m, ok := meta(obj)
	if !ok {
		return
	}
	key := types.NamespacedName{Namespace: m.Namespace, Name: m.Name}
	w.mu.RLock()
	old, kept := w.items[key]
	w.mu.RUnlock()
	if kept && old == m.ResourceVersion {
		return
	}
	claimed := w.offer(m)
	w.mu.Lock()
	defer w.mu.Unlock()
	if claimed {
		w.items[key] = m.ResourceVersion
	} else {
		delete(w.items, key)
	}
}

func (s *refStore) Add(obj any) error    { s.put(obj); return nil }
func (s *refStore) Update(obj any) error { s.put(obj); return nil }

func (s *refStore) Delete(obj any) error {
	w := (*RefWatch)(s)
	m, ok := meta(obj)
	if !ok {
		return nil
	}
	key := types.NamespacedName{Namespace: m.Namespace, Name: m.Name}
	w.mu.Lock()
	delete(w.items, key)
	w.mu.Unlock()
	w.offer(m) // whoever names it learns it is gone
	return nil
}

// Replace is a full list: what is gone is offered as deleted, the rest as added.
func (s *refStore) Replace(list []any, _ string) error {
	w := (*RefWatch)(s)
	seen := make(map[types.NamespacedName]bool, len(list))
	for _, obj := range list {
		if m, ok := meta(obj); ok {
			seen[types.NamespacedName{Namespace: m.Namespace, Name: m.Name}] = true
			s.put(m)
		}
	}
	w.mu.RLock()
	var gone []types.NamespacedName
	for key := range w.items {
		if !seen[key] {
			gone = append(gone, key)
		}
	}
	w.mu.RUnlock()
	for _, key := range gone {
		m := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
		_ = s.Delete(m)
	}
	w.once.Do(func() { close(w.synced) })
	return nil
}

func (s *refStore) Resync() error { return nil }

// Refs are the RefWatches of the kinds Credentials, issuers and TokenValidators refer to.
type Refs struct {
	Secrets, ConfigMaps, ServiceAccounts *RefWatch
}

// NewRefs returns the watches; add each of All to the manager to run them.
func NewRefs(c metadata.Interface) *Refs {
	return &Refs{
		Secrets:         NewRefWatch(c, "secrets", "Secret"),
		ConfigMaps:      NewRefWatch(c, "configmaps", "ConfigMap"),
		ServiceAccounts: NewRefWatch(c, "serviceaccounts", "ServiceAccount"),
	}
}

// All are the watches, each a manager.Runnable. (A method taking the manager would link the
// manager into the kubectl plugin, which shares this package.)
func (r *Refs) All() []*RefWatch {
	return []*RefWatch{r.Secrets, r.ConfigMaps, r.ServiceAccounts}
}

// of is the watch of obj's kind (a PartialObjectMetadata or a typed object).
func (r *Refs) of(obj client.Object) *RefWatch {
	kind := obj.GetObjectKind().GroupVersionKind().Kind
	switch obj.(type) {
	case *corev1.Secret:
		kind = "Secret"
	case *corev1.ConfigMap:
		kind = "ConfigMap"
	}
	switch kind {
	case "Secret":
		return r.Secrets
	case "ConfigMap":
		return r.ConfigMaps
	case "ServiceAccount":
		return r.ServiceAccounts
	}
	return nil
}

// Get answers for the watch of obj's kind.
func (r *Refs) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	w := r.of(obj)
	if w == nil {
		return fmt.Errorf("no reference watch for %T", obj)
	}
	return w.Get(ctx, key, obj, opts...)
}

// List is not served.
func (r *Refs) List(context.Context, client.ObjectList, ...client.ListOption) error {
	return fmt.Errorf("reference watches do not list")
}

// Remember keeps the version of an object read directly.
func (r *Refs) Remember(obj client.Object) {
	if w := r.of(obj); w != nil {
		w.Remember(obj)
	}
}

// Forget drops an object found gone.
func (r *Refs) Forget(obj client.Object, key client.ObjectKey) {
	if w := r.of(obj); w != nil {
		w.Forget(key)
	}
}
