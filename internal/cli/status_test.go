package cli

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
)

func at(d time.Duration) *metav1.Time { return &metav1.Time{Time: now.Add(d)} }

// statusCredential creates a Credential and writes its status as the controller would.
func statusCredential(t *testing.T, ns, name string, status v1alpha1.CredentialStatus) *v1alpha1.Credential {
	t.Helper()
	cred := &v1alpha1.Credential{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"tk-test": "status"}},
		Spec: v1alpha1.CredentialSpec{IssuerRef: v1alpha1.IssuerReference{Kind: v1alpha1.IssuerKindCluster, Name: "corp-sso"}, SecretName: name + "-token",
			ClientCredentials: &v1alpha1.ClientCredentialsLogin{SecretRef: v1alpha1.LocalSecretReference{Name: name + "-client"}}}}
	create(t, cred)
	cred.Status = status
	must(t, env.Client.Status().Update(t.Context(), cred))
	return cred
}

func ready(status metav1.ConditionStatus, reason, msg string) []metav1.Condition {
	return []metav1.Condition{{Type: string(v1alpha1.ConditionReady), Status: status, Reason: reason, Message: msg, LastTransitionTime: *at(-time.Hour)}}
}

// TestStatus: the table for a namespace and for -A -l, one Credential in detail with its Events
// and target Secret, and -o json|yaml round-trips; no color codes when stdout is not a terminal.
func TestStatus(t *testing.T) {
	createNamespace(t, "cli-status", nil)
	createNamespace(t, "cli-status-b", nil)
	statusCredential(t, "cli-status", "orders-api", v1alpha1.CredentialStatus{
		Conditions: ready(metav1.ConditionTrue, string(v1alpha1.ReasonIssued), "token valid until 2026-11-23T08:40:00Z"),
		ExpiresAt:  at(40 * time.Minute), RenewalTime: at(20 * time.Minute), LastRotationTime: at(-20 * time.Minute),
		EffectivePolicy: &v1alpha1.EffectivePolicy{Policies: []string{"team-defaults"}, SessionDuration: &metav1.Duration{Duration: time.Hour},
			MaxSessionDuration: &metav1.Duration{Duration: 4 * time.Hour}, RenewalRule: "a third of the 1h lifetime before expiry"},
	})
	billing := statusCredential(t, "cli-status", "billing", v1alpha1.CredentialStatus{
		Conditions: ready(metav1.ConditionFalse, string(v1alpha1.ReasonInvalidCredentials), "the issuer refused the client secret (401 invalid_client)"),
		ExpiresAt:  at(5 * time.Minute), LastRotationTime: at(-55 * time.Minute),
		FailedAttempts: 3, LastFailureReason: string(v1alpha1.ReasonInvalidCredentials), LastFailureTime: at(-time.Minute), NextRetryTime: at(4 * time.Minute),
	})
	statusCredential(t, "cli-status-b", "wallet", v1alpha1.CredentialStatus{})
	create(t, &corev1.Event{ObjectMeta: metav1.ObjectMeta{Namespace: "cli-status", Name: "billing.1"},
		InvolvedObject: corev1.ObjectReference{Kind: "Credential", APIVersion: v1alpha1.GroupVersion.String(), Namespace: "cli-status", Name: "billing", UID: billing.UID},
		Type:           corev1.EventTypeWarning, Reason: string(v1alpha1.ReasonInvalidCredentials), Message: "login failed: 401 invalid_client",
		FirstTimestamp: metav1.Time{Time: now.Add(-10 * time.Minute)}, LastTimestamp: metav1.Time{Time: now.Add(-time.Minute)}, Count: 3,
		Source: corev1.EventSource{Component: "tokenkeeper"}})

	r := run(t, "", "status", "-n", "cli-status")
	if r.code != 0 {
		t.Fatalf("status: %d %s", r.code, r.err)
	}
	if strings.Contains(r.out, "\x1b[") {
		t.Errorf("color codes in output that is not a terminal:\n%q", r.out)
	}
	golden(t, "status-namespace", r.out)
	r = run(t, "", "status", "-A", "-l", "tk-test=status")
	golden(t, "status-all", r.out)
	r = run(t, "", "status", "billing", "-n", "cli-status")
	if r.code != 0 {
		t.Fatalf("status billing: %d %s", r.code, r.err)
	}
	golden(t, "status-one", r.out)

	// -o json and -o yaml print what the table shows, and read back the same.
	r = run(t, "", "status", "-A", "-l", "tk-test=status", "-o", "json")
	var list CredentialStatusList
	must(t, json.Unmarshal([]byte(r.out), &list))
	if len(list.Items) != 3 || list.Items[0].Name != "billing" || list.Items[0].Failures != 3 || !list.Items[0].NextRetryTime.Equal(now.Add(4*time.Minute)) ||
		list.Items[1].Ready != "True" || list.Items[1].Policies[0] != "team-defaults" || list.Items[2].Namespace != "cli-status-b" {
		t.Errorf("-o json: %+v", list)
	}
	again, _ := json.MarshalIndent(list, "", "  ")
	if strings.TrimSpace(string(again)) != strings.TrimSpace(r.out) {
		t.Errorf("-o json does not round-trip:\n%s\n%s", r.out, again)
	}
	r = run(t, "", "status", "billing", "-n", "cli-status", "-o", "yaml")
	var one CredentialStatus
	must(t, yaml.Unmarshal([]byte(r.out), &one))
	if one.Ready != "False" || len(one.Events) != 1 || one.Events[0].Count != 3 || one.Secret == nil || one.Secret.Exists {
		t.Errorf("-o yaml: %+v", one)
	}
	if r := run(t, "", "status", "-n", "cli-status", "-o", "wide"); r.code == 0 || !strings.Contains(r.err, `unknown output format "wide"`) {
		t.Errorf("-o wide: %d %q", r.code, r.err)
	}
	if r := run(t, "", "status", "missing", "-n", "cli-status"); r.code != 1 || !strings.Contains(r.err, "not found") {
		t.Errorf("a missing Credential: %d %q", r.code, r.err)
	}
}

// TestStatusTargetSecret: the target Secret as pods see it: its stated expiry, whether it is the
// status's, and its last write.
func TestStatusTargetSecret(t *testing.T) {
	createNamespace(t, "cli-target", nil)
	statusCredential(t, "cli-target", "orders-api", v1alpha1.CredentialStatus{
		Conditions: ready(metav1.ConditionTrue, string(v1alpha1.ReasonIssued), "ok"), ExpiresAt: at(40 * time.Minute)})
	create(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "cli-target", Name: "orders-api-token",
		Annotations: map[string]string{"tokenkeeper.io/expires-at": now.Add(10 * time.Minute).Format(time.RFC3339)}}})
	r := run(t, "", "status", "orders-api", "-n", "cli-target")
	if !strings.Contains(r.out, "Target:") || !strings.Contains(r.out, "states expiry 2026-11-23T08:10:00Z (in 10m)") ||
		!strings.Contains(r.out, "differs from status") {
		t.Errorf("a Secret with another expiry than status:\n%s", r.out)
	}
}

// TestStatusConsumers: one Credential in detail names the workloads that read its Secret and how,
// and the restarts for its token, the queued ones too.
func TestStatusConsumers(t *testing.T) {
	createNamespace(t, "cli-consumers", nil)
	statusCredential(t, "cli-consumers", "api", v1alpha1.CredentialStatus{
		Conditions: ready(metav1.ConditionTrue, string(v1alpha1.ReasonIssued), "token valid"),
		Consumers: []v1alpha1.SecretConsumer{{Kind: "Deployment", Name: "web", Via: []v1alpha1.SecretUse{v1alpha1.SecretUseEnv}},
			{Kind: "StatefulSet", Name: "db", Via: []v1alpha1.SecretUse{v1alpha1.SecretUseVolume, v1alpha1.SecretUseEnvFrom}}},
		ConsumerCount: 3,
		RolloutRestart: &v1alpha1.RolloutRestartStatus{Fingerprint: "0123456789abcdef", Restarted: 1, QueuedCount: 1,
			Queued: []v1alpha1.WorkloadName{{Kind: "StatefulSet", Name: "db"}}, Message: "1 waiting: 0 for the window, 1 for the budget"},
	})
	r := run(t, "", "status", "api", "-n", "cli-consumers")
	if r.code != 0 {
		t.Fatalf("status api: %d %s", r.code, r.err)
	}
	for _, want := range []string{"Deployment/web (env), StatefulSet/db (volume, envFrom), and 1 more",
		"1 restarted for token 0123456789abcdef, 1 queued: StatefulSet/db — 1 waiting"} {
		if !strings.Contains(r.out, want) {
			t.Errorf("status does not say %q:\n%s", want, r.out)
		}
	}
	r = run(t, "", "status", "api", "-n", "cli-consumers", "-o", "json")
	var one CredentialStatus
	must(t, json.Unmarshal([]byte(r.out), &one))
	if one.ConsumerCount != 3 || len(one.Consumers) != 2 || one.Restarts == nil || one.Restarts.QueuedCount != 1 {
		t.Errorf("-o json: %+v", one)
	}
}
