package validation

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/stats"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
)

// GRPCListener serves the ext_authz Authorization service alone on grpc-go's own transport: over
// TLS with CertDir's certificate (the validation port's tls.crt and tls.key, reloaded as they
// change), for a proxy that originates TLS; or, without CertDir, in plaintext HTTP/2 (h2c), for an
// Envoy on the same node or behind a mesh whose mTLS protects the hop. grpc-go's transport
// batches its frames where net/http's HTTP/2 server (which the TLS validation port keeps, so that
// one port serves gRPC, /validate and /tokenreview) writes each one: about twice the Checks per
// second (make bench-grpc).
//
// Its bounds are the validation port's: connections in all and per client (a connection without
// a call in flight is the first given up), the request size, the header list size, a connection
// that has not completed its handshake (TLS, when it has one, and HTTP/2) closed after 5 s, an
// idle one after a minute. Over TLS it speaks TLS 1.2 or later and ALPN h2 only.
type GRPCListener struct {
	Addr string
	// CertDir holds tls.crt and tls.key: TLS when set, h2c when empty.
	CertDir  string
	ExtAuthz *ExtAuthz
	// MaxConnectionsPerClient bounds the connections of one remote IP address; 0 means
	// DefaultMaxConnectionsPerClient.
	MaxConnectionsPerClient int
	// maxConnections overrides MaxConnections, for tests.
	maxConnections int
	// handshakeTimeout overrides grpcHandshakeTimeout, for tests.
	handshakeTimeout time.Duration
	// conns is the serving listener, for tests.
	conns *grpcConns
}

// grpcHandshakeTimeout bounds a new connection's handshakes, TLS and HTTP/2 both: grpc-go reads
// them under one deadline.
const grpcHandshakeTimeout = 5 * time.Second

// NeedLeaderElection: every replica serves validations.
func (l *GRPCListener) NeedLeaderElection() bool { return false }

// Start serves until ctx ends.
func (l *GRPCListener) Start(ctx context.Context) error {
	ln, err := net.Listen("tcp", l.Addr)
	if err != nil {
		return fmt.Errorf("listening for ext_authz: %w", err)
	}
	return l.serve(ctx, ln)
}

func (l *GRPCListener) serve(ctx context.Context, ln net.Listener) error {
	maxConns, perClient := MaxConnections, DefaultMaxConnectionsPerClient
	if l.maxConnections > 0 {
		maxConns = l.maxConnections
	}
	if l.MaxConnectionsPerClient > 0 {
		perClient = l.MaxConnectionsPerClient
	}
	handshake := grpcHandshakeTimeout
	if l.handshakeTimeout > 0 {
		handshake = l.handshakeTimeout
	}
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(maxCheckRequestSize),
		grpc.MaxHeaderListSize(16 << 10),
		grpc.MaxConcurrentStreams(256),
		grpc.ConnectionTimeout(handshake), // the TLS handshake (in ServerHandshake) and the HTTP/2 preface
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: time.Minute}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	}
	transport := "h2c"
	if l.CertDir != "" {
		cfg, err := servingTLS(ctx, l.CertDir)
		if err != nil {
			_ = ln.Close()
			return fmt.Errorf("ext_authz over TLS: %w", err)
		}
		cfg.NextProtos = []string{"h2"}
		opts, transport = append(opts, grpc.Creds(credentials.NewTLS(cfg))), "TLS"
	}
	conns := &grpcConns{guard: newConnGuard(ln, maxConns, perClient), byAddr: map[string]*grpcConn{}}
	l.conns = conns
	g := grpc.NewServer(append(opts, grpc.StatsHandler(conns))...)
	authv3.RegisterAuthorizationServer(g, l.ExtAuthz)
	errc := make(chan error, 1)
	go func() { errc <- g.Serve(conns) }()
	logf.FromContext(ctx).Info("serving ext_authz over gRPC ("+transport+")", "addr", ln.Addr().String(), "tls", l.CertDir != "",
		"maxConnections", maxConns, "maxConnectionsPerClient", conns.guard.perClient)
	select {
	case <-ctx.Done():
		done := make(chan struct{})
		go func() { g.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			g.Stop()
		}
		return nil
	case err := <-errc:
		return err
	}
}

// grpcConns is the listener grpc-go serves from (the connection guard), and a stats handler that
// tells the guard which connections have calls in flight: those are never given up, the others
// (new, or between calls) are, first, when a client or the listener is at its limit.
type grpcConns struct {
	guard  *connGuard
	mu     sync.Mutex
	byAddr map[string]*grpcConn // by remote address, while the connection is open
}

// grpcConn is one guarded connection and its calls in flight.
type grpcConn struct {
	gc       *guardedConn
	inFlight int
}

type connKey struct{}

// Accept returns the next admitted connection, tracked until it closes: a connection that never
// completes the HTTP/2 handshake gets no ConnEnd from grpc-go, so its entry goes with its Close.
func (c *grpcConns) Accept() (net.Conn, error) {
	conn, err := c.guard.Accept()
	if err != nil {
		return nil, err
	}
	gc := conn.(*guardedConn)
	key := gc.RemoteAddr().String()
	c.mu.Lock()
	c.byAddr[key] = &grpcConn{gc: gc}
	c.mu.Unlock()
	return &trackedConn{guardedConn: gc, conns: c, key: key}, nil
}

// trackedConn forgets its entry when grpc-go closes it.
type trackedConn struct {
	*guardedConn
	conns *grpcConns
	key   string
}

func (t *trackedConn) Close() error {
	t.conns.mu.Lock()
	if e := t.conns.byAddr[t.key]; e != nil && e.gc == t.guardedConn {
		delete(t.conns.byAddr, t.key)
	}
	t.conns.mu.Unlock()
	return t.guardedConn.Close()
}

// tracked is how many connections are tracked, for tests.
func (c *grpcConns) tracked() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.byAddr)
}

func (c *grpcConns) Close() error   { return c.guard.Close() }
func (c *grpcConns) Addr() net.Addr { return c.guard.Addr() }

func (c *grpcConns) TagConn(ctx context.Context, info *stats.ConnTagInfo) context.Context {
	return context.WithValue(ctx, connKey{}, info.RemoteAddr.String())
}

func (c *grpcConns) HandleConn(ctx context.Context, s stats.ConnStats) {
	if _, ok := s.(*stats.ConnEnd); ok { // the connection's Close forgets it too; whichever comes first
		c.mu.Lock()
		delete(c.byAddr, addrOf(ctx))
		c.mu.Unlock()
	}
}

func (c *grpcConns) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }

// HandleRPC marks a connection busy while it has a call in flight, reclaimable again after.
func (c *grpcConns) HandleRPC(ctx context.Context, s stats.RPCStats) {
	delta := 0
	switch s.(type) {
	case *stats.Begin:
		delta = 1
	case *stats.End:
		delta = -1
	default:
		return
	}
	c.mu.Lock() // held while the guard learns the state, so that a later call's Active is not overtaken
	defer c.mu.Unlock()
	gconn := c.byAddr[addrOf(ctx)]
	if gconn == nil {
		return
	}
	gconn.inFlight += delta
	state := http.StateActive
	if gconn.inFlight <= 0 {
		gconn.inFlight, state = 0, http.StateIdle
	}
	c.guard.ConnState(gconn.gc, state)
}

func addrOf(ctx context.Context) string {
	s, _ := ctx.Value(connKey{}).(string)
	return s
}
