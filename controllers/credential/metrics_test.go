package credential_test

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer/issuertest"
)

// sample is one scraped series: its labels and value.
type sample struct {
	labels map[string]string
	value  float64
}

// credentialSeries scrapes the manager's metrics registry, as Prometheus would, and returns the
// tokenkeeper_credential_* series of Credential name in namespace ns, by metric name.
func credentialSeries(t *testing.T, ns, name string) map[string][]sample {
	t.Helper()
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatalf("scraping the registry: %v", err)
	}
	out := map[string][]sample{}
	for _, mf := range families {
		if !strings.HasPrefix(mf.GetName(), "tokenkeeper_credential_") {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["namespace"] != ns || labels["credential"] != name {
				continue
			}
			out[mf.GetName()] = append(out[mf.GetName()], sample{labels: labels, value: m.GetGauge().GetValue()})
		}
	}
	return out
}

// describe lists series for a failure message.
func describe(s map[string][]sample) string {
	var lines []string
	for name, ss := range s {
		for _, x := range ss {
			lines = append(lines, fmt.Sprintf("%s%v %v", name, x.labels, x.value))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "; ")
}

// input is the fixture's input Secret, for deleting it.
func (f *fixture) input() *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "login"}}
}

// issuing returns the reason of the Issuing condition.
func issuing(c *v1alpha1.Credential) string {
	if cond := meta.FindStatusCondition(c.Status.Conditions, string(v1alpha1.ConditionIssuing)); cond != nil {
		return cond.Reason
	}
	return ""
}

// Issue #27: Credential metrics come from state, not from events. After a manager restart every
// Credential has its series, read from status in the new manager's cache: a healthy one at a
// ClusterIssuer, one stuck before renewal because its input Secret was deleted (its token's expiry
// is what TokenkeeperTokenExpired needs; the old gauges, set only when a token was observed, had
// none), and one that never got a token (not ready, with the issuer's reason).
// Not parallel: it restarts the suite's manager.
func TestMetricsFromStateAfterRestart(t *testing.T) {
	healthy := setup(t, issuertest.Seed000, nil) // a ClusterIssuer: no issuer namespace
	stuck := setup(t, issuertest.Seed003, nil)
	never := setup(t, issuertest.Seed003, func(s *issuertest.Server, _ map[string]string) { s.Fail(-1, http.StatusUnauthorized, "") })
	healthy.waitReady(30 * time.Second)
	stuck.waitReady(30 * time.Second)
	must(t, env.Client.Delete(t.Context(), stuck.input()))
	waitFor(t, 30*time.Second, "the stuck Credential blocked on its deleted input Secret", func() (bool, string) {
		r := issuing(stuck.cred())
		return r == string(v1alpha1.ReasonSecretNotFound), "Issuing reason " + r
	})
	waitFor(t, 30*time.Second, "the never-issued Credential to fail", func() (bool, string) {
		c := never.cred()
		return c.Status.FailedAttempts > 0, fmt.Sprintf("%d failed attempts", c.Status.FailedAttempts)
	})

	stopManager()
	must(t, startManager())

	type want struct {
		f                  *fixture
		ready              float64
		reason             string
		issuerNS, kind     string
		expiry, failedOnce bool
	}
	for _, w := range []want{
		{f: healthy, ready: 1, reason: "", issuerNS: "", kind: "ClusterIssuer", expiry: true},
		{f: stuck, ready: 1, reason: "", issuerNS: stuck.ns, kind: "Issuer", expiry: true},
		{f: never, ready: 0, reason: string(v1alpha1.ReasonInvalidCredentials), issuerNS: never.ns, kind: "Issuer", failedOnce: true},
	} {
		c := w.f.cred()
		var got map[string][]sample
		waitFor(t, 30*time.Second, "the series of "+w.f.ns+"/cred after the restart", func() (bool, string) {
			got = credentialSeries(t, w.f.ns, "cred")
			return len(got["tokenkeeper_credential_ready"]) == 1, describe(got)
		})
		r := got["tokenkeeper_credential_ready"][0]
		if r.value != w.ready || (w.reason != "" && r.labels["reason"] != w.reason) {
			t.Errorf("%s: tokenkeeper_credential_ready %v %v, want %v with reason %q", w.f.ns, r.labels, r.value, w.ready, w.reason)
		}
		if r.labels["issuer_namespace"] != w.issuerNS || r.labels["issuer_kind"] != w.kind || r.labels["issuer_name"] != c.Spec.IssuerRef.Name {
			t.Errorf("%s: issuer labels %v, want issuer_namespace=%q issuer_kind=%s issuer_name=%s", w.f.ns, r.labels, w.issuerNS, w.kind, c.Spec.IssuerRef.Name)
		}
		exp := got["tokenkeeper_credential_expiry_timestamp_seconds"]
		switch {
		case w.expiry && (len(exp) != 1 || c.Status.ExpiresAt == nil || exp[0].value != float64(c.Status.ExpiresAt.Unix())):
			t.Errorf("%s: expiry series %v, want status.expiresAt %v", w.f.ns, exp, c.Status.ExpiresAt)
		case !w.expiry && len(exp) != 0:
			t.Errorf("%s: an expiry series %v for a Credential that never had a token", w.f.ns, exp)
		}
		if n := got["tokenkeeper_credential_failed_attempts"]; len(n) != 1 || (w.failedOnce && n[0].value < 1) {
			t.Errorf("%s: failed attempts series %v, want one (at least 1: %t)", w.f.ns, n, w.failedOnce)
		}
		if w.f == stuck {
			is := got["tokenkeeper_credential_issuing"]
			if len(is) != 1 || is[0].labels["reason"] != string(v1alpha1.ReasonSecretNotFound) {
				t.Errorf("stuck: issuing series %v, want reason %s (TokenkeeperCredentialBlocked matches it)", is, v1alpha1.ReasonSecretNotFound)
			}
			if len(got["tokenkeeper_credential_last_rotation_timestamp_seconds"]) != 1 {
				t.Errorf("stuck: no last rotation series: %s", describe(got))
			}
		}
	}
}
