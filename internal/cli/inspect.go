package cli

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer"
)

// SecretInspection is what `inspect` shows of a Secret: never a value, a signature, or a hash of
// anything but a tokenkeeper token.
type SecretInspection struct {
	Namespace  string     `json:"namespace"`
	Name       string     `json:"name"`
	Credential string     `json:"credential,omitempty"`
	ExpiresAt  *time.Time `json:"expiresAt,omitempty"`
	Keys       []KeyInfo  `json:"keys"`
}

// KeyInfo describes one key of the Secret.
type KeyInfo struct {
	Key    string `json:"key"`
	Format string `json:"format,omitempty"` // JWT, opaque, or Authorization header around one of them; empty when not a token
	Scheme string `json:"scheme,omitempty"`
	Bytes  int    `json:"bytes"`
	// Fingerprint is the token's (as status.tokenFingerprint and Events show it), only for the
	// token and authorization keys of a tokenkeeper token Secret: a hash of a short secret such as
	// a password would let anyone who sees it test guesses offline.
	Fingerprint string `json:"fingerprint,omitempty"`
	// Header and Claims are a JWT's, decoded; never verified, never the signature.
	Header map[string]any `json:"header,omitempty"`
	Claims map[string]any `json:"claims,omitempty"`
	// ExpiresAt is a JWT's exp.
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
}

type inspectOptions struct {
	*Options
	output string
}

func newInspect(o *Options) *cobra.Command {
	i := &inspectOptions{Options: o}
	cmd := &cobra.Command{
		Use:   "inspect SECRET",
		Short: "Show a token Secret's token type, fingerprint, expiry and JWT claims — never the token; of anything else, key names and sizes",
		Example: `  kubectl tokenkeeper inspect orders-api-token -n shop
  kubectl tokenkeeper inspect orders-api-token -n shop -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return i.run(cmd.Context(), args[0]) },
	}
	cmd.Flags().StringVarP(&i.output, "output", "o", "", "output format: json or yaml")
	return cmd
}

func (i *inspectOptions) run(ctx context.Context, name string) error {
	c, ns, err := i.clientIn()
	if err != nil {
		return err
	}
	sec := &corev1.Secret{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, sec); err != nil {
		return err
	}
	out := Inspect(sec)
	if ok, err := printAs(i.Out, i.output, out); ok {
		return err
	}
	return i.print(out)
}

// Inspect describes sec's keys. Only the token of a tokenkeeper token Secret is described beyond
// its name and size; every other key (an input Secret's password, an issuer's api-key header, a
// template's output) shows no more than that.
func Inspect(sec *corev1.Secret) SecretInspection {
	token := isTokenSecret(sec)
	out := SecretInspection{Namespace: sec.Namespace, Name: sec.Name, Credential: sec.Labels[v1alpha1.LabelCredential], Keys: []KeyInfo{}}
	if v, err := time.Parse(time.RFC3339, sec.Annotations[v1alpha1.AnnotationExpiresAt]); err == nil {
		out.ExpiresAt = &v
	}
	keys := make([]string, 0, len(sec.Data))
	for k := range sec.Data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if token && (k == v1alpha1.SecretKeyToken || k == v1alpha1.SecretKeyAuthorization) {
			out.Keys = append(out.Keys, describeToken(k, string(sec.Data[k])))
		} else {
			out.Keys = append(out.Keys, KeyInfo{Key: k, Bytes: len(sec.Data[k])})
		}
	}
	return out
}

// isTokenSecret reports whether sec is a Secret tokenkeeper writes a token into (labels as the
// Credential reconciler sets them), not an input, state or unrelated Secret.
func isTokenSecret(sec *corev1.Secret) bool {
	l := sec.Labels
	return l[v1alpha1.LabelManagedBy] == v1alpha1.ManagedByValue && l[v1alpha1.LabelRole] == "token" && l[v1alpha1.LabelCredential] != ""
}

// describeToken describes the token or authorization key of a token Secret, whose value is the
// token or "<scheme> <token>": the fingerprint is always the token's, as status.tokenFingerprint
// and Events show it.
func describeToken(key, v string) KeyInfo {
	tok := v
	info := KeyInfo{Key: key, Format: "opaque", Bytes: len(v)}
	if scheme, rest, ok := strings.Cut(v, " "); ok && key == v1alpha1.SecretKeyAuthorization && !strings.ContainsAny(rest, " \n") {
		info.Scheme, tok = scheme, rest
	}
	info.Fingerprint = issuer.Fingerprint(tok)
	if h, claims, ok := jwtParts(tok); ok {
		info.Format, info.Header, info.Claims = "JWT", h, claims
		if exp, err := issuer.ParseTime(claims["exp"]); err == nil && !exp.IsZero() {
			info.ExpiresAt = &exp
		}
	}
	if info.Scheme != "" {
		info.Format = "Authorization header (" + info.Format + ")"
	}
	return info
}

func (i *inspectOptions) print(s SecretInspection) error {
	now := i.now()
	var b bytes.Buffer
	kv := [][2]string{{"Secret", s.Namespace + "/" + s.Name}, {"Credential", or(s.Credential, none)}, {"Expires", stamp(now, s.ExpiresAt)}}
	if err := pairs(&b, kv); err != nil {
		return err
	}
	b.WriteString("\n")
	rows := [][]string{}
	for _, k := range s.Keys {
		rows = append(rows, []string{k.Key, or(k.Format, none), fmt.Sprint(k.Bytes), or(k.Fingerprint, none), relative(now, k.ExpiresAt)})
	}
	if err := table(&b, []string{"KEY", "FORMAT", "BYTES", "FINGERPRINT", "JWT EXPIRES"}, rows); err != nil {
		return err
	}
	for _, k := range s.Keys {
		if k.Header != nil {
			fmt.Fprintf(&b, "\n%s: JWT header %s\n%s: JWT claims %s\n", k.Key, compact(k.Header), k.Key, compact(k.Claims))
		}
	}
	_, err := b.WriteTo(i.Out)
	return err
}
