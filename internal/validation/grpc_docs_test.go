package validation

import (
	"os"
	"regexp"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3" // resolves the Router in the snippet's Any
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"
)

// envoyGRPCDoc is the page whose Envoy snippets must stay valid Envoy configuration.
const envoyGRPCDoc = "../../docs/validation/envoy-grpc.md"

// docSnippet is the ```text block after the marker <!-- envoy-grpc: NAME --> in the page.
func docSnippet(t *testing.T, page []byte, name string) []byte {
	t.Helper()
	m := regexp.MustCompile("(?s)<!-- envoy-grpc: " + regexp.QuoteMeta(name) + " -->\n```text\n(.*?)\n```").FindSubmatch(page)
	if m == nil {
		t.Fatalf("%s has no ```text block marked <!-- envoy-grpc: %s -->", envoyGRPCDoc, name)
	}
	return m[1]
}

// decodeEnvoy reads a YAML snippet as Envoy does (YAML → JSON → protojson, unknown fields refused)
// into msg, and applies the API's own validation rules.
func decodeEnvoy(t *testing.T, snippet []byte, msg proto.Message) {
	t.Helper()
	js, err := yaml.YAMLToJSON(snippet)
	if err != nil {
		t.Fatalf("not YAML: %v", err)
	}
	if err := protojson.Unmarshal(js, msg); err != nil {
		t.Fatalf("not a %T: %v", msg, err)
	}
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
	if v, ok := any(msg).(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			t.Fatalf("an invalid %T: %v", msg, err)
		}
	}
	return msg
}

// The plain Envoy configuration of docs/validation/envoy-grpc.md is Envoy configuration: the
// filter in gRPC mode with the V3 transport, routes naming their TokenValidator in
// context_extensions, and an HTTP/2 TLS cluster offering h2, calling the TLS gRPC port.
func TestEnvoyGRPCDocSnippets(t *testing.T) {
	page, err := os.ReadFile(envoyGRPCDoc)
	if err != nil {
		t.Fatal(err)
	}

	var listener anypb.Any
	decodeEnvoy(t, docSnippet(t, page, "HttpConnectionManager"), &listener)
	hcm := unpack(t, &listener, &hcmv3.HttpConnectionManager{})
	var filter *extauthzv3.ExtAuthz
	for _, f := range hcm.GetHttpFilters() {
		if f.GetName() == "envoy.filters.http.ext_authz" {
			filter = unpack(t, f.GetTypedConfig(), &extauthzv3.ExtAuthz{})
		}
	}
	switch {
	case filter == nil:
		t.Fatal("no envoy.filters.http.ext_authz filter")
	case filter.GetGrpcService().GetEnvoyGrpc().GetClusterName() != "tokenkeeper":
		t.Errorf("the filter calls %v, want the gRPC cluster tokenkeeper", filter.GetGrpcService())
	case filter.GetTransportApiVersion().String() != "V3":
		t.Errorf("transport_api_version %v, want V3", filter.GetTransportApiVersion())
	case filter.GetFailureModeAllow():
		t.Error("failure_mode_allow lets requests through when tokenkeeper is down")
	}
	named, disabled := 0, 0
	for _, vh := range hcm.GetRouteConfig().GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			cfg, ok := r.GetTypedPerFilterConfig()["envoy.filters.http.ext_authz"]
			if !ok {
				t.Errorf("route %v has no ext_authz settings", r.GetMatch())
				continue
			}
			per := unpack(t, cfg, &extauthzv3.ExtAuthzPerRoute{})
			if per.GetDisabled() {
				disabled++
				continue
			}
			ref := per.GetCheckSettings().GetContextExtensions()[ValidatorContextKey]
			if _, err := ParseValidatorRef(ref); err != nil {
				t.Errorf("route %v: %v", r.GetMatch(), err)
			}
			named++
		}
	}
	if named == 0 || disabled == 0 {
		t.Errorf("%d routes name a TokenValidator and %d turn checks off, want both shown", named, disabled)
	}

	var cluster clusterv3.Cluster
	decodeEnvoy(t, docSnippet(t, page, "Cluster"), &cluster)
	if cluster.GetName() != filter.GetGrpcService().GetEnvoyGrpc().GetClusterName() {
		t.Errorf("cluster %q is not the one the filter calls", cluster.GetName())
	}
	opts := unpack(t, cluster.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"], &upstreamhttpv3.HttpProtocolOptions{})
	if opts.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
		t.Error("the cluster does not speak HTTP/2, which gRPC needs")
	}
	tlsCtx := unpack(t, cluster.GetTransportSocket().GetTypedConfig(), &tlsv3.UpstreamTlsContext{})
	if alpn := tlsCtx.GetCommonTlsContext().GetAlpnProtocols(); len(alpn) != 1 || alpn[0] != "h2" {
		t.Errorf("alpn_protocols %v: tokenkeeper's TLS port speaks HTTP/2 only to clients offering h2", alpn)
	}
	if port := cluster.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress().GetPortValue(); port != 9002 {
		t.Errorf("the cluster calls port %d, not the TLS gRPC port 9002 (extAuthz.tlsPort) the page names", port)
	}
}
