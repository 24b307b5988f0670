package sds

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"github.com/go-logr/logr"
	"golang.org/x/time/rate"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
)

// Defaults of Options.
const (
	DefaultAudience                    = "tokenkeeper.io/sds"
	DefaultMaxStreams                  = 10000
	DefaultMaxStreamsPerServiceAccount = 512
	DefaultMaxResourcesPerRequest      = 16
	DefaultRequestsPerSecond           = 5
	DefaultRequestBurst                = 20
	DefaultNACKBackoff                 = time.Second
	DefaultMaxNACKBackoff              = time.Minute
	// maxTokenSize bounds the ServiceAccount token a client presents.
	maxTokenSize = 16 << 10
	// reviewTimeout bounds one TokenReview.
	reviewTimeout = 10 * time.Second
)

// Options bound what clients may ask of a Server; zero values take the defaults.
type Options struct {
	// MaxStreams bounds the open streams (and fetches in progress) of all clients.
	MaxStreams int
	// MaxStreamsPerServiceAccount bounds those of one ServiceAccount: Envoy opens one stream per
	// secret, over all its replicas.
	MaxStreamsPerServiceAccount int
	// MaxResourcesPerRequest bounds the resource names of one request.
	MaxResourcesPerRequest int
	// RequestsPerSecond and RequestBurst bound the requests on one stream (Envoy sends one
	// when it opens the stream and one per response); a stream past them is ended.
	RequestsPerSecond float64
	RequestBurst      int
	// NACKBackoff is how long after a NACK the current version is sent again, doubling with
	// every NACK in a row up to MaxNACKBackoff.
	NACKBackoff    time.Duration
	MaxNACKBackoff time.Duration
}

func (o Options) withDefaults() Options {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.MaxStreams, DefaultMaxStreams)
	def(&o.MaxStreamsPerServiceAccount, DefaultMaxStreamsPerServiceAccount)
	def(&o.MaxResourcesPerRequest, DefaultMaxResourcesPerRequest)
	def(&o.RequestBurst, DefaultRequestBurst)
	if o.RequestsPerSecond <= 0 {
		o.RequestsPerSecond = DefaultRequestsPerSecond
	}
	if o.NACKBackoff <= 0 {
		o.NACKBackoff = DefaultNACKBackoff
	}
	if o.MaxNACKBackoff < o.NACKBackoff {
		o.MaxNACKBackoff = max(DefaultMaxNACKBackoff, o.NACKBackoff)
	}
	return o
}

// Server is the SecretDiscoveryService: StreamSecrets and FetchSecrets (DeltaSecrets is
// unimplemented; Envoy's SDS uses the state-of-the-world protocol).
type Server struct {
	secretv3.UnimplementedSecretDiscoveryServiceServer
	reader client.Reader
	auth   *Authenticator
	opts   Options
	log    logr.Logger
	clock  clock.PassiveClock

	mu      sync.Mutex
	streams int
	perSA   map[types.NamespacedName]int
	subs    map[types.NamespacedName]map[*stream]struct{} // by Credential
}

// NewServer serves the Credentials and token Secrets reader holds (the manager's cache) to the
// ServiceAccounts auth authenticates.
func NewServer(reader client.Reader, auth *Authenticator, opts Options, log logr.Logger) *Server {
	return &Server{reader: reader, auth: auth, opts: opts.withDefaults(), log: log, clock: clock.RealClock{},
		perSA: map[types.NamespacedName]int{}, subs: map[types.NamespacedName]map[*stream]struct{}{}}
}

// errDenied answers every resource a caller may not fetch, whether or not its Credential exists.
func errDenied(r resource) error {
	return status.Errorf(codes.PermissionDenied, "%s is not a Credential this ServiceAccount may fetch (spec.delivery.sds.serviceAccounts)", r.name)
}

// authenticate reads the caller's ServiceAccount from its authorization metadata.
func (s *Server) authenticate(ctx context.Context) (types.NamespacedName, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	values := md.Get("authorization")
	if len(values) != 1 {
		return types.NamespacedName{}, status.Error(codes.Unauthenticated, "send one authorization metadata entry: Bearer <ServiceAccount token>")
	}
	scheme, token, ok := strings.Cut(values[0], " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" || len(token) > maxTokenSize {
		return types.NamespacedName{}, status.Error(codes.Unauthenticated, "send one authorization metadata entry: Bearer <ServiceAccount token>")
	}
	rctx, cancel := context.WithTimeout(ctx, reviewTimeout)
	defer cancel()
	sa, err := s.auth.ServiceAccount(rctx, token)
	switch {
	case errors.Is(err, ErrNotAuthenticated):
		return types.NamespacedName{}, status.Errorf(codes.Unauthenticated, "the token is not a ServiceAccount token for audience %q", s.auth.Audience)
	case errors.Is(err, ErrBusy):
		return types.NamespacedName{}, status.Error(codes.Unavailable, err.Error())
	case err != nil:
		s.log.Error(err, "reviewing an SDS client's token")
		return types.NamespacedName{}, status.Error(codes.Unavailable, "the token cannot be reviewed now")
	}
	return sa, nil
}

// admit takes one of the caller's stream slots, ResourceExhausted when none is left.
func (s *Server) admit(sa types.NamespacedName) (release func(), err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.streams >= s.opts.MaxStreams {
		return nil, status.Errorf(codes.ResourceExhausted, "the SDS server holds its maximum of %d streams", s.opts.MaxStreams)
	}
	if s.perSA[sa] >= s.opts.MaxStreamsPerServiceAccount {
		return nil, status.Errorf(codes.ResourceExhausted, "ServiceAccount %s holds its maximum of %d streams", sa, s.opts.MaxStreamsPerServiceAccount)
	}
	s.streams++
	s.perSA[sa]++
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.streams--
			if s.perSA[sa]--; s.perSA[sa] <= 0 {
				delete(s.perSA, sa)
			}
		})
	}, nil
}

// Streams counts the open streams and fetches in progress.
func (s *Server) Streams() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.streams
}

// parseRequest reads a request's resource names.
func (s *Server) parseRequest(req *discoveryv3.DiscoveryRequest) ([]resource, error) {
	if t := req.GetTypeUrl(); t != "" && t != SecretTypeURL {
		return nil, status.Errorf(codes.InvalidArgument, "type_url %q: this server serves only %s", bounded(t), SecretTypeURL)
	}
	names := req.GetResourceNames()
	if len(names) == 0 {
		// A wildcard request: SDS resources are always named.
		return nil, status.Error(codes.InvalidArgument, "name the resources: "+ResourcePrefix+"<namespace>/<credential>[#token]")
	}
	if len(names) > s.opts.MaxResourcesPerRequest {
		return nil, status.Errorf(codes.InvalidArgument, "%d resource names: at most %d per request", len(names), s.opts.MaxResourcesPerRequest)
	}
	res := make([]resource, 0, len(names))
	for _, n := range names {
		r, err := parseResource(n)
		if err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		if !slices.ContainsFunc(res, func(o resource) bool { return o.name == n }) {
			res = append(res, r)
		}
	}
	return res, nil
}

// current is the value of one resource, for sa.
type current struct {
	name    string
	value   []byte
	version string // the token's fingerprint
	digest  [32]byte
}

// lookup reads r's current value for sa: errDenied unless the Credential lists sa, nil when it
// has no valid token to serve (none yet, or expired).
func (s *Server) lookup(ctx context.Context, sa types.NamespacedName, r resource) (*current, error) {
	cred := &v1alpha1.Credential{}
	if err := s.reader.Get(ctx, r.cred, cred); err != nil {
		if apierrors.IsNotFound(err) {
			s.log.V(1).Info("refused an SDS resource: no such Credential", "serviceAccount", sa, "resource", r.name)
			return nil, errDenied(r)
		}
		s.log.Error(err, "reading a Credential for SDS", "credential", r.cred)
		return nil, status.Error(codes.Unavailable, "the Credential cannot be read now")
	}
	if !allowed(cred, sa) {
		s.log.V(1).Info("refused an SDS resource: the Credential does not list the ServiceAccount", "serviceAccount", sa, "resource", r.name)
		return nil, errDenied(r)
	}
	sec := &corev1.Secret{}
	if err := s.reader.Get(ctx, types.NamespacedName{Namespace: cred.Namespace, Name: cred.Spec.SecretName}, sec); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		s.log.Error(err, "reading a token Secret for SDS", "credential", r.cred)
		return nil, status.Error(codes.Unavailable, "the token Secret cannot be read now")
	}
	// Only the token Secret this Credential owns: never another Secret of the same name.
	if owner := metav1.GetControllerOf(sec); owner == nil || owner.UID != cred.UID || sec.Labels[v1alpha1.LabelRole] != "token" {
		return nil, nil
	}
	token := sec.Data[v1alpha1.SecretKeyToken]
	if len(token) == 0 {
		return nil, nil
	}
	if exp, err := time.Parse(time.RFC3339, string(sec.Data[v1alpha1.SecretKeyExpiresAt])); err == nil && !s.clock.Now().Before(exp) {
		return nil, nil // never an expired token: Envoy keeps what it has until the next one
	}
	value := sec.Data[v1alpha1.SecretKeyAuthorization]
	if r.token {
		value = token
	}
	if len(value) == 0 {
		return nil, nil
	}
	return &current{name: r.name, value: value, version: Fingerprint(token), digest: sha256.Sum256(value)}, nil
}

// allowed says whether cred lists sa, of its own namespace, in spec.delivery.sds.
func allowed(cred *v1alpha1.Credential, sa types.NamespacedName) bool {
	d := cred.Spec.Delivery
	if d == nil || d.SDS == nil || sa.Namespace != cred.Namespace || !cred.DeletionTimestamp.IsZero() {
		return false
	}
	return slices.Contains(d.SDS.ServiceAccounts, sa.Name)
}

// Fingerprint is the first 16 hex digits of the SHA-256 of a token: a resource's version, the
// same as the Credential's status.tokenFingerprint.
func Fingerprint(token []byte) string {
	sum := sha256.Sum256(token)
	return hex.EncodeToString(sum[:8])
}

// lookupAll reads every resource: the first error (PermissionDenied) ends it.
func (s *Server) lookupAll(ctx context.Context, sa types.NamespacedName, res []resource) ([]*current, error) {
	out := make([]*current, 0, len(res))
	for _, r := range res {
		c, err := s.lookup(ctx, sa, r)
		if err != nil {
			return nil, err
		}
		if c != nil {
			out = append(out, c)
		}
	}
	return out, nil
}

// response is a DiscoveryResponse of the resources in cur.
func response(cur []*current, nonce string) (*discoveryv3.DiscoveryResponse, error) {
	resp := &discoveryv3.DiscoveryResponse{TypeUrl: SecretTypeURL, Nonce: nonce, VersionInfo: version(cur)}
	for _, c := range cur {
		a, err := anypb.New(&tlsv3.Secret{Name: c.name, Type: &tlsv3.Secret_GenericSecret{GenericSecret: &tlsv3.GenericSecret{
			Secret: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: c.value}}}}})
		if err != nil {
			return nil, err
		}
		resp.Resources = append(resp.Resources, a)
	}
	return resp, nil
}

// version is the version_info of a response: the token's fingerprint for one resource (as Envoy
// requests them, one per stream), else a digest of every resource's name and fingerprint.
func version(cur []*current) string {
	if len(cur) == 1 {
		return cur[0].version
	}
	h := sha256.New()
	for _, c := range cur {
		_, _ = fmt.Fprintf(h, "%s=%s\n", c.name, c.version)
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// FetchSecrets answers one request with the current resources.
func (s *Server) FetchSecrets(ctx context.Context, req *discoveryv3.DiscoveryRequest) (_ *discoveryv3.DiscoveryResponse, err error) {
	defer func() { countRefusal(err) }()
	sa, err := s.authenticate(ctx)
	if err != nil {
		return nil, err
	}
	release, err := s.admit(sa)
	if err != nil {
		return nil, err
	}
	defer release()
	res, err := s.parseRequest(req)
	if err != nil {
		return nil, err
	}
	cur, err := s.lookupAll(ctx, sa, res)
	if err != nil {
		return nil, err
	}
	if len(cur) == 0 {
		return nil, status.Error(codes.Unavailable, "no valid token yet")
	}
	return response(cur, "")
}

// stream is one StreamSecrets call.
type stream struct {
	wake chan struct{}
	keys []types.NamespacedName // the Credentials it is subscribed to
}

// subscribe makes st wake on changes of the Credentials of res, and of no others.
func (s *Server) subscribe(st *stream, res []resource) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range st.keys {
		if m := s.subs[k]; m != nil {
			delete(m, st)
			if len(m) == 0 {
				delete(s.subs, k)
			}
		}
	}
	st.keys = st.keys[:0]
	for _, r := range res {
		if s.subs[r.cred] == nil {
			s.subs[r.cred] = map[*stream]struct{}{}
		}
		s.subs[r.cred][st] = struct{}{}
		st.keys = append(st.keys, r.cred)
	}
}

// Notify wakes the streams serving a Credential: its token Secret or its spec changed.
func (s *Server) Notify(cred types.NamespacedName) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for st := range s.subs[cred] {
		select {
		case st.wake <- struct{}{}:
		default: // already woken
		}
	}
}

// StreamSecrets serves one Envoy SDS stream: the resources it names, again whenever one of
// them changes, and again after a backoff when Envoy refuses (NACKs) one.
func (s *Server) StreamSecrets(ss secretv3.SecretDiscoveryService_StreamSecretsServer) (err error) {
	defer func() { countRefusal(err) }()
	ctx := ss.Context()
	sa, err := s.authenticate(ctx)
	if err != nil {
		return err
	}
	release, err := s.admit(sa)
	if err != nil {
		return err
	}
	defer release()
	streamsOpen.Inc()
	defer streamsOpen.Dec()
	st := &stream{wake: make(chan struct{}, 1)}
	defer s.subscribe(st, nil)
	reqs, errc := make(chan *discoveryv3.DiscoveryRequest), make(chan error, 1)
	go func() {
		limit := rate.NewLimiter(rate.Limit(s.opts.RequestsPerSecond), s.opts.RequestBurst)
		for {
			req, err := ss.Recv()
			if err == nil && !limit.Allow() {
				err = status.Errorf(codes.ResourceExhausted, "more than %g requests per second on one stream", s.opts.RequestsPerSecond)
			}
			if err != nil {
				errc <- err
				return
			}
			select {
			case reqs <- req:
			case <-ctx.Done():
				return
			}
		}
	}()
	var (
		res     []resource
		names   []string
		sent    map[string][32]byte // resource name → digest of the value last sent
		nonce   string
		count   int
		backoff time.Duration
		retry   *time.Timer
		retryC  <-chan time.Time
		served  []*current // what was last sent, to keep its values out of NACK logs
	)
	defer func() {
		if retry != nil {
			retry.Stop()
		}
	}()
	// send sends the current resources when they differ from what was sent, or when forced.
	send := func(force bool, reason string) error {
		cur, err := s.lookupAll(ctx, sa, res)
		if err != nil || len(cur) == 0 {
			return err
		}
		if !force && len(cur) == len(sent) && !slices.ContainsFunc(cur, func(c *current) bool { return sent[c.name] != c.digest }) {
			return nil
		}
		count++
		nonce = strconv.Itoa(count)
		resp, err := response(cur, nonce)
		if err != nil {
			return status.Error(codes.Internal, "encoding the response")
		}
		if err := ss.Send(resp); err != nil {
			return err
		}
		responses.WithLabelValues(reason).Inc()
		sent, served = make(map[string][32]byte, len(cur)), cur
		for _, c := range cur {
			sent[c.name] = c.digest
		}
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		case <-st.wake:
			if err := send(false, reasonRotation); err != nil {
				return err
			}
		case <-retryC:
			retryC = nil
			if err := send(true, reasonRetry); err != nil {
				return err
			}
		case req := <-reqs:
			next, err := s.parseRequest(req)
			if err != nil {
				return err
			}
			nextNames := make([]string, len(next))
			for i, r := range next {
				nextNames[i] = r.name
			}
			slices.Sort(nextNames)
			if nonce != "" && req.GetResponseNonce() != nonce {
				continue // an answer to an older response: the protocol says to ignore it
			}
			if names != nil && slices.Equal(names, nextNames) {
				if d := req.GetErrorDetail(); d != nil {
					nacks.Inc()
					backoff = min(max(2*backoff, s.opts.NACKBackoff), s.opts.MaxNACKBackoff)
					s.log.Info("Envoy refused a secret; sending it again after a backoff", "serviceAccount", sa, "resources", names,
						"version", version(served), "nonce", nonce, "code", d.GetCode(), "message", redact(d.GetMessage(), served),
						"backoff", backoff)
					if retry == nil {
						retry = time.NewTimer(backoff)
					} else {
						retry.Reset(backoff)
					}
					retryC = retry.C
				} else {
					backoff = 0 // an ACK
				}
				continue
			}
			// The first request, or new resource names: subscribe, and answer at once, whatever
			// version the client says it has (it may come from a server that served a stale one).
			res, names = next, nextNames
			s.subscribe(st, res)
			retryC = nil
			if err := send(true, reasonRequest); err != nil {
				return err
			}
		}
	}
}

// redact bounds a client's error message and removes every value served from it.
func redact(msg string, served []*current) string {
	for _, c := range served {
		if len(c.value) > 0 {
			msg = strings.ReplaceAll(msg, string(c.value), "[redacted]")
		}
		if _, tok, ok := strings.Cut(string(c.value), " "); ok && tok != "" {
			msg = strings.ReplaceAll(msg, tok, "[redacted]")
		}
	}
	return bounded(msg)
}
