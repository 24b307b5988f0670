// Package cli is kubectl-tokenkeeper: see, renew and test Credentials from the terminal. It reads
// and writes through the user's own kubeconfig and permissions, and runs the controller's own
// code for dry runs (login.DryRun, login.LocalValidator): no copy of the engine.
package cli

import (
	"context"
	"errors"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/version"
)

// Options are what every command shares: the kubeconfig flags kubectl users know, the output
// streams and the clock.
type Options struct {
	genericiooptions.IOStreams
	Kube *genericclioptions.ConfigFlags
	// Now is the clock relative times are shown against; time.Now when nil.
	Now func() time.Time
	// Color says whether to color output; by default only when stdout is a terminal.
	Color bool
	// ClusterResourceNamespace is where ClusterIssuers' Secrets live (the manager's namespace).
	ClusterResourceNamespace string
}

// ExitError ends the command with a code other than 1, after its output.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// NewCommand returns the kubectl-tokenkeeper command.
func NewCommand(streams genericiooptions.IOStreams) *cobra.Command {
	return newCommand(&Options{IOStreams: streams, Color: isTerminal(streams.Out)})
}

func newCommand(o *Options) *cobra.Command {
	o.Kube = genericclioptions.NewConfigFlags(true)
	cmd := &cobra.Command{
		Use:           "kubectl-tokenkeeper",
		Short:         "See, renew and test tokenkeeper Credentials",
		Version:       version.Version, // --version
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	o.Kube.AddFlags(cmd.PersistentFlags())
	cmd.PersistentFlags().StringVar(&o.ClusterResourceNamespace, "cluster-resource-namespace", "tokenkeeper-system",
		"namespace of the Secrets ClusterIssuers refer to without one (the manager's namespace)")
	cmd.AddCommand(newStatus(o), newRenew(o), newTestIssuer(o), newInspect(o), newValidate(o), newPolicy(o))
	return cmd
}

// Main runs the command and returns the process exit code.
func Main(streams genericiooptions.IOStreams, args []string) int {
	return execute(NewCommand(streams), streams, args)
}

func execute(cmd *cobra.Command, streams genericiooptions.IOStreams, args []string) int {
	cmd.SetArgs(args)
	cmd.SetOut(streams.Out)
	cmd.SetErr(streams.ErrOut)
	if err := cmd.Execute(); err != nil {
		_ = say(streams.ErrOut, "error: %v", err) // nowhere left to report a failed write
		var exit *ExitError
		if errors.As(err, &exit) {
			return exit.Code
		}
		return 1
	}
	return 0
}

func (o *Options) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

// Scheme knows tokenkeeper's kinds and Kubernetes' own.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(s)
	_ = v1alpha1.AddToScheme(s)
	return s
}

// client reads and writes with the user's kubeconfig; nothing is cached.
func (o *Options) client() (client.WithWatch, error) {
	cfg, err := o.Kube.ToRESTConfig()
	if err != nil {
		return nil, err
	}
	return client.NewWithWatch(cfg, client.Options{Scheme: Scheme()})
}

// clientIn is the client and the namespace the command works in.
func (o *Options) clientIn() (client.WithWatch, string, error) {
	c, err := o.client()
	if err != nil {
		return nil, "", err
	}
	ns, err := o.namespace()
	return c, ns, err
}

// namespace is -n, else the kubeconfig context's namespace, else default.
func (o *Options) namespace() (string, error) {
	ns, _, err := o.Kube.ToRawKubeConfigLoader().Namespace()
	return ns, err
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// timeout bounds one command's calls.
func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		d = time.Minute
	}
	return context.WithTimeout(ctx, d)
}
