package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer"
	"github.com/tokenkeeper/tokenkeeper/internal/login"
)

// ExitLoginFailed is test-issuer's exit code when the login fails.
const ExitLoginFailed = 2

type testIssuerOptions struct {
	*Options
	file    string
	secret  string
	login   string
	scopes  []string
	output  string
	timeout time.Duration
}

// DryRun is what `test-issuer -o json` prints.
type DryRun struct {
	Issuer string `json:"issuer"`
	// Credential is the Credential tried, with -f; Objects the issuer, Secrets and ConfigMaps read,
	// each from the file or the cluster. Ignored lists the file's objects of other kinds.
	Credential *DryRunObject     `json:"credential,omitempty"`
	Objects    []DryRunObject    `json:"objects,omitempty"`
	Ignored    []string          `json:"ignored,omitempty"`
	Policies   []string          `json:"policies,omitempty"`
	Exchanges  []issuer.Exchange `json:"exchanges"`
	Token      *DryRunToken      `json:"token,omitempty"`
	// RenewalTime is when the controller would renew the token, RenewalRule why.
	RenewalTime *time.Time `json:"renewalTime,omitempty"`
	RenewalRule string     `json:"renewalRule,omitempty"`
	Revoked     bool       `json:"revoked"`
	// Reason and Error say why the login failed.
	Reason string `json:"reason,omitempty"`
	Error  string `json:"error,omitempty"`
}

// DryRunToken is what may be shown of a token: never the token.
type DryRunToken struct {
	Scheme       string    `json:"scheme"`
	Format       string    `json:"format"` // JWT or opaque
	Fingerprint  string    `json:"fingerprint"`
	Field        string    `json:"field"`
	Lifetime     string    `json:"lifetime"`
	ExpiresAt    time.Time `json:"expiresAt"`
	ExpirySource string    `json:"expirySource"`
	ExpiryField  string    `json:"expiryField,omitempty"`
	RefreshField string    `json:"refreshField,omitempty"`
	Renewals     string    `json:"renewals"` // refresh or login
}

func newTestIssuer(o *Options) *cobra.Command {
	t := &testIssuerOptions{Options: o}
	cmd := &cobra.Command{
		Use:   "test-issuer (-f credential.yaml | ISSUER --secret NAME)",
		Short: "Log in once from the terminal, as the controller would, and show what happened",
		Long: `test-issuer makes one login exactly as the controller would — the same issuer, policy and
input resolution, the same request and response parsing — with your own permissions (you need to
read the input Secret), and writes nothing to the cluster. It shows the requests sent (secrets
redacted), the response fields auto-detection picked, the token's type and lifetime and when the
controller would renew it. The session is revoked afterwards where the issuer can. On failure it
prints the reason the Credential's status would show and exits with code 2.

With -f, the file's Issuer or ClusterIssuer, Secrets and ConfigMaps are used before the
cluster's (a new issuer is tried before it is applied) and the output says where each came from.
ISSUER is an Issuer of the namespace, or clusterissuer/NAME.`,
		Example: `  kubectl tokenkeeper test-issuer -f credential.yaml
  kubectl tokenkeeper test-issuer corp-sso --secret orders-client -n shop
  kubectl tokenkeeper test-issuer clusterissuer/wallet --secret wallet-login --login password`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return t.run(cmd.Context(), args) },
	}
	cmd.Flags().StringVarP(&t.file, "filename", "f", "", "a Credential manifest, with the Issuer and Secrets to use before the cluster's (- for stdin)")
	cmd.Flags().StringVar(&t.secret, "secret", "", "the input Secret, with ISSUER")
	cmd.Flags().StringVar(&t.login, "login", "", "with ISSUER: password, apiKey, clientCredentials, refreshToken or privateKey (default: from the issuer)")
	cmd.Flags().StringSliceVar(&t.scopes, "scope", nil, "scopes to ask for, with ISSUER")
	cmd.Flags().StringVarP(&t.output, "output", "o", "", "output format: json or yaml")
	cmd.Flags().DurationVar(&t.timeout, "timeout", time.Minute, "bound on the whole dry run")
	return cmd
}

func (t *testIssuerOptions) run(ctx context.Context, args []string) error {
	ns, err := t.namespace()
	if err != nil {
		return err
	}
	var (
		cred *v1alpha1.Credential
		m    = &manifest{}
	)
	switch {
	case t.file != "" && len(args) == 0:
		if m, err = t.readManifest(ns); err != nil {
			return err
		}
		cred = m.credential
	case t.file == "" && len(args) == 1 && t.secret != "":
		if cred, err = t.credentialFor(ctx, ns, args[0]); err != nil {
			return err
		}
	default:
		return errors.New("give -f credential.yaml, or ISSUER with --secret NAME")
	}
	c, err := t.client()
	if err != nil {
		return err
	}
	ctx, cancel := withTimeout(ctx, t.timeout)
	defer cancel()
	// The file's Issuer, Secrets and ConfigMaps come before the cluster's: a new or changed
	// issuer is tried before it is applied.
	reads := &fileFirst{Client: c, file: t.fileName(), objects: m.objects}
	res, err := login.DryRun(ctx, reads, cred, t.ClusterResourceNamespace)
	out := t.view(res, err)
	out.Objects, out.Ignored = reads.objectsRead(), m.ignored
	if t.file != "" {
		out.Credential = &DryRunObject{Kind: "Credential", Namespace: cred.Namespace, Name: cred.Name, From: "file " + t.fileName()}
	}
	if ok, perr := printAs(t.Out, t.output, out); ok {
		if perr != nil {
			return perr
		}
	} else if perr := t.print(out); perr != nil {
		return perr
	}
	if err != nil {
		return &ExitError{Code: ExitLoginFailed, Err: fmt.Errorf("%s: %w", res.Reason, err)}
	}
	return nil
}

// readManifest reads -f: one Credential, and the objects read before the cluster's.
func (t *testIssuerOptions) readManifest(ns string) (*manifest, error) {
	var r = t.In
	if t.file != "-" {
		f, err := os.Open(t.file)
		if err != nil {
			return nil, err
		}
		defer func() { _ = f.Close() }()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, 1<<20))
	if err != nil {
		return nil, err
	}
	m, err := parseManifest(data, ns)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t.fileName(), err)
	}
	return m, nil
}

// fileName is how output names -f.
func (t *testIssuerOptions) fileName() string {
	if t.file == "-" {
		return "(stdin)"
	}
	return t.file
}

// credentialFor is the Credential `ISSUER --secret NAME` describes.
func (t *testIssuerOptions) credentialFor(ctx context.Context, ns, name string) (*v1alpha1.Credential, error) {
	ref := v1alpha1.IssuerReference{Kind: v1alpha1.IssuerKindNamespaced, Name: name}
	if kind, n, ok := strings.Cut(name, "/"); ok {
		switch strings.ToLower(kind) {
		case "clusterissuer", "clusterissuers":
			ref = v1alpha1.IssuerReference{Kind: v1alpha1.IssuerKindCluster, Name: n}
		case "issuer", "issuers":
			ref.Name = n
		default:
			return nil, fmt.Errorf("ISSUER %q: use NAME, issuer/NAME or clusterissuer/NAME", name)
		}
	}
	cred := &v1alpha1.Credential{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "test-issuer"},
		Spec: v1alpha1.CredentialSpec{IssuerRef: ref, SecretName: "test-issuer", Scopes: t.scopes}}
	kind := issuer.LoginKind(t.login)
	if kind == "" {
		c, err := t.client()
		if err != nil {
			return nil, err
		}
		var iss v1alpha1.GenericIssuer = &v1alpha1.Issuer{}
		key := types.NamespacedName{Namespace: ns, Name: ref.Name}
		if ref.Kind == v1alpha1.IssuerKindCluster {
			iss, key.Namespace = &v1alpha1.ClusterIssuer{}, ""
		}
		if err := c.Get(ctx, key, iss); err != nil {
			return nil, err
		}
		if kind = issuer.DefaultLogin(iss.GetSpec()); kind == issuer.LoginGitHubApp {
			return nil, errors.New("a githubApp login needs its app and installation IDs: use -f credential.yaml")
		}
	}
	if !login.WithSecret(&cred.Spec, kind, v1alpha1.LocalSecretReference{Name: t.secret}) {
		kinds := []string{}
		for _, k := range login.SecretOnlyKinds() {
			kinds = append(kinds, string(k))
		}
		return nil, fmt.Errorf("--login %q: use %s (others with -f)", kind, strings.Join(kinds, ", "))
	}
	return cred, nil
}

func (t *testIssuerOptions) view(res *login.DryRunResult, err error) DryRun {
	out := DryRun{Issuer: res.Issuer, Policies: res.Policy.Policies, Exchanges: res.Exchanges, Revoked: res.Revoked, Reason: string(res.Reason)}
	if out.Exchanges == nil {
		out.Exchanges = []issuer.Exchange{}
	}
	if err != nil {
		out.Error = err.Error()
		return out
	}
	tok := res.Token
	out.Token = &DryRunToken{Scheme: tok.Scheme, Format: tokenFormat(tok.AccessToken), Fingerprint: tok.Fingerprint(), Field: tok.TokenField,
		Lifetime: tok.ExpiresAt.Sub(tok.IssuedAt).Round(time.Second).String(), ExpiresAt: tok.ExpiresAt.UTC(),
		ExpirySource: string(tok.ExpirySource), ExpiryField: tok.ExpiryField, RefreshField: tok.RefreshField, Renewals: "login"}
	if tok.RefreshToken != "" && res.CanRefresh {
		out.Token.Renewals = "refresh"
	}
	at := res.Plan.At.UTC()
	out.RenewalTime, out.RenewalRule = &at, res.Plan.Rule
	return out
}

// tokenFormat is JWT when the token is three base64url parts with a JSON header, else opaque.
func tokenFormat(tok string) string {
	if _, _, ok := jwtParts(tok); ok {
		return "JWT"
	}
	return "opaque"
}

// jwtParts decodes a JWT's header and claims, never its signature.
func jwtParts(tok string) (header, claims map[string]any, ok bool) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil, nil, false
	}
	dec := func(s string, v any) bool {
		b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
		if err != nil {
			return false
		}
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		return d.Decode(v) == nil
	}
	if !dec(parts[0], &header) || !dec(parts[1], &claims) {
		return nil, nil, false
	}
	return header, claims, true
}

func (t *testIssuerOptions) print(d DryRun) error {
	now := t.now()
	var w strings.Builder
	if c := d.Credential; c != nil {
		fmt.Fprintf(&w, "Credential: %s/%s (from %s)\n", c.Namespace, c.Name, c.From)
	}
	issuerFrom := ""
	for _, o := range d.Objects {
		if o.Kind+"/"+o.Name == d.Issuer {
			issuerFrom = " (from " + o.From + ")"
		}
	}
	fmt.Fprintf(&w, "Issuer:    %s%s\n", d.Issuer, issuerFrom)
	for _, o := range d.Objects {
		if o.Kind != "Issuer" && o.Kind != "ClusterIssuer" {
			fmt.Fprintf(&w, "%-10s %s/%s (from %s)\n", o.Kind+":", o.Namespace, o.Name, o.From)
		}
	}
	for _, o := range d.Ignored {
		fmt.Fprintf(&w, "Ignored:   %s (test-issuer reads Issuers, ClusterIssuers, Secrets and ConfigMaps from the file)\n", o)
	}
	fmt.Fprintf(&w, "Policies:  %s\n", or(strings.Join(d.Policies, ", "), "none"))
	for _, x := range d.Exchanges {
		fmt.Fprintf(&w, "\n→ %s %s  (%s)\n", x.Method, x.URL, x.Op)
		for _, h := range x.RequestHeaders {
			fmt.Fprintf(&w, "    %s: %s\n", h.Name, h.Value)
		}
		for _, f := range x.RequestFields {
			fmt.Fprintf(&w, "    %s=%s\n", f.Name, f.Value)
		}
		if x.Error != "" {
			fmt.Fprintf(&w, "← no answer: %s\n", x.Error)
			continue
		}
		fmt.Fprintf(&w, "← %d\n", x.Status)
		for _, f := range x.ResponseFields {
			fmt.Fprintf(&w, "    %s: %s\n", f.Name, f.Value)
		}
	}
	w.WriteString("\n")
	if d.Token == nil {
		if err := pairs(&w, [][2]string{{"Result", "failed"}, {"Reason", d.Reason}, {"Message", d.Error}}); err != nil {
			return err
		}
		_, err := io.WriteString(t.Out, w.String())
		return err
	}
	tk := d.Token
	expiry := tk.ExpirySource
	if tk.ExpiryField != "" {
		expiry += " (" + tk.ExpiryField + ")"
	}
	refresh := "none: renewals log in again"
	if tk.RefreshField != "" {
		refresh = fmt.Sprintf("in %q: renewals %s", tk.RefreshField, tk.Renewals)
	}
	session := "left to expire (the issuer cannot revoke)"
	if d.Revoked {
		session = "revoked at the issuer"
	}
	exp := tk.ExpiresAt
	if err := pairs(&w, [][2]string{
		{"Result", "ok"},
		{"Token", fmt.Sprintf("%s, %s, from %q, fingerprint %s", tk.Scheme, tk.Format, tk.Field, tk.Fingerprint)},
		{"Lifetime", tk.Lifetime + ", expires " + stamp(now, &exp)},
		{"Expiry from", expiry},
		{"Refresh token", refresh},
		{"Renewal", stamp(now, d.RenewalTime) + ": " + d.RenewalRule},
		{"Session", session},
	}); err != nil {
		return err
	}
	_, err := io.WriteString(t.Out, w.String())
	return err
}
