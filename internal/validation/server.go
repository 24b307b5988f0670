package validation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	authnv1 "k8s.io/api/authentication/v1"
	authnv1beta1 "k8s.io/api/authentication/v1beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/tokenkeeper/tokenkeeper/internal/servingcert"
)

// maxReviewSize caps a TokenReview request body.
const maxReviewSize = 64 << 10

// Server serves every TokenValidator: /validate/{namespace}/{name} for forward auth (nginx
// auth_request, Traefik forwardAuth, Envoy ext_authz in HTTP mode) and
// /tokenreview/{namespace}/{name} for kube-apiserver's webhook token authenticator.
type Server struct {
	mu         sync.RWMutex
	validators map[types.NamespacedName]*entry
	mux        *http.ServeMux
}

// entry is a validator with its metrics bound to its labels once, not per request.
type entry struct {
	*Validator
	name     string
	allowed  prometheus.Counter
	duration prometheus.Observer
}

// NewServer returns an empty Server; the TokenValidator reconciler fills it.
func NewServer() *Server {
	s := &Server{validators: map[types.NamespacedName]*entry{}, mux: http.NewServeMux()}
	s.mux.HandleFunc("/validate/{namespace}/{name}", s.validate)
	// Envoy's HTTP ext_authz appends the client's path to path_prefix: the validator is the same
	// whatever follows its name.
	s.mux.HandleFunc("/validate/{namespace}/{name}/{path...}", s.validate)
	s.mux.HandleFunc("POST /tokenreview/{namespace}/{name}", s.tokenReview)
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	return s
}

// Set installs (or replaces) the validator of a TokenValidator.
func (s *Server) Set(key types.NamespacedName, v *Validator) {
	name := key.String()
	hits := map[string]prometheus.Counter{
		"verified": ValidationCacheHits.WithLabelValues(name, "verified"),
		"negative": ValidationCacheHits.WithLabelValues(name, "negative"),
	}
	v.OnCacheHit = func(kind string) { hits[kind].Inc() }
	e := &entry{Validator: v, name: name, allowed: Validations.WithLabelValues(name, "allowed", "ok"),
		duration: ValidationDuration.WithLabelValues(name)}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.validators[key] = e
}

// Delete removes a TokenValidator's validator.
func (s *Server) Delete(key types.NamespacedName) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.validators, key)
}

func (s *Server) get(r *http.Request) *entry {
	return s.lookup(types.NamespacedName{Namespace: r.PathValue("namespace"), Name: r.PathValue("name")})
}

// lookup is the validator of a TokenValidator, nil when there is none.
func (s *Server) lookup(key types.NamespacedName) *entry {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.validators[key]
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

func (s *Server) validate(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	v := s.get(r)
	if v == nil {
		http.Error(w, "no such TokenValidator", http.StatusNotFound)
		return
	}
	id, d := v.check(r.Context(), r.Header["Authorization"], start)
	if d != nil {
		w.Header().Set("WWW-Authenticate", d.Challenge())
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(d.Status)
		_ = json.NewEncoder(w).Encode(d.fields())
		return
	}
	h := w.Header()
	for k, val := range id.ResponseHeader() {
		h[k] = val
	}
	w.WriteHeader(http.StatusOK)
}

// tokenReview answers authentication.k8s.io/v1 and v1beta1 TokenReviews.
func (s *Server) tokenReview(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	v := s.get(r)
	if v == nil {
		http.Error(w, "no such TokenValidator", http.StatusNotFound)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxReviewSize+1))
	if err != nil || len(body) > maxReviewSize {
		http.Error(w, "TokenReview too large or unreadable", http.StatusBadRequest)
		return
	}
	var review authnv1.TokenReview
	if err := json.Unmarshal(body, &review); err != nil || review.Spec.Token == "" || review.Kind != "TokenReview" ||
		(review.APIVersion != authnv1.SchemeGroupVersion.String() && review.APIVersion != authnv1beta1.SchemeGroupVersion.String()) {
		http.Error(w, "not an authentication.k8s.io/v1 or v1beta1 TokenReview", http.StatusBadRequest)
		return
	}
	id, d := v.AuthenticateToken(r.Context(), review.Spec.Token)
	v.observe(d, start)
	review.Spec.Token = "" // never echo the token back
	review.Status = authnv1.TokenReviewStatus{}
	audiences := review.Spec.Audiences
	if d == nil && len(audiences) > 0 {
		// The API server asks for these audiences: confirm only those the token carries.
		audiences = slices.DeleteFunc(slices.Clone(audiences), func(a string) bool { return !slices.Contains(id.Audiences, a) })
		if len(audiences) == 0 {
			d = &Denial{Description: "token audiences do not match the requested audiences"}
		}
	}
	if d != nil {
		review.Status.Error = d.Description
	} else {
		review.Status.Authenticated = true
		review.Status.User = authnv1.UserInfo{Username: id.Username, UID: id.Subject, Groups: id.Groups}
		review.Status.Audiences = audiences
	}
	var out any = &review
	if review.APIVersion == authnv1beta1.SchemeGroupVersion.String() {
		// v1beta1 has the same shape.
		out = map[string]any{"apiVersion": review.APIVersion, "kind": "TokenReview", "metadata": metav1.ObjectMeta{}, "status": review.Status}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// serverLog hands the http.Server's own messages to the logger; TLS handshake errors (clients
// that hang up, connections given up under a flood) only at V(1), so that a flood does not flood
// the log too.
type serverLog struct{ logr.Logger }

func (s serverLog) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	if strings.HasPrefix(msg, "http: TLS handshake error") {
		s.V(1).Info(msg)
	} else {
		s.Info(msg)
	}
	return len(p), nil
}

// check is the forward-auth decision, the same over HTTP and gRPC: the request's Authorization
// header values validated, and the result counted.
func (e *entry) check(ctx context.Context, authorization []string, start time.Time) (*Identity, *Denial) {
	id, d := e.Authenticate(ctx, authorization)
	e.observe(d, start)
	return id, d
}

// fields are a denial's JSON response body, as RFC 6750 errors are usually written.
func (d *Denial) fields() map[string]string {
	return map[string]string{"error": d.Code, "error_description": d.Description}
}

func (e *entry) observe(d *Denial, start time.Time) {
	if d == nil {
		e.allowed.Inc()
	} else {
		Validations.WithLabelValues(e.name, "denied", d.Reason).Inc()
	}
	e.duration.Observe(time.Since(start).Seconds())
}

// MaxConnections bounds the connections one replica's validation endpoint holds open; when it is
// reached, a new connection takes the place of an idle one (of the client holding the most), or
// waits to be accepted when none is idle.
const MaxConnections = 1024

// DefaultMaxConnectionsPerClient bounds the connections one client (remote IP address) holds
// open: a client at its limit that opens another loses its oldest idle one.
const DefaultMaxConnectionsPerClient = 256

// Listener runs the Server on its own port, with TLS from CertDir (tls.crt, tls.key, reloaded
// when they change) or plain HTTP when CertDir is empty. It runs on every replica.
type Listener struct {
	Addr    string
	CertDir string
	Handler http.Handler
	// MaxConnectionsPerClient bounds the connections of one remote IP address; 0 means
	// DefaultMaxConnectionsPerClient. Ingress controllers and API servers each call from their
	// pods' addresses, so this is how many connections one of their pods may keep.
	MaxConnectionsPerClient int
	// H2C also serves plaintext HTTP/2 (prior knowledge), for gRPC clients such as an Envoy
	// sidecar on the same host; only without CertDir.
	H2C bool
	// maxConnections overrides MaxConnections, for tests.
	maxConnections int
}

// NeedLeaderElection: every replica serves validations.
func (l *Listener) NeedLeaderElection() bool { return false }

// Start serves until ctx ends.
func (l *Listener) Start(ctx context.Context) error {
	ln, err := net.Listen("tcp", l.Addr)
	if err != nil {
		return fmt.Errorf("listening for token validation: %w", err)
	}
	return l.serve(ctx, ln)
}

// serve serves on ln until ctx ends.
func (l *Listener) serve(ctx context.Context, ln net.Listener) error {
	maxConns, perClient := MaxConnections, DefaultMaxConnectionsPerClient
	if l.maxConnections > 0 {
		maxConns = l.maxConnections
	}
	if l.MaxConnectionsPerClient > 0 {
		perClient = l.MaxConnectionsPerClient
	}
	// Connections are bounded in all and per client, idle ones (and ones still without a request)
	// given up first; and every phase of a connection is bounded in time, so slow or idle clients
	// cannot pile up.
	guard := newConnGuard(ln, maxConns, perClient)
	srv := &http.Server{Addr: l.Addr, Handler: l.Handler, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 15 * time.Second, IdleTimeout: 60 * time.Second, MaxHeaderBytes: 16 << 10, ConnState: guard.ConnState,
		ErrorLog: log.New(serverLog{logf.FromContext(ctx).WithName("validation-server")}, "", 0)}
	if l.H2C && l.CertDir == "" {
		srv.Protocols = new(http.Protocols)
		srv.Protocols.SetHTTP1(true)
		srv.Protocols.SetUnencryptedHTTP2(true)
	}
	ln = guard
	errc := make(chan error, 1)
	go func() {
		if l.CertDir == "" {
			errc <- srv.Serve(ln)
			return
		}
		cfg, err := servingcert.TLSConfig(ctx, l.CertDir)
		if err != nil {
			errc <- err
			return
		}
		srv.TLSConfig = cfg
		errc <- srv.ServeTLS(ln, "", "")
	}()
	logf.FromContext(ctx).Info("serving token validation", "addr", ln.Addr().String(), "tls", l.CertDir != "",
		"maxConnections", maxConns, "maxConnectionsPerClient", guard.perClient)
	select {
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return srv.Shutdown(shutdown) //nolint:contextcheck // the manager's context is already done
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	}
}
