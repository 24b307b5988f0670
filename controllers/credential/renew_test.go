package credential_test

import (
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tokenkeeper/tokenkeeper/controllers/credential"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer/issuertest"
)

// A renewal on demand: each new value of tokenkeeper.io/renew-requested-at renews a fresh token
// exactly once (one issuer request), the value is recorded in status, and a repeat does nothing.
func TestRenewRequested(t *testing.T) {
	t.Parallel()
	f := setup(t, issuertest.OAuth2, nil) // 1-h tokens: nothing renews on its own
	f.waitReady(30 * time.Second)
	annotate := func(k, v string) {
		patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, k, v)
		must(t, env.Client.Patch(t.Context(), f.cred(), client.RawPatch(types.MergePatchType, []byte(patch))))
	}
	logins := func() int { return f.srv.Calls(issuertest.OpLogin) }
	for i, value := range []string{"2026-11-23T05:00:00Z", "2026-11-23T05:00:01Z"} {
		before, tok := logins(), f.token()
		annotate(credential.AnnotationRenewRequestedAt, value)
		waitFor(t, 20*time.Second, "a new token", func() (bool, string) {
			return f.token() != tok && f.cred().Status.LastRenewRequest == value, "still the old token"
		})
		// The same value again (any other edit brings the Credential back): nothing happens.
		annotate("example.com/touched", fmt.Sprint(i))
		time.Sleep(3 * time.Second)
		if n := logins() - before; n != 1 {
			t.Fatalf("request %d: %d issuer requests, want exactly 1", i+1, n)
		}
	}
}
