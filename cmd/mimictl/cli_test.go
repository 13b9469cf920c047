package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/mimihub/mimi-hub/internal/devca"
	"github.com/mimihub/mimi-hub/internal/hub"
)

// runCLI runs mimictl and returns its exit status and output.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(t.Context(), args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// TestDefaultProfiles checks where profiles live without -profile:
// $MIMICTL_HOME/USER@DOMAIN, chosen when it is the only one.
func TestDefaultProfiles(t *testing.T) {
	w := startWorld(t, "")
	home := t.TempDir()
	t.Setenv("MIMICTL_HOME", home)
	t.Setenv("MIMICTL_PROFILE", "")

	if code, _, errOut := runCLI(t, "whoami"); code != 1 || !strings.Contains(errOut, "no profile in "+home+": run 'mimictl register' first") {
		t.Fatalf("whoami without a profile: exit %d, %q", code, errOut)
	}
	pwFile := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(pwFile, []byte("correct horse battery\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, "register", "-server", w.a.ClientURL, "-ca", w.caFile, "-user", "alice", "-keys", "1", "-password-file", pwFile)
	if code != 0 || !strings.Contains(out, "profile: "+filepath.Join(home, "alice@a.example")) {
		t.Fatalf("register: exit %d, %q, %q", code, out, errOut)
	}
	// The only profile is the default.
	if code, out, errOut := runCLI(t, "whoami"); code != 0 || !strings.Contains(out, "client:  mimi://a.example/u/alice/d/cli") {
		t.Fatalf("whoami: exit %d, %q, %q", code, out, errOut)
	}
	// The user exists: registering it again is refused, and says how to
	// add a device.
	if code, _, errOut := runCLI(t, "register", "-server", w.a.ClientURL, "-ca", w.caFile, "-user", "alice", "-device", "tablet", "-keys", "1"); code != 1 ||
		!strings.Contains(errOut, "409") || !strings.Contains(errOut, "linking") {
		t.Fatalf("second register: exit %d, %q", code, errOut)
	}
	// A second device of the same user, added with the password, gets the
	// next free name.
	if code, out, errOut := runCLI(t, "link", "-server", w.a.ClientURL, "-ca", w.caFile, "-user", "alice", "-device", "tablet", "-keys", "1", "-password-file", pwFile); code != 0 ||
		!strings.Contains(out, "profile: "+filepath.Join(home, "alice@a.example-2")) {
		t.Fatalf("link: exit %d, %q, %q", code, out, errOut)
	}
	// With two profiles, commands need to be told which.
	if code, _, errOut := runCLI(t, "whoami"); code != 2 || !strings.Contains(errOut, "2 profiles in "+home+" (alice@a.example, alice@a.example-2)") {
		t.Fatalf("whoami with two profiles: exit %d, %q", code, errOut)
	}
	for _, args := range [][]string{
		{"-profile", "alice@a.example-2", "whoami"},
		{"whoami", "-profile", "alice@a.example-2"},
		{"-profile", filepath.Join(home, "alice@a.example-2"), "whoami"},
	} {
		if code, out, errOut := runCLI(t, args...); code != 0 || !strings.Contains(out, "client:  mimi://a.example/u/alice/d/tablet") {
			t.Fatalf("mimictl %q: exit %d, %q, %q", args, code, out, errOut)
		}
	}
	t.Setenv("MIMICTL_PROFILE", "alice@a.example")
	if code, out, errOut := runCLI(t, "whoami"); code != 0 || !strings.Contains(out, "client:  mimi://a.example/u/alice/d/cli") {
		t.Fatalf("whoami with $MIMICTL_PROFILE: exit %d, %q, %q", code, out, errOut)
	}
	// A named profile that holds a client is not replaced.
	if code, _, errOut := runCLI(t, "register", "-server", w.a.ClientURL, "-ca", w.caFile, "-user", "alice", "-device", "desk"); code != 1 || !strings.Contains(errOut, "already holds a client") {
		t.Fatalf("register into a taken profile: exit %d, %q", code, errOut)
	}
	// The profile is private, and no temporary file is left behind.
	dir := filepath.Join(home, "alice@a.example")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tmp") {
			t.Errorf("temporary file %s left in the profile", e.Name())
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, profileFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("profile file: %v, %v", fi, err)
	}
}

// TestExitCodes checks run's exit status: 0 for success and help, 1 for
// failures, 2 for usage errors.
func TestExitCodes(t *testing.T) {
	t.Setenv("MIMICTL_HOME", t.TempDir())
	t.Setenv("MIMICTL_PROFILE", "")
	for _, c := range []struct {
		args []string
		want int
		// out is a string the output (stdout and stderr) must hold.
		out string
	}{
		{[]string{"help"}, 0, "bench"},
		{[]string{"help", "send"}, 0, "Usage: mimictl send [flags] ROOM TEXT..."},
		{[]string{"send", "-h"}, 0, "Usage: mimictl send"},
		{[]string{"bench", "-h"}, 0, "-shared-room"},
		{[]string{"status", "-h"}, 0, "-admin-token"},
		{nil, 2, "no command given"},
		{[]string{"fly"}, 2, `unknown command "fly"`},
		{[]string{"send", "club"}, 2, "send: missing arguments"},
		{[]string{"bench", "-senders", "1,x"}, 2, `"x" is not a number`},
		{[]string{"send", "club", "hello"}, 1, "no profile in"},
		{[]string{"status", "-ops", "http://127.0.0.1:1"}, 1, "is the provider running"},
	} {
		code, out, errOut := runCLI(t, c.args...)
		if code != c.want || !strings.Contains(out+errOut, c.out) {
			t.Errorf("mimictl %q: exit %d, output %q %q; want exit %d and %q", c.args, code, out, errOut, c.want, c.out)
		}
	}
	// Every command but the hidden ones (started by mimictl itself) is
	// listed by help, and every command has its own help.
	_, list, _ := runCLI(t, "help")
	for _, c := range commands() {
		if listed := strings.Contains(list, "  "+c.name+" "); listed == c.hidden {
			t.Errorf("help lists %s: %v; hidden: %v", c.name, listed, c.hidden)
		}
		if code, out, _ := runCLI(t, "help", c.name); code != 0 || !strings.Contains(out, "mimictl "+c.name) {
			t.Errorf("help %s: exit %d, %q", c.name, code, out)
		}
	}
}

// TestOpsCommands runs status and reports against a provider's
// operations listener guarded by an admin token.
func TestOpsCommands(t *testing.T) {
	ca, err := devca.New()
	if err != nil {
		t.Fatal(err)
	}
	p, err := startLocalProvider(t.Context(), localProviderConfig{Domain: "a.example", DataDir: t.TempDir(), CA: ca, AdminToken: "t0ken", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	code, _, errOut := runCLI(t, "status", "-ops", p.OpsURL)
	if code != 1 || !strings.Contains(errOut, "HTTP 401") || !strings.Contains(errOut, "-admin-token") {
		t.Fatalf("status without the token: exit %d, %q", code, errOut)
	}
	// On the node's host, the token comes from its data folder (where
	// mimi-hub generates it) or a token file.
	data := t.TempDir()
	if err := os.WriteFile(filepath.Join(data, hub.AdminTokenFile), []byte("t0ken\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"-data", data}, {"-admin-token-file", filepath.Join(data, hub.AdminTokenFile)}} {
		if code, _, errOut := runCLI(t, append([]string{"status", "-ops", p.OpsURL}, args...)...); code != 0 {
			t.Errorf("status %v: exit %d, %q", args, code, errOut)
		}
	}
	if code, _, errOut := runCLI(t, "status", "-ops", p.OpsURL, "-admin-token-file", filepath.Join(data, "missing")); code != 1 || !strings.Contains(errOut, "no such file") {
		t.Errorf("status with a missing token file: exit %d, %q", code, errOut)
	}
	code, out, errOut := runCLI(t, "status", "-ops", p.OpsURL, "-admin-token", "t0ken")
	if code != 0 {
		t.Fatalf("status: exit %d, %q", code, errOut)
	}
	for _, want := range [][]string{{"domain", "a.example"}, {"node", "a.example:", "Raft", "leader"}, {"leader", "a.example"}, {"state", "0", "rooms,"}, {"peers:", "none", "yet"}} {
		if !hasRow(out, want...) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	t.Setenv("MIMICTL_ADMIN_TOKEN", "t0ken")
	code, out, errOut = runCLI(t, "-json", "status", "-ops", p.OpsURL)
	var st hub.OpsStatus
	if code != 0 || strings.Count(out, "\n") != 1 || json.Unmarshal([]byte(out), &st) != nil || st.Domain != "a.example" || !st.Raft.Leader {
		t.Fatalf("status -json: exit %d, %q, %q", code, out, errOut)
	}
	code, out, errOut = runCLI(t, "reports", "-ops", p.OpsURL, "-all")
	if code != 0 || !strings.Contains(out, "no reports after index 0 (0 kept in all)") {
		t.Fatalf("reports: exit %d, %q, %q", code, out, errOut)
	}
}

// TestBench runs bench against an in-process provider with tiny bounds
// and checks that every level measured something.
func TestBench(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		// refused: the table has the refused column.
		refused bool
	}{
		{"messages", []string{"-mode", "messages", "-senders", "1,3", "-room-size", "2", "-ops", "20", "-duration", "30s"}, false},
		{"commits", []string{"-mode", "commits", "-senders", "1,2", "-ops", "10", "-duration", "30s"}, false},
		{"commits in a shared room", []string{"-mode", "commits", "-shared-room", "-senders", "2", "-ops", "10", "-duration", "0"}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, append([]string{"bench", "-inprocess"}, c.args...)...)
			if code != 0 {
				t.Fatalf("bench: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
			}
			rows := benchTable(t, out)
			want := []string{"senders", "ops", "errors", "ops/s", "p50", "p90", "p99", "max"}
			if c.refused {
				want = []string{"senders", "ops", "errors", "refused", "ops/s", "p50", "p90", "p99", "max"}
			}
			if strings.Join(rows[0], " ") != strings.Join(want, " ") {
				t.Fatalf("table header %q, want %q:\n%s", rows[0], want, out)
			}
			levels := strings.Split(c.args[slices.Index(c.args, "-senders")+1], ",")
			if len(rows)-1 != len(levels) {
				t.Fatalf("%d rows for levels %v:\n%s", len(rows)-1, levels, out)
			}
			for i, row := range rows[1:] {
				if row[0] != levels[i] {
					t.Errorf("row %d is for %s senders, want %s", i, row[0], levels[i])
				}
				if ops, err := strconv.Atoi(row[1]); err != nil || ops == 0 {
					t.Errorf("row %d: ops %q, want a positive count:\n%s", i, row[1], out)
				}
				if row[2] != "0" {
					t.Errorf("row %d: %s errors:\n%s", i, row[2], out)
				}
			}
		})
	}
}

// benchTable returns the fields of the bench table's lines, header first.
func benchTable(t *testing.T, out string) [][]string {
	t.Helper()
	var rows [][]string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && (f[0] == "senders" || len(rows) > 0) {
			if _, err := strconv.Atoi(f[0]); err != nil && len(rows) > 0 {
				break
			}
			rows = append(rows, f)
		}
	}
	if len(rows) < 2 {
		t.Fatalf("no bench table in:\n%s", out)
	}
	return rows
}

// TestEveryCommandHasHelp walks the command tree: every command and
// subcommand has a help text, which 'mimictl help ...' prints.
func TestEveryCommandHasHelp(t *testing.T) {
	var walk func(path []string, list []*command)
	walk = func(path []string, list []*command) {
		for _, c := range list {
			p := append(slices.Clone(path), c.name)
			if strings.TrimSpace(c.help) == "" {
				t.Errorf("mimictl %s has no help text", strings.Join(p, " "))
				continue
			}
			if code, out, _ := runCLI(t, append([]string{"help"}, p...)...); code != 0 || !strings.Contains(out, strings.TrimSpace(c.help)[:20]) {
				t.Errorf("mimictl help %s: exit %d, %q", strings.Join(p, " "), code, out)
			}
			walk(p, c.sub)
		}
	}
	walk(nil, commands())
}

// TestUnknownFlagReportedOnce checks an unknown flag is reported once,
// with a hint, and no usage dump, before or after the command name.
func TestUnknownFlagReportedOnce(t *testing.T) {
	for _, args := range [][]string{{"status", "-bogus"}, {"-bogus", "status"}, {"cluster", "keyring", "install", "-bogus"}} {
		code, out, errOut := runCLI(t, args...)
		if code != 2 || out != "" || strings.Count(errOut, "flag provided but not defined: -bogus") != 1 || strings.Contains(errOut, "Flags:") {
			t.Errorf("mimictl %q: exit %d, stdout %q, stderr %q; want the error once", args, code, out, errOut)
		}
	}
}
