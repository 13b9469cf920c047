package main

import (
	"context"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mimihub/mimi-hub/jepsen/internal/check"
	"github.com/mimihub/mimi-hub/jepsen/internal/testnet"
)

func TestParseOptions(t *testing.T) {
	tests := []struct {
		args    []string
		ok      bool
		work    int
		nemeses int
	}{
		{nil, true, 3, 7},
		{[]string{"-workload", "messages", "-nemesis", "none"}, true, 1, 0},
		{[]string{"-workload", "commit-race,keypackages", "-nemesis", "kill,partition"}, true, 2, 2},
		{[]string{"-nemesis", "earthquake"}, false, 0, 0},
		{[]string{"-nodes", "0"}, false, 0, 0},
		{[]string{"stray"}, false, 0, 0},
	}
	for _, tt := range tests {
		o, err := parseOptions(tt.args)
		if (err == nil) != tt.ok {
			t.Errorf("%q: err %v", tt.args, err)
			continue
		}
		if err == nil && (len(o.workloads) != tt.work || len(o.nemeses) != tt.nemeses) {
			t.Errorf("%q: workloads %v nemeses %v", tt.args, o.workloads, o.nemeses)
		}
	}
}

// e2e skips unless end-to-end runs are asked for and possible.
func e2e(t *testing.T) {
	t.Helper()
	if os.Getenv("MIMI_JEPSEN_E2E") == "" {
		t.Skip("set MIMI_JEPSEN_E2E=1 to run (short harness runs, about a minute each; .ci/run does, in its fault-injection step)")
	}
	testnet.RequireHost(t, "ip", "iptables")
}

// productHasUnsafeTag reports whether some Go file outside jepsen/ is
// built only with the unsafe tag.
func productHasUnsafeTag(t *testing.T) bool {
	t.Helper()
	root, err := moduleRoot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	found := false
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || found {
			return nil
		}
		if d.IsDir() && (d.Name() == "jepsen" || d.Name() == "node_modules" || strings.HasPrefix(d.Name(), ".")) {
			return filepath.SkipDir
		}
		if !strings.HasSuffix(p, ".go") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err == nil && strings.Contains(string(b), "//go:build "+unsafeTag) {
			found = true
		}
		return nil
	})
	return found
}

func runE2E(t *testing.T, o *options) outcome {
	t.Helper()
	o.out = t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	res, err := execute(ctx, o, log)
	if err != nil {
		t.Fatal(err)
	}
	summary, _ := os.ReadFile(filepath.Join(o.out, "summary.txt"))
	t.Logf("summary:\n%s", summary)
	return res
}

func TestE2EUnsafeBuildFindsForks(t *testing.T) {
	e2e(t)
	if !productHasUnsafeTag(t) {
		t.Skipf("the product has no %s build tag yet", unsafeTag)
	}
	o, err := parseOptions([]string{"-workload", "commit-race", "-nemesis", "none", "-time", "30s", "-nodes", "3", "-unsafe-build"})
	if err != nil {
		t.Fatal(err)
	}
	res := runE2E(t, o)
	if !res.found(string(check.ForkedEpoch)) {
		t.Errorf("a hub without its epoch check ran 30s of commit races and the harness found no forked epoch; anomalies: %v", res.Anomalies)
	}
}

func TestE2ESafeBuildUnderKills(t *testing.T) {
	e2e(t)
	o, err := parseOptions([]string{"-workload", "all", "-nemesis", "kill,pause", "-time", "30s", "-nodes", "3", "-quiet", "3s", "-fault", "5s"})
	if err != nil {
		t.Fatal(err)
	}
	res := runE2E(t, o)
	if !res.Valid {
		t.Errorf("anomalies: %v", res.Anomalies)
	}
}
