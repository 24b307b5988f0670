package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/types"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/login"
)

// ExitDenied is validate's exit code when the token is refused.
const ExitDenied = 3

// Validation is what `validate` shows: the answer /validate would give and why.
type Validation struct {
	Validator string `json:"validator"`
	// Via is "local" (the TokenValidator's configuration run here) or the endpoint called.
	Via     string            `json:"via"`
	Allowed bool              `json:"allowed"`
	Status  int               `json:"status"`
	Code    string            `json:"code,omitempty"`
	Reason  string            `json:"reason,omitempty"`
	Detail  string            `json:"detail,omitempty"`
	Subject string            `json:"subject,omitempty"`
	Expires *time.Time        `json:"expiresAt,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`
}

type validateOptions struct {
	*Options
	tokenFile string
	endpoint  string
	caFile    string
	output    string
	timeout   time.Duration
}

func newValidate(o *Options) *cobra.Command {
	v := &validateOptions{Options: o}
	cmd := &cobra.Command{
		Use:   "validate VALIDATOR --token-file FILE",
		Short: "What /validate would answer for a token, and why",
		Long: `validate runs the TokenValidator's configuration here — the same issuers, key sets, policy and
rules as the webhook, read with your permissions — and prints the answer /validate would give:
allowed with the identity headers, or the status, error code and reason. With --endpoint it calls
a running webhook instead (say, through kubectl port-forward). Exit code 3 when refused.`,
		Example: `  kubectl tokenkeeper validate orders-api -n shop --token-file token.txt
  kubectl tokenkeeper validate orders-api -n shop --token-file - --endpoint https://localhost:8443`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return v.run(cmd.Context(), args[0]) },
	}
	cmd.Flags().StringVar(&v.tokenFile, "token-file", "", "file holding the token (- for stdin)")
	cmd.Flags().StringVar(&v.endpoint, "endpoint", "", "call this webhook base URL instead of validating here")
	cmd.Flags().StringVar(&v.caFile, "endpoint-ca", "", "PEM file of the CA the endpoint's certificate is signed by")
	cmd.Flags().StringVarP(&v.output, "output", "o", "", "output format: json or yaml")
	cmd.Flags().DurationVar(&v.timeout, "timeout", 30*time.Second, "bound on the whole validation")
	_ = cmd.MarkFlagRequired("token-file")
	return cmd
}

func (v *validateOptions) run(ctx context.Context, name string) error {
	token, err := v.readToken()
	if err != nil {
		return err
	}
	ns, err := v.namespace()
	if err != nil {
		return err
	}
	ctx, cancel := withTimeout(ctx, v.timeout)
	defer cancel()
	var out Validation
	if v.endpoint != "" {
		out, err = v.remote(ctx, ns, name, token)
	} else {
		out, err = v.local(ctx, ns, name, token)
	}
	if err != nil {
		return err
	}
	if ok, err := printAs(v.Out, v.output, out); ok {
		if err != nil {
			return err
		}
	} else if err := v.print(out); err != nil {
		return err
	}
	if !out.Allowed {
		return &ExitError{Code: ExitDenied, Err: fmt.Errorf("denied: %d %s", out.Status, or(out.Code, "no credentials"))}
	}
	return nil
}

func (v *validateOptions) readToken() (string, error) {
	var r = v.In
	if v.tokenFile != "-" {
		f, err := os.Open(v.tokenFile)
		if err != nil {
			return "", err
		}
		defer func() { _ = f.Close() }()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, 64<<10))
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(b))
	if s, rest, ok := strings.Cut(tok, " "); ok && strings.EqualFold(s, "Bearer") {
		tok = strings.TrimSpace(rest)
	}
	if tok == "" {
		return "", errors.New("the token file is empty")
	}
	return tok, nil
}

func (v *validateOptions) local(ctx context.Context, ns, name, token string) (Validation, error) {
	c, err := v.client()
	if err != nil {
		return Validation{}, err
	}
	tv := &v1alpha1.TokenValidator{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, tv); err != nil {
		return Validation{}, err
	}
	val, closeFn, err := login.LocalValidator(ctx, c, tv, v.ClusterResourceNamespace)
	if err != nil {
		return Validation{}, fmt.Errorf("TokenValidator %s/%s cannot be built: %w", ns, name, err)
	}
	defer closeFn()
	out := Validation{Validator: ns + "/" + name, Via: "local"}
	id, denial := val.AuthenticateToken(ctx, token)
	if denial != nil {
		out.Status, out.Code, out.Reason, out.Detail = denial.Status, denial.Code, denial.Reason, denial.Description
		return out, nil
	}
	out.Allowed, out.Status, out.Subject, out.Headers = true, http.StatusOK, id.Subject, id.Headers
	if !id.ExpiresAt.IsZero() {
		exp := id.ExpiresAt.UTC()
		out.Expires = &exp
	}
	return out, nil
}

// remote asks a running webhook's /validate/NAMESPACE/NAME.
func (v *validateOptions) remote(ctx context.Context, ns, name, token string) (Validation, error) {
	u := strings.TrimRight(v.endpoint, "/") + "/validate/" + ns + "/" + name
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return Validation{}, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if v.caFile != "" {
		pem, err := os.ReadFile(v.caFile)
		if err != nil {
			return Validation{}, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return Validation{}, fmt.Errorf("%s holds no PEM certificate", v.caFile)
		}
		hc.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return Validation{}, fmt.Errorf("calling %s: %w", u, errors.Unwrap(err))
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	out := Validation{Validator: ns + "/" + name, Via: u, Status: resp.StatusCode, Allowed: resp.StatusCode == http.StatusOK, Headers: map[string]string{}}
	// Identity headers: X-Auth-* and the headers the TokenValidator forwards claims in (when the
	// user may read it).
	forwarded := map[string]bool{}
	if c, err := v.client(); err == nil {
		tv := &v1alpha1.TokenValidator{}
		if c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, tv) == nil {
			for _, h := range tv.Spec.ForwardClaims {
				forwarded[http.CanonicalHeaderKey(string(h))] = true
			}
		}
	}
	for k, vals := range resp.Header {
		if strings.HasPrefix(k, "X-Auth-") || forwarded[k] {
			out.Headers[k] = strings.Join(vals, ",")
		}
	}
	out.Subject = resp.Header.Get("X-Auth-Subject")
	if !out.Allowed {
		out.Detail = strings.TrimSpace(resp.Header.Get("WWW-Authenticate") + " " + strings.TrimSpace(string(body)))
	}
	return out, nil
}

func (v *validateOptions) print(out Validation) error {
	result := fmt.Sprintf("allowed (%d)", out.Status)
	if !out.Allowed {
		result = fmt.Sprintf("denied (%d %s)", out.Status, or(out.Code, "no credentials"))
	}
	kv := [][2]string{{"Validator", out.Validator}, {"Via", out.Via}, {"Result", result}}
	if out.Allowed {
		kv = append(kv, [2]string{"Subject", or(out.Subject, none)}, [2]string{"Expires", stamp(v.now(), out.Expires)})
		names := make([]string, 0, len(out.Headers))
		for k := range out.Headers {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			kv = append(kv, [2]string{"Header " + k, out.Headers[k]})
		}
	} else {
		kv = append(kv, [2]string{"Reason", or(out.Reason, none)}, [2]string{"Detail", or(out.Detail, none)})
	}
	return pairs(v.Out, kv)
}
