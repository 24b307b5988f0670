package policy

import (
	"net/url"
	"path"
	"strings"
	"testing"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
)

// FuzzMatches: a URL an allowed-issuer pattern admits stays on the pattern's host and port and,
// however a server reads its path (dot segments, backslashes as slashes, ";" parameters dropped
// from segments as Tomcat and Jetty do), under the pattern's path prefix; and matching one URL
// allocates a bounded amount.
func FuzzMatches(f *testing.F) {
	patterns := []v1alpha1.IssuerPattern{"https://idp.corp:8443/oauth", "https://*.example.com/api/v1", "https://login.example.com"}
	for _, seed := range []string{
		"https://idp.corp:8443/oauth/token", "https://idp.corp:8443/oauth/..;/admin", "https://idp.corp:8443/oauth/%2e%2e/admin",
		"https://a.example.com/api/v1/x", "https://a.example.com/api/v1/..%5cadmin", "https://login.example.com/anything",
		"https://A.EXAMPLE.COM/api/v1/./x", "https://idp.corp:8443/oauth;x=1/../admin",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if len(raw) > 2048 { // the CRD's bound on a URL
			return
		}
		u, err := url.Parse(raw)
		if err != nil {
			return
		}
		for _, p := range patterns {
			var ok bool
			if allocs := testing.AllocsPerRun(5, func() { ok = Matches(p, u) }); allocs > 64 {
				t.Fatalf("matching %q took %.0f allocations", raw, allocs)
			}
			if !ok {
				continue
			}
			pu, _ := url.Parse(strings.Replace(string(p), "*.", "", 1))
			host := strings.ToLower(u.Hostname())
			if strings.Contains(string(p), "*.") {
				if !strings.HasSuffix(host, "."+pu.Hostname()) {
					t.Fatalf("%q matched %s on host %q", raw, p, host)
				}
			} else if host != pu.Hostname() || u.Port() != pu.Port() {
				t.Fatalf("%q matched %s on host %q port %q", raw, p, host, u.Port())
			}
			if pu.Path == "" {
				continue
			}
			tomcat := strings.Split(strings.ReplaceAll(u.Path, `\`, "/"), "/")
			for i, seg := range tomcat {
				tomcat[i], _, _ = strings.Cut(seg, ";")
			}
			for _, read := range []string{u.Path, strings.ReplaceAll(u.Path, `\`, "/"), strings.Join(tomcat, "/")} {
				if c := path.Clean("/" + read); c != pu.Path && !strings.HasPrefix(c, pu.Path+"/") {
					t.Fatalf("%q matched %s but a server may read its path as %q", raw, p, c)
				}
			}
		}
	})
}
