package sds

import (
	"strings"
	"testing"

	"github.com/tokenkeeper/tokenkeeper/internal/issuer"
)

func TestParseResource(t *testing.T) {
	for name, tc := range map[string]struct {
		reason string
		in     string
		ok     bool
		token  bool
	}{
		"authorization": {"the Authorization header value", "tokenkeeper:team/api", true, false},
		"token":         {"the bare token by suffix", "tokenkeeper:team/api#token", true, true},
		"dotted name":   {"Credential names are DNS subdomains", "tokenkeeper:team/api.v2", true, false},
		"no prefix":     {"another server's resource", "team/api", false, false},
		"no namespace":  {"a Credential is always named with its namespace", "tokenkeeper:api", false, false},
		"bad namespace": {"namespaces are DNS labels", "tokenkeeper:Team/api", false, false},
		"extra slash":   {"no path below a Credential", "tokenkeeper:team/api/x", false, false},
		"other suffix":  {"only #token", "tokenkeeper:team/api#refresh", false, false},
		"huge":          {"bounded length", "tokenkeeper:team/" + strings.Repeat("a", 10000), false, false},
	} {
		t.Run(name, func(t *testing.T) {
			r, err := parseResource(tc.in)
			if (err == nil) != tc.ok || r.token != tc.token {
				t.Fatalf("%s: got %+v, %v", tc.reason, r, err)
			}
			if err != nil && len(err.Error()) > 300 {
				t.Fatalf("%s: the error is %d characters long", tc.reason, len(err.Error()))
			}
		})
	}
}

func FuzzParseResource(f *testing.F) {
	f.Add("tokenkeeper:team/api#token")
	f.Add("tokenkeeper:/")
	f.Fuzz(func(t *testing.T, in string) {
		r, err := parseResource(in)
		if err == nil && (r.cred.Namespace == "" || r.cred.Name == "" || !strings.HasPrefix(in, ResourcePrefix)) {
			t.Fatalf("accepted %q as %+v", in, r)
		}
	})
}

// A resource's version is the token's fingerprint as the Credential's status shows it.
func TestFingerprintIsStatusFingerprint(t *testing.T) {
	if Fingerprint([]byte("abc")) != issuer.Fingerprint("abc") {
		t.Fatal("versions differ from status.tokenFingerprint")
	}
}
