package chaos_test

import (
	"os"
	"testing"

	"github.com/tokenkeeper/tokenkeeper/internal/testenv"
)

// TestMain skips the suite when no control plane can be started (KUBEBUILDER_ASSETS unset):
// every test here runs the manager against a real kube-apiserver.
func TestMain(m *testing.M) {
	testenv.ExitUnlessAvailable()
	os.Exit(m.Run())
}
