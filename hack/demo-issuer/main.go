// Command demo-issuer serves the five seed APIs and OAuth2 (internal/demo) over HTTPS on
// consecutive ports, with tokens that live a few minutes, and writes the manifests that use them.
// `make demo` runs it on the node address so that the manager's pods can reach it.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tokenkeeper/tokenkeeper/internal/demo"
)

func main() {
	ip := flag.String("ip", "127.0.0.1", "address to serve on (the node IP for pods)")
	port := flag.Int("port", 9100, "first port; the six issuers use consecutive ports")
	lifetime := flag.Duration("lifetime", 3*time.Minute, "access token lifetime")
	namespace := flag.String("namespace", "demo", "namespace of the generated objects")
	out := flag.String("manifests", "bin/demo/issuers.yaml", "where to write the manifests")
	flag.Parse()
	if err := run(*ip, *port, *lifetime, *namespace, *out); err != nil {
		fmt.Fprintln(os.Stderr, "demo-issuer:", err)
		os.Exit(1)
	}
}

func run(ip string, port int, lifetime time.Duration, namespace, out string) error {
	d, err := demo.Start(ip, port, lifetime, namespace)
	if err != nil {
		return err
	}
	defer d.Close()
	for _, s := range d.Servers {
		fmt.Printf("demo-issuer: %s at %s (tokens live %s)\n", s.Flavor, s.URL(), lifetime)
	}
	manifests, err := d.YAML()
	if err != nil {
		return err
	}
	if err := os.WriteFile(out, manifests, 0o600); err != nil {
		return err
	}
	fmt.Printf("demo-issuer: manifests in %s\n", out)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	<-sigs
	return nil
}
