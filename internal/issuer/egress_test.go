package issuer_test

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/egress"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer/issuertest"
)

// With the manager's egress policy, an issuer on loopback or a refresh URL at the metadata
// service is refused as a configuration error before anything is sent, not retried as an outage;
// the explicit exception lets a local issuer work.
func TestEgressPolicy(t *testing.T) {
	srv := issuertest.Start(issuertest.Seed001)
	defer srv.Close()
	req := seedRequest(issuertest.Seed001)
	login := func(spec v1alpha1.IssuerSpec, p *egress.Policy) (*issuer.Token, error) {
		c, err := issuer.New(issuer.Config{Spec: spec, Headers: seedHeaders(srv.Flavor), Egress: p})
		if err != nil {
			t.Fatal(err)
		}
		return c.Login(t.Context(), req)
	}
	_, err := login(srv.Spec(), egress.Default(nil))
	if !errors.Is(err, issuer.ErrConfig) || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("login at a loopback issuer: %v, want a configuration error naming loopback", err)
	}
	if issuer.MayHaveSpent(err) {
		t.Errorf("a refused connection sent nothing, so spent nothing")
	}
	tok, err := login(srv.Spec(), egress.Default([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}))
	if err != nil {
		t.Fatalf("login with loopback allowed: %v", err)
	}
	spec := srv.Spec()
	spec.Refresh = &v1alpha1.Endpoint{URL: "https://169.254.169.254/latest/meta-data/iam/security-credentials/"}
	c, _ := issuer.New(issuer.Config{Spec: spec, Egress: egress.Default([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")})})
	if _, err := c.Refresh(t.Context(), req, tok); !errors.Is(err, issuer.ErrConfig) || !strings.Contains(err.Error(), "link-local") {
		t.Fatalf("refresh at the metadata service: %v, want a configuration error naming link-local", err)
	}
}
