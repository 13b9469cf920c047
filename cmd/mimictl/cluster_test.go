package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mimihub/mimi-hub/cluster"
	"github.com/mimihub/mimi-hub/fsm"
	"github.com/mimihub/mimi-hub/internal/hub"
	"github.com/mimihub/mimi-hub/internal/testutil"
)

// TestClusterCommands runs every cluster command against a 3-node
// provider whose operations listeners want an admin token.
func TestClusterCommands(t *testing.T) {
	var left atomic.Int32
	c := testutil.StartCluster(t, testutil.ClusterOptions{Configure: func(i int, cfg *hub.Config) {
		cfg.AdminToken = "t0ken"
		cfg.OnLeave = func() { left.Add(1) }
	}}, 3)
	t.Setenv("MIMICTL_ADMIN_TOKEN", "t0ken")
	leader := c.Leader(t)
	followers := c.Followers(t)
	ops := func(p *testutil.Provider) string { return p.OpsURL() }

	// ok runs mimictl and wants success.
	ok := func(t *testing.T, args ...string) string {
		t.Helper()
		code, out, errOut := runCLI(t, args...)
		if code != 0 {
			t.Fatalf("mimictl %q: exit %d\nstdout: %s\nstderr: %s", args, code, out, errOut)
		}
		return out
	}
	// fails runs mimictl and wants exit status code and want in stderr.
	fails := func(t *testing.T, code int, want string, args ...string) {
		t.Helper()
		got, out, errOut := runCLI(t, args...)
		if got != code || !strings.Contains(errOut, want) {
			t.Fatalf("mimictl %q: exit %d, stdout %q, stderr %q; want exit %d and %q", args, got, out, errOut, code, want)
		}
	}

	t.Run("status", func(t *testing.T) {
		out := ok(t, "cluster", "status", "-ops", ops(followers[0]))
		if !strings.Contains(out, "leader "+leader.Config.NodeID+" at ") || !strings.Contains(out, "(as "+followers[0].Config.NodeID+" sees it)") {
			t.Errorf("status heading:\n%s", out)
		}
		if !hasRow(out, "NODE", "SUFFRAGE", "GOSSIP", "LOG", "LEADER", "STATE", "TERM", "COMMIT", "APPLIED", "LAST", "CONTACT", "RAFT", "ADDR") {
			t.Errorf("status header:\n%s", out)
		}
		for _, p := range c.Nodes {
			id := p.Config.NodeID
			level := strconv.Itoa(fsm.LogLevel)
			want := []string{id, "voter", "alive", level, "follower"}
			if p == leader {
				want = []string{id, "voter", "alive", level, "*", "leader"}
			}
			if !hasRow(out, want...) {
				t.Errorf("status lacks %q:\n%s", want, out)
			}
		}
		out = ok(t, "-json", "cluster", "status", "-ops", ops(leader))
		var st cluster.ClusterStatus
		if strings.Count(out, "\n") != 1 || json.Unmarshal([]byte(out), &st) != nil || len(st.Servers) != 3 || st.LeaderID != leader.Config.NodeID {
			t.Errorf("status -json: %q", out)
		}
		// Without the token the node refuses, and says how to pass it.
		t.Setenv("MIMICTL_ADMIN_TOKEN", "")
		fails(t, 1, "-admin-token", "cluster", "status", "-ops", ops(leader))
		ok(t, "cluster", "status", "-ops", ops(leader), "-admin-token", "t0ken")
		t.Setenv("MIMICTL_ADMIN_TOKEN", "t0ken")
	})

	t.Run("operator status shows readiness", func(t *testing.T) {
		out := ok(t, "status", "-ops", ops(followers[0]))
		if !hasRow(out, "ready", "yes") {
			t.Errorf("status lacks readiness:\n%s", out)
		}
	})

	dir := t.TempDir()
	backup := filepath.Join(dir, "a.backup")
	t.Run("snapshot", func(t *testing.T) {
		out := ok(t, "cluster", "snapshot", "-ops", ops(followers[0]), "-o", backup)
		if !strings.HasPrefix(out, "wrote "+backup+": ") || !strings.Contains(out, "the state up to log index") {
			t.Errorf("snapshot: %q", out)
		}
		b, err := os.ReadFile(backup)
		if err != nil || !bytes.HasPrefix(b, []byte("mimi-hub-backup/1\n")) {
			t.Fatalf("backup file: %v, %q", err, b[:min(len(b), 20)])
		}
		if fi, err := os.Stat(backup); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("backup mode: %v, %v", fi, err)
		}
		entries, err := os.ReadDir(dir)
		if err != nil || len(entries) != 1 {
			t.Errorf("folder holds %v (%v), want only the backup", entries, err)
		}
		out = ok(t, "-json", "cluster", "snapshot", "-ops", ops(leader), "-o", filepath.Join(dir, "b.backup"))
		var res backupResult
		if json.Unmarshal([]byte(out), &res) != nil || res.Index == 0 || res.Bytes == 0 {
			t.Errorf("snapshot -json: %q", out)
		}
		fails(t, 2, "-o FILE is required", "cluster", "snapshot", "-ops", ops(leader))
		fails(t, 1, "saving the backup", "cluster", "snapshot", "-ops", ops(leader), "-o", filepath.Join(dir, "missing", "c.backup"))
	})

	t.Run("restore", func(t *testing.T) {
		fails(t, 2, "-i FILE is required", "cluster", "restore", "-ops", ops(leader), "-yes")
		garbage := filepath.Join(dir, "garbage")
		if err := os.WriteFile(garbage, []byte("not a backup"), 0o600); err != nil {
			t.Fatal(err)
		}
		fails(t, 1, "HTTP 400: restore: cluster: restore: not a valid mimi-hub backup", "cluster", "restore", "-ops", ops(leader), "-i", garbage, "-yes")
		out := ok(t, "cluster", "restore", "-ops", ops(followers[1]), "-i", backup, "-yes")
		if !strings.HasPrefix(out, "restored "+backup) {
			t.Errorf("restore: %q", out)
		}
	})

	t.Run("transfer-leader", func(t *testing.T) {
		fails(t, 1, `HTTP 400: transfer leadership: "n9" is not a voter`, "cluster", "transfer-leader", "-ops", ops(leader), "n9")
		fails(t, 2, "unexpected arguments", "cluster", "transfer-leader", "-ops", ops(leader), "n1", "n2")
		target := followers[0].Config.NodeID
		out := ok(t, "cluster", "transfer-leader", "-ops", ops(leader), target)
		if !strings.HasPrefix(out, "leader is now "+target+" at ") {
			t.Errorf("transfer-leader: %q", out)
		}
		if l := c.Leader(t); l.Config.NodeID != target {
			t.Errorf("leader %s, want %s", l.Config.NodeID, target)
		}
		leader = c.Leader(t)
		followers = c.Followers(t)
	})

	t.Run("join", func(t *testing.T) {
		out := ok(t, "cluster", "join", "-ops", ops(followers[0]), leader.Config.Raft.Gossip.BindAddr)
		if out != "contacted 1 node(s) through gossip\n" {
			t.Errorf("join: %q", out)
		}
		fails(t, 2, "missing arguments", "cluster", "join", "-ops", ops(leader))
		fails(t, 1, `HTTP 400: join: "nowhere" is not a host:port`, "cluster", "join", "-ops", ops(leader), "nowhere")
	})

	t.Run("remove", func(t *testing.T) {
		fails(t, 1, `HTTP 404: remove: no server "n9"`, "cluster", "remove", "-ops", ops(leader), "n9")
		fails(t, 1, "HTTP 409: remove: "+leader.Config.NodeID+" is the leader", "cluster", "remove", "-ops", ops(followers[0]), leader.Config.NodeID)
	})

	t.Run("leave", func(t *testing.T) {
		p := followers[1]
		out := ok(t, "cluster", "leave", "-ops", ops(p))
		if out != p.Config.NodeID+" left the cluster; it is shutting down\n" {
			t.Errorf("leave: %q", out)
		}
		deadline := time.Now().Add(testutil.Wait)
		for left.Load() != 1 {
			if time.Now().After(deadline) {
				t.Fatal("OnLeave was not called")
			}
			time.Sleep(10 * time.Millisecond)
		}
		p.Stop(t)
		out = ok(t, "cluster", "status", "-ops", ops(leader))
		if hasRow(out, p.Config.NodeID, "voter") {
			t.Errorf("%s still a voter after leaving:\n%s", p.Config.NodeID, out)
		}
		// A stopped node does not answer.
		fails(t, 1, "is the provider running", "cluster", "status", "-ops", ops(p))
	})

	t.Run("help", func(t *testing.T) {
		code, out, _ := runCLI(t, "help", "cluster")
		for _, sub := range []string{"status", "join", "leave", "transfer-leader", "remove", "snapshot", "restore"} {
			if code != 0 || !strings.Contains(out, "  cluster "+sub+" ") {
				t.Errorf("help cluster lacks %s (exit %d):\n%s", sub, code, out)
			}
			if code, out, _ := runCLI(t, "help", "cluster", sub); code != 0 || !strings.Contains(out, "Usage: mimictl cluster "+sub) {
				t.Errorf("help cluster %s: exit %d, %q", sub, code, out)
			}
		}
		fails(t, 2, "cluster needs a subcommand", "cluster")
		fails(t, 2, `unknown cluster command "grow"`, "cluster", "grow")
	})
}

func TestConfirmRestore(t *testing.T) {
	for _, tc := range []struct {
		name, input string
		// want is "" for a confirmation, else a part of the error.
		want  string
		usage bool
	}{
		{"yes", "yes\n", "", false},
		{"yes without newline", "yes", "", false},
		{"yes with spaces", "  yes \n", "", false},
		{"no", "no\n", "restore cancelled", false},
		{"empty line", "\n", "restore cancelled", false},
		{"YES is not yes", "YES\n", "restore cancelled", false},
		{"no answer", "", "confirm with -yes", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var prompt bytes.Buffer
			err := confirmRestore(strings.NewReader(tc.input), &prompt, "a.backup")
			if !strings.Contains(prompt.String(), "Restoring a.backup replaces the provider's whole replicated state") {
				t.Errorf("prompt %q", prompt.String())
			}
			if tc.want == "" {
				if err != nil {
					t.Errorf("confirmation %q: %v", tc.input, err)
				}
				return
			}
			var ue *usageError
			if err == nil || !strings.Contains(err.Error(), tc.want) || errors.As(err, &ue) != tc.usage {
				t.Errorf("confirmation %q: %v; want an error with %q (usage error %v)", tc.input, err, tc.want, tc.usage)
			}
		})
	}
}
