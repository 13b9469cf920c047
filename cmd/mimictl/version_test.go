package main

import (
	"strings"
	"testing"

	"github.com/mimihub/mimi-hub/internal/buildinfo"
)

// TestVersion: -version prints the build's version line on stdout and
// needs no profile or command.
func TestVersion(t *testing.T) {
	t.Setenv("MIMICTL_HOME", t.TempDir())
	want := buildinfo.Read().Line("mimictl")
	for _, args := range [][]string{{"-version"}, {"-json", "-version"}} {
		code, out, errOut := runCLI(t, args...)
		if code != 0 || strings.TrimSpace(out) != want || errOut != "" {
			t.Fatalf("mimictl %q: exit %d, stdout %q (want %q), stderr %q", args, code, out, want, errOut)
		}
	}
	if code, out, _ := runCLI(t, "-h"); code != 0 || !strings.Contains(out, "mimictl -version") {
		t.Fatalf("help does not mention -version: %q", out)
	}
}
