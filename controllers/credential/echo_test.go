package credential

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/apimachinery/pkg/types"

	"github.com/tokenkeeper/tokenkeeper/internal/metrics"
)

// Thousands of Credentials issued at once get rotation Events only within the manager-wide
// budget; the rest are counted as skipped. One Credential's own interval still holds.
func TestEventGateBudget(t *testing.T) {
	g := newEventGate(rotationEventInterval)
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	skippedBefore := testutil.ToFloat64(metrics.EventsSkipped)
	allowed := 0
	for i := range 1000 {
		if g.allow(types.NamespacedName{Namespace: "ns", Name: fmt.Sprint(i)}, now, true) {
			allowed++
		}
	}
	if allowed != routineEventBurst {
		t.Fatalf("1,000 first tokens at one instant: %d Events, want the burst %d", allowed, routineEventBurst)
	}
	if skipped := testutil.ToFloat64(metrics.EventsSkipped) - skippedBefore; skipped != 1000-routineEventBurst {
		t.Fatalf("skipped counted %v, want %d", skipped, 1000-routineEventBurst)
	}
	// A second later the budget has room for routineEventsPerSecond more.
	later := now.Add(time.Second)
	allowed = 0
	for i := range 1000 {
		if g.allow(types.NamespacedName{Namespace: "other", Name: fmt.Sprint(i)}, later, true) {
			allowed++
		}
	}
	if allowed != routineEventsPerSecond {
		t.Fatalf("a second later: %d Events, want %d", allowed, routineEventsPerSecond)
	}
	// With room in the budget, one Credential still gets one routine Event per interval.
	quiet := later.Add(time.Hour)
	key := types.NamespacedName{Namespace: "ns", Name: "one"}
	if !g.allow(key, quiet, false) || g.allow(key, quiet.Add(time.Minute), false) || !g.allow(key, quiet.Add(rotationEventInterval), false) {
		t.Fatal("one Credential's rotation Events are not one per interval")
	}
}
