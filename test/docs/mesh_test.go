package docs_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"
)

// meshModule is a pinned Go module that ships the CRDs of a proxy or gateway the docs configure,
// and the files of those CRDs in it.
type meshModule struct {
	module, version string
	files           []string
}

// meshModules are the upstream CRDs the docs' mesh manifests are dry-run against: Istio's
// AuthorizationPolicy (and the rest of istio.io/api), Envoy Gateway's SecurityPolicy, Contour's
// ExtensionService and HTTPProxy, and the Gateway API kinds a SecurityPolicy attaches to. Each
// comes from the Go module proxy (`go mod download`) into the module cache, once: later runs read
// the cache and need no network.
var meshModules = []meshModule{
	{"istio.io/api", "v1.32.0", []string{"kubernetes/customresourcedefinitions.gen.yaml"}},
	{"github.com/envoyproxy/gateway", "v1.9.1", []string{
		"charts/gateway-helm/charts/crds/crds/generated/gateway.envoyproxy.io_securitypolicies.yaml",
	}},
	{"github.com/projectcontour/contour", "v1.33.8", []string{"examples/contour/01-crds.yaml"}},
	{"sigs.k8s.io/gateway-api", "v1.6.3", []string{
		"config/crd/standard/gateway.networking.k8s.io_gatewayclasses.yaml",
		"config/crd/standard/gateway.networking.k8s.io_gateways.yaml",
		"config/crd/standard/gateway.networking.k8s.io_httproutes.yaml",
		"config/crd/standard/gateway.networking.k8s.io_referencegrants.yaml",
		"config/crd/standard/gateway.networking.k8s.io_backendtlspolicies.yaml",
	}},
}

// meshGroups are the API groups of the installed mesh CRDs: a manifest of these groups must be
// accepted, like tokenkeeper's own.
var meshGroups = map[string]bool{}

// installMeshCRDs installs the CRDs of meshModules into the test API server.
func installMeshCRDs(cfg *rest.Config) error {
	var paths []string
	for _, m := range meshModules {
		dir, err := moduleDir(m.module, m.version)
		if err != nil {
			return err
		}
		for _, f := range m.files {
			paths = append(paths, filepath.Join(dir, filepath.FromSlash(f)))
		}
	}
	crds, err := envtest.InstallCRDs(cfg, envtest.CRDInstallOptions{Paths: paths, ErrorIfPathMissing: true})
	if err != nil {
		return fmt.Errorf("installing the mesh CRDs: %w", err)
	}
	for _, crd := range crds {
		meshGroups[crd.Spec.Group] = true
	}
	return nil
}

// moduleDir is the directory of module@version in the Go module cache, downloaded if missing.
func moduleDir(module, version string) (string, error) {
	cmd := exec.Command("go", "mod", "download", "-json", module+"@"+version)
	cmd.Dir = os.TempDir() // outside tokenkeeper's module: its go.mod and go.sum stay as they are
	cmd.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var info struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &info); jerr != nil || info.Error != "" || info.Dir == "" {
		return "", fmt.Errorf("go mod download %s@%s: %s %s: %w", module, version, info.Error, stderr.String(), errors.Join(err, jerr))
	}
	return info.Dir, nil
}

var meshConfigSnippet = regexp.MustCompile("(?s)<!-- istio: MeshConfig -->\n```text\n(.*?)\n```")

// TestIstioMeshConfig decodes every Istio mesh config snippet of the docs (a ```text block after
// <!-- istio: MeshConfig -->) into istio.io/api's MeshConfig as istiod reads it (protojson, an
// unknown field refused), and checks that every CUSTOM AuthorizationPolicy of the same page names
// one of its extension providers. The AuthorizationPolicies themselves are dry-run against Istio's
// CRD by TestManifestsAreAccepted.
func TestIstioMeshConfig(t *testing.T) {
	checked := 0
	for _, p := range pages(t) {
		var providers []string
		for _, m := range meshConfigSnippet.FindAllSubmatch(p.text, -1) {
			js, err := yaml.YAMLToJSON(m[1])
			if err != nil {
				t.Errorf("%s: a MeshConfig snippet that is not YAML: %v", p.path, err)
				continue
			}
			mc := &meshv1alpha1.MeshConfig{}
			if err := protojson.Unmarshal(js, mc); err != nil {
				t.Errorf("%s: not an Istio MeshConfig: %v\n%s", p.path, err, m[1])
				continue
			}
			if len(mc.GetExtensionProviders()) == 0 {
				t.Errorf("%s: a MeshConfig snippet without extensionProviders", p.path)
			}
			for _, ep := range mc.GetExtensionProviders() {
				if ep.GetEnvoyExtAuthzGrpc() == nil && ep.GetEnvoyExtAuthzHttp() == nil {
					t.Errorf("%s: extension provider %q is neither envoyExtAuthzGrpc nor envoyExtAuthzHttp", p.path, ep.GetName())
				}
				if g := ep.GetEnvoyExtAuthzGrpc(); g != nil && (g.GetService() == "" || g.GetPort() == 0) {
					t.Errorf("%s: extension provider %q names no service and port", p.path, ep.GetName())
				}
				providers = append(providers, ep.GetName())
			}
			checked++
		}
		for _, d := range yamlDocuments(p.text) {
			var policy struct {
				Kind string
				Spec struct {
					Action   string
					Provider struct{ Name string }
				}
			}
			if err := yaml.Unmarshal([]byte(d.text), &policy); err != nil || policy.Kind != "AuthorizationPolicy" || policy.Spec.Action != "CUSTOM" {
				continue
			}
			if !slices.Contains(providers, policy.Spec.Provider.Name) {
				t.Errorf("%s:%d: the AuthorizationPolicy's provider %q is none of the page's mesh config extensionProviders %v",
					p.path, d.line, policy.Spec.Provider.Name, providers)
			}
		}
	}
	if checked < 2 {
		t.Errorf("%d Istio MeshConfig snippets found, want the gRPC and the HTTP ones (docs/validation/envoy-grpc.md, envoy-istio.md)", checked)
	}
}

// TestMeshCRDsInstalled: the mesh kinds the docs use are served by the test API server, so
// TestManifestsAreAccepted checks them for real rather than only their shape.
func TestMeshCRDsInstalled(t *testing.T) {
	for _, name := range []string{
		"authorizationpolicies.security.istio.io", "securitypolicies.gateway.envoyproxy.io",
		"extensionservices.projectcontour.io", "httpproxies.projectcontour.io",
		"httproutes.gateway.networking.k8s.io", "referencegrants.gateway.networking.k8s.io",
	} {
		crd := &unstructured.Unstructured{}
		crd.SetAPIVersion("apiextensions.k8s.io/v1")
		crd.SetKind("CustomResourceDefinition")
		if err := env.Client.Get(t.Context(), client.ObjectKey{Name: name}, crd); err != nil {
			t.Errorf("CRD %s: %v", name, err)
		}
	}
}

// TestMeshSchemasBite: the dry runs of TestManifestsAreAccepted refuse what the upstream schemas
// refuse, so a mesh snippet that passes is one its project accepts.
func TestMeshSchemasBite(t *testing.T) {
	for name, tc := range map[string]struct {
		reason   string
		manifest string
	}{
		"SecurityPolicy unknown field": {
			reason: "strict field validation: a misspelt extAuth field is refused, not dropped",
			manifest: `{"apiVersion":"gateway.envoyproxy.io/v1alpha1","kind":"SecurityPolicy","metadata":{"name":"x","namespace":"default"},
"spec":{"targetRefs":[{"group":"gateway.networking.k8s.io","kind":"HTTPRoute","name":"r"}],
"extAuth":{"grpc":{"backendRefs":[{"name":"tokenkeeper","port":9001}]},"contextExtension":[]}}}`,
		},
		"SecurityPolicy context extension with value and valueRef": {
			reason: "Envoy Gateway's CEL rule: exactly one of value or valueRef",
			manifest: `{"apiVersion":"gateway.envoyproxy.io/v1alpha1","kind":"SecurityPolicy","metadata":{"name":"x","namespace":"default"},
"spec":{"targetRefs":[{"group":"gateway.networking.k8s.io","kind":"HTTPRoute","name":"r"}],
"extAuth":{"grpc":{"backendRefs":[{"name":"tokenkeeper","port":9001}]},
"contextExtensions":[{"name":"tokenkeeper.io/validator","type":"Value","value":"a/b","valueRef":{"group":"","kind":"ConfigMap","name":"c","key":"k"}}]}}}`,
		},
		"ExtensionService unknown protocol": {
			reason:   "Contour's enum of protocols",
			manifest: `{"apiVersion":"projectcontour.io/v1alpha1","kind":"ExtensionService","metadata":{"name":"x","namespace":"default"},"spec":{"protocol":"grpc","services":[{"name":"s","port":1}]}}`,
		},
		"AuthorizationPolicy unknown action": {
			reason:   "Istio's enum of actions",
			manifest: `{"apiVersion":"security.istio.io/v1","kind":"AuthorizationPolicy","metadata":{"name":"x","namespace":"default"},"spec":{"action":"EXTERNAL","provider":{"name":"p"}}}`,
		},
	} {
		t.Run(name, func(t *testing.T) {
			obj := &unstructured.Unstructured{}
			if err := json.Unmarshal([]byte(tc.manifest), &obj.Object); err != nil {
				t.Fatal(err)
			}
			err := env.Client.Create(t.Context(), obj, client.DryRunAll, client.FieldValidation("Strict"))
			if err == nil {
				t.Fatalf("accepted; want refused: %s", tc.reason)
			}
			t.Logf("refused: %v", err)
		})
	}
	mc := &meshv1alpha1.MeshConfig{}
	if err := protojson.Unmarshal([]byte(`{"extensionProviders":[{"name":"p","envoyExtAuthzGrpc":{"service":"s","port":1,"contextExtensions":{}}}]}`), mc); err == nil {
		t.Error("a MeshConfig with a field Istio does not have was accepted")
	}
}
