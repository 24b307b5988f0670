// Command measure-refresh measures, on a real kubelet, how long a Secret update takes to reach
// the files of a running container that mounts the Secret (a plain Secret volume and a projected
// one) in three modes: without the pod refresh; with the annotation patch controllers/podrefresh
// sends, sent by this program right after the update; and with the pod refresh controller itself
// running in this program (as in the manager: informer, queue, bounds, patch). make
// measure-refresh runs it on the local single-node cluster (hack/local-cluster.sh) with the
// kubelet's default syncFrequency.
//
// It reads the files as the container sees them, through /proc/PID/root of the container's
// process (so it runs as root on the node), every 10 ms.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/controllers"
	"github.com/tokenkeeper/tokenkeeper/controllers/podrefresh"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer"
)

func main() {
	var (
		sock      = flag.String("containerd-sock", "", "containerd socket of the node (to find the container's PID)")
		rotations = flag.Int("rotations", 5, "Secret updates per mode")
		spread    = flag.Duration("spread", 60*time.Second, "without the refresh, wait a random time up to this before each update, so that updates fall anywhere in the kubelet's sync period")
		image     = flag.String("image", "docker.io/local/busybox:1", "image of the pod (imagePullPolicy Never)")
		ns        = flag.String("namespace", "measure-refresh", "namespace to create and delete")
	)
	flag.Parse()
	// KUBECONFIG names the cluster (controller-runtime, imported for the annotation, owns -kubeconfig).
	if err := run(os.Getenv("KUBECONFIG"), *sock, *ns, *image, *rotations, *spread); err != nil {
		fmt.Fprintln(os.Stderr, "measure-refresh:", err)
		os.Exit(1)
	}
}

func run(kubeconfig, sock, ns, image string, rotations int, spread time.Duration) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	ctx := context.Background()
	nodes, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("listing nodes: %w", err)
	}
	if len(nodes.Items) == 0 {
		return errors.New("the cluster has no node")
	}
	node := nodes.Items[0].Name
	if err := kubeletSettings(ctx, c, node); err != nil {
		return err
	}
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	defer func() {
		_ = c.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
	}()
	token := newToken()
	// Labelled as the Credential controller labels a token Secret, for the refresh controller.
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "token", Namespace: ns, Labels: map[string]string{
		v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue, v1alpha1.LabelRole: "token"}}, Data: map[string][]byte{"token": []byte(token)}}
	if _, err := c.CoreV1().Secrets(ns).Create(ctx, sec, metav1.CreateOptions{}); err != nil {
		return err
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "reader", Namespace: ns},
		Spec: corev1.PodSpec{
			NodeName: node, AutomountServiceAccountToken: ptr.To(false), TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []corev1.Container{{Name: "reader", Image: image, ImagePullPolicy: corev1.PullNever,
				Command:      []string{"/bin/busybox", "sleep", "86400"},
				VolumeMounts: []corev1.VolumeMount{{Name: "token", MountPath: "/token"}, {Name: "projected", MountPath: "/projected"}}}},
			Volumes: []corev1.Volume{
				{Name: "token", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "token"}}},
				{Name: "projected", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
					{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "token"}}}}}}},
			},
		},
	}
	if _, err := c.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return err
	}
	pid, err := containerPID(ctx, c, sock, ns, "reader")
	if err != nil {
		return err
	}
	files := []string{fmt.Sprintf("/proc/%d/root/token/token", pid), fmt.Sprintf("/proc/%d/root/projected/token", pid)}
	if err := waitContent(files, token, time.Minute); err != nil {
		return fmt.Errorf("the container never read the first token: %w", err)
	}
	results := map[string][][2]time.Duration{}
	for _, mode := range modes {
		if mode == "controller" {
			stop, err := startRefresher(cfg)
			if err != nil {
				return err
			}
			defer stop()
		}
		for i := range rotations {
			if mode == modes[0] {
				time.Sleep(randomUpTo(spread))
			} else {
				time.Sleep(2*time.Second + randomUpTo(3*time.Second))
			}
			token = newToken()
			start := time.Now()
			if err := updateSecret(ctx, c, ns, token); err != nil {
				return err
			}
			if mode == "patch" {
				if err := refreshPod(ctx, c, ns, "reader", "token", token); err != nil {
					return err
				}
			}
			seen, err := waitEach(files, token, start, 5*time.Minute)
			if err != nil {
				return err
			}
			if mode == "controller" {
				// The controller, not the periodic sync, brought it: the pod names the new token.
				if err := checkSynced(ctx, c, ns, "reader", "token", token); err != nil {
					return err
				}
			}
			results[mode] = append(results[mode], [2]time.Duration{seen[0], seen[1]})
			fmt.Printf("%s, update %d: Secret volume %v, projected volume %v\n", mode, i+1, seen[0].Round(time.Millisecond), seen[1].Round(time.Millisecond))
		}
	}
	fmt.Println()
	fmt.Println("| pod refresh | volume | median | max | each |")
	fmt.Println("| --- | --- | --- | --- | --- |")
	for _, mode := range modes {
		for v, volume := range []string{"Secret", "projected"} {
			var ds []time.Duration
			for _, r := range results[mode] {
				ds = append(ds, r[v])
			}
			each := make([]string, len(ds))
			for i, d := range ds {
				each[i] = short(d)
			}
			fmt.Printf("| %s | %s | %s | %s | %s |\n", modeNames[mode], volume, short(median(ds)), short(slices.Max(ds)), strings.Join(each, ", "))
		}
	}
	return nil
}

// The modes, in the order they run.
var (
	modes     = []string{"without", "patch", "controller"}
	modeNames = map[string]string{"without": "none (the kubelet's periodic sync)", "patch": "the annotation patch, sent at once",
		"controller": "the pod refresh controller"}
)

// startRefresher runs the pod refresh controller as controllers.Setup wires it in the manager.
func startRefresher(cfg *rest.Config) (stop func(), err error) {
	ctrl.SetLogger(zap.New())
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0", Cache: cache.Options{ByObject: controllers.CacheByObject()}})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &podrefresh.Reconciler{Client: mgr.GetClient(), Options: podrefresh.Options{MaxPodsPerRotation: podrefresh.DefaultMaxPodsPerRotation}}
	if err := r.SetupWithManager(ctx, mgr); err != nil {
		cancel()
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "manager:", err)
		}
	}()
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		cancel()
		return nil, errors.New("the refresher's cache did not sync")
	}
	return func() { cancel(); <-done }, nil
}

// kubeletSettings prints the kubelet's syncFrequency and Secret change detection strategy, as
// its /configz reports them.
func kubeletSettings(ctx context.Context, c *kubernetes.Clientset, node string) error {
	raw, err := c.CoreV1().RESTClient().Get().AbsPath("/api/v1/nodes", node, "proxy", "configz").DoRaw(ctx)
	if err != nil {
		return fmt.Errorf("reading the kubelet's configz: %w", err)
	}
	var z struct {
		KubeletConfig struct {
			SyncFrequency                             string `json:"syncFrequency"`
			ConfigMapAndSecretChangeDetectionStrategy string `json:"configMapAndSecretChangeDetectionStrategy"`
		} `json:"kubeletconfig"`
	}
	if err := json.Unmarshal(raw, &z); err != nil {
		return err
	}
	fmt.Printf("kubelet %s: syncFrequency %s, configMapAndSecretChangeDetectionStrategy %s\n", node,
		z.KubeletConfig.SyncFrequency, z.KubeletConfig.ConfigMapAndSecretChangeDetectionStrategy)
	return nil
}

func updateSecret(ctx context.Context, c *kubernetes.Clientset, ns, token string) error {
	patch, _ := json.Marshal(map[string]any{"data": map[string][]byte{"token": []byte(token)}})
	_, err := c.CoreV1().Secrets(ns).Patch(ctx, "token", types.MergePatchType, patch, metav1.PatchOptions{})
	return err
}

// refreshPod patches the pod as controllers/podrefresh does: the synced-token annotation set to
// secret=fingerprint, with the pod's resourceVersion.
func refreshPod(ctx context.Context, c *kubernetes.Clientset, ns, name, secret, token string) error {
	pod, err := c.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	value := podrefresh.SyncedAnnotation(pod.Annotations[v1alpha1.AnnotationSyncedToken], secret, issuer.Fingerprint(token), nil)
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"resourceVersion": pod.ResourceVersion,
		"annotations": map[string]string{v1alpha1.AnnotationSyncedToken: value}}})
	_, err = c.CoreV1().Pods(ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
	return err
}

// containerPID waits for the pod's container to run and returns its process ID on the node.
func containerPID(ctx context.Context, c *kubernetes.Clientset, sock, ns, name string) (int, error) {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		pod, err := c.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil && len(pod.Status.ContainerStatuses) == 1 && pod.Status.ContainerStatuses[0].State.Running != nil {
			id := strings.TrimPrefix(pod.Status.ContainerStatuses[0].ContainerID, "containerd://")
			out, err := exec.CommandContext(ctx, "ctr", "-a", sock, "-n", "k8s.io", "tasks", "ls").Output() //nolint:gosec // the node's socket, from our own flag
			if err != nil {
				return 0, fmt.Errorf("ctr tasks ls: %w", err)
			}
			sc := bufio.NewScanner(bytes.NewReader(out))
			for sc.Scan() {
				f := strings.Fields(sc.Text())
				if len(f) >= 2 && f[0] == id {
					var pid int
					_, err := fmt.Sscan(f[1], &pid)
					return pid, err
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return 0, errors.New("the pod's container did not start within 2 minutes")
}

func waitContent(files []string, want string, timeout time.Duration) error {
	_, err := waitEach(files, want, time.Now(), timeout)
	return err
}

// waitEach polls files until each holds want and returns, for each, how long after start it did.
func waitEach(files []string, want string, start time.Time, timeout time.Duration) ([]time.Duration, error) {
	seen := make([]time.Duration, len(files))
	left := len(files)
	for left > 0 {
		if time.Since(start) > timeout {
			return nil, fmt.Errorf("the container did not see the new token in %v", timeout)
		}
		for i, f := range files {
			if seen[i] != 0 {
				continue
			}
			if b, err := os.ReadFile(filepath.Clean(f)); err == nil && string(b) == want {
				seen[i] = time.Since(start)
				left--
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return seen, nil
}

// checkSynced fails unless the pod's synced-token annotation names token's fingerprint for secret.
func checkSynced(ctx context.Context, c *kubernetes.Clientset, ns, name, secret, token string) error {
	pod, err := c.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	got, want := pod.Annotations[v1alpha1.AnnotationSyncedToken], secret+"="+issuer.Fingerprint(token)
	if !slices.Contains(strings.Split(got, ","), want) {
		return fmt.Errorf("the refresh controller did not patch the pod: %s is %q, want %q", v1alpha1.AnnotationSyncedToken, got, want)
	}
	return nil
}

// median of ds: the middle one, or the mean of the two middle ones.
func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func newToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func randomUpTo(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	n, _ := rand.Int(rand.Reader, big.NewInt(int64(d)))
	return time.Duration(n.Int64())
}

func short(d time.Duration) string {
	if d < 10*time.Second {
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
	return fmt.Sprintf("%.0f s", d.Seconds())
}
