package metrics

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
)

// credentialLabels identify a Credential and its issuer on every series of CredentialCollector:
// issuer_namespace is the Credential's namespace for an Issuer and empty for a ClusterIssuer, so
// that Issuers of the same name in two namespaces are two issuers.
var credentialLabels = []string{"namespace", "credential", "issuer_namespace", "issuer_kind", "issuer_name"}

func credentialDesc(name, help string, extra ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, append(append([]string{}, credentialLabels...), extra...), nil)
}

var (
	credentialReady = credentialDesc("tokenkeeper_credential_ready",
		"Whether the Credential's Secret holds a valid token (its Ready condition is True: 1, else 0), with the condition's reason (empty before the first reconcile).", "reason")
	credentialIssuing = credentialDesc("tokenkeeper_credential_issuing",
		"Whether a renewal of the Credential is due or running (its Issuing condition is True: 1, else 0), with the condition's reason: Idle, a failure's, or what blocks renewals.", "reason")
	credentialExpiry = credentialDesc("tokenkeeper_credential_expiry_timestamp_seconds",
		"When the Credential's current token expires, in Unix seconds (status.expiresAt; absent before its first token).")
	credentialRenewal = credentialDesc("tokenkeeper_credential_renewal_timestamp_seconds",
		"When the Credential's token is next renewed, or its failed renewal retried, in Unix seconds (status.renewalTime; absent without a token or while renewals are blocked).")
	credentialRetry = credentialDesc("tokenkeeper_credential_next_retry_timestamp_seconds",
		"When a failed renewal of the Credential is tried again, in Unix seconds (status.nextRetryTime; absent when none is pending).")
	credentialRotation = credentialDesc("tokenkeeper_credential_last_rotation_timestamp_seconds",
		"When the Credential's Secret last received a new token, in Unix seconds (status.lastRotationTime).")
	credentialFailures = credentialDesc("tokenkeeper_credential_failed_attempts",
		"Failed renewals of the Credential since its last success (status.failedAttempts).")
	credentialsListErrors = prometheus.NewDesc("tokenkeeper_credential_list_errors_total",
		"Scrapes at which the manager's cache of Credentials could not be listed (not started or synced yet): the Credential series were left out.", nil, nil)
)

// CredentialCollector reports every Credential's status as gauges at scrape time, as
// kube-state-metrics does for built-in kinds: one List from the manager's informer cache of
// Credentials per scrape (no API call, no copy), nothing remembered in between. The series follow
// from status alone, so they exist from the first cache sync after any manager start, whether or
// not the manager did anything to the Credential since, and end with the Credential.
type CredentialCollector struct {
	// Reader is the manager's cache (mgr.GetCache()), never a client that calls the API server.
	Reader client.Reader
	// Elected is closed once this manager leads (mgr.Elected()); until then it reports no
	// Credential, so that only the leader's series are scraped. Nil reports always.
	Elected <-chan struct{}
	// Timeout bounds a List that waits for the cache to sync (default 5s).
	Timeout time.Duration
}

// listErrors counts the failed Lists of every CredentialCollector of the process.
var listErrors atomic.Uint64

// NewCredentialCollector returns a collector of the Credentials in reader, reporting once elected
// is closed (nil: always).
func NewCredentialCollector(reader client.Reader, elected <-chan struct{}) *CredentialCollector {
	return &CredentialCollector{Reader: reader, Elected: elected, Timeout: 5 * time.Second}
}

// Describe implements prometheus.Collector.
func (c *CredentialCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{credentialReady, credentialIssuing, credentialExpiry, credentialRenewal, credentialRetry,
		credentialRotation, credentialFailures, credentialsListErrors} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *CredentialCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(credentialsListErrors, prometheus.CounterValue, float64(listErrors.Load()))
	if c.Elected != nil {
		select {
		case <-c.Elected:
		default:
			return // a standby replica: the leader reports
		}
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var list v1alpha1.CredentialList
	// Read-only: the cache's own objects, not copies of thousands of them at every scrape.
	if err := c.Reader.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		listErrors.Add(1)
		logf.Log.WithName("metrics").V(1).Info("Credentials not reported at this scrape", "error", err.Error())
		return
	}
	for i := range list.Items {
		collectCredential(ch, &list.Items[i])
	}
}

// collectCredential sends one Credential's series.
func collectCredential(ch chan<- prometheus.Metric, cred *v1alpha1.Credential) {
	lv := IssuerLabelValues(cred)
	lv = append([]string{cred.Namespace, cred.Name}, lv...)
	gauge := func(d *prometheus.Desc, v float64, extra ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, append(lv[:len(lv):len(lv)], extra...)...)
	}
	timestamp := func(d *prometheus.Desc, t *metav1.Time) {
		if t != nil {
			gauge(d, float64(t.Unix()))
		}
	}
	s := &cred.Status
	for _, cond := range []struct {
		typ  string
		desc *prometheus.Desc
	}{{string(v1alpha1.ConditionReady), credentialReady}, {string(v1alpha1.ConditionIssuing), credentialIssuing}} {
		value, reason := 0.0, ""
		if c := meta.FindStatusCondition(s.Conditions, cond.typ); c != nil {
			reason = c.Reason
			if c.Status == metav1.ConditionTrue {
				value = 1
			}
		}
		gauge(cond.desc, value, reason)
	}
	timestamp(credentialExpiry, s.ExpiresAt)
	timestamp(credentialRenewal, s.RenewalTime)
	timestamp(credentialRetry, s.NextRetryTime)
	timestamp(credentialRotation, s.LastRotationTime)
	gauge(credentialFailures, float64(s.FailedAttempts))
}

// IssuerLabelValues are the values of the issuer_namespace, issuer_kind and issuer_name labels
// for cred's issuer: an Issuer is in the Credential's namespace, a ClusterIssuer in none.
func IssuerLabelValues(cred *v1alpha1.Credential) []string {
	ref := cred.Spec.IssuerRef
	if ref.Kind == v1alpha1.IssuerKindCluster {
		return []string{"", string(v1alpha1.IssuerKindCluster), ref.Name}
	}
	return []string{cred.Namespace, string(v1alpha1.IssuerKindNamespaced), ref.Name}
}

var (
	registeredMu sync.Mutex
	registered   *CredentialCollector
)

// RegisterCredentials registers c with controller-runtime's metrics registry in place of the
// collector registered before, if any: the Credentials reported are those of the manager set up
// last (a process runs one; tests restart theirs).
func RegisterCredentials(c *CredentialCollector) error {
	registeredMu.Lock()
	defer registeredMu.Unlock()
	if registered != nil {
		metrics.Registry.Unregister(registered)
	}
	if err := metrics.Registry.Register(c); err != nil {
		return err
	}
	registered = c
	return nil
}
