package sds

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"golang.org/x/net/netutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/servingcert"
)

const (
	// maxRequestSize bounds one DiscoveryRequest: Envoy's node description (with its list of
	// extensions) is its largest part, some tens of KiB.
	maxRequestSize = 256 << 10
	// maxHeaderListSize bounds a call's metadata: the ServiceAccount token and gRPC's own.
	maxHeaderListSize = 64 << 10
	// DefaultMaxConnections bounds the connections of all clients.
	DefaultMaxConnections = 4096
	// maxStreamsPerConnection bounds the streams of one HTTP/2 connection (Envoy multiplexes its
	// SDS streams, one per secret, over one).
	maxStreamsPerConnection = 1024
	// maxConnectionAge ends every connection after this long (±10%): its streams reconnect,
	// and the client's token is reviewed again.
	maxConnectionAge = time.Hour
)

// Watch wakes the streams of a Credential whenever it or its token Secret changes, from the
// informers of the manager's cache (which holds only tokenkeeper's own Secrets).
func (s *Server) Watch(ctx context.Context, informers cache.Informers) error {
	for _, obj := range []client.Object{&corev1.Secret{}, &v1alpha1.Credential{}} {
		inf, err := informers.GetInformer(ctx, obj)
		if err != nil {
			return fmt.Errorf("watching %T for SDS: %w", obj, err)
		}
		if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc:    s.changed,
			UpdateFunc: func(_, obj any) { s.changed(obj) },
			DeleteFunc: s.changed,
		}); err != nil {
			return fmt.Errorf("watching %T for SDS: %w", obj, err)
		}
	}
	return nil
}

// changed notifies the streams of the Credential obj is or whose token Secret obj is.
func (s *Server) changed(obj any) {
	if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	switch o := obj.(type) {
	case *v1alpha1.Credential:
		s.Notify(types.NamespacedName{Namespace: o.Namespace, Name: o.Name})
	case *corev1.Secret:
		if o.Labels[v1alpha1.LabelRole] != "token" {
			return
		}
		if owner := metav1.GetControllerOf(o); owner != nil && owner.Kind == "Credential" {
			s.Notify(types.NamespacedName{Namespace: o.Namespace, Name: owner.Name})
		}
	}
}

// Listener serves a Server on its own port (long-lived streams do not fit the validation
// listener's HTTP timeouts), with TLS from CertDir's tls.crt and tls.key, reloaded as they
// change. It is a manager Runnable on every replica: it watches the cache, waits for it to sync
// (so that no stream is ever answered from a stale cache), then serves.
type Listener struct {
	Addr    string
	CertDir string
	Server  *Server
	Cache   cache.Cache
	// MaxConnections bounds the connections of all clients; 0 means DefaultMaxConnections.
	MaxConnections int
	// Plaintext serves without TLS, for tests.
	Plaintext bool
}

// NeedLeaderElection: every replica serves.
func (l *Listener) NeedLeaderElection() bool { return false }

// Start serves until ctx ends.
func (l *Listener) Start(ctx context.Context) error {
	if l.Server.auth.Audience == "" {
		return errors.New("SDS needs an audience for its clients' ServiceAccount tokens")
	}
	if err := l.Server.Watch(ctx, l.Cache); err != nil {
		return err
	}
	if !l.Cache.WaitForCacheSync(ctx) {
		return errors.New("the cache did not sync: not serving SDS")
	}
	ln, err := net.Listen("tcp", l.Addr)
	if err != nil {
		return fmt.Errorf("listening for SDS: %w", err)
	}
	opts := ServerOptions()
	if !l.Plaintext {
		cfg, err := servingcert.TLSConfig(ctx, l.CertDir)
		if err != nil {
			_ = ln.Close()
			return fmt.Errorf("SDS: %w", err)
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(cfg)))
	}
	g := grpc.NewServer(opts...)
	secretv3.RegisterSecretDiscoveryServiceServer(g, l.Server)
	maxConns := l.MaxConnections
	if maxConns <= 0 {
		maxConns = DefaultMaxConnections
	}
	logf.FromContext(ctx).Info("serving SDS", "addr", ln.Addr().String(), "tls", !l.Plaintext, "audience", l.Server.auth.Audience,
		"maxStreams", l.Server.opts.MaxStreams, "maxStreamsPerServiceAccount", l.Server.opts.MaxStreamsPerServiceAccount)
	errc := make(chan error, 1)
	go func() { errc <- g.Serve(netutil.LimitListener(ln, maxConns)) }()
	select {
	case <-ctx.Done():
		g.Stop() // streams never end by themselves: Envoy reconnects to another replica
		return nil
	case err := <-errc:
		return err
	}
}

// ServerOptions bound what one client may hold of a gRPC server serving SDS: message size,
// streams per connection, handshake time, idle and old connections, keepalive pings.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(maxRequestSize),
		grpc.MaxHeaderListSize(maxHeaderListSize),
		grpc.MaxConcurrentStreams(maxStreamsPerConnection),
		grpc.ConnectionTimeout(10 * time.Second),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle: 5 * time.Minute, MaxConnectionAge: maxConnectionAge, MaxConnectionAgeGrace: time.Minute,
			Time: 2 * time.Minute, Timeout: 20 * time.Second,
		}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	}
}
