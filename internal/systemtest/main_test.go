package systemtest

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"
)

// binary is the mimi-hub executable TestMain built with the race detector
// ("" when the go command is missing: every test then skips).
var binary string

// skipReason says why binary is empty.
var skipReason string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	flag.Parse()
	if _, err := exec.LookPath("go"); err != nil {
		skipReason = "the go command is not available to build cmd/mimi-hub: " + err.Error()
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "mimi-systemtest-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "systemtest:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	if binary, err = Build(ctx, dir, true); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if testing.Verbose() {
		fmt.Printf("systemtest: built %s with -race in %v\n", binary, time.Since(start).Round(time.Millisecond))
	}
	return m.Run()
}

// needBinary skips the test when TestMain could not build mimi-hub.
func needBinary(t *testing.T) {
	t.Helper()
	if binary == "" {
		t.Skip("systemtest: " + skipReason)
	}
}
