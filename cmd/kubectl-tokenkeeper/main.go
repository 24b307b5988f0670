// Command kubectl-tokenkeeper is the kubectl plugin for tokenkeeper: `kubectl tokenkeeper status`,
// `renew`, `test-issuer`, `inspect`, `validate` and `policy`.
package main

import (
	"os"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/tokenkeeper/tokenkeeper/internal/cli"
)

func main() {
	os.Exit(cli.Main(genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}, os.Args[1:]))
}
