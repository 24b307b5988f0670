package validation

import (
	"container/list"
	"crypto/tls"
	"net"
	"net/http"
	"sync"
)

// connGuard is the validation endpoint's listener: it bounds the connections held open, in all
// and per client (remote IP), so that no client can keep others out by holding connections it
// does not use.
//
//   - A client at its own limit that opens another connection loses its oldest reclaimable one
//     (idle between requests, or accepted and still without a request: a slowloris); when it has
//     none, the new connection is closed at once.
//   - A new connection when the total is at its limit takes the place of the oldest reclaimable
//     connection of the client holding the most connections; when every connection is busy with a
//     request, it waits until one closes (as with netutil.LimitListener), and so do those behind
//     it in the kernel's backlog.
//
// The server must report connection states to ConnState. Closing an idle keep-alive connection is
// what the server does itself on IdleTimeout: clients open a new one.
type connGuard struct {
	net.Listener
	max, perClient int
	// clientOf names the client of a connection: its IP address.
	clientOf func(net.Addr) string

	mu      sync.Mutex
	freed   *sync.Cond
	total   int
	clients map[string]*connClient
	closed  bool
}

// connClient is one client's connections: how many, and the reclaimable ones, oldest first.
type connClient struct {
	n           int
	reclaimable list.List // of *guardedConn
}

// guardedConn is a connection the guard counts until it is closed.
type guardedConn struct {
	net.Conn
	g      *connGuard
	client string
	// Under g.mu: counted until released; elem is its place in its client's reclaimable list.
	released bool
	elem     *list.Element
}

func newConnGuard(ln net.Listener, maxConns, perClient int) *connGuard {
	g := &connGuard{Listener: ln, max: maxConns, perClient: min(perClient, maxConns), clientOf: remoteIP, clients: map[string]*connClient{}}
	g.freed = sync.NewCond(&g.mu)
	return g
}

// remoteIP is the IP address of addr, or addr whole when it has no port.
func remoteIP(addr net.Addr) string {
	if a, ok := addr.(*net.TCPAddr); ok {
		return a.IP.String()
	}
	host, _, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	return host
}

// Accept returns the next connection the limits admit.
func (g *connGuard) Accept() (net.Conn, error) {
	for {
		c, err := g.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if gc := g.admit(c); gc != nil {
			return gc, nil
		}
	}
}

// Close stops accepting and releases an Accept waiting for a free slot.
func (g *connGuard) Close() error {
	g.mu.Lock()
	g.closed = true
	g.freed.Broadcast()
	g.mu.Unlock()
	return g.Listener.Close()
}

// admit counts c in, making room as the limits say; nil when c was refused (and closed).
func (g *connGuard) admit(c net.Conn) *guardedConn {
	client := g.clientOf(c.RemoteAddr())
	var victims []*guardedConn
	defer func() {
		// Closed outside the lock: closing can take a while (TLS, a full send buffer).
		for _, v := range victims {
			_ = v.Conn.Close()
		}
	}()
	g.mu.Lock()
	defer g.mu.Unlock()
	if cl := g.clients[client]; cl != nil && cl.n >= g.perClient {
		v := cl.oldest()
		if v == nil {
			_ = c.Close()
			return nil
		}
		victims = append(victims, g.release(v))
	}
	for g.total >= g.max {
		if g.closed {
			_ = c.Close()
			return nil
		}
		if v := g.heaviest(); v != nil {
			victims = append(victims, g.release(v))
			continue
		}
		g.freed.Wait() // every connection is busy with a request: wait for one to end
	}
	cl := g.clients[client]
	if cl == nil {
		cl = &connClient{}
		g.clients[client] = cl
	}
	cl.n++
	g.total++
	gc := &guardedConn{Conn: c, g: g, client: client}
	gc.elem = cl.reclaimable.PushBack(gc) // new, without a request yet
	return gc
}

// oldest is the client's longest reclaimable connection, or nil.
func (cl *connClient) oldest() *guardedConn {
	if e := cl.reclaimable.Front(); e != nil {
		return e.Value.(*guardedConn)
	}
	return nil
}

// heaviest is the oldest reclaimable connection of the client with the most connections that has
// one, or nil. Called with g.mu held, only when the total is at its limit.
func (g *connGuard) heaviest() *guardedConn {
	var best *connClient
	for _, cl := range g.clients {
		if cl.reclaimable.Len() > 0 && (best == nil || cl.n > best.n) {
			best = cl
		}
	}
	if best == nil {
		return nil
	}
	return best.oldest()
}

// release stops counting gc; called with g.mu held. It returns gc, for the caller to close.
func (g *connGuard) release(gc *guardedConn) *guardedConn {
	if gc.released {
		return gc
	}
	gc.released = true
	cl := g.clients[gc.client]
	if gc.elem != nil {
		cl.reclaimable.Remove(gc.elem)
		gc.elem = nil
	}
	if cl.n--; cl.n == 0 {
		delete(g.clients, gc.client)
	}
	g.total--
	g.freed.Signal()
	return gc
}

// Close releases the connection's place.
func (gc *guardedConn) Close() error {
	gc.g.mu.Lock()
	gc.g.release(gc)
	gc.g.mu.Unlock()
	return gc.Conn.Close()
}

// ConnState is the server's http.Server.ConnState: idle connections become reclaimable, busy ones
// not; closed or hijacked ones are no longer counted by the server (a hijacked one still is, until
// its new owner closes it).
func (g *connGuard) ConnState(c net.Conn, state http.ConnState) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	gc, ok := c.(*guardedConn)
	if !ok {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if gc.released {
		return
	}
	switch state {
	case http.StateIdle:
		if gc.elem == nil {
			gc.elem = g.clients[gc.client].reclaimable.PushBack(gc)
		}
	case http.StateActive, http.StateHijacked:
		if gc.elem != nil {
			g.clients[gc.client].reclaimable.Remove(gc.elem)
			gc.elem = nil
		}
	case http.StateClosed:
		g.release(gc)
	}
}
