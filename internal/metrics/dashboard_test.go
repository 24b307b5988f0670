package metrics_test

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenkeeper/tokenkeeper/internal/metrics"
)

// exported lists the metric names tokenkeeper exports (histograms with their series suffixes).
func exported() map[string]bool {
	names := map[string]bool{}
	fq := regexp.MustCompile(`fqName: "([^"]+)"`)
	for _, c := range []prometheus.Collector{metrics.NewCredentialCollector(nil, nil), metrics.Renewals, metrics.RenewalFailures, metrics.IssuerRequestDuration,
		metrics.InterruptedCalls, metrics.EventsSkipped, metrics.Validations, metrics.ValidationDuration, metrics.ValidationCacheHits, metrics.KeySetRefreshes} {
		ch := make(chan *prometheus.Desc, 16)
		c.Describe(ch)
		close(ch)
		for d := range ch {
			name := fq.FindStringSubmatch(d.String())[1]
			names[name] = true
			if _, histogram := c.(*prometheus.HistogramVec); histogram {
				for _, s := range []string{"_bucket", "_sum", "_count"} {
					names[name+s] = true
				}
			}
		}
	}
	return names
}

// The chart's Grafana dashboard is valid JSON, every panel has a query, and every query names
// only metrics the manager exports.
func TestDashboardQueriesExportedMetrics(t *testing.T) {
	data, err := os.ReadFile("../../charts/tokenkeeper/dashboards/tokenkeeper.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("the dashboard is not valid JSON: %v", err)
	}
	if len(dash.Panels) < 8 {
		t.Fatalf("%d panels, want the expiry, renewal, failure, latency and validation panels", len(dash.Panels))
	}
	known := exported()
	used := map[string]bool{}
	metric := regexp.MustCompile(`\b(tokenkeeper_[a-z_]+|[a-z]+_[a-z_]+_(total|seconds|bucket))\b`)
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, target := range p.Targets {
			names := metric.FindAllString(target.Expr, -1)
			if len(names) == 0 {
				t.Errorf("panel %q: query %q names no metric", p.Title, target.Expr)
			}
			for _, n := range names {
				if !known[n] {
					t.Errorf("panel %q: query names %s, which the manager does not export", p.Title, n)
				}
				used[strings.TrimSuffix(n, "_bucket")] = true
			}
		}
	}
	for _, want := range []string{"tokenkeeper_credential_expiry_timestamp_seconds", "tokenkeeper_credential_ready", "tokenkeeper_credential_renewal_timestamp_seconds",
		"tokenkeeper_credential_failed_attempts", "tokenkeeper_renewals_total", "tokenkeeper_renewal_failures_total",
		"tokenkeeper_issuer_request_duration_seconds", "tokenkeeper_validations_total", "tokenkeeper_validation_cache_hits_total"} {
		if !used[want] {
			t.Errorf("no panel shows %s", want)
		}
	}
}
