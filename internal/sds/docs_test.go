package sds

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	grpccredentialv3 "github.com/envoyproxy/go-control-plane/envoy/config/grpc_credential/v3"
	credentialinjectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/credential_injector/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3" // resolves the Router in the snippet's Any
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	genericv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/http/injected_credentials/generic/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"
)

// sdsDoc is the page whose Envoy and Envoy Gateway configuration must stay valid.
const sdsDoc = "../../docs/delivery/envoy-sds.md"

// snippets are the ```text blocks after the marker <!-- envoy-sds: NAME --> in the page.
func snippets(t *testing.T, page []byte, name string) [][]byte {
	t.Helper()
	var out [][]byte
	for _, m := range regexp.MustCompile("(?s)<!-- envoy-sds: "+regexp.QuoteMeta(name)+" -->\n```text\n(.*?)\n```").FindAllSubmatch(page, -1) {
		out = append(out, m[1])
	}
	if len(out) == 0 {
		t.Fatalf("%s has no ```text block marked <!-- envoy-sds: %s -->", sdsDoc, name)
	}
	return out
}

// decodeJSON reads JSON as Envoy does (protojson, unknown fields refused) into msg, and applies
// the API's own validation rules.
func decodeJSON(t *testing.T, js []byte, msg proto.Message) {
	t.Helper()
	if err := protojson.Unmarshal(js, msg); err != nil {
		t.Fatalf("not a %T: %v", msg, err)
	}
	validate(t, msg)
}

func validate(t *testing.T, msg proto.Message) {
	t.Helper()
	if v, ok := msg.(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			t.Fatalf("an invalid %T: %v", msg, err)
		}
	}
}

func unpack[M proto.Message](t *testing.T, a *anypb.Any, msg M) M {
	t.Helper()
	if err := a.UnmarshalTo(msg); err != nil {
		t.Fatalf("%s: %v", a.GetTypeUrl(), err)
	}
	validate(t, msg)
	return msg
}

// checkInjector checks a credential injector filter as the page configures it: a generic
// credential named as tokenkeeper names resources, fetched over gRPC from the SDS port with the
// projected token as Bearer metadata.
func checkInjector(t *testing.T, f *hcmv3.HttpFilter) {
	t.Helper()
	if f.GetName() != "envoy.filters.http.credential_injector" {
		t.Fatalf("filter %s, want the credential injector", f.GetName())
	}
	ci := unpack(t, f.GetTypedConfig(), &credentialinjectorv3.CredentialInjector{})
	if ci.GetCredential().GetName() != "envoy.http.injected_credentials.generic" {
		t.Fatalf("credential %s, want the generic one", ci.GetCredential().GetName())
	}
	g := unpack(t, ci.GetCredential().GetTypedConfig(), &genericv3.Generic{})
	if _, err := parseResource(g.GetCredential().GetName()); err != nil {
		t.Fatal(err)
	}
	src := g.GetCredential().GetSdsConfig()
	if src.GetResourceApiVersion() != corev3.ApiVersion_V3 || src.GetApiConfigSource().GetApiType() != corev3.ApiConfigSource_GRPC ||
		src.GetApiConfigSource().GetTransportApiVersion() != corev3.ApiVersion_V3 {
		t.Fatalf("the SDS config is not gRPC, V3: %v", src)
	}
	services := src.GetApiConfigSource().GetGrpcServices()
	if len(services) != 1 {
		t.Fatalf("%d gRPC services, want 1", len(services))
	}
	gg := services[0].GetGoogleGrpc()
	if !strings.HasPrefix(gg.GetTargetUri(), "tokenkeeper.tokenkeeper-system.svc:") || gg.GetChannelCredentials().GetSslCredentials().GetRootCerts().GetFilename() == "" {
		t.Fatalf("the SDS service %s is not tokenkeeper's Service over TLS", gg.GetTargetUri())
	}
	if gg.GetCredentialsFactoryName() != "envoy.grpc_credentials.file_based_metadata" || len(gg.GetCallCredentials()) != 1 {
		t.Fatal("the SDS service does not present the ServiceAccount token with the file-based call credentials")
	}
	plugin := gg.GetCallCredentials()[0].GetFromPlugin()
	md := unpack(t, plugin.GetTypedConfig(), &grpccredentialv3.FileBasedMetadataConfig{})
	if plugin.GetName() != "envoy.grpc_credentials.file_based_metadata" || md.GetHeaderKey() != "authorization" || md.GetHeaderPrefix() != "Bearer " ||
		md.GetSecretData().GetFilename() != "/var/run/secrets/tokenkeeper/token" {
		t.Fatalf("the call credentials send %s: %s<%s>, want authorization: Bearer <the projected token>", plugin.GetName(),
			md.GetHeaderKey(), md.GetSecretData().GetFilename())
	}
}

// The plain Envoy configuration of docs/delivery/envoy-sds.md is Envoy configuration, and the
// projected token it reads is for the audience the manager checks by default.
func TestEnvoySDSDocSnippets(t *testing.T) {
	page, err := os.ReadFile(sdsDoc)
	if err != nil {
		t.Fatal(err)
	}
	js, err := yaml.YAMLToJSON(snippets(t, page, "HttpConnectionManager")[0])
	if err != nil {
		t.Fatal(err)
	}
	var a anypb.Any
	decodeJSON(t, js, &a)
	hcm := unpack(t, &a, &hcmv3.HttpConnectionManager{})
	filters := hcm.GetHttpFilters()
	if len(filters) != 2 || filters[1].GetName() != "envoy.filters.http.router" {
		t.Fatal("want the credential injector, then the router")
	}
	checkInjector(t, filters[0])

	if want := "audience: " + DefaultAudience; strings.Count(string(page), want) != 2 {
		t.Fatalf("the Deployment and the EnvoyProxy must project a token with %q", want)
	}
	values, err := os.ReadFile("../../charts/tokenkeeper/values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(values), "  audience: "+DefaultAudience+"\n") {
		t.Fatalf("the chart's sds.audience is not %s", DefaultAudience)
	}
}

// The Envoy Gateway manifests of the page are accepted by Envoy Gateway's CRDs (from its pinned
// Go module), and the filter the EnvoyPatchPolicy adds is the same Envoy configuration.
func TestEnvoyGatewaySDSManifests(t *testing.T) {
	page, err := os.ReadFile(sdsDoc)
	if err != nil {
		t.Fatal(err)
	}
	dir := envoyGatewayModule(t)
	gen := filepath.Join(dir, "charts", "gateway-helm", "charts", "crds", "crds", "generated")
	if _, err := envtest.InstallCRDs(env.Config, envtest.CRDInstallOptions{ErrorIfPathMissing: true, Paths: []string{
		filepath.Join(gen, "gateway.envoyproxy.io_httproutefilters.yaml"),
		filepath.Join(gen, "gateway.envoyproxy.io_envoyproxies.yaml"),
		filepath.Join(gen, "gateway.envoyproxy.io_envoypatchpolicies.yaml"),
	}}); err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	for _, snippet := range snippets(t, page, "manifest") {
		obj := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(snippet, &obj.Object); err != nil {
			t.Fatal(err)
		}
		kinds[obj.GetKind()] = true
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: obj.GetNamespace()}}
		if err := env.Client.Create(t.Context(), ns); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
		if err := env.Client.Create(t.Context(), obj, client.DryRunAll, client.FieldValidation("Strict")); err != nil {
			t.Fatalf("Envoy Gateway's CRD refuses %s %s: %v", obj.GetKind(), obj.GetName(), err)
		}
		if obj.GetKind() != "EnvoyPatchPolicy" {
			continue
		}
		patches, _, _ := unstructured.NestedSlice(obj.Object, "spec", "jsonPatches")
		if len(patches) != 1 {
			t.Fatalf("%d JSON patches, want 1", len(patches))
		}
		value, _, _ := unstructured.NestedMap(patches[0].(map[string]any), "operation", "value")
		js, err := json.Marshal(value)
		if err != nil {
			t.Fatal(err)
		}
		f := &hcmv3.HttpFilter{}
		decodeJSON(t, js, f)
		checkInjector(t, f)
	}
	for _, k := range []string{"HTTPRouteFilter", "EnvoyProxy", "EnvoyPatchPolicy"} {
		if !kinds[k] {
			t.Errorf("the page has no %s manifest", k)
		}
	}
}

// envoyGatewayModule is the directory of Envoy Gateway's module in the Go module cache (the
// version test/docs installs its SecurityPolicy CRD from), downloaded once if missing.
func envoyGatewayModule(t *testing.T) string {
	t.Helper()
	cmd := exec.Command("go", "mod", "download", "-json", "github.com/envoyproxy/gateway@v1.9.1")
	cmd.Dir = os.TempDir() // outside tokenkeeper's module: its go.mod and go.sum stay as they are
	cmd.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off")
	out, err := cmd.Output()
	var info struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &info); jerr != nil || info.Error != "" || info.Dir == "" {
		t.Fatalf("go mod download github.com/envoyproxy/gateway: %v %s", err, info.Error)
	}
	return info.Dir
}
