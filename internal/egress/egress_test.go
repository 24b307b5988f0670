package egress_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper/internal/egress"
)

// Every spelling of a forbidden address is refused at connect time, after resolution; explicit
// exceptions and ordinary addresses pass.
func TestDialRefusesForbiddenAddresses(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	p := &egress.Policy{Deny: []netip.Prefix{netip.MustParsePrefix("10.96.0.1/32")}}
	cases := map[string]struct {
		reason string
		host   string
		allow  []netip.Prefix
		denied bool
		// unresolvable: Go does not read this spelling as an address and no name resolves it,
		// so nothing is dialled at all.
		unresolvable bool
	}{
		"Metadata":          {reason: "The cloud metadata service.", host: "169.254.169.254", denied: true},
		"MetadataIPv6":      {reason: "IPv4-mapped IPv6 spelling of the metadata address.", host: "[::ffff:169.254.169.254]", denied: true},
		"MetadataAWSv6":     {reason: "AWS's IPv6 metadata endpoint.", host: "[fd00:ec2::254]", denied: true},
		"LinkLocalV6":       {reason: "IPv6 link-local.", host: "[fe80::1]", denied: true},
		"Loopback":          {reason: "The manager itself.", host: "127.0.0.1", denied: true},
		"LoopbackShort":     {reason: "127.1 is 127.0.0.1 to inet_aton, never to Go.", host: "127.1", unresolvable: true},
		"MetadataHex":       {reason: "0xA9FEA9FE is 169.254.169.254 to inet_aton, never to Go.", host: "0xA9FEA9FE", unresolvable: true},
		"MetadataDecimal":   {reason: "2852039166 is 169.254.169.254 to inet_aton, never to Go.", host: "2852039166", unresolvable: true},
		"MetadataNAT64":     {reason: "NAT64 spelling of the metadata address: a NAT64 gateway forwards it.", host: "[64:ff9b::a9fe:a9fe]", denied: true},
		"Metadata6to4":      {reason: "6to4 spelling of the metadata address.", host: "[2002:a9fe:a9fe::1]", denied: true},
		"LoopbackCompat":    {reason: "IPv4-compatible spelling of 127.0.0.1.", host: "[::7f00:1]", denied: true},
		"LoopbackName":      {reason: "A name that resolves to loopback.", host: "localhost", denied: true},
		"LoopbackV6":        {reason: "::1.", host: "[::1]", denied: true},
		"Unspecified":       {reason: "0.0.0.0 reaches the local host on Linux.", host: "0.0.0.0", denied: true},
		"APIServerService":  {reason: "The API server's service address, denied by the policy.", host: "10.96.0.1", denied: true},
		"LoopbackAllowed":   {reason: "An explicit exception: issuers on loopback for a local run.", host: "127.0.0.1", allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}},
		"OrdinaryPrivateIP": {reason: "Private addresses are where in-cluster and corporate issuers live: allowed.", host: "10.1.2.3"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			policy := *p
			policy.Allow = tc.allow
			d := &net.Dialer{Timeout: 200 * time.Millisecond, Control: policy.Control}
			ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
			defer cancel()
			conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(strings.Trim(tc.host, "[]"), port))
			if conn != nil {
				_ = conn.Close()
			}
			var dnsErr *net.DNSError
			if tc.unresolvable {
				if !errors.As(err, &dnsErr) {
					t.Errorf("%s\ndial %s: %v, want a resolution failure (nothing dialled)", tc.reason, tc.host, err)
				}
				return
			}
			if got := errors.Is(err, egress.ErrDenied); got != tc.denied {
				t.Errorf("%s\ndial %s: %v; denied = %t, want %t", tc.reason, tc.host, err, got, tc.denied)
			}
		})
	}
}

func TestParsePrefixes(t *testing.T) {
	got, err := egress.ParsePrefixes(" 127.0.0.0/8, ::1 ,10.0.0.7")
	if err != nil || len(got) != 3 || got[1].String() != "::1/128" || got[2].String() != "10.0.0.7/32" {
		t.Fatalf("ParsePrefixes = %v, %v", got, err)
	}
	if _, err := egress.ParsePrefixes("localhost"); err == nil {
		t.Fatal("a name is not a CIDR")
	}
}

// FuzzCheck: every IPv6 address that carries a forbidden IPv4 address, in any embedding a host or
// gateway may forward (mapped, compatible, NAT64, 6to4), is refused, and so is every forbidden
// IPv6 address; a dial address of any shape is read without panicking and refused if unreadable.
// The forbidden set is recomputed here from the raw bytes, independently of the package.
func FuzzCheck(f *testing.F) {
	for _, seed := range []string{"::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe", "2002:7f00:1::", "::7f00:1", "fe80::1", "10.0.0.1", "2001:db8::1"} {
		b := netip.MustParseAddr(seed).As16()
		f.Add(b[:], "["+seed+"]:443")
	}
	p := &egress.Policy{}
	f.Fuzz(func(t *testing.T, raw []byte, dial string) {
		if err := p.Control("tcp", dial, nil); err != nil && !errors.Is(err, egress.ErrDenied) {
			t.Fatalf("Control(%q) = %v, not an egress error", dial, err)
		}
		if len(raw) != 16 {
			return
		}
		b := [16]byte(raw)
		ip := netip.AddrFrom16(b)
		if forbiddenBytes(b) && p.Check(ip) == nil {
			t.Fatalf("%s was allowed; it is or carries a forbidden address", ip)
		}
	})
}

func forbiddenBytes(b [16]byte) bool {
	zero := func(s []byte) bool { return strings.Trim(string(s), "\x00") == "" }
	v4 := func(s []byte) bool {
		return s[0] == 127 || (s[0] == 169 && s[1] == 254) || s[0] == 0 || s[0] >= 224
	}
	switch {
	case zero(b[:10]) && b[10] == 0xff && b[11] == 0xff, zero(b[:12]), // mapped, compatible
		string(b[:12]) == "\x00\x64\xff\x9b\x00\x00\x00\x00\x00\x00\x00\x00", // NAT64
		string(b[:6]) == "\x00\x64\xff\x9b\x00\x01":                          // local-use NAT64
		return v4(b[12:])
	case b[0] == 0x20 && b[1] == 0x02: // 6to4
		return v4(b[2:6])
	}
	return b[0] == 0xff || (b[0] == 0xfe && b[1]&0xc0 == 0x80) // multicast, link-local
}
