// Package docs_test keeps the documentation from rotting: every ```yaml block of README.md and of
// every page under docs/ is a complete Kubernetes manifest, and each object in it is created with
// a server-side dry run (strict field validation: an unknown field is refused) against a real
// kube-apiserver with tokenkeeper's CRDs (their schemas and CEL rules), its validating admission
// webhooks and the upstream CRDs of Istio, Envoy Gateway, Contour and Gateway API (mesh_test.go)
// installed. A manifest the API refuses fails the test with its file, line and the API's
// message. Relative links to Markdown pages resolve.
//
// Files are found when the test runs, so a new page is checked without changing this suite:
//
//	KUBEBUILDER_ASSETS="$(hack/envtest-assets.sh)" go test ./test/docs/
package docs_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/yaml"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/controllers"
	"github.com/tokenkeeper/tokenkeeper/internal/admission"
	"github.com/tokenkeeper/tokenkeeper/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	testenv.ExitUnlessAvailable()
	var err error
	if env, err = testenv.StartWithWebhooks(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx, stop := context.WithCancel(context.Background())
	code := 1
	if err = startAdmission(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
	} else if err = installMeshCRDs(env.Config); err != nil {
		fmt.Fprintln(os.Stderr, err)
	} else {
		code = m.Run()
	}
	stop()
	time.Sleep(200 * time.Millisecond) // the webhook server lets go of its certificates first
	_ = env.Stop()
	os.Exit(code)
}

// startAdmission runs tokenkeeper's admission webhooks (and nothing else of the manager) and
// waits until the API server reaches them.
func startAdmission(ctx context.Context) error {
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapcore.ErrorLevel))) // a dry run per manifest is not news
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
		Cache:         cache.Options{ByObject: controllers.CacheByObject()},
		WebhookServer: webhook.NewServer(env.WebhookOptions()),
	})
	if err != nil {
		return err
	}
	if err := admission.Setup(mgr); err != nil {
		return err
	}
	go func() { _ = mgr.Start(ctx) }()
	probe := &v1alpha1.ClusterIssuer{ObjectMeta: metav1.ObjectMeta{Name: "docs-webhook-probe"},
		Spec: v1alpha1.IssuerSpec{URL: "https://probe.example.com/token", JSON: &v1alpha1.JSONLogin{}}}
	for range 300 {
		err = env.Client.Create(ctx, probe.DeepCopy(), client.DryRunAll)
		if err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("the admission webhooks never answered: %w", err)
}

// page is one Markdown file, by its path relative to the repository.
type page struct {
	path string
	text []byte
}

// pages are README.md and every Markdown file under docs/, read now.
func pages(t *testing.T) []page {
	t.Helper()
	root := testenv.RepoRoot()
	paths := []string{"README.md"}
	err := filepath.WalkDir(filepath.Join(root, "docs"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".md") {
			rel, err := filepath.Rel(root, p)
			if err != nil {
				return err
			}
			paths = append(paths, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(paths[1:])
	var out []page
	for _, p := range paths {
		data, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, page{path: p, text: data})
	}
	return out
}

// document is one YAML document of a ```yaml block: its first line in the page and its text.
type document struct {
	line int
	text string
}

var (
	fenceOpen = regexp.MustCompile("^(\\s*)(`{3,}|~{3,})\\s*([A-Za-z0-9_+-]*)")
	separator = regexp.MustCompile(`^---\s*(#.*)?$`)
)

// yamlDocuments splits every ```yaml (or ```yml) block of a page into its YAML documents.
func yamlDocuments(text []byte) []document {
	var docs []document
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var (
		inFence, isYAML bool
		fence, indent   string
		cur             *document
		lineNo          int
	)
	flush := func() {
		if cur != nil && strings.TrimSpace(stripComments(cur.text)) != "" {
			docs = append(docs, *cur)
		}
		cur = nil
	}
	for sc.Scan() {
		lineNo++
		line := sc.Text()
		if !inFence {
			if m := fenceOpen.FindStringSubmatch(line); m != nil {
				inFence, indent, fence = true, m[1], m[2]
				lang := strings.ToLower(m[3])
				isYAML = lang == "yaml" || lang == "yml"
			}
			continue
		}
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, fence) && strings.Trim(trimmed, fence[:1]) == "" {
			if isYAML {
				flush()
			}
			inFence = false
			continue
		}
		if !isYAML {
			continue
		}
		line = strings.TrimPrefix(line, indent)
		if separator.MatchString(line) {
			flush()
			continue
		}
		if cur == nil {
			cur = &document{line: lineNo}
		}
		cur.text += line + "\n"
	}
	return docs
}

// stripComments drops whole-line comments, to tell an empty document from a real one.
func stripComments(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// knownGroup reports whether the API server must know every kind of an API group: Kubernetes'
// own groups, tokenkeeper's and those of the mesh CRDs installed from their upstream modules
// (mesh_test.go: Istio, Envoy Gateway, Contour, Gateway API). Kinds of other projects' CRDs
// (Traefik, …) are not installed here; their manifests are only checked to be complete.
func knownGroup(group string) bool {
	return group == "" || group == v1alpha1.GroupVersion.Group || strings.HasSuffix(group, ".k8s.io") || meshGroups[group] ||
		slices.Contains([]string{"apps", "batch", "policy", "autoscaling"}, group)
}

func ensureNamespace(t *testing.T, name string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := env.Client.Create(t.Context(), ns); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
}

// TestManifestsAreAccepted dry-runs every object of every ```yaml block.
func TestManifestsAreAccepted(t *testing.T) {
	checked := 0
	for _, p := range pages(t) {
		for _, d := range yamlDocuments(p.text) {
			where := fmt.Sprintf("%s:%d", p.path, d.line)
			obj := &unstructured.Unstructured{}
			if err := yaml.Unmarshal([]byte(d.text), &obj.Object); err != nil {
				t.Errorf("%s: not YAML: %v", where, err)
				continue
			}
			if obj.GetAPIVersion() == "" || obj.GetKind() == "" || obj.GetName() == "" {
				t.Errorf("%s: a ```yaml block holds only complete manifests (apiVersion, kind and metadata.name): "+
					"fence other snippets as ```text", where)
				continue
			}
			name := where + "/" + obj.GetKind() + "/" + obj.GetName()
			t.Run(name, func(t *testing.T) {
				if ns := obj.GetNamespace(); ns != "" {
					ensureNamespace(t, ns)
				}
				err := env.Client.Create(t.Context(), obj, client.DryRunAll, client.FieldValidation("Strict"))
				gv := obj.GroupVersionKind().Group
				switch {
				case err == nil:
					checked++
				case apierrors.IsAlreadyExists(err) && obj.GetAPIVersion() == "v1" && obj.GetKind() == "Namespace":
					checked++ // created above for the manifests in it; applying it changes nothing
				case meta.IsNoMatchError(err) && !knownGroup(gv):
					t.Logf("%s: %s is not installed in the test API server; only its shape was checked", where, obj.GetAPIVersion())
				default:
					t.Errorf("%s: the API server refuses %s %q: %v", where, obj.GetKind(), obj.GetName(), err)
				}
			})
		}
	}
	if checked == 0 {
		t.Error("no manifest was checked: the ```yaml blocks of README.md and docs/ were not found")
	}
	t.Logf("%d manifests accepted", checked)
}

var (
	inlineLink = regexp.MustCompile(`\]\(([^)\s]+)(?:\s+"[^"]*")?\)`)
	refLink    = regexp.MustCompile(`(?m)^\s*\[[^\]]+\]:\s*(\S+)`)
	codeFence  = regexp.MustCompile("(?ms)^\\s*(```|~~~).*?^\\s*(```|~~~)\\s*$")
)

// TestLinksResolve checks that every relative link to a Markdown page resolves to a file: the
// docs/… links of README.md, and the links between pages under docs/.
func TestLinksResolve(t *testing.T) {
	root := testenv.RepoRoot()
	for _, p := range pages(t) {
		text := codeFence.ReplaceAllString(string(p.text), "")
		var targets []string
		for _, m := range inlineLink.FindAllStringSubmatch(text, -1) {
			targets = append(targets, m[1])
		}
		for _, m := range refLink.FindAllStringSubmatch(text, -1) {
			targets = append(targets, m[1])
		}
		for _, target := range targets {
			target, _, _ = strings.Cut(target, "#")
			if target == "" || strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") || strings.HasPrefix(target, "/") {
				continue
			}
			if p.path == "README.md" && !strings.HasPrefix(strings.TrimPrefix(target, "./"), "docs/") {
				continue // the README's links elsewhere in the repository are not pages
			}
			if !strings.HasSuffix(target, ".md") {
				continue
			}
			file := filepath.Join(root, filepath.Dir(p.path), filepath.FromSlash(target))
			if _, err := os.Stat(file); err != nil {
				t.Errorf("%s: link %s does not resolve to a file", p.path, target)
			}
		}
	}
}

// TestYAMLDocuments pins the extraction: fences, indentation, separators and line numbers.
func TestYAMLDocuments(t *testing.T) {
	text := "intro\n```yaml\napiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n# only a comment\n---\n" +
		"apiVersion: v1\nkind: Namespace\nmetadata: {name: b}\n```\n\n```text\nkind: Ignored\n```\n" +
		"- item\n\n  ```yaml\n  apiVersion: v1\n  kind: Namespace\n  metadata: {name: c}\n  ```\n"
	docs := yamlDocuments([]byte(text))
	var got []string
	for _, d := range docs {
		obj := map[string]any{}
		if err := yaml.Unmarshal([]byte(d.text), &obj); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%d:%v", d.line, obj["metadata"]))
	}
	want := []string{"3:map[name:a]", "9:map[name:b]", "20:map[name:c]"}
	if !slices.Equal(got, want) {
		t.Errorf("documents = %v, want %v", got, want)
	}
}
