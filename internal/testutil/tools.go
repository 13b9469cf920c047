package testutil

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// RequireTools skips t unless every tool is on PATH, saying which is
// missing and what installs it. Under CI (the CI variable set, as .ci/run
// does, after installing them) it fails instead: a skip there would hide
// the test.
func RequireTools(t testing.TB, install string, tools ...string) {
	t.Helper()
	var missing []string
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) == 0 {
		return
	}
	why := "needs " + strings.Join(missing, ", ") + " (" + install + ")"
	if os.Getenv("CI") != "" {
		t.Fatalf("%s, and CI is set: failing rather than skipping", why)
	}
	t.Skip(why)
}
