package resolve_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/tokenkeeper/tokenkeeper/internal/resolve"
)

// TestRefWatchKeepsOnlyReferenced: of 300 Secrets, the watch keeps the two a mapper claims and
// none of the others (a tenant's unreferenced Secrets cost no memory); a change of a referenced one
// is queued and its new version served; a deletion is queued and forgotten; what a reader fetched
// itself is remembered until a newer version arrives.
func TestRefWatchKeepsOnlyReferenced(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	c := env.Client
	ns := "refwatch"
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	for i := range 300 {
		must(c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("other-%d", i)},
			StringData: map[string]string{"k": strings.Repeat("y", 512)}}))
	}
	must(c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ref-a"}, StringData: map[string]string{"k": "1"}}))
	mc, err := metadata.NewForConfig(env.Config)
	must(err)
	w := resolve.NewRefWatch(mc, "secrets", "Secret")
	q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[reconcile.Request]())
	defer q.ShutDown()
	must(w.Source(func(_ context.Context, o *metav1.PartialObjectMetadata) []reconcile.Request {
		if o.Namespace != ns || !strings.HasPrefix(o.Name, "ref-") {
			return nil
		}
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: ns, Name: "for-" + o.Name}}}
	}).Start(ctx, q))
	go func() { _ = w.Start(ctx) }()
	if !w.WaitForSync(ctx) {
		t.Fatal("no first list")
	}
	next := func(want string) {
		t.Helper()
		done := make(chan reconcile.Request, 1)
		go func() {
			r, _ := q.Get()
			q.Done(r)
			q.Forget(r)
			done <- r
		}()
		select {
		case r := <-done:
			if r.Name != want {
				t.Fatalf("queued %v, want %s", r, want)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("nothing queued, want %s", want)
		}
	}
	next("for-ref-a")
	must(c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ref-b"}}))
	next("for-ref-b")
	if n := w.Len(); n != 2 {
		t.Fatalf("the watch keeps %d objects, want the 2 referenced", n)
	}
	meta := &metav1.PartialObjectMetadata{}
	if err := w.Get(ctx, types.NamespacedName{Namespace: ns, Name: "other-7"}, meta); err == nil {
		t.Fatal("an unreferenced Secret is served")
	}
	// A change is queued and its version served.
	a := &corev1.Secret{}
	must(c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "ref-a"}, a))
	a.StringData = map[string]string{"k": "2"}
	must(c.Update(ctx, a))
	next("for-ref-a")
	must(w.Get(ctx, types.NamespacedName{Namespace: ns, Name: "ref-a"}, meta))
	if meta.ResourceVersion != a.ResourceVersion {
		t.Fatalf("version %s served, want %s", meta.ResourceVersion, a.ResourceVersion)
	}
	// A deletion is queued and forgotten.
	must(c.Delete(ctx, a))
	next("for-ref-a")
	if err := w.Get(ctx, types.NamespacedName{Namespace: ns, Name: "ref-a"}, meta); err == nil {
		t.Fatal("a deleted Secret is still served")
	}
	// Remembered: kept until the watch knows better; never over a version the watch holds.
	other := &corev1.Secret{}
	must(c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "other-7"}, other))
	w.Remember(other)
	must(w.Get(ctx, types.NamespacedName{Namespace: ns, Name: "other-7"}, meta))
	b := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ref-b", ResourceVersion: "1"}}
	w.Remember(b)
	must(w.Get(ctx, types.NamespacedName{Namespace: ns, Name: "ref-b"}, meta))
	if meta.ResourceVersion == "1" {
		t.Fatal("Remember replaced the watch's newer version")
	}
	if n := w.Len(); n != 2 {
		t.Fatalf("the watch keeps %d objects, want 2", n)
	}
}
