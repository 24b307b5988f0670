package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/controllers/credential"
)

type renewOptions struct {
	*Options
	all      bool
	selector string
	wait     bool
	timeout  time.Duration
}

func newRenew(o *Options) *cobra.Command {
	r := &renewOptions{Options: o}
	cmd := &cobra.Command{
		Use:   "renew (NAME | --all [-l SELECTOR])",
		Short: "Renew tokens now, even fresh ones (within policy, Retry-After and backoff)",
		Long: `renew sets the tokenkeeper.io/renew-requested-at annotation to the current time. The
controller renews each Credential once per value: a refresh, or a login, now — still within its
TokenPolicy, the issuer's Retry-After, the failure backoff and the 5-second minimum after an
issue — and records the value in status.lastRenewRequest, so the same value never renews twice.`,
		Example: `  kubectl tokenkeeper renew orders-api -n shop --wait
  kubectl tokenkeeper renew --all -l team=payments -n shop`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return r.run(cmd.Context(), args) },
	}
	cmd.Flags().BoolVar(&r.all, "all", false, "every Credential of the namespace (with -l: the selected ones)")
	cmd.Flags().StringVarP(&r.selector, "selector", "l", "", "label selector, with --all")
	cmd.Flags().BoolVar(&r.wait, "wait", false, "wait for the new tokens and print their expiry")
	cmd.Flags().DurationVar(&r.timeout, "timeout", 2*time.Minute, "how long --wait waits")
	return cmd
}

func (r *renewOptions) run(ctx context.Context, args []string) error {
	if (len(args) == 1) == r.all {
		return errors.New("name one Credential, or use --all")
	}
	if r.selector != "" && !r.all {
		return errors.New("-l selects Credentials for --all")
	}
	c, ns, err := r.clientIn()
	if err != nil {
		return err
	}
	var creds []v1alpha1.Credential
	if r.all {
		list := &v1alpha1.CredentialList{}
		sel, err := selector(r.selector)
		if err != nil {
			return err
		}
		if err := c.List(ctx, list, client.InNamespace(ns), client.MatchingLabelsSelector{Selector: sel}); err != nil {
			return err
		}
		creds = list.Items
	} else {
		cred := &v1alpha1.Credential{}
		if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: args[0]}, cred); err != nil {
			return err
		}
		creds = []v1alpha1.Credential{*cred}
	}
	if len(creds) == 0 {
		return say(r.ErrOut, "No Credentials found.")
	}
	value := time.Now().UTC().Format(time.RFC3339Nano) // a new value for each request, whatever the display clock
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, credential.AnnotationRenewRequestedAt, value)
	for i := range creds {
		if err := c.Patch(ctx, &creds[i], client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
			return fmt.Errorf("credential %s: %w", creds[i].Name, err)
		}
		if err := say(r.Out, "credential/%s renewal requested (%s)", creds[i].Name, value); err != nil {
			return err
		}
	}
	if !r.wait {
		return nil
	}
	var failed []string
	for i := range creds {
		cred, err := r.waitRenewed(ctx, c, &creds[i], value)
		if err != nil {
			failed = append(failed, err.Error())
			if err := say(r.Out, "credential/%s: %v", creds[i].Name, err); err != nil {
				return err
			}
			continue
		}
		exp := timeOf(cred.Status.ExpiresAt)
		if err := say(r.Out, "credential/%s renewed: token expires %s", cred.Name, stamp(r.now(), exp)); err != nil {
			return err
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d Credentials not renewed", len(failed), len(creds))
	}
	return nil
}

// waitRenewed waits until the controller handled value and holds a new token, or reports the
// failure it recorded instead.
func (r *renewOptions) waitRenewed(ctx context.Context, c client.Client, before *v1alpha1.Credential, value string) (*v1alpha1.Credential, error) {
	cred := &v1alpha1.Credential{}
	var failure error
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, r.timeout, true, func(ctx context.Context) (bool, error) {
		if err := c.Get(ctx, client.ObjectKeyFromObject(before), cred); err != nil {
			return false, err
		}
		st := &cred.Status
		if st.LastRenewRequest != value {
			return false, nil
		}
		if st.TokenFingerprint != "" && st.TokenFingerprint != before.Status.TokenFingerprint {
			return true, nil
		}
		if st.FailedAttempts > before.Status.FailedAttempts {
			msg := st.LastFailureReason
			if c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady); c != nil && c.Message != "" {
				msg += ": " + c.Message
			}
			failure = fmt.Errorf("renewal failed: %s", msg)
			return true, nil
		}
		return false, nil
	})
	if failure != nil {
		return cred, failure
	}
	if wait.Interrupted(err) {
		return cred, fmt.Errorf("no new token within %s (status.lastRenewRequest %q)", r.timeout, cred.Status.LastRenewRequest)
	}
	return cred, err
}
