package credential

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/metrics"
	"github.com/tokenkeeper/tokenkeeper/internal/status"
)

// RestartOptions bound rollout restarts manager-wide.
type RestartOptions struct {
	// Budget is how many workloads may be restarting at once (patched, not yet rolled out);
	// the rest wait. DefaultRestartBudget when 0.
	Budget int
	// Window is how long a workload's restart waits for other Credentials it reads to rotate
	// too, so that they share one restart. DefaultRestartWindow when 0.
	Window time.Duration
	// Timeout is how long a restart that does not finish rolling out holds its budget slot.
	// DefaultRestartTimeout when 0.
	Timeout time.Duration
}

const (
	DefaultRestartBudget  = 5
	DefaultRestartWindow  = 10 * time.Second
	DefaultRestartTimeout = 10 * time.Minute
)

// annotationRestartedAt is the time of the last restart, informational (it was the only restart
// annotation before restarted-for, and tools may read it). It changes only with restarted-for.
const annotationRestartedAt = "tokenkeeper.io/restartedAt"

// maxRestartTargets bounds the workloads one Credential restarts (a selector may match many).
const maxRestartTargets = 256

// restartTick is how often queued restarts and rollouts in progress are looked at.
const restartTick = 500 * time.Millisecond

type workloadKey struct {
	Kind      v1alpha1.WorkloadKind
	Namespace string
	Name      string
}

func (k workloadKey) String() string { return string(k.Kind) + "/" + k.Name }

func keyOf(o client.Object) workloadKey {
	return workloadKey{Kind: kindOfWorkload(o), Namespace: o.GetNamespace(), Name: o.GetName()}
}

// queuedRestart is one workload waiting to be restarted, for the tokens of one or more
// Credentials (by name, in the workload's namespace).
type queuedRestart struct {
	since time.Time
	creds map[string]wantedToken
}

type wantedToken struct {
	uid         types.UID
	fingerprint string
}

type inFlight struct {
	at         time.Time
	generation int64 // the generation the restart made: an older cached copy says nothing
}

// restarter restarts workloads for new tokens: each workload once per set of tokens (its pod
// template's restarted-for annotation names them), after a window in which other Credentials may
// join, with at most Budget workloads rolling out at once. It runs on the leader only.
type restarter struct {
	client   client.Client
	recorder events.EventRecorder
	clock    clock.PassiveClock
	opts     RestartOptions
	// notify brings Credentials back to the workloads controller, to update their status.
	notify chan event.GenericEvent

	mu       sync.Mutex
	want     map[types.NamespacedName]string // fingerprints rotations asked for, until status holds them
	queue    map[workloadKey]*queuedRestart
	inFlight map[workloadKey]inFlight
	reported map[types.NamespacedName]string // the fingerprint missing workloads were reported for
}

func newRestarter(c client.Client, rec events.EventRecorder, clk clock.PassiveClock, opts RestartOptions) *restarter {
	if opts.Budget <= 0 {
		opts.Budget = DefaultRestartBudget
	}
	if opts.Window <= 0 {
		opts.Window = DefaultRestartWindow
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultRestartTimeout
	}
	return &restarter{client: c, recorder: rec, clock: clk, opts: opts, notify: make(chan event.GenericEvent, 1024),
		want: map[types.NamespacedName]string{}, queue: map[workloadKey]*queuedRestart{}, inFlight: map[workloadKey]inFlight{},
		reported: map[types.NamespacedName]string{}}
}

// requested records that a rotation wrote the token fingerprint: its workloads are to be
// restarted for it. Status carries it too; this copy survives a status write that conflicted.
func (s *restarter) requested(key types.NamespacedName, fingerprint string) {
	s.mu.Lock()
	s.want[key] = fingerprint
	s.mu.Unlock()
}

// forget drops what is queued for a Credential that is gone.
func (s *restarter) forget(key types.NamespacedName) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.want, key)
	delete(s.reported, key)
	s.dequeue(key, nil)
}

// dequeue removes a Credential from the queued restarts of its namespace but those in keep.
func (s *restarter) dequeue(key types.NamespacedName, keep map[workloadKey]bool) {
	for k, q := range s.queue {
		if k.Namespace != key.Namespace || keep[k] {
			continue
		}
		delete(q.creds, key.Name)
		if len(q.creds) == 0 {
			delete(s.queue, k)
		}
	}
}

// sync works out, for one Credential, which of the workloads it selects still need a restart
// for its current rotation, queues those, and says so in status.rolloutRestart. It reports
// whether any are queued.
func (s *restarter) sync(ctx context.Context, cred *v1alpha1.Credential, consumers []v1alpha1.SecretConsumer) (bool, error) {
	key := client.ObjectKeyFromObject(cred)
	s.mu.Lock()
	defer s.mu.Unlock()
	fp := ""
	if cred.Status.RolloutRestart != nil {
		fp = cred.Status.RolloutRestart.Fingerprint
	}
	if w, ok := s.want[key]; ok {
		switch w {
		case fp:
			delete(s.want, key)
		case cred.Status.TokenFingerprint:
			fp = w // the rotation's status write was lost (a conflict): the token is current
		}
	}
	if len(cred.Spec.RolloutRestart) == 0 || fp == "" {
		s.dequeue(key, nil)
		cred.Status.RolloutRestart = nil
		return false, nil
	}
	targets, missing, err := s.targets(ctx, cred, consumers)
	if err != nil {
		return false, err
	}
	next := &v1alpha1.RolloutRestartStatus{Fingerprint: fp}
	now := s.clock.Now()
	keep := map[workloadKey]bool{}
	var queued []v1alpha1.WorkloadName
	inWindow := 0
	for _, o := range targets {
		k := keyOf(o)
		if restartedFor(o)[cred.Name] == fp {
			next.Restarted++
			continue
		}
		keep[k] = true
		q := s.queue[k]
		if q == nil {
			q = &queuedRestart{since: now, creds: map[string]wantedToken{}}
			s.queue[k] = q
		}
		q.creds[cred.Name] = wantedToken{uid: cred.UID, fingerprint: fp}
		if now.Before(q.since.Add(s.opts.Window)) {
			inWindow++
		}
		queued = append(queued, v1alpha1.WorkloadName{Kind: k.Kind, Name: k.Name})
	}
	s.dequeue(key, keep)
	next.QueuedCount = count(len(queued))
	next.Queued = queued[:min(len(queued), maxConsumers)]
	var msg []string
	if len(queued) > 0 {
		msg = append(msg, fmt.Sprintf("%d waiting: %d for the %s coalescing window, %d for the manager-wide budget (%d of %d restarts in progress)",
			len(queued), inWindow, s.opts.Window, len(queued)-inWindow, len(s.inFlight), s.opts.Budget))
	}
	if len(missing) > 0 {
		msg = append(msg, "not found: "+strings.Join(missing, ", "))
		if s.reported[key] != fp {
			s.reported[key] = fp
			s.recorder.Eventf(cred, nil, corev1.EventTypeWarning, string(v1alpha1.ReasonRolloutRestartFailed), "Restart",
				"not restarting %s for token %s: not found", strings.Join(missing, ", "), fp)
		}
	}
	next.Message = strings.Join(msg, "; ")
	if len(next.Message) > 1024 {
		next.Message = next.Message[:1021] + "..."
	}
	cred.Status.RolloutRestart = next
	return len(queued) > 0, nil
}

// targets are the workloads spec.rolloutRestart selects, from the cache, and the named ones that
// do not exist.
func (s *restarter) targets(ctx context.Context, cred *v1alpha1.Credential, consumers []v1alpha1.SecretConsumer) ([]client.Object, []string, error) {
	var out []client.Object
	var missing []string
	seen := map[workloadKey]bool{}
	add := func(o client.Object) {
		if k := keyOf(o); !seen[k] && len(out) < maxRestartTargets && o.GetDeletionTimestamp() == nil {
			seen[k] = true
			out = append(out, o)
		}
	}
	get := func(kind v1alpha1.WorkloadKind, name string) error {
		o := newWorkload(kind)
		err := s.client.Get(ctx, types.NamespacedName{Namespace: cred.Namespace, Name: name}, o)
		switch {
		case apierrors.IsNotFound(err):
			missing = append(missing, string(kind)+"/"+name)
		case err != nil:
			return err
		default:
			add(o)
		}
		return nil
	}
	for _, ref := range cred.Spec.RolloutRestart {
		switch {
		case ref.Name != "":
			if err := get(ref.Kind, ref.Name); err != nil {
				return nil, nil, err
			}
		case ref.Selector != nil:
			sel, err := metav1.LabelSelectorAsSelector(ref.Selector)
			if err != nil {
				missing = append(missing, "invalid selector ("+err.Error()+")")
				continue
			}
			found, err := selectWorkloads(ctx, s.client, cred.Namespace, ref.Kind, sel)
			if err != nil {
				return nil, nil, err
			}
			for _, o := range found {
				add(o)
			}
		case ref.Auto:
			for _, c := range consumers {
				if readsAtStart(c) && (ref.Kind == "" || c.Kind == ref.Kind) {
					if err := get(c.Kind, c.Name); err != nil {
						return nil, nil, err
					}
				}
			}
		}
	}
	return out, missing, nil
}

// Start runs the restarts until ctx ends (a manager Runnable; on the leader only).
func (s *restarter) Start(ctx context.Context) error {
	t := time.NewTicker(restartTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			s.tick(ctx)
		}
	}
}

// tick frees the budget slots of restarts that rolled out (or timed out) and restarts the
// queued workloads whose window is over, oldest first, while the budget allows.
func (s *restarter) tick(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	for k, f := range s.inFlight {
		o := newWorkload(k.Kind)
		err := s.client.Get(ctx, types.NamespacedName{Namespace: k.Namespace, Name: k.Name}, o)
		if apierrors.IsNotFound(err) || err == nil && o.GetGeneration() >= f.generation && rolledOut(o) || !now.Before(f.at.Add(s.opts.Timeout)) {
			delete(s.inFlight, k)
		}
	}
	due := make([]workloadKey, 0, len(s.queue))
	for k, q := range s.queue {
		if !now.Before(q.since.Add(s.opts.Window)) {
			due = append(due, k)
		}
	}
	sort.Slice(due, func(i, j int) bool {
		a, b := s.queue[due[i]], s.queue[due[j]]
		if !a.since.Equal(b.since) {
			return a.since.Before(b.since)
		}
		return due[i].Namespace+"/"+due[i].String() < due[j].Namespace+"/"+due[j].String()
	})
	for _, k := range due {
		if len(s.inFlight) >= s.opts.Budget {
			break
		}
		s.restart(ctx, k, now)
	}
	metrics.RolloutRestartsQueued.Set(float64(len(s.queue)))
	metrics.RolloutRestartsInProgress.Set(float64(len(s.inFlight)))
}

// restart patches one workload's pod template with the tokens queued for it. A workload whose
// annotation already names them is not patched: nothing restarts twice for one token.
func (s *restarter) restart(ctx context.Context, k workloadKey, now time.Time) {
	q := s.queue[k]
	defer s.wake(k.Namespace, q)
	o := newWorkload(k.Kind)
	err := s.client.Get(ctx, types.NamespacedName{Namespace: k.Namespace, Name: k.Name}, o)
	if apierrors.IsNotFound(err) {
		delete(s.queue, k) // the Credentials' next sync says it is missing, if they name it
		return
	}
	if err != nil {
		q.since = now // try again after another window
		return
	}
	entries := restartedFor(o)
	changed := false
	for name, w := range q.creds {
		if entries[name] != w.fingerprint {
			entries[name], changed = w.fingerprint, true
		}
	}
	if !changed {
		delete(s.queue, k)
		return
	}
	for name := range entries { // entries of Credentials that are gone go with this restart
		if _, queued := q.creds[name]; !queued {
			err := s.client.Get(ctx, types.NamespacedName{Namespace: k.Namespace, Name: name}, &v1alpha1.Credential{})
			if apierrors.IsNotFound(err) {
				delete(entries, name)
			}
		}
	}
	patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{%q:%q,%q:%q}}}}}`,
		v1alpha1.AnnotationRestartedFor, formatRestartedFor(entries), annotationRestartedAt, now.UTC().Format(time.RFC3339))
	err = s.client.Patch(ctx, o, client.RawPatch(types.MergePatchType, []byte(patch)))
	if err != nil {
		for name, w := range q.creds {
			s.recorder.Eventf(credRef(k.Namespace, name, w.uid), nil, corev1.EventTypeWarning, string(v1alpha1.ReasonRolloutRestartFailed), "Restart",
				"restarting %s %s failed: %v", k.Kind, k.Name, err)
		}
		if apierrors.IsNotFound(err) || apierrors.IsForbidden(err) || apierrors.IsInvalid(err) {
			delete(s.queue, k)
		} else {
			q.since = now
		}
		return
	}
	delete(s.queue, k)
	s.inFlight[k] = inFlight{at: now, generation: o.GetGeneration()}
	metrics.RolloutRestarts.WithLabelValues(k.Namespace, string(k.Kind)).Inc()
	names := make([]string, 0, len(q.creds))
	for name := range q.creds {
		names = append(names, name)
	}
	slices.Sort(names)
	logf.FromContext(ctx).Info("workload restarted for new tokens", "namespace", k.Namespace, "workload", k.String(), "credentials", names)
	for _, name := range names {
		w := q.creds[name]
		s.recorder.Eventf(credRef(k.Namespace, name, w.uid), o, corev1.EventTypeNormal, string(v1alpha1.ReasonRolloutRestarted), "Restart",
			"%s %s restarted for token %s (one restart for Credentials %s)", k.Kind, k.Name, w.fingerprint, strings.Join(names, ", "))
	}
}

// wake brings the Credentials of a queued restart back to update their status.
func (s *restarter) wake(namespace string, q *queuedRestart) {
	for name, w := range q.creds {
		select {
		case s.notify <- event.GenericEvent{Object: credRef(namespace, name, w.uid)}:
		default: // full: their status catches up at their next requeue
		}
	}
}

func credRef(namespace, name string, uid types.UID) *v1alpha1.Credential {
	return &v1alpha1.Credential{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, UID: uid}}
}

// restartedFor reads a workload's restarted-for annotation: Credential name → token fingerprint.
func restartedFor(o client.Object) map[string]string {
	out := map[string]string{}
	t := podTemplate(o)
	if t == nil {
		return out
	}
	for _, e := range strings.Split(t.Annotations[v1alpha1.AnnotationRestartedFor], ",") {
		if name, fp, ok := strings.Cut(strings.TrimSpace(e), "="); ok && name != "" {
			out[name] = fp
		}
	}
	return out
}

// formatRestartedFor writes the annotation: name=fingerprint pairs sorted by name, so that the
// same tokens always give the same value (and the same pod template).
func formatRestartedFor(entries map[string]string) string {
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	slices.Sort(names)
	parts := make([]string, 0, len(names))
	for _, n := range names {
		parts = append(parts, n+"="+entries[n])
	}
	return strings.Join(parts, ",")
}

// workloadsReconciler keeps the status of Credentials in line with the workloads that read their
// Secret (status.consumers) and those restarted for their token (status.rolloutRestart). It is
// a controller of its own: it writes only those fields, and renewals never wait for it.
type workloadsReconciler struct {
	client.Client
	restarts *restarter
}

func (w *workloadsReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	cred := &v1alpha1.Credential{}
	if err := w.Get(ctx, req.NamespacedName, cred); err != nil {
		if apierrors.IsNotFound(err) {
			w.restarts.forget(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !cred.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	before := cred.DeepCopy()
	consumers, err := consumersOf(ctx, w.Client, cred.Namespace, cred.Spec.SecretName)
	if err != nil {
		return ctrl.Result{}, err
	}
	cred.Status.ConsumerCount = count(len(consumers))
	cred.Status.Consumers = consumers[:min(len(consumers), maxConsumers)]
	queued, err := w.restarts.sync(ctx, cred, consumers)
	if err != nil {
		return ctrl.Result{}, err
	}
	var res ctrl.Result
	if queued { // woken when a restart is done; this is the fallback
		res.RequeueAfter = w.restarts.opts.Window + time.Second
	}
	// Optimistic lock (status.Patch): the fingerprint read must be the one in force, or this
	// pass's counts would describe an older rotation.
	err = status.Patch(ctx, w.Client, before, cred, func(c *v1alpha1.Credential) any { return c.Status })
	if apierrors.IsConflict(err) {
		return ctrl.Result{RequeueAfter: statusConflictRetry}, nil
	}
	return res, err
}

// count is n for a status count, capped at the largest int32.
func count(n int) int32 {
	if n > math.MaxInt32 {
		return math.MaxInt32
	}
	return int32(n) //nolint:gosec // capped just above
}
