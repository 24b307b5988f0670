package version

import (
	"os"
	"regexp"
	"testing"
)

func TestUserAgent(t *testing.T) {
	old := Version
	t.Cleanup(func() { Version = old })
	Version = "v9.9.9"
	if got := UserAgent(); got != "tokenkeeper/v9.9.9" {
		t.Errorf("UserAgent() = %q, want tokenkeeper/v9.9.9 (the stamped version)", got)
	}
}

// TestStampedByTheBuild: every -X in the Makefile and the krew script names this variable, so a
// release build is stamped (a -X naming a variable that no longer exists is silently ignored).
func TestStampedByTheBuild(t *testing.T) {
	const want = "github.com/tokenkeeper/tokenkeeper/internal/version.Version="
	for _, f := range []string{"../../Makefile", "../../hack/krew.sh"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, m := range regexp.MustCompile(`-X ([^ "]+=)`).FindAllStringSubmatch(string(b), -1) {
			if n++; m[1] != want {
				t.Errorf("%s stamps %s, want %s", f, m[1], want)
			}
		}
		if n == 0 {
			t.Errorf("%s stamps no version", f)
		}
	}
}
