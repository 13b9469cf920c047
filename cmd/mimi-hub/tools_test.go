package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mimihub/mimi-hub/cluster"
	"github.com/mimihub/mimi-hub/internal/systemtest"
)

func noEnv(string) string { return "" }

// TestHelpShowsDefaults: -h names every listen address's default and the
// cluster's real timing defaults (the help once said 50ms for a 10ms
// commit timeout).
func TestHelpShowsDefaults(t *testing.T) {
	var out bytes.Buffer
	_, err := loadConfig([]string{"-h"}, noEnv, &out)
	if err == nil {
		t.Fatal("-h did not stop parsing")
	}
	help := out.String()
	for _, want := range []string{
		"-federation-addr string", "(default 127.0.0.1:8443)",
		"(default 127.0.0.1:8444)", "(default 127.0.0.1:8445)", "(default 127.0.0.1:8446)", "(default 127.0.0.1:8447)",
		"-data string", "(default mimi-hub-data)",
		"-raft-commit-timeout duration",
		"-log-format string",
		"-version",
		"mimi-hub healthcheck [flags]",
		"-peer DOMAIN=HOST:PORT",
		"dns:NAME:PORT",
	} {
		if !strings.Contains(help, want) {
			t.Errorf("-h lacks %q", want)
		}
	}
	for flagName, def := range map[string]time.Duration{
		"raft-commit-timeout":    cluster.DefaultCommitTimeout,
		"raft-heartbeat-timeout": cluster.DefaultHeartbeatTimeout,
		"raft-election-timeout":  cluster.DefaultElectionTimeout,
		"raft-lease-timeout":     cluster.DefaultLeaderLeaseTimeout,
		"leader-wait":            cluster.DefaultLeaderWait,
		"dead-node-remove-after": cluster.DefaultDeadServerRemoval,
		"snapshot-interval":      cluster.DefaultSnapshotInterval,
	} {
		if got := helpDefault(help, flagName); got != def.String() {
			t.Errorf("-h says -%s defaults to %q; the cluster's default is %v", flagName, got, def)
		}
	}
	if got := helpDefault(help, "require-consent"); got != "" {
		t.Errorf("-require-consent shows default %q; a switch that is off shows none", got)
	}
}

// helpDefault returns the "(default X)" -h prints for -name.
func helpDefault(help, name string) string {
	_, rest, ok := strings.Cut(help, "\n  -"+name+" ")
	if !ok {
		_, rest, ok = strings.Cut(help, "\n  -"+name+"\n")
	}
	if !ok {
		return "flag missing"
	}
	if next := strings.Index(rest, "\n  -"); next >= 0 {
		rest = rest[:next]
	}
	_, def, ok := strings.Cut(rest, "(default ")
	if !ok {
		return ""
	}
	return strings.TrimSuffix(strings.TrimSpace(def), ")")
}

// TestDefaultsAreTheClusters: the daemon's defaults pass the cluster
// exactly the values it would choose itself.
func TestDefaultsAreTheClusters(t *testing.T) {
	c, err := loadConfig(nil, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	rc := c.hubConfig(material{}, discardLogger()).Raft
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"CommitTimeout", rc.CommitTimeout, cluster.DefaultCommitTimeout},
		{"HeartbeatTimeout", rc.HeartbeatTimeout, cluster.DefaultHeartbeatTimeout},
		{"ElectionTimeout", rc.ElectionTimeout, cluster.DefaultElectionTimeout},
		{"LeaderLeaseTimeout", rc.LeaderLeaseTimeout, cluster.DefaultLeaderLeaseTimeout},
		{"LeaderWait", rc.LeaderWait, cluster.DefaultLeaderWait},
		{"DeadServerRemoveAfter", rc.DeadServerRemoveAfter, cluster.DefaultDeadServerRemoval},
		{"SnapshotInterval", rc.SnapshotInterval, cluster.DefaultSnapshotInterval},
		{"SnapshotThreshold", rc.SnapshotThreshold, uint64(cluster.DefaultSnapshotThreshold)},
		{"TrailingLogs", rc.TrailingLogs, uint64(cluster.DefaultTrailingLogs)},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %v, want the cluster's default %v", tc.name, tc.got, tc.want)
		}
	}
}

func TestRequireConsentIsASwitch(t *testing.T) {
	c, err := loadConfig([]string{"-require-consent", "-domain", "a.example"}, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !c.RequireConsent || c.Domain != "a.example" {
		t.Fatalf("-require-consent -domain a.example gave %+v", c)
	}
	c, err = loadConfig([]string{"-require-consent=false"}, noEnv, io.Discard)
	if err != nil || c.RequireConsent {
		t.Fatalf("-require-consent=false: %v %v", c.RequireConsent, err)
	}
}

func TestLogFormat(t *testing.T) {
	for _, tc := range []struct {
		format string
		check  func(t *testing.T, line []byte)
		err    string
	}{
		{format: "json", check: func(t *testing.T, line []byte) {
			var rec map[string]any
			if err := json.Unmarshal(line, &rec); err != nil {
				t.Fatalf("not JSON: %q: %v", line, err)
			}
			if rec["msg"] != "hello" || rec["level"] != "INFO" || rec["node"] != "n1" || rec["time"] == nil {
				t.Fatalf("record %v", rec)
			}
		}},
		{format: "text", check: func(t *testing.T, line []byte) {
			if !bytes.Contains(line, []byte("level=INFO msg=hello node=n1")) {
				t.Fatalf("text line %q", line)
			}
		}},
		{format: "yaml", err: `log format "yaml"`},
	} {
		t.Run(tc.format, func(t *testing.T) {
			c, err := loadConfig(nil, func(k string) string {
				if k == "MIMI_HUB_LOG_FORMAT" {
					return tc.format
				}
				return ""
			}, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			log, err := c.logger(&out, new(slog.LevelVar))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			log.Debug("hidden at the default level")
			log.Info("hello", "node", "n1")
			lines := bytes.Split(bytes.TrimSpace(out.Bytes()), []byte("\n"))
			if len(lines) != 1 {
				t.Fatalf("%d lines, want 1: %q", len(lines), out.String())
			}
			tc.check(t, lines[0])
		})
	}
}

func TestProbeAddr(t *testing.T) {
	for in, want := range map[string]string{
		":8445":           "127.0.0.1:8445",
		"0.0.0.0:8445":    "127.0.0.1:8445",
		"[::]:8445":       "[::1]:8445",
		"10.0.0.1:8445":   "10.0.0.1:8445",
		"mimi-hub-0:8445": "mimi-hub-0:8445",
	} {
		if got, err := probeAddr(in); err != nil || got != want {
			t.Errorf("probeAddr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := probeAddr("8445"); err == nil {
		t.Error("probeAddr accepted an address without a port")
	}
}

// TestHealthcheck runs `mimi-hub healthcheck` against a fake operations
// listener: 0 when /readyz answers 200, an error naming the answer
// otherwise, and an error when nothing listens.
func TestHealthcheck(t *testing.T) {
	ready := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		if !ready {
			http.Error(w, "not ready: no leader", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	env := func(k string) string {
		if k == "MIMI_HUB_OPS_ADDR" {
			return "0.0.0.0:" + port // a container's wildcard listener
		}
		return ""
	}
	var out bytes.Buffer
	if handled, err := runTool([]string{"healthcheck"}, env, &out, io.Discard); !handled || err != nil {
		t.Fatalf("ready node: handled %v, err %v", handled, err)
	}
	if strings.TrimSpace(out.String()) != "ready" {
		t.Fatalf("printed %q", out.String())
	}
	ready = false
	_, err := runTool([]string{"healthcheck"}, env, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "no leader") {
		t.Fatalf("unready node: err = %v", err)
	}
	srv.Close()
	if _, err := runTool([]string{"healthcheck", "-ops-addr", srv.Listener.Addr().String()}, noEnv, io.Discard, io.Discard); err == nil {
		t.Fatal("healthcheck succeeded with nothing listening")
	}
	if _, err := runTool([]string{"healthcheck", "-no-such-flag"}, noEnv, io.Discard, io.Discard); err == nil {
		t.Fatal("healthcheck accepted an unknown flag")
	}
}

// TestVersionBinary builds mimi-hub and runs -version: it prints the
// revision the go command recorded, which in a clone of the repository
// (CI) is the commit checked out. A git worktree (.git is a file) gets no
// VCS stamp from the go command; then the binary must say so.
func TestVersionBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds mimi-hub")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin, err := systemtest.Build(ctx, t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, bin, "-version").Output()
	if err != nil {
		t.Fatalf("-version: %v", err)
	}
	line := strings.TrimSpace(string(out))
	// "mimi-hub VERSION revision REV ...": VERSION is (devel) without a
	// VCS stamp, else the pseudo-version the go command derives from it.
	if f := strings.Fields(line); len(f) < 4 || f[0] != "mimi-hub" || f[2] != "revision" {
		t.Fatalf("-version printed %q", line)
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	head, gitErr := exec.CommandContext(ctx, "git", "-C", root, "rev-parse", "HEAD").Output()
	fi, statErr := os.Stat(filepath.Join(root, ".git"))
	switch {
	case gitErr != nil || statErr != nil:
		t.Logf("not a git checkout (%v %v): -version says %q", gitErr, statErr, line)
		if os.Getenv("CI") != "" {
			t.Fatal("CI builds from a clone: the binary must name its revision")
		}
	case !fi.IsDir():
		t.Logf("a git worktree: the go command records no revision; -version says %q", line)
		if !strings.Contains(line, "revision unknown") {
			t.Fatalf("no VCS stamp, yet -version printed %q", line)
		}
	default:
		if rev := strings.TrimSpace(string(head)); !strings.Contains(line, "revision "+rev) {
			t.Fatalf("-version printed %q, want revision %s", line, rev)
		}
	}
	// -version wins over the other flags on the line.
	out, err = exec.CommandContext(ctx, bin, "-domain", "x", "-version").Output()
	if err != nil || strings.TrimSpace(string(out)) != line {
		t.Fatalf("-domain x -version: %q %v", out, err)
	}
}
