package egress

import (
	"net/netip"
	"testing"
)

// TestCheckHost: the literal spellings of metadata and link-local addresses, and the names of
// metadata services and the API server, are refused before any lookup; ordinary hosts,
// loopback (checked at connect time, where it depends on the run) and allowed ranges are not.
func TestCheckHost(t *testing.T) {
	for host, want := range map[string]bool{ // true: refused
		"169.254.169.254":                      true,
		"[::ffff:169.254.169.254]":             true,
		"::ffff:a9fe:a9fe":                     true,
		"0xA9FEA9FE":                           true,
		"2852039166":                           true,
		"0251.0376.0251.0376":                  true,
		"169.254.43518":                        true,
		"169.254.169.254.":                     true,
		"[fe80::1%25eth0]":                     true,
		"[fd00:ec2::254]":                      true,
		"100.100.100.200":                      true,
		"0.0.0.0":                              true,
		"metadata.google.internal":             true,
		"METADATA.GOOGLE.INTERNAL.":            true,
		"kubernetes.default.svc":               true,
		"kubernetes.default.svc.cluster.local": true,
		"kubernetes.default":                   true,
		"login.example.com":                    false,
		"kubernetes.example.com":               false,
		"metadata.example.com":                 false,
		"127.0.0.1":                            false,
		"[::1]":                                false,
		"10.0.0.7":                             false,
		"203.0.113.9":                          false,
		"1.2.3.4.5":                            false,
		"0x1g":                                 false,
	} {
		if got := CheckHost(host, nil) != nil; got != want {
			t.Errorf("CheckHost(%q) refused=%t, want %t (%v)", host, got, want, CheckHost(host, nil))
		}
	}
	if err := CheckHost("169.254.10.20", []netip.Prefix{netip.MustParsePrefix("169.254.10.0/24")}); err != nil {
		t.Errorf("an allowed range is refused: %v", err)
	}
}
