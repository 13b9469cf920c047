package testnet

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
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

// LockForTest takes the network lock for a test, waiting while another
// run holds it (say a second `go test ./...` as root) and saying so in the
// test's log. The wait is bounded by the test binary's own deadline (go
// test -timeout) less a minute, not by the test's budget: start the budget
// after it. Give the lock to Create (Config.Lock); Network.Close releases
// it, and so does the end of the test if Create was never called.
func LockForTest(t *testing.T) *Lock {
	t.Helper()
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, cancel := context.WithCancel(context.Background())
	if d, ok := t.Deadline(); ok {
		ctx, cancel = context.WithDeadline(context.Background(), d.Add(-time.Minute))
	}
	defer cancel()
	lock, err := WaitLock(ctx, "", log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lock.Unlock() })
	return lock
}

// testWriter writes log lines to a test's log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
