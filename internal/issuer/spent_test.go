package issuer_test

import (
	"net/http"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer/issuertest"
)

// A refresh that may have consumed its refresh token must never be retried with it: the
// controller relies on MayHaveSpent to tell the two apart after every failed refresh.
func TestMayHaveSpent(t *testing.T) {
	cases := map[string]struct {
		reason string
		brk    func(*issuertest.Server, *v1alpha1.IssuerSpec)
		spent  bool
	}{
		"Success": {
			reason: "The issuer rotated the refresh token and we hold the new one: the old one is spent.",
			spent:  true,
		},
		"ServiceUnavailable": {
			reason: "A 503 grants nothing: the refresh token is still good and may be sent again.",
			brk:    func(s *issuertest.Server, _ *v1alpha1.IssuerSpec) { s.Fail(-1, http.StatusServiceUnavailable, "") },
		},
		"RateLimited": {
			reason: "A 429 grants nothing.",
			brk:    func(s *issuertest.Server, _ *v1alpha1.IssuerSpec) { s.Fail(-1, http.StatusTooManyRequests, "3") },
		},
		"NoAnswer": {
			reason: "The request left and no answer came: the issuer may have rotated the token.",
			brk: func(s *issuertest.Server, spec *v1alpha1.IssuerSpec) {
				s.Hang(3 * time.Second)
				spec.Timeout = &metav1.Duration{Duration: 300 * time.Millisecond}
			},
			spent: true,
		},
		"UnparsableAnswer": {
			reason: "A 2xx we cannot read may carry the rotated token we lost.",
			brk:    func(s *issuertest.Server, _ *v1alpha1.IssuerSpec) { s.Malform(issuertest.NotJSON) },
			spent:  true,
		},
		"Rejected": {
			reason: "A rejected refresh token is dead: it must not be sent again either.",
			brk:    func(s *issuertest.Server, _ *v1alpha1.IssuerSpec) { s.RevokeAll() },
			spent:  true,
		},
		"NeverSent": {
			reason: "A plain-http refresh URL is refused before anything leaves.",
			brk: func(_ *issuertest.Server, spec *v1alpha1.IssuerSpec) {
				spec.Refresh = &v1alpha1.Endpoint{URL: "http://127.0.0.1:1/refresh"}
				spec.AllowInsecureHTTP = false
			},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			srv := issuertest.Start(issuertest.Seed001)
			defer srv.Close()
			spec := srv.Spec()
			req := seedRequest(issuertest.Seed001)
			tok, err := newClient(t, srv, spec).Login(t.Context(), req)
			if err != nil {
				t.Fatalf("Login: %v", err)
			}
			if tc.brk != nil {
				tc.brk(srv, &spec)
			}
			_, err = newClient(t, srv, spec).Refresh(t.Context(), req, tok)
			if got := issuer.MayHaveSpent(err); got != tc.spent {
				t.Errorf("%s\nMayHaveSpent(%v) = %t, want %t", tc.reason, err, got, tc.spent)
			}
		})
	}
}
