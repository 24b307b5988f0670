//go:build ignore

// Command opa-ext-authz is the gRPC ext_authz peer of `make bench-grpc`: Open Policy Agent's Rego
// engine (github.com/open-policy-agent/opa, a pinned release from Go modules) behind Envoy's
// envoy.service.auth.v3.Authorization/Check, the way the OPA-Envoy plugin
// (github.com/open-policy-agent/opa-envoy-plugin) serves it. The plugin's own module is not served
// by the Go module proxy this project builds from, so hack/build-opa-ext-authz.sh builds this file
// instead, in a throw-away module (the `ignore` constraint keeps it out of tokenkeeper's).
//
// It does per Check what the plugin does: the CheckRequest as JSON (protojson) becomes the policy's
// input, with parsed_path and parsed_query added; one prepared query (-query) is evaluated; true
// allows (OK), anything else denies (PERMISSION_DENIED, HTTP 403). The inter-query value cache of
// io.jwt.* results is on (-jwt-cache entries), as an OPA configured for JWTs runs it:
// caching.inter_query_builtin_value_cache.named.io_jwt.max_num_entries.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"net/url"
	"os"
	"strings"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/topdown/cache"
	"github.com/open-policy-agent/opa/v1/util"
	"google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
)

type server struct {
	authv3.UnimplementedAuthorizationServer
	query rego.PreparedEvalQuery
	cache cache.InterQueryValueCache
}

func main() {
	addr := flag.String("addr", "127.0.0.1:9191", "gRPC listen address (plaintext HTTP/2)")
	policy := flag.String("policy", "policy.rego", "Rego policy file")
	data := flag.String("data", "", "JSON file loaded as data (e.g. the JWKS)")
	query := flag.String("query", "data.envoy.authz.allow", "the decision")
	jwtCache := flag.Int("jwt-cache", 10000, "entries of the io_jwt inter-query value cache; 0 turns it off")
	flag.Parse()
	ctx := context.Background()

	src, err := os.ReadFile(*policy)
	if err != nil {
		log.Fatal(err)
	}
	doc := map[string]any{}
	if *data != "" {
		raw, err := os.ReadFile(*data)
		if err != nil {
			log.Fatal(err)
		}
		if err := util.UnmarshalJSON(raw, &doc); err != nil {
			log.Fatal(err)
		}
	}
	pq, err := rego.New(rego.Query(*query), rego.Module(*policy, string(src)),
		rego.Store(inmem.NewFromObject(doc))).PrepareForEval(ctx)
	if err != nil {
		log.Fatal(err)
	}
	cfg, err := cache.ParseCachingConfig(fmt.Appendf(nil,
		`{"inter_query_builtin_value_cache":{"named":{"io_jwt":{"max_num_entries":%d}}}}`, max(*jwtCache, 1)))
	if err != nil {
		log.Fatal(err)
	}
	s := &server{query: pq}
	if *jwtCache > 0 {
		s.cache = cache.NewInterQueryValueCache(ctx, cfg)
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	g := grpc.NewServer()
	authv3.RegisterAuthorizationServer(g, s)
	log.Printf("opa-ext-authz serving %s on %s", *query, ln.Addr())
	log.Fatal(g.Serve(ln))
}

// Check evaluates the decision with the request as input.
func (s *server) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	input, err := requestToInput(req)
	if err != nil {
		return nil, err
	}
	value, err := ast.InterfaceToValue(input)
	if err != nil {
		return nil, err
	}
	opts := []rego.EvalOption{rego.EvalParsedInput(value)}
	if s.cache != nil {
		opts = append(opts, rego.EvalInterQueryBuiltinValueCache(s.cache))
	}
	rs, err := s.query.Eval(ctx, opts...)
	if err != nil {
		return nil, err
	}
	if rs.Allowed() {
		return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(code.Code_OK)},
			HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}}}, nil
	}
	return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(code.Code_PERMISSION_DENIED)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status: &typev3.HttpStatus{Code: typev3.StatusCode_Forbidden}}}}, nil
}

// requestToInput is the plugin's input: the CheckRequest as JSON, plus the path split on "/" and
// the query parsed.
func requestToInput(req *authv3.CheckRequest) (map[string]any, error) {
	raw, err := protojson.Marshal(req)
	if err != nil {
		return nil, err
	}
	var input map[string]any
	if err := util.UnmarshalJSON(raw, &input); err != nil {
		return nil, err
	}
	path := req.GetAttributes().GetRequest().GetHttp().GetPath()
	u, err := url.Parse(path)
	if err != nil {
		return nil, err
	}
	parts := []any{}
	for _, p := range strings.Split(strings.TrimLeft(u.Path, "/"), "/") {
		parts = append(parts, p)
	}
	input["parsed_path"] = parts
	q := map[string]any{}
	for k, vs := range u.Query() {
		l := make([]any, len(vs))
		for i, v := range vs {
			l[i] = v
		}
		q[k] = l
	}
	input["parsed_query"] = q
	return input, nil
}
