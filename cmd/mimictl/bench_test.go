package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mimihub/mimi-hub/internal/systemtest"
)

// TestBenchCluster runs bench against an in-process 3-node cluster with
// tiny bounds, through the leader and through the followers, in both
// modes, and checks that every level measured something without errors.
func TestBenchCluster(t *testing.T) {
	code, out, errOut := runCLI(t, "bench", "-inprocess", "-cluster", "3", "-mode", "messages,commits", "-senders", "1,3", "-room-size", "2", "-ops", "12", "-duration", "60s")
	if code != 0 {
		t.Fatalf("bench: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if !strings.Contains(out, "in-process 3-node cluster") || !strings.Contains(out, "via:     leader, followers") {
		t.Fatalf("preamble:\n%s", out)
	}
	tables := strings.Split(out, "\ncommits: ")
	if len(tables) != 2 {
		t.Fatalf("want a messages table and a commits table:\n%s", out)
	}
	for i, table := range tables {
		rows := viaTable(t, table)
		want := []string{"via", "senders", "ops", "errors", "ops/s", "p50", "p90", "p99", "max"}
		if !slices.Equal(rows[0], want) {
			t.Fatalf("table %d header %q, want %q:\n%s", i, rows[0], want, out)
		}
		var got []string
		for _, r := range rows[1:] {
			got = append(got, r[0]+" "+r[1])
			if ops, err := strconv.Atoi(r[2]); err != nil || ops == 0 {
				t.Errorf("table %d: %v: ops %q, want a positive count", i, r[:2], r[2])
			}
			if r[3] != "0" {
				t.Errorf("table %d: %v: %s errors:\n%s", i, r[:2], r[3], out)
			}
		}
		if w := []string{"leader 1", "leader 3", "followers 1", "followers 3"}; !slices.Equal(got, w) {
			t.Errorf("table %d rows %q, want %q", i, got, w)
		}
	}
}

// viaTable returns the fields of the first table in out whose header
// starts with "via", header first.
func viaTable(t *testing.T, out string) [][]string {
	t.Helper()
	var rows [][]string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) > 0 && f[0] == "via" && len(rows) == 0:
			rows = append(rows, f)
		case len(rows) > 0 && len(f) > 1 && (f[0] == viaLeader || f[0] == viaFollowers):
			rows = append(rows, f)
		case len(rows) > 0:
			return rows
		}
	}
	if len(rows) < 2 {
		t.Fatalf("no via table in:\n%s", out)
	}
	return rows
}

// TestBenchFailover builds mimi-hub, runs two failover rounds on three of
// its processes (with fast Raft timing), and checks the table: every round
// killed the leader, another node led, and a write was accepted after.
func TestBenchFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds mimi-hub and runs processes")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("the go command is not available to build mimi-hub")
	}
	bin := buildHub(t)
	code, out, errOut := runCLI(t, "bench", "-failover", "2", "-hub-binary", bin,
		"-hub-args", "-raft-heartbeat-timeout 200ms -raft-election-timeout 200ms -raft-lease-timeout 100ms")
	if code != 0 {
		t.Fatalf("bench: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	var rounds [][]string
	var summary []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 6 && (f[0] == "1" || f[0] == "2"):
			rounds = append(rounds, f)
		case len(f) > 0 && (strings.HasPrefix(line, "  ") && (f[0] == "leader" || f[0] == "first")):
			summary = append(summary, f[0])
		}
	}
	if len(rounds) != 2 || !slices.Equal(summary, []string{"leader", "first"}) {
		t.Fatalf("want 2 rounds and a min/median/max summary:\n%s\nstderr:\n%s", out, errOut)
	}
	for _, r := range rounds {
		killed, leader := r[1], r[2]
		if killed == leader || !strings.HasPrefix(killed, "n") || !strings.HasPrefix(leader, "n") {
			t.Errorf("round %s: killed %s, new leader %s", r[0], killed, leader)
		}
		for _, d := range r[3:5] {
			if _, err := time.ParseDuration(d); err != nil {
				t.Errorf("round %s: %q is not a duration", r[0], d)
			}
		}
	}
	if !strings.Contains(out, "flags:   -raft-heartbeat-timeout 200ms") {
		t.Errorf("the preamble does not name the nodes' flags:\n%s", out)
	}
}

// hubBinary builds mimi-hub once for the tests that run its processes,
// into hubDir, which TestMain removes.
var (
	hubDir    string
	hubBinary = sync.OnceValues(func() (string, error) {
		var err error
		if hubDir, err = os.MkdirTemp("", "mimictl-test-hub-"); err != nil {
			return "", err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		return systemtest.Build(ctx, hubDir, false)
	})
)

func TestMain(m *testing.M) {
	// bench -baseline starts its raw Raft nodes from its own executable,
	// which under test is this binary: let it be mimictl for them.
	if len(os.Args) > 1 && os.Args[1] == "bench-raft-node" {
		main()
	}
	code := m.Run()
	if hubDir != "" {
		os.RemoveAll(hubDir)
	}
	os.Exit(code)
}

func buildHub(t *testing.T) string {
	t.Helper()
	bin, err := hubBinary()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// TestBenchSoak runs a short soak against three mimi-hub processes that
// snapshot often, and checks its reports: throughput, each node's memory,
// snapshot, Raft log and room log figures, and the summary.
func TestBenchSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds mimi-hub and runs processes")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("the go command is not available to build mimi-hub")
	}
	bin := buildHub(t)
	code, out, errOut := runCLI(t, "bench", "-soak", "16s", "-report", "4s", "-senders", "4", "-room-size", "4", "-hub-binary", bin,
		"-hub-args", "-snapshot-threshold 50 -snapshot-interval 1s -raft-heartbeat-timeout 200ms -raft-election-timeout 200ms -raft-lease-timeout 100ms")
	if code != 0 {
		t.Fatalf("bench: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	var reports [][]string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) == 20 && strings.HasSuffix(f[0], "s") {
			reports = append(reports, f)
		}
	}
	if len(reports) < 3 {
		t.Fatalf("want at least 3 reports:\n%s\nstderr:\n%s", out, errOut)
	}
	last := reports[len(reports)-1]
	if ops, err := strconv.ParseFloat(last[1], 64); err != nil || ops <= 0 {
		t.Fatalf("last report: %q ops/s\n%s", last[1], out)
	}
	// RSS and anonymous RSS of three nodes, then snapshot, Raft log and
	// room logs of three.
	for i, f := range last[5:20] {
		v, err := strconv.ParseFloat(strings.TrimSuffix(f, "*"), 64)
		if err != nil || (i < 6 && v <= 0) || (i >= 9 && i < 12 && v <= 0) {
			t.Fatalf("last report, column %d: %q\n%s", 5+i, f, out)
		}
	}
	if snaps := last[11:14]; !slices.ContainsFunc(snaps, func(f string) bool { v, _ := strconv.ParseFloat(strings.TrimSuffix(f, "*"), 64); return v > 0 }) {
		t.Errorf("no node had a snapshot by the end: %v\n%s", snaps, out)
	}
	for _, want := range []string{"throughput: first report", "largest RSS:", "largest anonymous RSS:", "largest snapshot:", "errors: 0"} {
		if !strings.Contains(out, want) {
			t.Errorf("the summary lacks %q:\n%s", want, out)
		}
	}
}

// TestBenchUsage checks the new flags' combinations.
func TestBenchUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"bench", "-cluster", "3"}, "add -inprocess"},
		{[]string{"bench", "-via", "leader"}, "-via needs a cluster"},
		{[]string{"bench", "-inprocess", "-cluster", "3", "-via", "sideways"}, "-via must be leader, followers or both"},
		{[]string{"bench", "-server", "https://a,https://b", "-ops-url", "http://a"}, "-ops-url lists 1 URLs for 2 -server URLs"},
		{[]string{"bench", "-mode", "messages,fanout"}, "-mode must be messages or commits"},
		{[]string{"bench", "-hub-args", "-x"}, "go with -failover, -soak or -baseline"},
		{[]string{"bench", "-soak", "1m", "-failover", "1"}, "drop -failover"},
		{[]string{"bench", "-soak", "1m", "-senders", "1,2"}, "one number of -senders"},
		{[]string{"bench", "-soak", "1m", "-senders", "8", "-report", "2m"}, "-report must be between 1s and -soak"},
		{[]string{"bench", "-soak", "48h"}, "-soak must be between 0 and 24h"},
		{[]string{"bench", "-failover", "-1"}, "-failover must be between 0 and 100"},
	} {
		code, _, errOut := runCLI(t, c.args...)
		if code != 2 || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d, %q; want 2 and %q", c.args, code, errOut, c.want)
		}
	}
}

// TestBenchRooms runs the rooms mode on two small rooms with -json: one
// object per size with exactly the keys, every figure measured
// (a new member joined each room from a Welcome without the tree, or the
// level fails), the Raft entry of an add small.
func TestBenchRooms(t *testing.T) {
	code, out, errOut := runCLI(t, "-json", "bench", "-inprocess", "-mode", "rooms", "-members", "40,70")
	if code != 0 {
		t.Fatalf("bench: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	keys := []string{"add_e2e_ms", "add_entry_bytes", "bytes_per_member", "commit_e2e_ms", "members", "message_e2e_ms", "restart_ready_ms", "snapshot_block_ms"}
	var sizes []int
	dec := json.NewDecoder(strings.NewReader(out))
	for dec.More() {
		var row map[string]float64
		if err := dec.Decode(&row); err != nil {
			t.Fatalf("%v in:\n%s", err, out)
		}
		if got := slices.Sorted(maps.Keys(row)); !slices.Equal(got, keys) {
			t.Fatalf("keys %q, want %q", got, keys)
		}
		for k, v := range row {
			if v <= 0 {
				t.Errorf("%s = %v, want a measured figure", k, v)
			}
		}
		if row["add_entry_bytes"] > 64<<10 {
			t.Errorf("an add's Raft entry is %v bytes", row["add_entry_bytes"])
		}
		sizes = append(sizes, int(row["members"]))
	}
	if !slices.Equal(sizes, []int{40, 70}) {
		t.Fatalf("sizes %v, want 40 and 70", sizes)
	}
	if code, _, errOut := runCLI(t, "bench", "-mode", "rooms"); code == 0 || !strings.Contains(errOut, "-inprocess") {
		t.Fatalf("rooms without -inprocess: exit %d, %s", code, errOut)
	}
}

// runBaseline runs `mimictl bench -baseline` with args, 2 s levels, JSON
// rows and -hub-cpuprofile, against a mimi-hub built for the test; it
// returns the rows and the profiles' prefix. It skips with -short, and
// where no go command can build mimi-hub.
func runBaseline(t *testing.T, args ...string) (out, profiles string) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: builds mimi-hub and runs six processes")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("the go command is not available to build mimi-hub")
	}
	bin := buildHub(t)
	profiles = filepath.Join(t.TempDir(), "hub")
	args = append([]string{"bench", "-baseline", "-hub-binary", bin, "-duration", "2s", "-hub-cpuprofile", profiles, "-json"}, args...)
	code, out, errOut := runCLI(t, args...)
	if code != 0 {
		t.Fatalf("bench: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	return out, profiles
}

// TestBenchBaseline runs the side-by-side mode end to end at a tiny size:
// raw Raft and every route of the provider measured something without
// errors, each row has its ratio to raw Raft and the CPU both sides spent
// per operation, and -hub-cpuprofile left one profile per node and level.
func TestBenchBaseline(t *testing.T) {
	out, profiles := runBaseline(t, "-senders", "2", "-mode", "messages,commits")
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.Contains(line, `"target":"side-by-side"`) {
			continue // the preamble
		}
		var row sideRow
		if err := json.Unmarshal([]byte(line), &row); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		seen[row.What] = true
		if row.Ops == 0 || row.Errors != 0 || row.VsRaft <= 0 {
			t.Errorf("%s: %d ops, %d errors (%s), %.2f × raw raft", row.What, row.Ops, row.Errors, row.FirstError, row.VsRaft)
		}
		if row.ServerCPUPerOp <= 0 || row.SendersCPUPerOp <= 0 {
			t.Errorf("%s: CPU per operation %v (servers), %v (senders)", row.What, row.ServerCPUPerOp, row.SendersCPUPerOp)
		}
		if row.What != sideRaft && (row.RaftEntriesPerOp <= 0 || row.RaftEntriesPerOp > 1.5) {
			t.Errorf("%s: %.3f Raft entries per operation", row.What, row.RaftEntriesPerOp)
		}
		if row.What != sideRaft {
			for _, role := range []string{"leader", "follower"} {
				files, _ := filepath.Glob(fmt.Sprintf("%s-*-%s-2-*-%s.pprof", profiles, strings.ReplaceAll(row.What, " ", "-"), role))
				if want := map[string]int{"leader": 1, "follower": 2}[role]; len(files) != want {
					t.Errorf("%s: %d %s profiles, want %d", row.What, len(files), role, want)
				}
			}
		}
	}
	for _, what := range []string{sideRaft, sideMessagesLeader, sideMessagesFollowers, sideCommitsLeader, sideCommitsFollowers} {
		if !seen[what] {
			t.Errorf("no row for %q:\n%s", what, out)
		}
	}
}

// TestBenchBaselineFanout runs the side-by-side fanout mode end to end at
// a tiny size: every peer level delivered everything without errors, and
// each row has its rate against one peer, its Raft entries and messages
// per request, the servers' CPU per message, and one profile per node.
func TestBenchBaselineFanout(t *testing.T) {
	out, profiles := runBaseline(t, "-mode", "fanout", "-senders", "2", "-peers", "1,3", "-fanout-senders", "4", "-room-size", "2")
	var peers []int
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.Contains(line, `"peers":`) || strings.Contains(line, `"target":"side-by-side"`) {
			continue // raw Raft rows and the preamble
		}
		var row fanoutRow
		if err := json.Unmarshal([]byte(line), &row); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		peers = append(peers, row.Peers)
		if row.Ops == 0 || row.Errors != 0 || row.Note != "" {
			t.Errorf("%d peers: %d messages, %d errors (%s); note %q", row.Peers, row.Ops, row.Errors, row.FirstError, row.Note)
		}
		if row.Sustained <= 0 || row.VsOnePeer <= 0 || row.ServerCPUPerOp <= 0 {
			t.Errorf("%d peers: sustained %.1f/s, %.2f × 1 peer, %v server CPU per message", row.Peers, row.Sustained, row.VsOnePeer, row.ServerCPUPerOp)
		}
		// Each request carries at least one message, a room's at most all.
		if row.PerRequest < 1 || row.EntriesPerOp <= 0 || row.EntriesPerOp > 1.5 {
			t.Errorf("%d peers: %.2f messages per request, %.3f Raft entries per message", row.Peers, row.PerRequest, row.EntriesPerOp)
		}
		for _, role := range []string{"leader", "follower"} {
			files, _ := filepath.Glob(fmt.Sprintf("%s-*-fanout-%d-*-%s.pprof", profiles, row.Peers, role))
			if want := map[string]int{"leader": 1, "follower": 2}[role]; len(files) != want {
				t.Errorf("%d peers: %d %s profiles, want %d", row.Peers, len(files), role, want)
			}
		}
	}
	if !slices.Equal(peers, []int{1, 3}) {
		t.Errorf("fanout rows for %v peers, want [1 3]:\n%s", peers, out)
	}
}
