package resolve

import (
	"context"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Bounds of what a VersionedReader keeps: no Secret or ConfigMap larger than maxVersionedObject,
// at most maxVersionedBytes in all (when full, it starts over empty). A tenant with large or many
// Secrets costs the manager uncached reads, never memory.
const (
	maxVersionedObject = 16 << 10
	maxVersionedBytes  = 32 << 20
)

// VersionedReader reads Secrets and ConfigMaps through an uncached reader, and reads one again
// only when its resourceVersion in the reference watch (Refs) changed: a renewal re-reads no input
// Secret that stayed the same. Copies served from memory carry no annotations and no managed
// fields (kubectl's last-applied-configuration can hold the whole Secret again). Other objects go
// straight to the uncached reader.
type VersionedReader struct {
	api   client.Reader // uncached reads
	names client.Reader // metadata (names and resourceVersions) of Secrets and ConfigMaps

	mu    sync.Mutex
	kept  map[versionedKey]client.Object
	bytes int
}

type versionedKey struct {
	kind string
	key  types.NamespacedName
}

// NewVersionedReader returns a reader that serves Secrets and ConfigMaps from memory while names
// shows them at the version read last.
func NewVersionedReader(api, names client.Reader) *VersionedReader {
	return &VersionedReader{api: api, names: names, kept: map[versionedKey]client.Object{}}
}

// Get implements client.Reader.
func (r *VersionedReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	var kind string
	switch obj.(type) {
	case *corev1.Secret:
		kind = "Secret"
	case *corev1.ConfigMap:
		kind = "ConfigMap"
	default:
		return r.api.Get(ctx, key, obj, opts...)
	}
	k := versionedKey{kind, key}
	meta := &metav1.PartialObjectMetadata{}
	meta.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind(kind))
	if err := r.names.Get(ctx, key, meta); err == nil {
		r.mu.Lock()
		kept := r.kept[k]
		r.mu.Unlock()
		if kept != nil && kept.GetResourceVersion() == meta.ResourceVersion {
			return copyInto(kept, obj)
		}
	}
	if err := r.api.Get(ctx, key, obj, opts...); err != nil {
		r.mu.Lock()
		r.drop(k)
		r.mu.Unlock()
		if rem, ok := r.names.(rememberer); ok && apierrors.IsNotFound(err) {
			rem.Forget(obj, key)
		}
		return err
	}
	r.keep(k, obj)
	if rem, ok := r.names.(rememberer); ok {
		rem.Remember(obj)
	}
	return nil
}

// rememberer is a names reader that learns versions from direct reads (Refs): an object
// referenced before any change of it is read again only when it changes.
type rememberer interface {
	Remember(obj client.Object)
	Forget(obj client.Object, key client.ObjectKey)
}

// List implements client.Reader, uncached.
func (r *VersionedReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	return r.api.List(ctx, list, opts...)
}

func (r *VersionedReader) keep(k versionedKey, obj client.Object) {
	size := objectSize(obj)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.drop(k)
	if size > maxVersionedObject {
		return
	}
	if r.bytes+size > maxVersionedBytes {
		r.kept, r.bytes = map[versionedKey]client.Object{}, 0
	}
	kept := obj.DeepCopyObject().(client.Object)
	kept.SetAnnotations(nil)
	kept.SetManagedFields(nil)
	r.kept[k] = kept
	r.bytes += size
}

// drop forgets k; r.mu is held.
func (r *VersionedReader) drop(k versionedKey) {
	if old := r.kept[k]; old != nil {
		r.bytes -= objectSize(old)
		delete(r.kept, k)
	}
}

func objectSize(obj client.Object) int {
	n := 256 // names, labels and the rest, roughly
	switch o := obj.(type) {
	case *corev1.Secret:
		for k, v := range o.Data {
			n += len(k) + len(v)
		}
	case *corev1.ConfigMap:
		for k, v := range o.Data {
			n += len(k) + len(v)
		}
		for k, v := range o.BinaryData {
			n += len(k) + len(v)
		}
	}
	return n
}

func copyInto(src, dst client.Object) error {
	switch d := dst.(type) {
	case *corev1.Secret:
		src.(*corev1.Secret).DeepCopyInto(d)
	case *corev1.ConfigMap:
		src.(*corev1.ConfigMap).DeepCopyInto(d)
	}
	return nil
}
