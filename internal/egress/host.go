package egress

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// metadataNames are host names that reach a cloud's metadata service or the cluster's API
// server from inside a cluster: never an issuer.
var metadataNames = []string{
	"metadata.google.internal", "metadata.goog", "metadata", "instance-data", "instance-data.ec2.internal",
	"kubernetes", "kubernetes.default", "kubernetes.default.svc",
}

// CheckHost refuses, without resolving it, a URL host that names an address the manager never
// calls whatever the network: an IP literal in any spelling (dotted, decimal, hex or octal IPv4;
// IPv6, with or without an IPv4 inside) that is link-local, cloud metadata, unspecified, multicast
// or reserved, and the well-known metadata and API server names (with any cluster domain).
// Loopback and the manager's own addresses are left to Check at connect time: they depend on
// where the manager runs. allow lists exceptions, as --allow-egress-cidrs does for Check.
// Admission calls it so that such an Issuer is refused when it is applied, with the reason.
func CheckHost(host string, allow []netip.Prefix) error {
	h := strings.ToLower(strings.TrimSuffix(strings.Trim(host, "[]"), "."))
	if i := strings.LastIndexByte(h, '%'); i >= 0 { // IPv6 zone
		h = h[:i]
	}
	for _, n := range metadataNames {
		if h == n || strings.HasPrefix(h, n+".") && (n == "kubernetes.default.svc" || n == "kubernetes.default" && strings.HasPrefix(h, n+".svc.")) {
			return fmt.Errorf("%w: %s names a cloud metadata service or the cluster's API server", ErrDenied, host)
		}
	}
	ip, ok := literalIP(h)
	if !ok || ip.Unmap().IsLoopback() {
		return nil
	}
	if err := (&Policy{Allow: allow}).Check(ip); err != nil {
		return fmt.Errorf("%w (written %s)", err, host)
	}
	return nil
}

// literalIP reads host as an IP address the way URL clients do: IPv6, dotted IPv4, and the
// inet_aton forms (one to four parts, each decimal, 0x hex or 0 octal: 2852039166, 0xA9FEA9FE,
// 0251.0376.0251.0376, 169.254.43518).
func literalIP(h string) (netip.Addr, bool) {
	if ip, err := netip.ParseAddr(h); err == nil {
		return ip, true
	}
	parts := strings.Split(h, ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	nums := make([]uint64, len(parts))
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 0, 32) // base from the prefix: 0x hex, 0 octal
		if err != nil || p == "" {
			return netip.Addr{}, false
		}
		nums[i] = n
	}
	// The last part fills the remaining bytes; the others are one byte each.
	var v uint64
	for i, n := range nums[:len(nums)-1] {
		if n > 0xff {
			return netip.Addr{}, false
		}
		v |= n << (8 * (3 - i))
	}
	last, rest := nums[len(nums)-1], 8*(4-(len(nums)-1))
	if rest < 64 && last >= 1<<rest {
		return netip.Addr{}, false
	}
	v |= last
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), true //nolint:gosec // v < 1<<32: each part checked above
}
