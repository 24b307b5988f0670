//go:build e2e

package e2e_test

import (
	"bufio"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tokenkeeper/tokenkeeper/internal/demo"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer/issuertest"
)

// secretWatch records, every second, the tokens each Credential's Secret has held, in order. The
// tokens stay in memory, for comparison with what the issuers granted; they are never printed.
type secretWatch struct {
	mu   sync.Mutex
	seen map[issuertest.Flavor][]string
}

func watchSecrets(ctx context.Context, c client.Client, d *demo.Issuers) *secretWatch {
	w := &secretWatch{seen: map[issuertest.Flavor][]string{}}
	go func() {
		for {
			for _, srv := range d.Servers {
				sec := &corev1.Secret{}
				if err := c.Get(ctx, types.NamespacedName{Namespace: d.Namespace, Name: demo.TokenSecret(srv.Flavor)}, sec); err == nil {
					w.record(srv.Flavor, string(sec.Data["token"]))
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	}()
	return w
}

func (w *secretWatch) record(f issuertest.Flavor, tok string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if s := w.seen[f]; tok != "" && (len(s) == 0 || s[len(s)-1] != tok) {
		w.seen[f] = append(s, tok)
	}
}

func (w *secretWatch) tokens(f issuertest.Flavor) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.seen[f])
}

// appCalls is what the application's log says of one issuer's protected API.
type appCalls struct {
	tokens   []string // fingerprints of the tokens used, in order
	ok       int
	failures []string // log lines of calls that did not succeed
}

// parseAppLog reads hack/demo-app's log: "15:04:05 name status token=fp expires=… ok=n
// unauthorized=n" per call, and "date time name error: …" or "… no token yet: …" when a call
// could not be made.
func parseAppLog(log string) map[string]*appCalls {
	calls := map[string]*appCalls{}
	get := func(name string) *appCalls {
		if calls[name] == nil {
			calls[name] = &appCalls{}
		}
		return calls[name]
	}
	sc := bufio.NewScanner(strings.NewReader(log))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) >= 4 && strings.HasPrefix(f[3], "token="):
			a := get(f[1])
			if fp := strings.TrimPrefix(f[3], "token="); len(a.tokens) == 0 || a.tokens[len(a.tokens)-1] != fp {
				a.tokens = append(a.tokens, fp)
			}
			if f[2] == "200" {
				a.ok++
			} else {
				a.failures = append(a.failures, sc.Text())
			}
		case len(f) >= 3:
			get(f[2]).failures = append(get(f[2]).failures, sc.Text())
		}
	}
	return calls
}

// rotate waits until the application has used at least four tokens from every Secret, all of
// them answered 200: three rotations each, across the leader changes above.
func (s *suite) rotate(t *testing.T) {
	deadline := time.Now().Add(rotations*lifetime + 3*time.Minute)
	for {
		raw, err := s.cs.CoreV1().Pods(appNS).GetLogs(demo.AppPod, &corev1.PodLogOptions{}).DoRaw(t.Context())
		if err != nil {
			t.Fatalf("the application's log: %v", err)
		}
		calls := parseAppLog(string(raw))
		var pending []string
		for _, srv := range s.issuers.Servers {
			a := calls[string(srv.Flavor)]
			if a == nil {
				a = &appCalls{}
			}
			if len(a.failures) > 0 {
				t.Fatalf("%s: %d failed calls, the first: %s", srv.Flavor, len(a.failures), a.failures[0])
			}
			if len(a.tokens) < rotations+1 {
				pending = append(pending, fmt.Sprintf("%s: %d tokens, %d calls", srv.Flavor, len(a.tokens), a.ok))
			}
		}
		if len(pending) == 0 {
			for _, srv := range s.issuers.Servers {
				a := calls[string(srv.Flavor)]
				t.Logf("%-8s %d tokens used, %d calls, all 200", srv.Flavor, len(a.tokens), a.ok)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not enough rotations by the deadline: %s", strings.Join(pending, "; "))
		}
		time.Sleep(10 * time.Second)
	}
}

// noDuplicateLogins: every login or refresh the issuers answered granted a token that reached the
// Secret (nothing was logged in twice or wasted by a second replica or a new leader), none was
// refused, and grants are spaced as renewals are (the first renewal spread earlier), never in
// quick succession.
func (s *suite) noDuplicateLogins(t *testing.T) {
	settled := time.Now().Add(-5 * time.Second) // grants after this may not be seen yet
	for _, srv := range s.issuers.Servers {
		grants := srv.Grants()
		calls := srv.Calls(issuertest.OpLogin) + srv.Calls(issuertest.OpRefresh)
		if calls != len(grants) {
			t.Errorf("%s: %d login and refresh calls, %d tokens granted: some were refused", srv.Flavor, calls, len(grants))
		}
		seen := s.secrets.tokens(srv.Flavor)
		for i, g := range grants {
			if g.At.Before(settled) && !slices.Contains(seen, g.Token) {
				t.Errorf("%s: grant %d (at %s) never reached the Secret", srv.Flavor, i+1, g.At.Format(time.TimeOnly))
			}
			if i > 0 {
				// Renewals come every ~60 s, the first token's anywhere from a quarter of that
				// on (Credentials created together spread out): 13.5 s at the earliest. A
				// duplicate login comes within a second or two.
				floor := lifetime / 4
				if i == 1 {
					floor = lifetime / 10
				}
				if gap := g.At.Sub(grants[i-1].At); gap < floor {
					t.Errorf("%s: grants %d and %d only %s apart", srv.Flavor, i, i+1, gap.Round(time.Millisecond))
				}
			}
		}
		t.Logf("%-8s %d grants (%d logins, %d refreshes), %d tokens seen in the Secret", srv.Flavor, len(grants),
			srv.Calls(issuertest.OpLogin), srv.Calls(issuertest.OpRefresh), len(seen))
	}
}
