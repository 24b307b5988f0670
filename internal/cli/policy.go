package cli

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/policy"
	"github.com/tokenkeeper/tokenkeeper/internal/resolve"
)

// builtIn is the source of a value no policy set.
const builtIn = "(built-in)"

// NamespacePolicy is what `policy NAMESPACE` shows: the TokenPolicies selecting it and the
// combined limits and defaults, each with the policy it came from.
type NamespacePolicy struct {
	Namespace string           `json:"namespace"`
	Policies  []SelectedPolicy `json:"policies"`
	Settings  []Setting        `json:"settings"`
}

// SelectedPolicy is one TokenPolicy in force, highest priority first.
type SelectedPolicy struct {
	Name     string `json:"name"`
	Priority int32  `json:"priority"`
	Selector string `json:"selector"`
}

// Setting is one combined value and where it came from.
type Setting struct {
	Field string `json:"field"`
	Value string `json:"value"`
	From  string `json:"from"`
}

type policyOptions struct {
	*Options
	output string
}

func newPolicy(o *Options) *cobra.Command {
	p := &policyOptions{Options: o}
	cmd := &cobra.Command{
		Use:   "policy [NAMESPACE]",
		Short: "The TokenPolicies selecting a namespace and the limits and defaults they combine to",
		Long: `policy lists the TokenPolicies that select the namespace (-n or the argument), highest priority
first, and each combined value with the policy it came from: defaults from the highest-priority
policy that sets them, limits from the strictest, allow-lists from every policy that has one (a
value must be allowed by all of them).`,
		Example: `  kubectl tokenkeeper policy shop
  kubectl tokenkeeper policy -n shop -o yaml`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return p.run(cmd.Context(), args) },
	}
	cmd.Flags().StringVarP(&p.output, "output", "o", "", "output format: json or yaml")
	return cmd
}

func (p *policyOptions) run(ctx context.Context, args []string) error {
	ns, err := p.namespace()
	if err != nil {
		return err
	}
	if len(args) == 1 {
		ns = args[0]
	}
	c, err := p.client()
	if err != nil {
		return err
	}
	if err := c.Get(ctx, types.NamespacedName{Name: ns}, &corev1.Namespace{}); err != nil {
		return err
	}
	r := &resolve.Resolver{Client: c, APIReader: c}
	sel, err := r.Policies(ctx, ns)
	if err != nil {
		return err
	}
	out := Combine(ns, sel)
	if ok, err := printAs(p.Out, p.output, out); ok {
		return err
	}
	rows := make([][]string, 0, len(out.Policies))
	for _, sp := range out.Policies {
		rows = append(rows, []string{sp.Name, fmt.Sprint(sp.Priority), sp.Selector})
	}
	var b bytes.Buffer
	b.WriteString("Namespace: " + ns + "\n\n")
	if len(rows) == 0 {
		b.WriteString("No TokenPolicy selects it: built-in defaults, no limits.\n")
	} else if err := table(&b, []string{"POLICY", "PRIORITY", "SELECTOR"}, rows); err != nil {
		return err
	}
	b.WriteString("\n")
	rows = rows[:0]
	for _, s := range out.Settings {
		rows = append(rows, []string{s.Field, s.Value, s.From})
	}
	if err := table(&b, []string{"SETTING", "VALUE", "FROM"}, rows); err != nil {
		return err
	}
	_, err = b.WriteTo(p.Out)
	return err
}

// Combine resolves the selecting policies (highest priority first) as the controller does.
func Combine(ns string, selecting []v1alpha1.TokenPolicy) NamespacePolicy {
	out := NamespacePolicy{Namespace: ns, Policies: []SelectedPolicy{}}
	for _, p := range selecting {
		sel := "every namespace"
		if p.Spec.NamespaceSelector != nil {
			sel = metav1.FormatLabelSelector(p.Spec.NamespaceSelector)
		}
		out.Policies = append(out.Policies, SelectedPolicy{Name: p.Name, Priority: p.Spec.Priority, Selector: sel})
	}
	eff, _ := policy.Resolve(selecting, nil)
	from := func(field string) string { return or(eff.Sources[field], builtIn) }
	dur := func(d interface{ String() string }, zero bool, unset string) string {
		if zero {
			return unset
		}
		return d.String()
	}
	add := func(field, value string) { out.Settings = append(out.Settings, Setting{field, value, from(field)}) }
	add(policy.FieldSessionDefault, dur(eff.SessionDuration, eff.SessionDuration == 0, "the issuer's"))
	add(policy.FieldSessionMax, dur(eff.MaxSessionDuration, eff.MaxSessionDuration == 0, "no limit"))
	add(policy.FieldBeforeExpiryPercent, fmt.Sprintf("%d%%", eff.BeforeExpiryPercent))
	add(policy.FieldMinimumLead, eff.MinimumLead.String())
	add(policy.FieldMaxSessionAge, dur(eff.MaxSessionAge, eff.MaxSessionAge == 0, "no limit"))
	add(policy.FieldRevokeOnDelete, fmt.Sprint(eff.RevokeOnDelete))
	https := strings.Join(eff.RequireHTTPSFrom(), ", ")
	out.Settings = append(out.Settings, Setting{"requireHTTPS", fmt.Sprint(eff.RequireHTTPS), or(https, builtIn)})
	lists := func(field string, ls []policy.Lists) {
		if len(ls) == 0 {
			out.Settings = append(out.Settings, Setting{field, "any", builtIn})
		}
		for _, l := range ls {
			out.Settings = append(out.Settings, Setting{field, strings.Join(l.Patterns, " "), l.Policy})
		}
	}
	lists("allowedIssuers", eff.AllowedIssuers())
	lists("allowedAudiences", eff.AllowedAudiences())
	leeway := "the validator's"
	if eff.Leeway != nil {
		leeway = eff.Leeway.String()
	}
	add(policy.FieldLeeway, leeway)
	add(policy.FieldMaxTokenAge, dur(eff.MaxTokenAge, eff.MaxTokenAge == 0, "no limit"))
	return out
}
