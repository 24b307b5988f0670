package cli

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/resolve"
)

// maxEvents is how many recent Events status shows for one Credential.
const maxEvents = 10

// CredentialStatus is what `status` shows of one Credential; `-o json|yaml` prints it as is.
type CredentialStatus struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Issuer    string `json:"issuer"`
	// Ready is the Ready condition's status, Reason and Message its reason and message.
	Ready   string `json:"ready"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
	// ExpiresAt, RenewalTime and LastRotationTime are the current token's.
	ExpiresAt        *time.Time `json:"expiresAt,omitempty"`
	RenewalTime      *time.Time `json:"renewalTime,omitempty"`
	LastRotationTime *time.Time `json:"lastRotationTime,omitempty"`
	// Failures are the failed attempts since the last success, LastFailure the reason of the last.
	Failures      int32      `json:"failures,omitempty"`
	LastFailure   string     `json:"lastFailure,omitempty"`
	NextRetryTime *time.Time `json:"nextRetryTime,omitempty"`
	// Policies are the TokenPolicies in force; Session and MaxSession what they give.
	Policies    []string `json:"policies,omitempty"`
	Session     string   `json:"session,omitempty"`
	MaxSession  string   `json:"maxSession,omitempty"`
	RenewalRule string   `json:"renewalRule,omitempty"`
	SecretName  string   `json:"secretName"`
	// Consumers are the workloads that read the token Secret, and how; ConsumerCount counts them
	// all (the list stops at 32).
	Consumers     []v1alpha1.SecretConsumer `json:"consumers,omitempty"`
	ConsumerCount int32                     `json:"consumerCount,omitempty"`
	// Restarts is the progress of spec.rolloutRestart's restarts for the current token.
	Restarts *v1alpha1.RolloutRestartStatus `json:"restarts,omitempty"`
	// Secret and Events are shown for one Credential only.
	Secret *TargetSecret  `json:"secret,omitempty"`
	Events []EventSummary `json:"events,omitempty"`
}

// TargetSecret is the token Secret as pods see it.
type TargetSecret struct {
	Exists bool `json:"exists"`
	// ExpiresAt is the expiry the Secret itself states (its tokenkeeper.io/expires-at).
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
	// UpdatedAt is the Secret's last write; pods mounting it see the write within the kubelet's
	// sync period.
	UpdatedAt *time.Time `json:"updatedAt,omitempty"`
	// MatchesStatus says whether the Secret's expiry is the status's.
	MatchesStatus bool `json:"matchesStatus"`
}

// EventSummary is one recent Event of a Credential.
type EventSummary struct {
	Type    string     `json:"type"`
	Reason  string     `json:"reason"`
	Time    *time.Time `json:"time,omitempty"`
	Count   int32      `json:"count,omitempty"`
	Message string     `json:"message"`
}

// CredentialStatusList is `status -o json` of several Credentials.
type CredentialStatusList struct {
	Items []CredentialStatus `json:"items"`
}

type statusOptions struct {
	*Options
	all      bool
	selector string
	output   string
}

func newStatus(o *Options) *cobra.Command {
	s := &statusOptions{Options: o}
	cmd := &cobra.Command{
		Use:   "status [NAME | -A | -l SELECTOR]",
		Short: "Show Credentials: Ready, expiry, next renewal, failures and policy",
		Example: `  kubectl tokenkeeper status -A
  kubectl tokenkeeper status orders-api -n shop
  kubectl tokenkeeper status -l team=payments -o json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return s.run(cmd.Context(), args) },
	}
	cmd.Flags().BoolVarP(&s.all, "all-namespaces", "A", false, "Credentials of every namespace")
	cmd.Flags().StringVarP(&s.selector, "selector", "l", "", "label selector")
	cmd.Flags().StringVarP(&s.output, "output", "o", "", "output format: json or yaml (default: a table)")
	return cmd
}

func (s *statusOptions) run(ctx context.Context, args []string) error {
	c, ns, err := s.clientIn()
	if err != nil {
		return err
	}
	if len(args) == 1 {
		cred := &v1alpha1.Credential{}
		if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: args[0]}, cred); err != nil {
			return err
		}
		st := s.summarize(cred)
		if err := s.detail(ctx, c, cred, &st); err != nil {
			return err
		}
		if ok, err := printAs(s.Out, s.output, st); ok {
			return err
		}
		return s.printOne(st)
	}
	list := &v1alpha1.CredentialList{}
	opts := []client.ListOption{}
	if !s.all {
		opts = append(opts, client.InNamespace(ns))
	}
	sel, err := selector(s.selector)
	if err != nil {
		return err
	}
	opts = append(opts, client.MatchingLabelsSelector{Selector: sel})
	if err := c.List(ctx, list, opts...); err != nil {
		return err
	}
	out := CredentialStatusList{Items: []CredentialStatus{}}
	for i := range list.Items {
		out.Items = append(out.Items, s.summarize(&list.Items[i]))
	}
	sort.Slice(out.Items, func(i, j int) bool {
		a, b := out.Items[i], out.Items[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	if ok, err := printAs(s.Out, s.output, out); ok {
		return err
	}
	if len(out.Items) == 0 {
		return say(s.ErrOut, "No Credentials found.")
	}
	return s.printList(out.Items)
}

func (s *statusOptions) summarize(cred *v1alpha1.Credential) CredentialStatus {
	st := CredentialStatus{Namespace: cred.Namespace, Name: cred.Name, Issuer: resolve.IssuerKey(cred.Spec.IssuerRef),
		Ready: "Unknown", SecretName: cred.Spec.SecretName}
	if c := meta.FindStatusCondition(cred.Status.Conditions, string(v1alpha1.ConditionReady)); c != nil {
		st.Ready, st.Reason, st.Message = string(c.Status), c.Reason, c.Message
	}
	cs := &cred.Status
	st.ExpiresAt, st.RenewalTime, st.LastRotationTime = timeOf(cs.ExpiresAt), timeOf(cs.RenewalTime), timeOf(cs.LastRotationTime)
	st.Failures, st.LastFailure, st.NextRetryTime = cs.FailedAttempts, cs.LastFailureReason, timeOf(cs.NextRetryTime)
	st.Consumers, st.ConsumerCount, st.Restarts = cs.Consumers, cs.ConsumerCount, cs.RolloutRestart
	if p := cs.EffectivePolicy; p != nil {
		st.Policies = p.Policies
		if p.SessionDuration != nil {
			st.Session = p.SessionDuration.Duration.String()
		}
		if p.MaxSessionDuration != nil {
			st.MaxSession = p.MaxSessionDuration.Duration.String()
		}
		st.RenewalRule = p.RenewalRule
	}
	return st
}

// detail adds the target Secret and recent Events of one Credential.
func (s *statusOptions) detail(ctx context.Context, c client.Client, cred *v1alpha1.Credential, st *CredentialStatus) error {
	sec := &corev1.Secret{}
	st.Secret = &TargetSecret{}
	switch err := c.Get(ctx, types.NamespacedName{Namespace: cred.Namespace, Name: cred.Spec.SecretName}, sec); {
	case apierrors.IsNotFound(err):
	case apierrors.IsForbidden(err):
		st.Secret = nil // the user may see Credentials but not Secrets: say nothing of it
	case err != nil:
		return err
	default:
		st.Secret.Exists = true
		if v, err := time.Parse(time.RFC3339, sec.Annotations[v1alpha1.AnnotationExpiresAt]); err == nil {
			st.Secret.ExpiresAt = &v
		}
		st.Secret.UpdatedAt = lastWrite(sec)
		st.Secret.MatchesStatus = st.Secret.ExpiresAt != nil && st.ExpiresAt != nil && st.Secret.ExpiresAt.Equal(st.ExpiresAt.Truncate(time.Second))
	}
	events := &corev1.EventList{}
	err := c.List(ctx, events, client.InNamespace(cred.Namespace), client.MatchingFieldsSelector{Selector: fields.SelectorFromSet(fields.Set{
		"involvedObject.kind": "Credential", "involvedObject.name": cred.Name})})
	if apierrors.IsForbidden(err) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range events.Items {
		if e.InvolvedObject.UID != "" && cred.UID != "" && e.InvolvedObject.UID != cred.UID {
			continue // an earlier Credential of the same name
		}
		at := eventTime(&e)
		st.Events = append(st.Events, EventSummary{Type: e.Type, Reason: e.Reason, Time: at, Count: e.Count, Message: e.Message})
	}
	sort.SliceStable(st.Events, func(i, j int) bool {
		a, b := st.Events[i].Time, st.Events[j].Time
		return a != nil && (b == nil || a.Before(*b))
	})
	if n := len(st.Events); n > maxEvents {
		st.Events = st.Events[n-maxEvents:]
	}
	return nil
}

// lastWrite is the newest time in a Secret's managed fields, else its creation.
func lastWrite(sec *corev1.Secret) *time.Time {
	t := sec.CreationTimestamp.Time
	for _, m := range sec.ManagedFields {
		if m.Time != nil && m.Time.After(t) {
			t = m.Time.Time
		}
	}
	return &t
}

func eventTime(e *corev1.Event) *time.Time {
	var series time.Time
	if e.Series != nil {
		series = e.Series.LastObservedTime.Time
	}
	for _, t := range []time.Time{series, e.LastTimestamp.Time, e.EventTime.Time, e.FirstTimestamp.Time, e.CreationTimestamp.Time} {
		if !t.IsZero() {
			return &t
		}
	}
	return nil
}

func (s *statusOptions) printList(items []CredentialStatus) error {
	now := s.now()
	header := []string{"NAME", "ISSUER", "READY", "REASON", "EXPIRES", "RENEWS", "ROTATED", "FAILURES", "NEXT RETRY", "POLICY"}
	if s.all {
		header = append([]string{"NAMESPACE"}, header...)
	}
	rows := make([][]string, 0, len(items))
	for _, it := range items {
		row := []string{it.Name, it.Issuer, it.Ready, or(it.Reason, none), relative(now, it.ExpiresAt), relative(now, it.RenewalTime),
			relative(now, it.LastRotationTime), failures(it), relative(now, it.NextRetryTime), or(strings.Join(it.Policies, ","), none)}
		if s.all {
			row = append([]string{it.Namespace}, row...)
		}
		rows = append(rows, row)
	}
	return table(s.Out, header, rows)
}

func failures(st CredentialStatus) string {
	if st.Failures == 0 {
		return "0"
	}
	return fmt.Sprintf("%d (%s)", st.Failures, or(st.LastFailure, "?"))
}

func (s *statusOptions) printOne(st CredentialStatus) error {
	now := s.now()
	ready := s.paint(st.Ready)
	if st.Reason != "" {
		ready += " (" + st.Reason + ")"
	}
	policy := or(strings.Join(st.Policies, ", "), "none")
	if st.Session != "" || st.MaxSession != "" {
		policy += fmt.Sprintf(" — session %s, max %s", or(st.Session, none), or(st.MaxSession, none))
	}
	kv := [][2]string{
		{"Credential", st.Namespace + "/" + st.Name},
		{"Issuer", st.Issuer},
		{"Ready", ready},
		{"Message", or(st.Message, none)},
		{"Expires", stamp(now, st.ExpiresAt)},
		{"Renews", stamp(now, st.RenewalTime)},
		{"Renewal rule", or(st.RenewalRule, none)},
		{"Last rotation", stamp(now, st.LastRotationTime)},
		{"Failures", failures(st)},
		{"Next retry", stamp(now, st.NextRetryTime)},
		{"Policy", policy},
	}
	if sec := st.Secret; sec != nil {
		v := "Secret " + st.SecretName + " not found"
		if sec.Exists {
			v = fmt.Sprintf("Secret %s, written %s, states expiry %s", st.SecretName, relative(now, sec.UpdatedAt), stamp(now, sec.ExpiresAt))
			if !sec.MatchesStatus {
				v += " — differs from status"
			}
		}
		kv = append(kv, [2]string{"Target", v})
	}
	kv = append(kv, [2]string{"Consumers", consumers(st)}, [2]string{"Restarts", restarts(st)})
	if err := pairs(s.Out, kv); err != nil {
		return err
	}
	if len(st.Events) == 0 {
		return say(s.Out, "Events:         none")
	}
	if err := say(s.Out, "Events:"); err != nil {
		return err
	}
	rows := make([][]string, 0, len(st.Events))
	for _, e := range st.Events {
		rows = append(rows, []string{"  " + e.Type, e.Reason, relative(now, e.Time), e.Message})
	}
	return table(s.Out, []string{"  TYPE", "REASON", "AGE", "MESSAGE"}, rows)
}

// consumers says which workloads read the token Secret and how: "Deployment/api (env),
// StatefulSet/db (volume)".
func consumers(st CredentialStatus) string {
	if st.ConsumerCount == 0 {
		return "none (no Deployment, StatefulSet or DaemonSet reads the Secret)"
	}
	parts := make([]string, 0, len(st.Consumers)+1)
	for _, c := range st.Consumers {
		via := make([]string, 0, len(c.Via))
		for _, v := range c.Via {
			via = append(via, string(v))
		}
		parts = append(parts, fmt.Sprintf("%s/%s (%s)", c.Kind, c.Name, strings.Join(via, ", ")))
	}
	if more := int(st.ConsumerCount) - len(st.Consumers); more > 0 {
		parts = append(parts, fmt.Sprintf("and %d more", more))
	}
	return strings.Join(parts, ", ")
}

// restarts says how far the restarts for the current token got.
func restarts(st CredentialStatus) string {
	r := st.Restarts
	if r == nil {
		return none
	}
	v := fmt.Sprintf("%d restarted for token %s", r.Restarted, r.Fingerprint)
	if r.QueuedCount > 0 {
		names := make([]string, 0, len(r.Queued))
		for _, q := range r.Queued {
			names = append(names, string(q.Kind)+"/"+q.Name)
		}
		v += fmt.Sprintf(", %d queued: %s", r.QueuedCount, strings.Join(names, ", "))
	}
	if r.Message != "" {
		v += " — " + r.Message
	}
	return v
}
