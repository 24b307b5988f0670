package metrics_test

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/metrics"
)

func at(unix int64) *metav1.Time { return &metav1.Time{Time: time.Unix(unix, 0)} }

func cond(typ string, status metav1.ConditionStatus, reason string) metav1.Condition {
	return metav1.Condition{Type: typ, Status: status, Reason: reason, LastTransitionTime: metav1.Now()}
}

// The collector reports what status says of each Credential, nothing else: the series of a
// Credential follow from its status alone, whatever the manager did or did not do since it started.
func TestCredentialCollector(t *testing.T) {
	cases := map[string]struct {
		reason string
		cred   v1alpha1.Credential
		want   string
	}{
		"Ready": {
			reason: "A Credential with a token has every series; an Issuer is named with its namespace.",
			cred: v1alpha1.Credential{
				ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "api"},
				Spec:       v1alpha1.CredentialSpec{IssuerRef: v1alpha1.IssuerReference{Kind: v1alpha1.IssuerKindNamespaced, Name: "acme"}},
				Status: v1alpha1.CredentialStatus{
					Conditions: []metav1.Condition{cond(string(v1alpha1.ConditionReady), metav1.ConditionTrue, string(v1alpha1.ReasonIssued)),
						cond(string(v1alpha1.ConditionIssuing), metav1.ConditionFalse, string(v1alpha1.ReasonIdle))},
					ExpiresAt: at(2000), RenewalTime: at(1800), LastRotationTime: at(1000),
				},
			},
			want: `
tokenkeeper_credential_ready{credential="api",issuer_kind="Issuer",issuer_name="acme",issuer_namespace="team-a",namespace="team-a",reason="Issued"} 1
tokenkeeper_credential_issuing{credential="api",issuer_kind="Issuer",issuer_name="acme",issuer_namespace="team-a",namespace="team-a",reason="Idle"} 0
tokenkeeper_credential_expiry_timestamp_seconds{credential="api",issuer_kind="Issuer",issuer_name="acme",issuer_namespace="team-a",namespace="team-a"} 2000
tokenkeeper_credential_renewal_timestamp_seconds{credential="api",issuer_kind="Issuer",issuer_name="acme",issuer_namespace="team-a",namespace="team-a"} 1800
tokenkeeper_credential_last_rotation_timestamp_seconds{credential="api",issuer_kind="Issuer",issuer_name="acme",issuer_namespace="team-a",namespace="team-a"} 1000
tokenkeeper_credential_failed_attempts{credential="api",issuer_kind="Issuer",issuer_name="acme",issuer_namespace="team-a",namespace="team-a"} 0
`,
		},
		"NeverIssued": {
			reason: "A Credential that never got a token is visible as not ready with its reason, and its pending retry; it has no expiry.",
			cred: v1alpha1.Credential{
				ObjectMeta: metav1.ObjectMeta{Namespace: "team-b", Name: "api"},
				Spec:       v1alpha1.CredentialSpec{IssuerRef: v1alpha1.IssuerReference{Kind: v1alpha1.IssuerKindCluster, Name: "shared"}},
				Status: v1alpha1.CredentialStatus{
					Conditions:     []metav1.Condition{cond(string(v1alpha1.ConditionReady), metav1.ConditionFalse, string(v1alpha1.ReasonIssuerUnavailable))},
					FailedAttempts: 3, LastFailureReason: string(v1alpha1.ReasonIssuerUnavailable), NextRetryTime: at(1500),
				},
			},
			want: `
tokenkeeper_credential_ready{credential="api",issuer_kind="ClusterIssuer",issuer_name="shared",issuer_namespace="",namespace="team-b",reason="IssuerUnavailable"} 0
tokenkeeper_credential_issuing{credential="api",issuer_kind="ClusterIssuer",issuer_name="shared",issuer_namespace="",namespace="team-b",reason=""} 0
tokenkeeper_credential_next_retry_timestamp_seconds{credential="api",issuer_kind="ClusterIssuer",issuer_name="shared",issuer_namespace="",namespace="team-b"} 1500
tokenkeeper_credential_failed_attempts{credential="api",issuer_kind="ClusterIssuer",issuer_name="shared",issuer_namespace="",namespace="team-b"} 3
`,
		},
		"NotReconciledYet": {
			reason: "A Credential the manager has not reconciled yet is there too, not ready with no reason.",
			cred: v1alpha1.Credential{
				ObjectMeta: metav1.ObjectMeta{Namespace: "team-c", Name: "new"},
				Spec:       v1alpha1.CredentialSpec{IssuerRef: v1alpha1.IssuerReference{Name: "acme"}},
			},
			want: `
tokenkeeper_credential_ready{credential="new",issuer_kind="Issuer",issuer_name="acme",issuer_namespace="team-c",namespace="team-c",reason=""} 0
tokenkeeper_credential_issuing{credential="new",issuer_kind="Issuer",issuer_name="acme",issuer_namespace="team-c",namespace="team-c",reason=""} 0
tokenkeeper_credential_failed_attempts{credential="new",issuer_kind="Issuer",issuer_name="acme",issuer_namespace="team-c",namespace="team-c"} 0
`,
		},
		"Blocked": {
			reason: "A Credential a policy blocks keeps its expiry and says why on issuing; it has no renewal time (nothing renews it).",
			cred: v1alpha1.Credential{
				ObjectMeta: metav1.ObjectMeta{Namespace: "team-d", Name: "api"},
				Spec:       v1alpha1.CredentialSpec{IssuerRef: v1alpha1.IssuerReference{Kind: v1alpha1.IssuerKindNamespaced, Name: "acme"}},
				Status: v1alpha1.CredentialStatus{
					Conditions: []metav1.Condition{cond(string(v1alpha1.ConditionReady), metav1.ConditionTrue, string(v1alpha1.ReasonIssued)),
						cond(string(v1alpha1.ConditionIssuing), metav1.ConditionFalse, string(v1alpha1.ReasonPolicyViolation))},
					ExpiresAt: at(2000), LastFailureReason: string(v1alpha1.ReasonPolicyViolation),
				},
			},
			want: `
tokenkeeper_credential_ready{credential="api",issuer_kind="Issuer",issuer_name="acme",issuer_namespace="team-d",namespace="team-d",reason="Issued"} 1
tokenkeeper_credential_issuing{credential="api",issuer_kind="Issuer",issuer_name="acme",issuer_namespace="team-d",namespace="team-d",reason="PolicyViolation"} 0
tokenkeeper_credential_expiry_timestamp_seconds{credential="api",issuer_kind="Issuer",issuer_name="acme",issuer_namespace="team-d",namespace="team-d"} 2000
tokenkeeper_credential_failed_attempts{credential="api",issuer_kind="Issuer",issuer_name="acme",issuer_namespace="team-d",namespace="team-d"} 0
`,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got := scrape(t, metrics.NewCredentialCollector(fakeReader(t, &tc.cred), nil))
			if want := sortedLines(tc.want); got != want {
				t.Errorf("%s\ngot:\n%s\nwant:\n%s", tc.reason, got, want)
			}
		})
	}
}

// A standby replica reports no Credential, so that Prometheus scrapes one copy of each series
// (the leader's); it reports them once elected.
func TestCredentialCollectorReportsOnceElected(t *testing.T) {
	cred := &v1alpha1.Credential{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "c"},
		Spec: v1alpha1.CredentialSpec{IssuerRef: v1alpha1.IssuerReference{Kind: v1alpha1.IssuerKindNamespaced, Name: "i"}}}
	elected := make(chan struct{})
	c := metrics.NewCredentialCollector(fakeReader(t, cred), elected)
	if n := testutil.CollectAndCount(c, credentialMetrics...); n != 0 {
		t.Errorf("%d series before election, want none", n)
	}
	close(elected)
	if n := testutil.CollectAndCount(c, "tokenkeeper_credential_ready"); n != 1 {
		t.Errorf("%d ready series once elected, want 1", n)
	}
}

var credentialMetrics = []string{"tokenkeeper_credential_ready", "tokenkeeper_credential_issuing",
	"tokenkeeper_credential_expiry_timestamp_seconds", "tokenkeeper_credential_renewal_timestamp_seconds",
	"tokenkeeper_credential_next_retry_timestamp_seconds", "tokenkeeper_credential_last_rotation_timestamp_seconds",
	"tokenkeeper_credential_failed_attempts"}

// scrape gathers c as Prometheus would and returns its Credential series as sorted lines.
func scrape(t *testing.T, c prometheus.Collector) string {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, mf := range families {
		if !slices.Contains(credentialMetrics, mf.GetName()) {
			continue
		}
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			lines = append(lines, fmt.Sprintf("%s{%s} %v", mf.GetName(), strings.Join(labels, ","), m.GetGauge().GetValue()))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func sortedLines(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func fakeReader(t *testing.T, objs ...*v1alpha1.Credential) client.Reader {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	b := fake.NewClientBuilder().WithScheme(scheme)
	for _, o := range objs {
		b = b.WithObjects(o)
	}
	return b.Build()
}
