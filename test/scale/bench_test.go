//go:build bench

package scale_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tokenkeeper/tokenkeeper/internal/testenv"
)

// `make bench` runs these (go test -tags bench ./test/scale -run TestScale -v) and prints
// markdown tables for the README. Sizes: BENCH_CREDENTIALS (10000), BENCH_UNRELATED (20000),
// BENCH_ROTATING (1000), BENCH_ROTATING_FOR (12m); manager flags: BENCH_FLAGS; BENCH_CPU_PROFILE=file
// saves a 20-s CPU profile of the manager while it converges.

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func benchFlags() []string { return strings.Fields(os.Getenv("BENCH_FLAGS")) }

func row(t *testing.T, cells ...any) {
	t.Helper()
	s := make([]string, len(cells))
	for i, c := range cells {
		s[i] = fmt.Sprint(c)
	}
	fmt.Printf("| %s |\n", strings.Join(s, " | "))
}

// Convergence and memory: N Credentials with 1-h tokens, created before the manager starts, all
// Ready; against a plain client creating N Secrets on the same API server; the manager's RSS
// then, and after M unrelated Secrets appear.
func TestScaleConvergence(t *testing.T) {
	n, unrelated := envInt("BENCH_CREDENTIALS", 10000), envInt("BENCH_UNRELATED", 20000)
	env, bin, kubeconfig, c := controlPlane(t)
	ctx := t.Context()

	// A plain client: N Secrets, 8 at a time (as many as the manager's reconcile workers,
	// --max-concurrent-reconciles 8).
	mustCreate(t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "baseline"}})
	start := time.Now()
	parallel(t, n, 8, func(i int) error {
		return c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "baseline", Name: fmt.Sprintf("s-%d", i)},
			StringData: map[string]string{"token": strings.Repeat("x", 64)}})
	})
	baseline := time.Since(start)

	ti := startIssuer(t)
	f := newFleet(t, c, ti, "conv", 10)
	f.create(ctx, t, "conv", n, 8)
	before := apiRequests(t, env.Config)
	start = time.Now()
	m := startManager(t, bin, kubeconfig, benchFlags()...)
	if out := os.Getenv("BENCH_CPU_PROFILE"); out != "" {
		go m.cpuProfile(t, out, 20*time.Second)
		go apiServerProfile(t, env.Config, out+".apiserver", 20*time.Second)
	}
	for {
		ti.mu.Lock()
		clients := len(ti.requests)
		ti.mu.Unlock()
		if clients >= n {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	for {
		if r, _ := ready(ctx, t, c); r >= n {
			break
		}
		time.Sleep(time.Second)
	}
	converged := time.Since(start)
	d := apiRequests(t, env.Config).minus(before)
	time.Sleep(30 * time.Second)
	rss := m.rssBytes(t)
	heap := m.liveHeapBytes(t)

	mustCreate(t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "unrelated"}})
	parallel(t, unrelated, 8, func(i int) error {
		return c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "unrelated", Name: fmt.Sprintf("u-%d", i),
			Labels: map[string]string{"app": "other"}}, StringData: map[string]string{"data": strings.Repeat("y", 1024)}})
	})
	time.Sleep(30 * time.Second)
	rssAfter := m.rssBytes(t)
	// The Go runtime returns freed heap to the system over minutes: RSS again once it has.
	time.Sleep(150 * time.Second)
	rssLater := m.rssBytes(t)
	heapLater := m.liveHeapBytes(t)

	fmt.Printf("\nflags: %q\n\n", benchFlags())
	row(t, "Credentials", "plain client: Secrets created", "manager: all Ready", "ratio", "API writes per Credential", "RSS",
		"RSS 30 s after "+strconv.Itoa(unrelated)+" more Secrets", "3 min after", "live heap", "3 min after")
	row(t, "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:")
	mib := func(b, base int64) string {
		return fmt.Sprintf("%.0f MiB (%+.1f MiB)", float64(b)/(1<<20), float64(b-base)/(1<<20))
	}
	row(t, n, baseline.Round(100*time.Millisecond), converged.Round(100*time.Millisecond),
		fmt.Sprintf("%.2f×", converged.Seconds()/baseline.Seconds()), fmt.Sprintf("%.2f", d.managerWrites()/float64(n)),
		fmt.Sprintf("%.0f MiB", float64(rss)/(1<<20)), mib(rssAfter, rss), mib(rssLater, rss),
		fmt.Sprintf("%.0f MiB", float64(heap)/(1<<20)), mib(heapLater, heap))
	fmt.Printf("\nwrites while converging: %v\n", d)
}

// Steady state: N Credentials with 2-min tokens (renewed at half their life, 60 s ±6 s)
// created at once against a running manager; the issuer's request times in 10-s buckets, how
// late any renewal came, then a manager restart.
func TestScaleSteadyState(t *testing.T) {
	n := envInt("BENCH_ROTATING", 1000)
	runFor, err := time.ParseDuration(os.Getenv("BENCH_ROTATING_FOR"))
	if err != nil {
		runFor = 12 * time.Minute
	}
	const lifetime, renewAt, jitter = 2 * time.Minute, time.Minute, 6 * time.Second
	env, bin, kubeconfig, c := controlPlane(t)
	ctx := t.Context()
	ti := startIssuer(t)
	ti.setLifetime("", lifetime)
	m := startManager(t, bin, kubeconfig, benchFlags()...)
	f := newFleet(t, c, ti, "steady", 10)
	t0 := time.Now()
	f.create(ctx, t, "rot", n, 8)
	created := time.Since(t0)
	for {
		if r, _ := ready(ctx, t, c); r >= n {
			break
		}
		time.Sleep(time.Second)
	}
	allReady := time.Since(t0)
	start := apiRequests(t, env.Config)
	callsBefore := ti.calls()
	time.Sleep(runFor - allReady)
	d := apiRequests(t, env.Config).minus(start)
	rotations := ti.calls() - callsBefore

	// A restart: stop, start again, one more rotation period.
	restartAt := time.Now()
	m.stop(t)
	startManager(t, bin, kubeconfig, benchFlags()...)
	time.Sleep(2 * renewAt)
	end := time.Now()

	ti.mu.Lock()
	all := append([]time.Time(nil), ti.all...)
	var before, after []time.Duration // renewal gaps ending before the restart, and from it on
	for _, reqs := range ti.requests {
		for i := 1; i < len(reqs); i++ {
			if reqs[i].Before(restartAt) {
				before = append(before, reqs[i].Sub(reqs[i-1]))
			} else {
				after = append(after, reqs[i].Sub(reqs[i-1]))
			}
		}
	}
	ti.mu.Unlock()
	buckets := make([]int, int(end.Sub(t0)/(10*time.Second))+1)
	for _, at := range all {
		buckets[int(at.Sub(t0)/(10*time.Second))]++
	}

	fmt.Printf("\nflags: %q\n\n", benchFlags())
	fmt.Printf("%d Credentials created in %s, all Ready %s after the first; %d rotations in %s: %.1f/s, %.2f API writes each (%v)\n",
		n, created.Round(100*time.Millisecond), allReady.Round(100*time.Millisecond), rotations, (runFor - allReady).Round(time.Second),
		float64(rotations)/(runFor-allReady).Seconds(), d.managerWrites()/float64(rotations), d)
	fmt.Printf("\nissuer requests per 10 s from the first Credential created (each row one 60-s rotation period; R: manager restarted):\n\n")
	row(t, "period", "requests per 10 s", "peak / mean")
	row(t, "---", "---", "---:")
	restartBucket := int(restartAt.Sub(t0) / (10 * time.Second))
	for p := 0; p*6 < len(buckets)-1; p++ {
		seg := buckets[p*6 : min(len(buckets)-1, p*6+6)]
		sum, peak := 0, 0
		cells := make([]string, len(seg))
		for i, b := range seg {
			sum += b
			peak = max(peak, b)
			cells[i] = strconv.Itoa(b)
			if p*6+i == restartBucket {
				cells[i] += " R"
			}
		}
		ratio := "-"
		if sum > 0 && len(seg) == 6 {
			ratio = fmt.Sprintf("%.2f", float64(peak)/(float64(sum)/6))
		}
		row(t, p+1, strings.Join(cells, " "), ratio)
	}
	fmt.Println()
	row(t, "renewal gaps", "count", "median", "p99", "max", "later than 60 s + jitter (67 s)", "expired (≥ 120 s)")
	row(t, "---", "---:", "---:", "---:", "---:", "---:", "---:")
	for _, g := range []struct {
		name string
		gaps []time.Duration
	}{{"steady", before}, {"across the restart", after}} {
		gaps := g.gaps
		sort.Slice(gaps, func(i, j int) bool { return gaps[i] < gaps[j] })
		late, expired := 0, 0
		for _, d := range gaps {
			if d > renewAt+jitter+time.Second {
				late++
			}
			if d >= lifetime {
				expired++
			}
		}
		q := func(p float64) time.Duration { return gaps[int(p*float64(len(gaps)-1))].Round(100 * time.Millisecond) }
		row(t, g.name, len(gaps), q(0.5), q(0.99), gaps[len(gaps)-1].Round(100*time.Millisecond), late, expired)
	}
}

// stop sends SIGTERM and waits for the exit.
func (m *manager) stop(t testing.TB) {
	t.Helper()
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-m.exited:
		t.Logf("the manager stopped: %v", err)
	case <-time.After(40 * time.Second):
		t.Fatal("the manager did not stop within 40 s of SIGTERM")
	}
}

// cpuProfile saves a CPU profile of the manager, taken over d, to file (BENCH_CPU_PROFILE).
func (m *manager) cpuProfile(t testing.TB, file string, d time.Duration) {
	time.Sleep(2 * time.Second) // the profiler's listener starts with the manager
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile?seconds=%d", m.pprof, int(d.Seconds())))
	if err != nil {
		t.Log("cpu profile:", err)
		return
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err == nil {
		err = os.WriteFile(file, b, 0o600)
	}
	t.Log("cpu profile:", file, err)
}

// apiServerProfile saves a CPU profile of kube-apiserver, taken over d, to file.
func apiServerProfile(t testing.TB, cfg *rest.Config, file string, d time.Duration) {
	time.Sleep(2 * time.Second)
	hc, err := rest.HTTPClientFor(cfg)
	if err == nil {
		var resp *http.Response
		if resp, err = hc.Get(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", strings.TrimSuffix(cfg.Host, "/"), int(d.Seconds()))); err == nil {
			var b []byte
			if b, err = io.ReadAll(resp.Body); err == nil {
				err = os.WriteFile(file, b, 0o600)
			}
			_ = resp.Body.Close()
		}
	}
	t.Log("kube-apiserver cpu profile:", file, err)
}

// rssBytes is the manager's resident set size.
func (m *manager) rssBytes(t testing.TB) int64 { return testenv.ResidentBytes(t, m.cmd.Process.Pid) }

func mustCreate(t *testing.T, c client.Client, o client.Object) {
	t.Helper()
	if err := c.Create(context.Background(), o); err != nil {
		t.Fatal(err)
	}
}

// parallel runs do(0…n-1) on workers goroutines and fails on the first error.
func parallel(t *testing.T, n, workers int, do func(int) error) {
	t.Helper()
	next := make(chan int)
	errs := make(chan error, workers)
	done := make(chan struct{})
	for range workers {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range next {
				if err := do(i); err != nil {
					errs <- err
					for range next {
					}
					return
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	for range workers {
		<-done
	}
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
}
