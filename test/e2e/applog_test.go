//go:build e2e

package e2e_test

import "testing"

// The application's log parser: a rotation is a new fingerprint, and anything but a 200 (a 401,
// a failed call, a missing token) is a failure.
func TestParseAppLog(t *testing.T) {
	log := `14:20:01 seed001  200 token=aaaa expires=x ok=1 unauthorized=0
14:20:06 seed001  200 token=aaaa expires=x ok=2 unauthorized=0
14:20:11 seed001  200 token=bbbb expires=y ok=3 unauthorized=0
14:20:11 oauth2   401 token=cccc expires=y ok=0 unauthorized=1
2026/11/22 14:20:16 seed002  error: Get "https://192.0.2.2:9102/api/me": connection refused
2026/11/22 14:20:16 seed003  no token yet: open /var/run/secrets/seed003/authorization: no such file
`
	calls := parseAppLog(log)
	if a := calls["seed001"]; len(a.tokens) != 2 || a.ok != 3 || len(a.failures) != 0 {
		t.Errorf("seed001: %+v", a)
	}
	for _, name := range []string{"oauth2", "seed002", "seed003"} {
		if a := calls[name]; a == nil || len(a.failures) != 1 {
			t.Errorf("%s: want one failure, got %+v", name, a)
		}
	}
}
