package validation

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper/internal/servingcert/servingcerttest"
)

// TestConnectionFlood: peers that hold thousands of connections open — idle keep-alive ones, or
// ones that never send a request — keep no other client out: a legitimate client (another
// address) is served within a second, again and again, on /validate and /tokenreview; and a
// flooding peer keeps at most its per-client share.
func TestConnectionFlood(t *testing.T) {
	const perPeer = 3000
	raiseFileLimit(t, 2*perPeer+MaxConnections+1024)
	cases := map[string]struct {
		reason string
		// peers are the flooding addresses; the legitimate client is 127.0.0.2.
		peers []string
		conns int
		// silent peers open connections and never send a request (slowloris); others send one
		// request each and keep the connection open, idle.
		silent bool
		tls    bool
	}{
		"OnePeerIdle": {
			reason: "One peer holding 3,000 idle keep-alive connections used to fill the shared cap of 1,024 until the 60-s idle timeout.",
			peers:  []string{"127.0.0.1"}, conns: perPeer,
		},
		"OnePeerIdleTLS": {
			reason: "The same over TLS, as the manager serves it: idle TLS connections are as reclaimable as plain ones.",
			peers:  []string{"127.0.0.1"}, conns: perPeer, tls: true,
		},
		"OnePeerSilent": {
			reason: "Connections that never send a request (slowloris) hold no slot another client needs.",
			peers:  []string{"127.0.0.1"}, conns: perPeer, silent: true,
		},
		"ManyPeersIdle": {
			reason: "Five peers within their per-client limits still exceed the total: the heaviest one's idle connections make room.",
			peers:  []string{"127.0.0.1", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"}, conns: 300,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			addr, tlsConfig := startListener(t, tc.tls)
			var wg sync.WaitGroup
			held := make([][]net.Conn, len(tc.peers))
			for i, peer := range tc.peers {
				wg.Go(func() { held[i] = flood(t, addr, peer, tc.conns, !tc.silent, tlsConfig) })
			}
			wg.Wait()
			total := 0
			for i, peer := range tc.peers {
				alive := stillOpen(held[i])
				total += alive
				t.Logf("%s holds %d of its %d connections", peer, alive, tc.conns)
				if alive > DefaultMaxConnectionsPerClient {
					t.Errorf("%s\n%s holds %d connections, more than its share of %d", tc.reason, peer, alive, DefaultMaxConnectionsPerClient)
				}
			}
			if total > MaxConnections {
				t.Errorf("%s\nthe peers hold %d connections, more than the cap of %d", tc.reason, total, MaxConnections)
			}
			client := legitimateClient(tlsConfig)
			scheme := map[bool]string{false: "http", true: "https"}[tc.tls]
			for i := range 5 {
				for _, req := range []struct{ method, path, body string }{
					{http.MethodGet, "/validate/shop/orders-api", ""},
					{http.MethodPost, "/tokenreview/shop/orders-api", `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"x"}}`},
				} {
					r, err := http.NewRequestWithContext(t.Context(), req.method, scheme+"://"+addr+req.path, strings.NewReader(req.body))
					if err != nil {
						t.Fatal(err)
					}
					start := time.Now()
					resp, err := client.Do(r)
					if err != nil {
						t.Fatalf("%s\nrequest %d, %s %s, from 127.0.0.2 during the flood: %v (after %v)", tc.reason, i+1, req.method, req.path, err, time.Since(start))
					}
					_ = resp.Body.Close()
					if resp.StatusCode != http.StatusNotFound { // served: no such TokenValidator
						t.Fatalf("%s\n%s %s: HTTP %d, want 404 from the handler", tc.reason, req.method, req.path, resp.StatusCode)
					}
				}
			}
		})
	}
}

// startListener runs a Listener (TLS or not) on a loopback port until the test ends.
func startListener(t *testing.T, withTLS bool) (addr string, clientTLS *tls.Config) {
	t.Helper()
	l := &Listener{Handler: NewServer()}
	if withTLS {
		l.CertDir, clientTLS = writeServingCert(t)
	}
	return serveOnLoopback(t, l), clientTLS
}

// writeServingCert writes a self-signed certificate for 127.0.0.1 as tls.crt and tls.key, and
// returns its directory and a client configuration trusting it (HTTP/1.1).
func writeServingCert(t *testing.T) (string, *tls.Config) {
	t.Helper()
	dir, pool := servingcerttest.Write(t)
	return dir, &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
}

// flood opens n connections to addr from the address src, sends one request on each (unless
// silent) and reads its answer, and returns them all, open. Connections the server did not take
// are kept too: they wait in its backlog.
func flood(t *testing.T, addr, src string, n int, request bool, tlsConfig *tls.Config) []net.Conn {
	t.Helper()
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	conns := make([]net.Conn, n)
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for i := range jobs {
				c, err := dialer.DialContext(t.Context(), "tcp", addr)
				if err != nil {
					t.Errorf("peer %s, connection %d: %v", src, i, err)
					continue
				}
				conns[i] = c
				if request {
					_ = c.SetDeadline(time.Now().Add(3 * time.Second))
					if tlsConfig != nil {
						tc := tls.Client(c, tlsConfig)
						if tc.HandshakeContext(t.Context()) != nil {
							continue // refused or reclaimed: the server closed it
						}
						conns[i] = tc
					}
					_, _ = conns[i].Write([]byte("GET /healthz HTTP/1.1\r\nHost: validation\r\n\r\n"))
				}
			}
		})
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	if request {
		// The answers, read in parallel: on today's server, connections beyond the cap get none.
		for _, c := range conns {
			if c == nil {
				continue
			}
			wg.Go(func() {
				if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
					_ = resp.Body.Close()
				}
				_ = c.SetDeadline(time.Time{})
			})
		}
		wg.Wait()
	}
	t.Cleanup(func() {
		for _, c := range conns {
			if c != nil {
				_ = c.Close()
			}
		}
	})
	return conns
}

// stillOpen counts the connections the server has not closed: a read that times out, rather
// than ending, finds one open.
func stillOpen(conns []net.Conn) int {
	var (
		mu    sync.Mutex
		alive int
		wg    sync.WaitGroup
	)
	for _, c := range conns {
		if c == nil {
			continue
		}
		wg.Go(func() {
			_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			_, err := c.Read(make([]byte, 1))
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				mu.Lock()
				alive++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return alive
}

// legitimateClient calls from 127.0.0.2, a new connection per request, giving up after a second.
func legitimateClient(tlsConfig *tls.Config) *http.Client {
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	return &http.Client{Timeout: time.Second, Transport: &http.Transport{DialContext: dialer.DialContext, TLSClientConfig: tlsConfig, DisableKeepAlives: true}}
}

// raiseFileLimit makes sure the process may hold need file descriptors, raising the soft limit
// (up to the hard one) if it must; the test is skipped only when it cannot.
func raiseFileLimit(t *testing.T, need uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("reading RLIMIT_NOFILE: %v", err)
	}
	if lim.Cur >= need {
		return
	}
	lim.Cur = min(need, lim.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur < need {
		t.Skipf("the flood needs %d file descriptors; RLIMIT_NOFILE allows %d (hard %d): %v", need, lim.Cur, lim.Max, err)
	}
}

// serveOnLoopback serves l on a free loopback port until the test ends and returns its address.
func serveOnLoopback(t testing.TB, l interface {
	serve(context.Context, net.Listener) error
}) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- l.serve(t.Context(), ln) }()
	t.Cleanup(func() { // t.Context() is done by now
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String()
}
