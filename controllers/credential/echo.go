package credential

import (
	"crypto/sha256"
	"encoding/binary"
	"maps"
	"slices"
	"sync"
	"time"

	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/tokenkeeper/tokenkeeper/internal/metrics"
)

// echoes remembers what this manager last wrote to each of its Secrets, so that the watch event
// of its own write does not queue the Credential again (a second reconcile per rotation, reading
// everything again to find nothing to do). The event can arrive before the write returns, so the
// content is recorded before the write is sent. A Secret someone else changed, or deleted, differs
// from the record and brings its Credential back as before.
type echoes struct {
	mu sync.Mutex
	m  map[types.NamespacedName][sha256.Size]byte
}

func newEchoes() *echoes { return &echoes{m: map[types.NamespacedName][sha256.Size]byte{}} }

// expect records s as about to be written.
func (e *echoes) expect(s *corev1.Secret) {
	d := digest(s)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.m[client.ObjectKeyFromObject(s)] = d
}

// isEcho reports whether s is exactly what this manager last wrote.
func (e *echoes) isEcho(s *corev1.Secret) bool {
	d := digest(s)
	e.mu.Lock()
	defer e.mu.Unlock()
	want, ok := e.m[client.ObjectKeyFromObject(s)]
	return ok && want == d
}

func (e *echoes) forget(key types.NamespacedName) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.m, key)
}

// predicate passes every event on the manager's Secrets but the echoes of its own writes.
func (e *echoes) predicate() predicate.Predicate {
	other := func(o client.Object) bool {
		s, ok := o.(*corev1.Secret)
		// A deletion under way is news even when the content is the manager's own (a state
		// Secret held by the revoke finalizer).
		return !ok || !s.DeletionTimestamp.IsZero() || !e.isEcho(s)
	}
	return predicate.Funcs{
		CreateFunc: func(ev event.CreateEvent) bool { return other(ev.Object) },
		UpdateFunc: func(ev event.UpdateEvent) bool { return other(ev.ObjectNew) },
		DeleteFunc: func(ev event.DeleteEvent) bool {
			e.forget(client.ObjectKeyFromObject(ev.Object))
			return true
		},
	}
}

// digest covers everything the manager sets on its Secrets: type, data, labels, annotations and
// owners.
func digest(s *corev1.Secret) [sha256.Size]byte {
	h := sha256.New()
	field := func(b []byte) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	strings := func(m map[string]string) {
		for _, k := range slices.Sorted(maps.Keys(m)) {
			field([]byte(k))
			field([]byte(m[k]))
		}
		field(nil)
	}
	field([]byte(s.Type))
	for _, k := range slices.Sorted(maps.Keys(s.Data)) {
		field([]byte(k))
		field(s.Data[k])
	}
	field(nil)
	strings(s.Labels)
	strings(s.Annotations)
	for _, o := range s.OwnerReferences {
		field([]byte(o.UID))
	}
	var d [sha256.Size]byte
	h.Sum(d[:0])
	return d
}

// rotationEventInterval is the least time between two Normal rotation Events of one Credential:
// short-lived tokens rotate every minute or two, and an Event each time would be an API write
// each time. Failures, recoveries and the first token get theirs within the manager-wide budget
// below; status and tokenkeeper_renewals_total count every rotation.
const rotationEventInterval = 10 * time.Minute

// Rotation Events of all Credentials together: at most routineEventsPerSecond, in bursts of
// routineEventBurst. Thousands of Credentials created at once (or one tenant creating them) would
// otherwise cost the API server an Event write each on top of the writes that matter. Warnings
// are not routine and never counted here.
const (
	routineEventsPerSecond = 10
	routineEventBurst      = 100
)

// eventGate lets through one event per Credential per interval, and no more than the manager-wide
// budget.
type eventGate struct {
	interval time.Duration
	budget   *rate.Limiter
	mu       sync.Mutex
	last     map[types.NamespacedName]time.Time
}

func newEventGate(interval time.Duration) *eventGate {
	return &eventGate{interval: interval, budget: rate.NewLimiter(routineEventsPerSecond, routineEventBurst),
		last: map[types.NamespacedName]time.Time{}}
}

// allow reports whether key may have an event at now; force may within the interval (and starts
// it again). Either way the manager-wide budget must have room: an event it refuses is skipped and
// counted in tokenkeeper_events_skipped_total.
func (g *eventGate) allow(key types.NamespacedName, now time.Time, force bool) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if last, ok := g.last[key]; ok && !force && now.Sub(last) < g.interval && !now.Before(last) {
		return false
	}
	if !g.budget.AllowN(now, 1) {
		metrics.EventsSkipped.Inc()
		return false
	}
	g.last[key] = now
	return true
}

func (g *eventGate) forget(key types.NamespacedName) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.last, key)
}
