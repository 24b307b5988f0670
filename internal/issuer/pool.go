package issuer

import (
	"container/list"
	"sync"
)

// Pool shares issuer clients between reconciles and Credentials: one client (its connections,
// its cached OIDC discovery document) per issuer configuration, so that a renewal costs one
// request at the issuer, not a discovery and a new TLS handshake each time. It holds at most max
// clients and closes the least recently used beyond that: tenants creating issuers cannot grow it
// without bound.
type Pool struct {
	mu      sync.Mutex
	max     int
	entries map[string]*list.Element
	lru     *list.List // of *pooled, most recent first
}

type pooled struct {
	key    string
	client *Client
}

// NewPool returns a pool of at most max clients.
func NewPool(max int) *Pool {
	return &Pool{max: max, entries: map[string]*list.Element{}, lru: list.New()}
}

// Get returns the client for key, building it from cfg the first time. key must identify
// everything cfg holds (the issuer's spec and version, its headers and CA, the URL rules); a new
// version is a new key, and the old client ages out.
func (p *Pool) Get(key string, cfg Config) (*Client, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if el, ok := p.entries[key]; ok {
		p.lru.MoveToFront(el)
		return el.Value.(*pooled).client, nil
	}
	c, err := New(cfg)
	if err != nil {
		return nil, err
	}
	p.entries[key] = p.lru.PushFront(&pooled{key: key, client: c})
	for p.lru.Len() > p.max {
		old := p.lru.Remove(p.lru.Back()).(*pooled)
		delete(p.entries, old.key)
		old.client.Close()
	}
	return c, nil
}

// Len is the number of clients held.
func (p *Pool) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lru.Len()
}
