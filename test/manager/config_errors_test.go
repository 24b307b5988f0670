package manager_test

import (
	"bytes"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A mistake in the manager's configuration is one line on stderr that names it, and an exit
// code: no usage text, no stack trace, no goroutine dump.
func TestManagerConfigErrors(t *testing.T) {
	env := controlPlane(t)
	dir := t.TempDir()
	bin, kcPath := env.ManagerBinary(t, dir)
	cases := map[string]struct {
		reason string
		args   []string
		code   int
		says   string
	}{
		"BadFlagValue": {
			reason: "the flag package's error, without the page of usage it prints by default",
			args:   []string{"--webhook-port=abc"}, code: 2, says: `invalid value "abc" for flag -webhook-port`,
		},
		"UnknownFlag": {
			reason: "a misspelt flag says which",
			args:   []string{"--allow-egress-cidr=10.0.0.1/32"}, code: 2, says: "flag provided but not defined: -allow-egress-cidr",
		},
		"BadEgressCIDR": {
			reason: "a value the manager checks itself is logged at ERROR, which carried a stack trace",
			args:   []string{"--allow-egress-cidrs=10.0.0.300/32"}, code: 1, says: "reading --allow-egress-cidrs",
		},
		"UnreadableKubeconfig": {
			reason: "controller-runtime's GetConfigOrDie logged this with a stack trace",
			args:   []string{"--kubeconfig=" + filepath.Join(dir, "missing")}, code: 1, says: "reading the kubeconfig",
		},
		"EmptySDSAudience": {
			reason: "SDS without an audience would accept any ServiceAccount token the API server knows",
			args:   []string{"--sds-bind-address=127.0.0.1:0", "--sds-audience="}, code: 1, says: "reading --sds-audience",
		},
		"TLSPortWithoutCertificate": {
			reason: "with certificates provided from outside (no self-managed one to fail first), the TLS ext_authz port would serve plaintext h2c",
			args:   []string{"--ext-authz-bind-address=127.0.0.1:0", "--webhook-cert-mode=external", "--webhook-cert-dir="}, code: 1, says: "reading --webhook-cert-dir",
		},
		"SDSWithoutCertificate": {
			reason: "SDS would fail only once running, looking for tls.crt in the working directory",
			args:   []string{"--sds-bind-address=127.0.0.1:0", "--webhook-cert-mode=external", "--webhook-cert-dir="}, code: 1, says: "reading --webhook-cert-dir",
		},
		"BadWebhooksMode": {
			reason: "an error found after connecting to the API server is one line too",
			args:   []string{"--webhooks=maybe"}, code: 1, says: `--webhooks=\"maybe\": want auto, on or off`,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			args := append([]string{"--kubeconfig=" + kcPath, "--leader-elect=false", "--metrics-bind-address=0",
				"--health-probe-bind-address=127.0.0.1:0"}, tc.args...)
			cmd := exec.CommandContext(t.Context(), bin, args...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != tc.code {
				t.Fatalf("%s: exit %v, want code %d\nstderr:\n%s", tc.reason, err, tc.code, stderr.String())
			}
			out := strings.TrimRight(stdout.String()+stderr.String(), "\n")
			if strings.Count(out, "\n") != 0 {
				t.Errorf("%s: output is %d lines, want one:\n%s", tc.reason, strings.Count(out, "\n")+1, out)
			}
			for _, noise := range []string{"stacktrace", "goroutine", ".go:", "Usage of"} {
				if strings.Contains(out, noise) {
					t.Errorf("%s: output contains %q:\n%s", tc.reason, noise, out)
				}
			}
			if !strings.Contains(out, tc.says) {
				t.Errorf("%s: output does not say %q:\n%s", tc.reason, tc.says, out)
			}
		})
	}
}
