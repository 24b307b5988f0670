package manager_test

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

// controlPlane starts a kube-apiserver and etcd of the test's own, stopped after everything the
// test started (the manager among them) has been cleaned up.
func controlPlane(t *testing.T) *testenv.Env {
	t.Helper()
	env, err := testenv.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	return env
}
