package validation

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/tokenkeeper/tokenkeeper/internal/servingcert"
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
	transport, creds := "h2c", insecure.NewCredentials()
	if l.CertDir != "" {
		cfg, err := servingcert.TLSConfig(ctx, l.CertDir)
		if err != nil {
			_ = ln.Close()
			return fmt.Errorf("ext_authz over TLS: %w", err)
		}
		cfg.NextProtos = []string{"h2"}
		transport, creds = "TLS", credentials.NewTLS(cfg)
	}
	conns := &grpcConns{guard: newConnGuard(ln, maxConns, perClient)}
	l.conns = conns
	g := grpc.NewServer(append(opts, grpc.Creds(connCreds{creds}), grpc.UnaryInterceptor(conns.intercept),
		// Calls run on a pool of goroutines whose stacks stay grown (a new goroutine per call grows
		// its stack again for the request's decoding: a seventh of a Check); past the pool, a new one.
		grpc.NumStreamWorkers(streamWorkers()))...)
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

// streamWorkers is the size of the pool calls run on: 16 per CPU, as many as 32 concurrent calls
// on 2 CPUs keep busy.
func streamWorkers() uint32 {
	return uint32(min(16*runtime.GOMAXPROCS(0), 4096)) //nolint:gosec // at most 4096
}

// grpcConns is the listener grpc-go serves from (the connection guard). It tells the guard which
// connections have calls in flight: those are never given up, the others (new, or between calls)
// are, first, when a client or the listener is at its limit. Each accepted connection reaches its
// calls as their peer's AuthInfo (connCreds), so a call finds its connection without a lookup; no
// stats handler, whose per-call events (metadata copied for each) cost a tenth of a Check.
type grpcConns struct {
	guard *connGuard
	open  atomic.Int64 // accepted and not yet closed
}

// grpcConn is one guarded connection and its calls in flight.
type grpcConn struct {
	*guardedConn
	conns    *grpcConns
	closed   sync.Once
	mu       sync.Mutex // held while the guard learns the state, so that a later call's Active is not overtaken
	inFlight int
}

// Accept returns the next admitted connection.
func (c *grpcConns) Accept() (net.Conn, error) {
	conn, err := c.guard.Accept()
	if err != nil {
		return nil, err
	}
	c.open.Add(1)
	return &grpcConn{guardedConn: conn.(*guardedConn), conns: c}, nil
}

func (c *grpcConn) Close() error {
	c.closed.Do(func() { c.conns.open.Add(-1) })
	return c.guardedConn.Close()
}

// calls counts a call beginning (1) or ending (-1): busy while one is in flight, reclaimable again
// after the last.
func (c *grpcConn) calls(delta int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inFlight += delta
	switch {
	case delta > 0 && c.inFlight == 1:
		c.conns.guard.ConnState(c.guardedConn, http.StateActive)
	case delta < 0 && c.inFlight <= 0:
		c.inFlight = 0
		c.conns.guard.ConnState(c.guardedConn, http.StateIdle)
	}
}

// tracked is how many connections are open, for tests.
func (c *grpcConns) tracked() int { return int(c.open.Load()) }

func (c *grpcConns) Close() error   { return c.guard.Close() }
func (c *grpcConns) Addr() net.Addr { return c.guard.Addr() }

// intercept marks the call's connection busy while the handler runs: "in flight" is the
// handler's time, not the request's arrival or the response's write around it (a unary Check
// request is one small frame, read before the handler starts). A connection given up in that
// window costs its client that one call (Envoy answers it by its failure mode); it happens only
// with the client or the listener at its connection limit.
func (c *grpcConns) intercept(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if p, ok := peer.FromContext(ctx); ok {
		if info, ok := p.AuthInfo.(connInfo); ok {
			info.conn.calls(1)
			defer info.conn.calls(-1)
		}
	}
	return handler(ctx, req)
}

// connCreds are the listener's transport credentials (TLS, or none for h2c) handing grpc-go each
// connection's grpcConn with its AuthInfo. connInfo hides the TLS AuthInfo's type from grpc-go
// (channelz shows no TLS details for these connections); nothing here reads them.
type connCreds struct {
	credentials.TransportCredentials
}

// connInfo is a connection's AuthInfo (TLS's, or h2c's) and the connection.
type connInfo struct {
	credentials.AuthInfo
	conn *grpcConn
}

func (c connCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ServerHandshake(raw)
	if err != nil {
		return nil, nil, err
	}
	if gc, ok := raw.(*grpcConn); ok {
		return conn, connInfo{info, gc}, nil
	}
	return conn, info, nil
}

func (c connCreds) Clone() credentials.TransportCredentials {
	return connCreds{c.TransportCredentials.Clone()}
}
