// Package egress decides which addresses the manager may connect to on a tenant's behalf. Issuer,
// refresh, revocation, introspection and key-set URLs come from tenants; without a check, any of
// them could make the manager call a cloud metadata service, the API server or the manager
// itself. The check runs when a connection is made, on the address actually dialled (after name
// resolution), so hex, decimal, short and IPv6-mapped spellings of an address, and names that
// resolve to it, are all caught.
package egress

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
)

// ErrDenied is wrapped by every refused connection.
var ErrDenied = errors.New("egress not allowed")

// metadata are the cloud metadata and link-local service addresses outside the link-local
// ranges (which are denied as a whole).
var metadata = []netip.Prefix{
	netip.MustParsePrefix("100.100.100.200/32"), // Alibaba Cloud
	netip.MustParsePrefix("fd00:ec2::254/128"),  // AWS over IPv6
	netip.MustParsePrefix("192.0.0.192/32"),     // Oracle Cloud
}

// reserved are IPv4 ranges no issuer lives in: "this network" (0/8, which Linux may route to the
// host itself) and the former class E with the broadcast address.
var reserved = [2]netip.Prefix{netip.MustParsePrefix("0.0.0.0/8"), netip.MustParsePrefix("240.0.0.0/4")}

// Policy is the set of addresses the manager refuses, and the explicit exceptions.
type Policy struct {
	// Deny lists addresses refused besides the built-in kinds: the manager's own addresses and
	// the API server's service address.
	Deny []netip.Prefix
	// Allow lists exceptions, checked first: in-cluster issuers on loopback for local runs, say.
	Allow []netip.Prefix
}

// Default is the policy of a manager: loopback, link-local, unspecified, multicast and cloud
// metadata addresses refused, and so are the manager's own interface addresses, its POD_IP, and
// the API server's service address (KUBERNETES_SERVICE_HOST); allow lists the exceptions.
func Default(allow []netip.Prefix) *Policy {
	p := &Policy{Allow: allow}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok {
					p.Deny = append(p.Deny, netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen()))
				}
			}
		}
	}
	for _, env := range []string{"POD_IP", "KUBERNETES_SERVICE_HOST"} {
		if ip, err := netip.ParseAddr(os.Getenv(env)); err == nil {
			p.Deny = append(p.Deny, netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen()))
		}
	}
	return p
}

// ParsePrefixes reads a comma-separated list of CIDRs or addresses.
func ParsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			ip, err := netip.ParseAddr(f)
			if err != nil {
				return nil, fmt.Errorf("%q is neither a CIDR nor an address", f)
			}
			out = append(out, netip.PrefixFrom(ip, ip.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, err
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// embedding are the IPv6 ranges that carry an IPv4 address a gateway or the host may forward
// to: NAT64 (well-known and local-use prefixes, RFC 6052/8215), 6to4 (RFC 3056) and the
// deprecated IPv4-compatible form. An address in them is checked as the IPv4 address it embeds,
// so 64:ff9b::a9fe:a9fe is refused like 169.254.169.254.
var embedding = []struct {
	prefix netip.Prefix
	at     int // byte offset of the IPv4 address
}{
	{netip.MustParsePrefix("64:ff9b::/96"), 12},
	{netip.MustParsePrefix("64:ff9b:1::/48"), 12},
	{netip.MustParsePrefix("2002::/16"), 2},
	{netip.MustParsePrefix("::/96"), 12},
}

// Embedded returns the IPv4 address an IPv6 address carries (IPv4-mapped, NAT64, 6to4 or
// IPv4-compatible), or ip itself.
func Embedded(ip netip.Addr) netip.Addr {
	ip = ip.Unmap()
	if !ip.Is6() {
		return ip
	}
	b := ip.As16()
	for _, e := range embedding {
		if e.prefix.Contains(ip) {
			return netip.AddrFrom4([4]byte(b[e.at : e.at+4]))
		}
	}
	return ip
}

// Check says whether the manager may connect to ip.
func (p *Policy) Check(ip netip.Addr) error {
	if err := p.check(ip.Unmap()); err != nil {
		return err
	}
	if v4 := Embedded(ip); v4 != ip.Unmap() {
		if err := p.check(v4); err != nil {
			return fmt.Errorf("%w (%s carries it)", err, ip)
		}
	}
	return nil
}

func (p *Policy) check(ip netip.Addr) error {
	for _, a := range p.Allow {
		if a.Contains(ip) {
			return nil
		}
	}
	var why string
	switch {
	case ip.IsLoopback():
		why = "a loopback address"
	case ip.IsLinkLocalUnicast(), ip.IsLinkLocalMulticast():
		why = "a link-local address (cloud metadata services live there)"
	case ip.IsUnspecified():
		why = "the unspecified address"
	case ip.IsMulticast(), ip.IsInterfaceLocalMulticast():
		why = "a multicast address"
	case reserved[0].Contains(ip), reserved[1].Contains(ip):
		why = "a reserved address"
	}
	for _, m := range metadata {
		if why == "" && m.Contains(ip) {
			why = "a cloud metadata address"
		}
	}
	for _, d := range p.Deny {
		if why == "" && d.Contains(ip) {
			why = "one of the manager's own or the API server's addresses"
		}
	}
	if why == "" {
		return nil
	}
	return fmt.Errorf("%w: %s is %s; allow it explicitly with --allow-egress-cidrs", ErrDenied, ip, why)
}

// Control is a net.Dialer Control function that applies the policy to the address being dialled.
func (p *Policy) Control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: cannot read the address %q", ErrDenied, address)
	}
	return p.Check(ap.Addr())
}
