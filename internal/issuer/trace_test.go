package issuer_test

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/tokenkeeper/tokenkeeper/internal/issuer"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer/issuertest"
)

// TestTraceShowsNoSecret: a dry run's trace of a login and a refresh at every seed shows the
// endpoint, the non-secret fields and the response's lifetimes, and none of the inputs, header
// values or tokens.
func TestTraceShowsNoSecret(t *testing.T) {
	for _, f := range issuertest.Flavors {
		t.Run(string(f), func(t *testing.T) {
			s := issuertest.Start(f)
			defer s.Close()
			var mu sync.Mutex
			var seen []issuer.Exchange
			c, err := issuer.New(issuer.Config{Spec: s.Spec(), Headers: seedHeaders(f), Trace: func(x issuer.Exchange) {
				mu.Lock()
				defer mu.Unlock()
				seen = append(seen, x)
			}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			req := seedRequest(f)
			tok, err := c.Login(t.Context(), req)
			if err != nil {
				t.Fatalf("Login: %v", err)
			}
			if tok.TokenField == "" {
				t.Errorf("the token's field is not recorded")
			}
			if c.CanRefresh() && tok.RefreshToken != "" {
				if _, err := c.Refresh(t.Context(), req, tok); err != nil {
					t.Fatalf("Refresh: %v", err)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			b, _ := json.Marshal(seen)
			text := string(b)
			secrets := append(append([]string{}, issuertest.Secrets...), s.IssuedTokens()...)
			for _, v := range seedHeaders(f) {
				secrets = append(secrets, v)
			}
			for _, v := range secrets {
				if strings.Contains(text, v) {
					t.Fatalf("the trace shows a secret: %s", text)
				}
			}
			last := seen[len(seen)-1]
			if last.Status/100 != 2 || last.Method == "" || !strings.HasPrefix(last.URL, "https://") || len(last.ResponseFields) == 0 {
				t.Errorf("the trace lacks the request or its answer: %+v", last)
			}
			if f == issuertest.OAuth2 {
				fields := map[string]string{}
				for _, x := range seen {
					for _, fl := range append(x.RequestFields, x.ResponseFields...) {
						fields[fl.Name] = fl.Value
					}
				}
				if fields["grant_type"] == "" || fields["expires_in"] == "" || !strings.HasPrefix(fields["access_token"], "[redacted") {
					t.Errorf("grant_type and expires_in should show, access_token not: %v", fields)
				}
			}
		})
	}
}
