package resolve

import (
	"context"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// secretsAt serves Secrets by name (data of the size the name asks for) and their versions, and
// counts reads: the stand-in for the API server and the reference watch.
type secretsAt struct {
	reads   int
	version string
}

func (s *secretsAt) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	var size int
	_, _ = fmt.Sscanf(key.Name, "s-%d-", &size)
	switch o := obj.(type) {
	case *corev1.Secret:
		s.reads++
		o.Name, o.Namespace, o.ResourceVersion = key.Name, key.Namespace, s.version
		o.Data = map[string][]byte{"k": []byte(strings.Repeat("x", size))}
		o.Annotations = map[string]string{"kubectl.kubernetes.io/last-applied-configuration": "{...}"}
	case *metav1.PartialObjectMetadata:
		o.Name, o.Namespace, o.ResourceVersion = key.Name, key.Namespace, s.version
	}
	return nil
}

func (s *secretsAt) List(context.Context, client.ObjectList, ...client.ListOption) error { return nil }

// An unchanged Secret is read once; a new version is read again; a Secret over 16 KiB is never
// kept; however many a tenant has, what is kept stays within 32 MiB; copies carry no annotations.
func TestVersionedReaderBounds(t *testing.T) {
	api := &secretsAt{version: "1"}
	r := NewVersionedReader(api, api)
	get := func(name string) *corev1.Secret {
		s := &corev1.Secret{}
		if err := r.Get(t.Context(), client.ObjectKey{Namespace: "ns", Name: name}, s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	get("s-100-a")
	if s := get("s-100-a"); api.reads != 1 || len(s.Data["k"]) != 100 || len(s.Annotations) != 0 {
		t.Fatalf("an unchanged Secret: %d reads (want 1), %d bytes, annotations %v", api.reads, len(s.Data["k"]), s.Annotations)
	}
	api.version = "2"
	get("s-100-a")
	if api.reads != 2 {
		t.Fatalf("a new version: %d reads, want 2", api.reads)
	}
	get("s-20000-big")
	get("s-20000-big")
	if api.reads != 4 {
		t.Fatalf("a 20 KB Secret was kept: %d reads, want 4", api.reads)
	}
	for i := range 5000 { // 5,000 Secrets of 15 KB: 75 MB if all were kept
		get(fmt.Sprintf("s-15000-%d", i))
		if r.bytes > maxVersionedBytes {
			t.Fatalf("%d bytes kept after %d Secrets, bound %d", r.bytes, i+1, maxVersionedBytes)
		}
	}
}
