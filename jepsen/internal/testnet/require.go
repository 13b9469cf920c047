package testnet

import (
	"os"
	"os/exec"
	"testing"
)

// RequireHost skips t unless it runs as root and finds the given tools
// (ip, iptables): tests that build networks need both. Under CI (the CI
// variable set, as .ci/run does), where a skip would hide the test, it
// fails instead.
func RequireHost(t testing.TB, tools ...string) {
	t.Helper()
	missing := func(why string) {
		t.Helper()
		if os.Getenv("CI") != "" {
			t.Fatalf("%s, and CI is set: failing rather than skipping", why)
		}
		t.Skip(why)
	}
	if os.Geteuid() != 0 {
		missing("needs root: creates network namespaces and iptables rules")
		return
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing("needs " + tool + " (jepsen/install.sh installs it)")
			return
		}
	}
}
