// Package scale_test runs the real manager binary against a real API server and a local OAuth2
// issuer, and measures what a rotation costs (API writes and reads, reconciles, issuer calls)
// from the API server's and the manager's own metrics. `make test` runs the small, bounded
// TestRotationCost; `make bench` runs the scale benchmark (bench build tag) that the README
// quotes.
package scale_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/testenv"
)

// tokenIssuer is an OAuth2 client_credentials token endpoint that hands out opaque tokens of a
// set lifetime per client and records when each client asked.
type tokenIssuer struct {
	srv *httptest.Server

	mu       sync.Mutex
	lifetime map[string]time.Duration // by client_id prefix before the first "-"; default under ""
	requests map[string][]time.Time   // by client_id
	all      []time.Time
}

func startIssuer(t testing.TB) *tokenIssuer {
	ti := &tokenIssuer{lifetime: map[string]time.Duration{"": time.Hour}, requests: map[string][]time.Time{}}
	ti.srv = httptest.NewTLSServer(ti)
	t.Cleanup(ti.srv.Close)
	return ti
}

func (ti *tokenIssuer) setLifetime(prefix string, d time.Duration) {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	ti.lifetime[prefix] = d
}

func (ti *tokenIssuer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/token" || r.PostFormValue("grant_type") != "client_credentials" {
		http.Error(w, `{"error":"invalid_request"}`, http.StatusBadRequest)
		return
	}
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostFormValue("client_id"), r.PostFormValue("client_secret")
	}
	if secret != "s3cret-"+id {
		http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
		return
	}
	now := time.Now()
	ti.mu.Lock()
	ti.requests[id] = append(ti.requests[id], now)
	ti.all = append(ti.all, now)
	life, ok := ti.lifetime[strings.SplitN(id, "-", 2)[0]]
	if !ok {
		life = ti.lifetime[""]
	}
	ti.mu.Unlock()
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	w.Header().Set("Content-Type", "application/json")
	_, _ = fmt.Fprintf(w, `{"access_token":%q,"token_type":"bearer","expires_in":%d}`, hex.EncodeToString(b), int(life.Seconds()))
}

// calls is the number of token requests so far.
func (ti *tokenIssuer) calls() int {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	return len(ti.all)
}

func (ti *tokenIssuer) caBundle() string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ti.srv.Certificate().Raw}))
}

// manager is the manager binary running against a control plane.
type manager struct {
	cmd     *exec.Cmd
	exited  chan error
	logs    *testenv.Buffer
	metrics int
	pprof   int
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port
}

// startManager runs bin with its metrics on loopback in plain HTTP, no webhooks and no leader
// election, allowed to reach issuers on loopback; extra flags after those.
func startManager(t testing.TB, bin, kubeconfig string, extra ...string) *manager {
	t.Helper()
	m := &manager{exited: make(chan error, 1), logs: &testenv.Buffer{}, metrics: freePort(t), pprof: freePort(t)}
	dir := t.TempDir()
	args := append([]string{"--kubeconfig=" + kubeconfig, "--leader-elect=false", "--webhooks=off",
		"--cluster-resource-namespace=default", "--allow-egress-cidrs=127.0.0.1/32",
		"--health-probe-bind-address=127.0.0.1:" + strconv.Itoa(freePort(t)),
		"--metrics-bind-address=127.0.0.1:" + strconv.Itoa(m.metrics), "--metrics-secure=false",
		"--pprof-bind-address=127.0.0.1:" + strconv.Itoa(m.pprof),
		"--validation-bind-address=127.0.0.1:" + strconv.Itoa(freePort(t)),
		"--webhook-cert-dir=" + filepath.Join(dir, "certs"), "--zap-encoder=json"}, extra...)
	m.cmd = exec.Command(bin, args...)
	m.cmd.Stdout, m.cmd.Stderr = m.logs, m.logs
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { m.exited <- m.cmd.Wait() }()
	t.Cleanup(func() {
		_ = m.cmd.Process.Kill()
		if t.Failed() {
			out := m.logs.String()
			t.Logf("manager output (last 8 KiB):\n%s", out[max(0, len(out)-8192):])
		}
	})
	return m
}

// sumSeries sums the samples of metric name whose label text contains every one of labels.
func sumSeries(t testing.TB, body io.Reader, name string, labels ...string) float64 {
	t.Helper()
	sum := 0.0
	s := bufio.NewScanner(body)
	s.Buffer(make([]byte, 1<<20), 1<<20)
	for s.Scan() {
		line := s.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		match := true
		for _, l := range labels {
			match = match && strings.Contains(line[:sp], l)
		}
		if match {
			v, _ := strconv.ParseFloat(line[sp+1:], 64)
			sum += v
		}
	}
	return sum
}

// apiCounts are the API server's request counters of interest: the manager's writes by
// resource ("writes secrets", "writes events", "writes credentials/status", "writes credentials")
// and its reads of Secrets ("reads secrets GET").
type apiCounts map[string]float64

// apiRequests scrapes the kube-apiserver's apiserver_request_total.
func apiRequests(t testing.TB, cfg *rest.Config) apiCounts {
	t.Helper()
	rc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := rc.Get(strings.TrimSuffix(cfg.Host, "/") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	out := apiCounts{}
	s := bufio.NewScanner(resp.Body)
	s.Buffer(make([]byte, 1<<20), 1<<20)
	for s.Scan() {
		line, ok := strings.CutPrefix(s.Text(), "apiserver_request_total{")
		if !ok {
			continue
		}
		end := strings.LastIndex(line, "} ")
		if end < 0 {
			continue
		}
		labels := map[string]string{}
		for _, kv := range strings.Split(line[:end], ",") {
			if k, v, ok := strings.Cut(kv, "="); ok {
				labels[k] = strings.Trim(v, `"`)
			}
		}
		v, _ := strconv.ParseFloat(strings.TrimSpace(line[end+2:]), 64)
		res := labels["resource"]
		if sub := labels["subresource"]; sub != "" {
			res += "/" + sub
		}
		switch labels["verb"] {
		case "POST", "PUT", "PATCH", "DELETE", "APPLY":
			out["writes "+res] += v
		case "GET":
			out["reads "+res+" GET"] += v
		}
	}
	return out
}

// String shows the manager's writes and Secret reads, the counters that are not zero.
func (a apiCounts) String() string {
	var parts []string
	for _, k := range []string{"writes secrets", "writes credentials/status", "writes events", "writes credentials", "reads secrets GET"} {
		if a[k] != 0 {
			parts = append(parts, fmt.Sprintf("%s: %.0f", k, a[k]))
		}
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

func (a apiCounts) minus(b apiCounts) apiCounts {
	out := apiCounts{}
	for k, v := range a {
		out[k] = v - b[k]
	}
	return out
}

// managerWrites is the sum of the manager's writes: Secrets, Events, Credential status.
func (a apiCounts) managerWrites() float64 {
	return a["writes secrets"] + a["writes events"] + a["writes credentials/status"] + a["writes credentials"]
}

// liveHeapBytes is the manager's live Go heap: a garbage collection first (the profiler's
// heap?gc=1), then the heap in use. Unlike RSS it does not count the headroom the runtime keeps
// for garbage not yet collected, so it shows what the manager holds.
func (m *manager) liveHeapBytes(t testing.TB) int64 {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/heap?gc=1", m.pprof))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	resp, err = http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", m.metrics))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	return int64(sumSeries(t, resp.Body, "go_memstats_heap_alloc_bytes"))
}

// reconciles is the manager's count of Credential reconciles.
func (m *manager) reconciles(t testing.TB) float64 {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", m.metrics))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	return sumSeries(t, resp.Body, "controller_runtime_reconcile_total", `controller="credential"`)
}

// fleet creates namespaces, an Issuer in each, and Credentials spread over them, each with its
// own input Secret (client_id = prefix-index).
type fleet struct {
	c          client.Client
	issuer     *tokenIssuer
	namespaces []string
}

func newFleet(t testing.TB, c client.Client, ti *tokenIssuer, prefix string, namespaces int) *fleet {
	t.Helper()
	f := &fleet{c: c, issuer: ti}
	for i := range namespaces {
		ns := fmt.Sprintf("%s-%d", prefix, i)
		f.namespaces = append(f.namespaces, ns)
		if err := c.Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
		iss := &v1alpha1.Issuer{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "tokens"}, Spec: v1alpha1.IssuerSpec{
			URL: v1alpha1.EndpointURL(ti.srv.URL + "/token"), OAuth2: &v1alpha1.OAuth2{}, CABundle: ti.caBundle()}}
		if err := c.Create(t.Context(), iss); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// create makes n Credentials named prefix-0 … prefix-(n-1), round robin over the namespaces, with
// workers goroutines.
func (f *fleet) create(ctx context.Context, t testing.TB, prefix string, n, workers int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	next := make(chan int)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				name := fmt.Sprintf("%s-%d", prefix, i)
				ns := f.namespaces[i%len(f.namespaces)]
				sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-client"},
					StringData: map[string]string{"client_id": name, "client_secret": "s3cret-" + name}}
				cred := &v1alpha1.Credential{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: v1alpha1.CredentialSpec{
					IssuerRef: v1alpha1.IssuerReference{Kind: v1alpha1.IssuerKindNamespaced, Name: "tokens"}, SecretName: name + "-token",
					ClientCredentials: &v1alpha1.ClientCredentialsLogin{SecretRef: v1alpha1.LocalSecretReference{Name: name + "-client"}}}}
				for _, o := range []client.Object{sec, cred} {
					if err := f.c.Create(ctx, o); err != nil {
						select {
						case errs <- err:
						default:
						}
						return
					}
				}
			}
		}()
	}
	for i := range n {
		select {
		case next <- i:
		case err := <-errs:
			close(next)
			wg.Wait()
			t.Fatal(err)
		}
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
}

// ready counts the Credentials with Ready=True.
func ready(ctx context.Context, t testing.TB, c client.Client) (readyN, total int) {
	t.Helper()
	var list v1alpha1.CredentialList
	if err := c.List(ctx, &list); err != nil {
		t.Fatal(err)
	}
	for _, cr := range list.Items {
		for _, cond := range cr.Status.Conditions {
			if cond.Type == string(v1alpha1.ConditionReady) && cond.Status == metav1.ConditionTrue {
				readyN++
			}
		}
	}
	return readyN, len(list.Items)
}

// controlPlane starts kube-apiserver and etcd (stopped when the test ends), builds the manager
// binary, and returns them with a kubeconfig for it and a client for the harness.
func controlPlane(t *testing.T) (env *testenv.Env, bin, kubeconfig string, c client.Client) {
	t.Helper()
	env, err := testenv.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	bin, kubeconfig = env.ManagerBinary(t, t.TempDir())
	return env, bin, kubeconfig, fastClient(t, env)
}

// fastClient is a client of the control plane without client-side rate limits, for the harness.
func fastClient(t testing.TB, env *testenv.Env) client.Client {
	t.Helper()
	cfg := rest.CopyConfig(env.Config)
	cfg.QPS, cfg.Burst = -1, 0
	c, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}
