package validation

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
)

// ValidatorContextKey is the ext_authz context extension that names the TokenValidator checking a
// route, as namespace/name: Envoy sets it per route (check_settings.context_extensions), and so do
// Contour (authPolicy.context) and Envoy Gateway.
const ValidatorContextKey = "tokenkeeper.io/validator"

// maxCheckRequestSize bounds one CheckRequest: the request's headers and attributes, not its body
// (tokenkeeper needs none; Envoy's own default header limit is 60 KiB).
const maxCheckRequestSize = 256 << 10

// ExtAuthz answers Envoy's envoy.service.auth.v3.Authorization/Check with the Server's
// validators: the same decision, headers and metrics as /validate.
type ExtAuthz struct {
	authv3.UnimplementedAuthorizationServer
	server *Server
	// def checks requests whose route names no validator; zero for none.
	def types.NamespacedName
}

// NewExtAuthz returns the Authorization service of s, with def (namespace/name, or empty for none)
// checking requests whose route names no TokenValidator.
func NewExtAuthz(s *Server, def string) (*ExtAuthz, error) {
	a := &ExtAuthz{server: s}
	if def != "" {
		var err error
		if a.def, err = ParseValidatorRef(def); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// GRPCServer is a grpc.Server with only the Authorization service, for GRPCHandler.
func (a *ExtAuthz) GRPCServer() *grpc.Server {
	g := grpc.NewServer(grpc.MaxRecvMsgSize(maxCheckRequestSize))
	authv3.RegisterAuthorizationServer(g, a)
	return g
}

// GRPCHandler serves gRPC requests (HTTP/2 with content-type application/grpc) with g and
// everything else with h, so that one port serves /validate, /tokenreview and ext_authz.
func GRPCHandler(g *grpc.Server, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
			g.ServeHTTP(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// ParseValidatorRef reads a TokenValidator reference, namespace/name.
func ParseValidatorRef(ref string) (types.NamespacedName, error) {
	ns, name, ok := strings.Cut(ref, "/")
	if !ok || len(validation.IsDNS1123Label(ns)) > 0 || len(validation.IsDNS1123Subdomain(name)) > 0 {
		return types.NamespacedName{}, fmt.Errorf("TokenValidator reference %q is not namespace/name", ref)
	}
	return types.NamespacedName{Namespace: ns, Name: name}, nil
}

// Check decides one request Envoy holds. It never returns an error: whatever is wrong with the
// request or the configuration is a denial with its reason, which Envoy sends to the client.
func (a *ExtAuthz) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	start := time.Now()
	e, d := a.validator(req.GetAttributes().GetContextExtensions())
	if d != nil {
		return denied(d), nil
	}
	attrs := req.GetAttributes().GetRequest().GetHttp()
	if attrs == nil {
		d = deny(http.StatusForbidden, "", "malformed_check", "the CheckRequest has no HTTP request attributes")
		e.observe(d, start)
		return denied(d), nil
	}
	id, d := e.check(ctx, authorization(attrs), start)
	if d != nil {
		return denied(d), nil
	}
	ok := &authv3.OkHttpResponse{Headers: make([]*corev3.HeaderValueOption, 0, len(id.Headers))}
	for _, k := range sortedKeys(id.Headers) {
		ok.Headers = append(ok.Headers, &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: id.Headers[k]},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD})
	}
	// A forwarded claim the token lacks must not reach the service from the client instead.
	for _, h := range e.cfg.ForwardClaims {
		if h = http.CanonicalHeaderKey(h); id.Headers[h] == "" && !slices.Contains(ok.HeadersToRemove, h) {
			ok.HeadersToRemove = append(ok.HeadersToRemove, h)
		}
	}
	slices.Sort(ok.HeadersToRemove)
	return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.OK)}, HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: ok}}, nil
}

// validator is the validator the route names in its context extensions, else the default.
func (a *ExtAuthz) validator(ext map[string]string) (*entry, *Denial) {
	key := a.def
	if ref, ok := ext[ValidatorContextKey]; ok {
		var err error
		if key, err = ParseValidatorRef(ref); err != nil {
			return nil, deny(http.StatusForbidden, "", "no_validator", "the route's context extension "+ValidatorContextKey+" is not namespace/name")
		}
	}
	if key.Name == "" {
		return nil, deny(http.StatusForbidden, "", "no_validator",
			"the route names no TokenValidator (context extension "+ValidatorContextKey+") and the listener has no default")
	}
	e := a.server.lookup(key)
	if e == nil {
		return nil, deny(http.StatusForbidden, "", "no_validator", "no such TokenValidator "+key.String())
	}
	return e, nil
}

// authorization is the request's Authorization header values. Envoy sends headers either as a
// map, repeated headers joined with commas (no comma can occur in a Bearer token, so a comma is a
// second header), or, with encode_raw_headers, as a list that keeps them apart.
func authorization(attrs *authv3.AttributeContext_HttpRequest) []string {
	var values []string
	for k, v := range attrs.GetHeaders() {
		if strings.EqualFold(k, "authorization") {
			values = append(values, strings.Split(v, ",")...)
		}
	}
	for _, h := range attrs.GetHeaderMap().GetHeaders() {
		if strings.EqualFold(h.GetKey(), "authorization") {
			v := h.GetValue()
			if raw := h.GetRawValue(); len(raw) > 0 {
				v = string(raw)
			}
			values = append(values, v)
		}
	}
	for i, v := range values {
		values[i] = strings.TrimSpace(v)
	}
	return values
}

// denied is the answer Envoy sends to the client for d: its status, the RFC 6750 challenge, and
// the same JSON body /validate writes.
func denied(d *Denial) *authv3.CheckResponse {
	code, status := codes.PermissionDenied, typev3.StatusCode_Forbidden
	switch d.Status {
	case http.StatusUnauthorized:
		code, status = codes.Unauthenticated, typev3.StatusCode_Unauthorized
	case http.StatusBadRequest:
		code, status = codes.InvalidArgument, typev3.StatusCode_BadRequest
	}
	body, _ := json.Marshal(d.fields())
	header := func(k, v string) *corev3.HeaderValueOption {
		return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v}, AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD}
	}
	headers := []*corev3.HeaderValueOption{header("Content-Type", "application/json")}
	if d.Code != "" || d.Status == http.StatusUnauthorized {
		// A token's denial challenges the client; a configuration's (no validator) does not.
		headers = append(headers, header("WWW-Authenticate", d.Challenge()))
	}
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(code), Message: d.Description},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status: &typev3.HttpStatus{Code: status}, Headers: headers, Body: string(body) + "\n",
		}},
	}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
