package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/resolve"
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
issue — and records the value in status.lastRenewRequest, so the same value never renews twice.

With --wait it prints what the request waits for (a failure's backoff, a blocking configuration),
then the new token, or the issuer's reason for the attempt that answered the request (exit 1).`,
		Example: `  kubectl tokenkeeper renew orders-api -n shop --wait
  kubectl tokenkeeper renew --all -l team=payments -n shop`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return r.run(cmd.Context(), args) },
	}
	cmd.Flags().BoolVar(&r.all, "all", false, "every Credential of the namespace (with -l: the selected ones)")
	cmd.Flags().StringVarP(&r.selector, "selector", "l", "", "label selector, with --all")
	cmd.Flags().BoolVar(&r.wait, "wait", false, "wait for the new tokens, print progress and their expiry, or the issuer's reason for a failure (exit 1)")
	cmd.Flags().DurationVar(&r.timeout, "timeout", 2*time.Minute, "how long --wait waits, in all")
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
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, v1alpha1.AnnotationRenewRequestedAt, value)
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
	// --timeout bounds the whole wait, however many Credentials.
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	var failed []error
	for i := range creds {
		if err := r.waitRenewed(ctx, c, &creds[i], value); err != nil {
			failed = append(failed, err)
			if err := say(r.Out, "credential/%s: %v", creds[i].Name, err); err != nil {
				return err
			}
		}
	}
	switch {
	case len(failed) == 1 && len(creds) == 1:
		return fmt.Errorf("credential/%s: %w", creds[0].Name, failed[0])
	case len(failed) > 0:
		return fmt.Errorf("%d of %d Credentials not renewed", len(failed), len(creds))
	}
	return nil
}

// waitRenewed waits until the controller acted on value (status.lastRenewRequest) and holds a
// new token, or recorded a failure after the request. It prints what it sees meanwhile: queued
// behind a failure's backoff, renewing, blocked by the configuration.
func (r *renewOptions) waitRenewed(ctx context.Context, c client.Client, before *v1alpha1.Credential, value string) error {
	cred := &v1alpha1.Credential{}
	var (
		last    string // the last progress line printed
		outcome error
	)
	progress := func(line string) error {
		if line == last {
			return nil
		}
		last = line
		return say(r.Out, "credential/%s: %s", before.Name, line)
	}
	err := wait.PollUntilContextCancel(ctx, 250*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		if err := c.Get(ctx, client.ObjectKeyFromObject(before), cred); err != nil {
			return false, err
		}
		st := &cred.Status
		if st.LastRenewRequest == value {
			// Acted on: the attempt that followed the request, said before its outcome when the
			// wait saw only the queue.
			if err := progress(renewVerb(cred)); err != nil {
				return false, err
			}
			if st.TokenFingerprint != "" && st.TokenFingerprint != before.Status.TokenFingerprint {
				return true, nil
			}
			if failedSince(st, &before.Status) {
				outcome = failure(st)
				return true, nil
			}
			return false, nil
		}
		if why, ok := blockedBy(st); ok {
			return false, progress("blocked: " + why + "; the request waits until the configuration is fixed")
		}
		if t := st.NextRetryTime; st.FailedAttempts > 0 && t != nil && time.Now().Before(t.Time) {
			return false, progress(fmt.Sprintf("queued behind backoff until %s, after %s (%s)",
				t.UTC().Format(time.RFC3339), plural(int(st.FailedAttempts), "failed attempt"), st.LastFailureReason))
		}
		return false, progress(renewVerb(cred))
	})
	switch {
	case outcome != nil:
		return outcome
	case wait.Interrupted(err) || ctx.Err() != nil || atDeadline(ctx): // a read cut short by the deadline too
		if last != "" {
			return fmt.Errorf("not renewed within %s; last seen: %s", r.timeout, last)
		}
		return fmt.Errorf("not renewed within %s", r.timeout)
	case err != nil:
		return err
	}
	return say(r.Out, "credential/%s renewed: token expires %s, fingerprint %s", cred.Name,
		stamp(r.now(), timeOf(cred.Status.ExpiresAt)), cred.Status.TokenFingerprint)
}

// atDeadline reports whether ctx's deadline is less than a second away: the client's rate
// limiter refuses a read it predicts would pass the deadline before the context ends.
func atDeadline(ctx context.Context) bool {
	d, ok := ctx.Deadline()
	return ok && time.Until(d) < time.Second
}

// renewVerb is what the controller does for a request it acts on now.
func renewVerb(cred *v1alpha1.Credential) string {
	return "logging in (or refreshing) at " + resolve.IssuerKey(cred.Spec.IssuerRef)
}

// failedSince says whether an attempt failed after before was read: one more failed attempt, or
// a later failure time.
func failedSince(st, before *v1alpha1.CredentialStatus) bool {
	if st.FailedAttempts > before.FailedAttempts {
		return true
	}
	return st.FailedAttempts > 0 && st.LastFailureTime != nil &&
		(before.LastFailureTime == nil || st.LastFailureTime.After(before.LastFailureTime.Time))
}

// failure is the issuer's reason for the failed attempt: the Issuing condition's message (the
// Ready condition still describes the old token while it is valid), else Ready's.
func failure(st *v1alpha1.CredentialStatus) error {
	reason, msg := st.LastFailureReason, ""
	if c := meta.FindStatusCondition(st.Conditions, string(v1alpha1.ConditionIssuing)); c != nil && c.Status == metav1.ConditionFalse && c.Reason == reason {
		msg = c.Message
		// "waiting to retry at T: what failed" reads better as "what failed; next attempt at T".
		if rest, ok := strings.CutPrefix(msg, "waiting to retry at "); ok {
			if at, what, ok := strings.Cut(rest, ": "); ok {
				msg = what + "; next attempt at " + at
			}
		}
	} else if c := meta.FindStatusCondition(st.Conditions, string(v1alpha1.ConditionReady)); c != nil && c.Status == metav1.ConditionFalse {
		reason, msg = or(reason, c.Reason), c.Message
	}
	if msg == "" {
		return fmt.Errorf("renewal failed (%s)", or(reason, "no reason recorded"))
	}
	return fmt.Errorf("renewal failed (%s): %s", or(reason, "no reason recorded"), msg)
}

// blockedBy is the reason and message of a Credential whose configuration stops every renewal
// (the controller's blocked state: Issuing False "waiting for the configuration to be fixed: …",
// Ready True while the token in the Secret is valid).
func blockedBy(st *v1alpha1.CredentialStatus) (string, bool) {
	c := meta.FindStatusCondition(st.Conditions, string(v1alpha1.ConditionIssuing))
	msg, found := "", false
	if c != nil && c.Status == metav1.ConditionFalse {
		msg, found = strings.CutPrefix(c.Message, "waiting for the configuration to be fixed")
	}
	if !found {
		return "", false
	}
	if msg = strings.TrimSpace(strings.TrimPrefix(msg, ":")); msg != "" {
		return c.Reason + ": " + msg, true
	}
	return c.Reason, true
}

// plural is "1 failed attempt", "3 failed attempts".
func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
