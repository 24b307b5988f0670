//go:build e2e

// Package e2e_test runs tokenkeeper as a platform engineer installs it: the Helm chart on a real
// single-node cluster (kube-apiserver, kubelet, containerd, CNI, kube-proxy), the conformance
// issuers of every seed API and OAuth2 on the node's address, and an application pod that calls
// each issuer with the token from the Secret it mounts. `make e2e` (hack/e2e.sh) brings the
// cluster up, builds and imports the images, runs this suite and stops the cluster.
package e2e_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/demo"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer/issuertest"
	"github.com/tokenkeeper/tokenkeeper/internal/testenv"
)

const (
	systemNS   = "tokenkeeper-system"
	deployment = "tokenkeeper"
	appNS      = "e2e"
	// lifetime of every issued token. Renewals come every ~60 s (the minimum lead is capped at
	// half a short token's life), which leaves ≥ 54 s for a leader takeover after a crash (lease
	// duration plus two jittered retry waits, ≤ 24 s) and the kubelet's Secret refresh (≤ 15 s
	// with syncFrequency 10 s) before the old token expires.
	lifetime = 2 * time.Minute
	// rotations each application call path must see with no unauthorized answer.
	rotations = 3
)

type suite struct {
	// ctx lasts the whole story (a subtest's context ends with the subtest).
	ctx      context.Context
	imageTar string // the manager image, to import again after leaderKilled removed it
	c        client.Client
	cs       kubernetes.Interface
	helm     string
	nodeIP   string
	sock     string
	issuers  *demo.Issuers
	secrets  *secretWatch
	cfg      *rest.Config
	exchange *issuertest.Exchange // the workload-identity issuer
}

// TestEndToEnd is one story, in order: each step needs the ones before it.
func TestEndToEnd(t *testing.T) {
	s := newSuite(t)
	defer func() {
		if s.issuers != nil {
			s.issuers.Close()
		}
		if s.exchange != nil {
			s.exchange.Close()
		}
	}()
	step(t, "chart 0.1.0 installs, with its CRDs from crds/", s.installPrevious)
	step(t, "helm upgrade to this chart: the manager becomes Ready", s.install)
	step(t, "the upgrade brought the CRDs' new fields; they are kept on uninstall", s.upgradedCRDs)
	step(t, "every seed's Credential becomes Ready and the application pod runs", s.deployIssuers)
	step(t, "a Credential without any Secret logs in with its ServiceAccount token", s.workloadIdentity)
	step(t, "the validation endpoint accepts issued tokens and rejects forged ones", s.validation)
	step(t, "a TokenPolicy rejects a non-compliant Credential at kubectl apply", s.policy)
	step(t, "a deleted leader hands the Lease over", s.leaderDeleted)
	step(t, "a killed leader's standby takes over after the lease duration", s.leaderKilled)
	step(t, "the application succeeds across three rotations with zero unauthorized calls", s.rotate)
	step(t, "the manager refreshed the application pod's mounted tokens", s.podRefresh)
	step(t, "the issuers saw no duplicate or failed logins", s.noDuplicateLogins)
	step(t, "no secret or token in any log, Event or status", s.noLeaks)
	step(t, "kubectl tokenkeeper shows, renews and inspects the Credentials", s.plugin)
}

// step runs one subtest and stops the story when it fails.
func step(t *testing.T, name string, f func(t *testing.T)) {
	t.Helper()
	if !t.Run(name, f) {
		t.FailNow()
	}
}

func newSuite(t *testing.T) *suite {
	for _, v := range []string{"KUBECONFIG", "E2E_NODE_IP", "E2E_CONTAINERD_SOCK", "E2E_IMAGE_TAR", "HELM"} {
		if os.Getenv(v) == "" {
			t.Fatalf("%s is not set: run the suite with make e2e", v)
		}
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", os.Getenv("KUBECONFIG"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &suite{ctx: t.Context(), c: c, cs: cs, cfg: cfg, helm: os.Getenv("HELM"), nodeIP: os.Getenv("E2E_NODE_IP"),
		sock: os.Getenv("E2E_CONTAINERD_SOCK"), imageTar: os.Getenv("E2E_IMAGE_TAR")}
}

func (s *suite) install(t *testing.T) {
	start := time.Now()
	helm := exec.CommandContext(t.Context(), s.helm, "upgrade", "--install", "tokenkeeper", filepath.Join(testenv.RepoRoot(), "charts", "tokenkeeper"),
		"-n", systemNS, "--create-namespace", "--set", "image.pullPolicy=Never", "--wait", "--timeout", "5m")
	if out, err := helm.CombinedOutput(); err != nil {
		t.Fatalf("helm install: %v\n%s", err, out)
	}
	dep := &appsv1.Deployment{}
	if err := s.c.Get(t.Context(), types.NamespacedName{Namespace: systemNS, Name: deployment}, dep); err != nil {
		t.Fatal(err)
	}
	if dep.Status.ReadyReplicas != 2 {
		t.Fatalf("%d of 2 replicas Ready after helm --wait", dep.Status.ReadyReplicas)
	}
	holder, _ := s.leader(t)
	t.Logf("installed in %s: 2 replicas Ready, leader %s", time.Since(start).Round(time.Second), holder)
	testenv.WaitFor(t, time.Minute, "the webhook CA injected", func() (bool, string) {
		cfg := &admissionregistrationv1.ValidatingWebhookConfiguration{}
		if err := s.c.Get(t.Context(), types.NamespacedName{Name: "tokenkeeper"}, cfg); err != nil {
			return false, err.Error()
		}
		for _, w := range cfg.Webhooks {
			if len(w.ClientConfig.CABundle) == 0 {
				return false, "no caBundle in " + w.Name
			}
		}
		return len(cfg.Webhooks) > 0, "no webhooks"
	})
}

func (s *suite) deployIssuers(t *testing.T) {
	d, err := demo.Start(s.nodeIP, 0, lifetime, appNS)
	if err != nil {
		t.Fatal(err)
	}
	s.issuers = d
	for _, o := range d.Objects {
		s.create(t, o)
	}
	s.secrets = watchSecrets(s.ctx, s.c, d)
	testenv.WaitFor(t, 2*time.Minute, "every Credential Ready", func() (bool, string) {
		list := &v1alpha1.CredentialList{}
		if err := s.c.List(t.Context(), list, client.InNamespace(appNS)); err != nil {
			return false, err.Error()
		}
		var notReady []string
		for _, cr := range list.Items {
			if !meta.IsStatusConditionTrue(cr.Status.Conditions, string(v1alpha1.ConditionReady)) {
				notReady = append(notReady, cr.Name)
			}
		}
		return len(list.Items) == len(d.Servers) && len(notReady) == 0, fmt.Sprintf("%d Credentials, not Ready: %v", len(list.Items), notReady)
	})
	testenv.WaitFor(t, 2*time.Minute, "the application pod Ready", func() (bool, string) {
		pod := &corev1.Pod{}
		if err := s.c.Get(t.Context(), types.NamespacedName{Namespace: appNS, Name: demo.AppPod}, pod); err != nil {
			return false, err.Error()
		}
		for _, cond := range pod.Status.Conditions {
			if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
				return true, ""
			}
		}
		return false, "phase " + string(pod.Status.Phase)
	})
}

// create creates o, retrying while the admission webhooks are not reachable yet.
func (s *suite) create(t *testing.T, o client.Object) {
	t.Helper()
	testenv.WaitFor(t, 30*time.Second, fmt.Sprintf("creating %T %s", o, o.GetName()), func() (bool, string) {
		err := s.c.Create(t.Context(), o)
		if err == nil || apierrors.IsAlreadyExists(err) {
			return true, ""
		}
		return false, err.Error()
	})
}

// kubectl runs kubectl against the e2e cluster.
func kubectl(t *testing.T, args ...string) (string, error) {
	out, err := exec.CommandContext(t.Context(), "kubectl", args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}
