//go:build chaos

package failpoint

import (
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Env holds the rates, as "name=probability,name=probability" (probabilities from 0 to 1).
const Env = "TOKENKEEPER_FAILPOINTS"

var rates = sync.OnceValue(func() map[string]float64 {
	m := map[string]float64{}
	for _, kv := range strings.Split(os.Getenv(Env), ",") {
		name, p, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if f, err := strconv.ParseFloat(p, 64); ok && err == nil {
			m[name] = f
		}
	}
	return m
})

// Inject kills the process with SIGKILL, with the configured probability for name. It writes
// one line to stderr first so that the test can tell where each death happened.
func Inject(name string) {
	if p := rates()[name]; p > 0 && rand.Float64() < p {
		_, _ = os.Stderr.WriteString("failpoint: killed at " + name + "\n")
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // SIGKILL cannot be caught; wait for it
	}
}
