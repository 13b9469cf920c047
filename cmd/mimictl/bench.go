package main

import (
	"context"
	crand "crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/mimihub/mimi-hub/internal/devca"
	"github.com/mimihub/mimi-hub/internal/hub"
	"github.com/mimihub/mimi-hub/internal/systemtest"
	"github.com/mimihub/mimi-hub/mimi/client"
	"github.com/mimihub/mimi-hub/mimi/proto"
)

// Bench modes.
const (
	// benchMessages: senders send application messages
	// (provisionalMessage, POST /v1/rooms/{hub}/{room}/messages).
	benchMessages = "messages"
	// benchCommits: senders commit empty commits with a fresh UpdatePath
	// (updateRoom, POST /v1/rooms/{hub}/{room}/commit).
	benchCommits = "commits"
)

// Bench limits: every loop is bounded.
const (
	maxBenchSenders = 512
	// maxBenchPeers bounds -peers: each is a fake provider with its own
	// certificate.
	maxBenchPeers = 200
	// benchSetupLimit bounds registering, creating rooms and joining for
	// one level.
	benchSetupLimit = 3 * time.Minute
	// benchErrorPause slows a sender down after a failure.
	benchErrorPause = 10 * time.Millisecond
	// benchAddBatch is how many users one setup commit adds.
	benchAddBatch = 32
	// benchSetupParallel bounds concurrent registrations.
	benchSetupParallel = 8
)

// Routes: which nodes of a cluster the senders talk to.
const (
	viaLeader    = "leader"
	viaFollowers = "followers"
	viaBoth      = "both"
)

// benchOptions are bench's flags.
type benchOptions struct {
	modes      []string
	sharedRoom bool
	servers    []string
	opsURLs    []string
	adminToken adminTokenFlags
	ca, regKey string
	inprocess  bool
	cluster    int
	via        string
	senders    []int
	duration   time.Duration
	ops        int
	roomSize   int
	size       int
	failover   int
	hubBinary  string
	hubArgs    []string
	members    []int // rooms mode: room sizes
	soak       time.Duration
	report     time.Duration
	// The side-by-side mode (benchbaseline.go).
	baseline      bool
	passes        int
	peers         []int
	fanoutSenders int
	putSize       int
	cpuProfile    string
	hubProfiles   string
}

func benchCommand() *command {
	return &command{
		name: "bench", summary: "load a provider and print throughput and latency per number of senders",
		noProfile: true,
		help: `For each number of concurrent senders in -senders, registers that many
throwaway clients (one mimi/client Member each, spread round-robin over the
-server URLs), sets up their rooms, then lets every sender loop until
-duration passes or the level made -ops operations, and prints one table
row: senders, operations, errors, throughput and latency percentiles.

  -mode messages  application messages (provisionalMessage): senders share
                  rooms of -room-size members and send -size-byte messages
  -mode commits   empty commits with a fresh UpdatePath (updateRoom): each
                  sender commits to a room of its own, so commits do not
                  race for epochs; with -shared-room all senders commit to
                  one room, a commit that lost the race is refused
                  (wrongEpoch, counted in the "refused" column) and its
                  sender catches up before trying again
  -mode messages,commits  both, one table each
  -mode rooms     large rooms (needs -inprocess): for each size in
                  -members, a fresh provider; the room is built with Add
                  commits of 1000 members (Welcomes without the tree),
                  then one member of every block of 32 leaves commits a
                  path (a room whose members have committed over time);
                  then the median of 15 adds of one member, 15 empty
                  commits with an UpdatePath by random members and 15
                  messages, the longest FSM lock hold of a snapshot, the
                  room's heap per member, and the time to restart the
                  provider until ready. One row per size; with -json one
                  object per size with the keys members, add_e2e_ms,
                  add_entry_bytes, commit_e2e_ms, message_e2e_ms,
                  snapshot_block_ms, restart_ready_ms, bytes_per_member

Latency is measured around the mimi/client call: encryption or commit
creation, the HTTPS request and the provider's Raft commit. With
-inprocess, bench starts a single-node provider in this process (temporary
data folder, development CA, loopback ports) and needs nothing else.

Clusters. -inprocess -cluster 3 starts a 3-node cluster in this process
instead (Raft over mutual TLS, gossip, the daemon's default Raft timing);
-via says whether the senders talk to the leader, to the followers (whose
writes are forwarded to the leader), or both, one table row per route
and level. Against running nodes, list every node's client API in
-server and its operations listener, in the same order, in -ops-url:
bench asks them which one leads before each level.

Failover. -failover N measures leader failover with real processes: it
starts a 3-node cluster of mimi-hub processes (-hub-binary, on 127.0.0.41
to .43 with fresh ports, data and development CA in a temporary folder),
then N times kills the leader with SIGKILL and times how long until a
survivor reports a new leader and until the first write (a message sent
through a survivor) is accepted, restarting the killed node between
rounds. -hub-args passes more flags to the nodes (say, faster Raft
timing). Nothing else is measured then.

Soak. -soak D runs the messages load for D against a 3-node cluster of
mimi-hub processes (-hub-binary, on 127.0.0.51 to .53, per-client budgets
off) with one number of -senders spread over the three nodes, and every
-report (1m) prints the throughput and latency since the last report and,
for each node, its resident memory (/proc), its newest snapshot, its Raft
log store (logs.db) and the room messages its state keeps for readers
(the leader's figures marked *); at the end, the first and last
throughput and the largest RSS and snapshot at the start, half way and the
end. With retention reached, memory and snapshots must stay flat.

Side by side. -baseline starts 3 mimi-hub processes (-hub-binary, on
127.0.0.61 to .63, per-client budgets off) and 3 raw Raft processes (this
executable's hidden bench-raft-node: hashicorp/raft on the provider's own
raft-boltdb/v2 stores and timing, a state machine that does nothing,
-put-size-byte puts over HTTPS to the leader, on .64 to .66), and for
every -senders level runs, alternating, raw Raft, messages via the leader
and via the followers, commits via the leader and via the followers, so
that a busy machine slows both sides alike. One table: each row's rate,
its ratio to raw Raft at the same senders, and the ratio an issue goal is
about (followers over leader, commits over messages). -mode fanout adds,
for each number of -peers, -fanout-senders senders in rooms with a member
at each fake peer provider (127.0.0.67): the rate at which every peer had
every message, its ratio to 1 peer, and the Raft entries per message.
-passes repeats everything; -cpuprofile profiles the senders' side,
-hub-cpuprofile every mimi-hub node's for every level of the provider.
The table's last columns are the CPU (user and system, from /proc) the
three server processes and the senders spent per accepted operation: on
a machine where senders and servers share the cores, they tell what the
servers cost apart from what the senders' MLS work takes from them;
then the leader's Raft entries per operation.`,
		setup: func(fs *flag.FlagSet) runFunc {
			o := &benchOptions{}
			mode := fs.String("mode", benchMessages, "what to measure: messages, commits, or both as messages,commits")
			fs.BoolVar(&o.sharedRoom, "shared-room", false, "commits mode: all senders commit to one room, racing for its epochs")
			server := fs.String("server", "https://127.0.0.1:8444", "client API `URL`s of the provider, comma-separated (senders are spread round-robin)")
			opsURLs := fs.String("ops-url", "", "operations listener `URL`s of the -server nodes, in the same order: lets -via find the leader")
			o.adminToken.define(fs)
			fs.StringVar(&o.ca, "ca", "", "PEM `file` of the CA that signed the provider's certificate (default: the system roots)")
			fs.StringVar(&o.regKey, "registration-key", "", "the provider's registration `key` (default $MIMICTL_REGISTRATION_KEY)")
			fs.BoolVar(&o.inprocess, "inprocess", false, "start a provider in this process instead of using -server")
			fs.IntVar(&o.cluster, "cluster", 0, "with -inprocess: start a cluster of this many `nodes` (0: a single node)")
			fs.StringVar(&o.via, "via", "", "cluster targets: send through the leader, the followers, or both (default both)")
			senders := fs.String("senders", "1,16,64", "comma-separated numbers of concurrent senders, one table row each")
			fs.DurationVar(&o.duration, "duration", 10*time.Second, "how long each level runs (0: until -ops)")
			fs.IntVar(&o.ops, "ops", 0, "end each level after this many operations (0: run for -duration)")
			fs.IntVar(&o.roomSize, "room-size", 16, "messages mode: senders per room")
			members := fs.String("members", "1000,10000,100000", "rooms mode: comma-separated room `sizes`, one row each")
			fs.IntVar(&o.size, "size", 64, "messages mode: message size in bytes")
			fs.IntVar(&o.failover, "failover", 0, "measure leader failover this many `times` with mimi-hub processes instead")
			fs.StringVar(&o.hubBinary, "hub-binary", "", "mimi-hub executable for -failover (default: mimi-hub beside mimictl, else in $PATH)")
			hubArgs := fs.String("hub-args", "", "more flags for the -failover or -soak nodes, space-separated (e.g. \"-raft-heartbeat-timeout 200ms\")")
			fs.DurationVar(&o.soak, "soak", 0, "run the messages load this `long` against 3 mimi-hub processes, reporting memory, snapshot and log sizes")
			fs.DurationVar(&o.report, "report", time.Minute, "with -soak: how often to report")
			fs.BoolVar(&o.baseline, "baseline", false, "side by side: 3 mimi-hub processes and 3 raw Raft processes, levels alternating, one table with the ratios")
			fs.IntVar(&o.passes, "passes", 1, "with -baseline: run every level this many `times`, alternating")
			peers := fs.String("peers", "1,10,50", "with -baseline and -mode fanout: comma-separated numbers of peer providers")
			fs.IntVar(&o.fanoutSenders, "fanout-senders", 64, "with -baseline and -mode fanout: the senders of every fanout level")
			fs.IntVar(&o.putSize, "put-size", 256, "with -baseline: bytes of each raw Raft entry")
			fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write this process's CPU profile (the senders' own work) to `file`")
			fs.StringVar(&o.hubProfiles, "hub-cpuprofile", "", "with -baseline: write every node's CPU profile of every mimi-hub level to `prefix`-<level>-<what>-<senders, or peers for fanout>-<node>-<role>.pprof")
			return func(ctx context.Context, e *env, args []string) error {
				if err := wantArgs("bench", args, 0, 0); err != nil {
					return err
				}
				if o.regKey == "" {
					o.regKey = e.getenv("MIMICTL_REGISTRATION_KEY")
				}
				o.servers, o.opsURLs, o.hubArgs = splitList(*server), splitList(*opsURLs), strings.Fields(*hubArgs)
				modeSet := false
				fs.Visit(func(f *flag.Flag) { modeSet = modeSet || f.Name == "mode" })
				if o.baseline && !modeSet {
					*mode = strings.Join([]string{benchMessages, benchCommits, benchFanout}, ",")
				}
				for _, m := range splitList(*mode) {
					if !slices.Contains(o.modes, m) {
						o.modes = append(o.modes, m)
					}
				}
				var err error
				if o.senders, err = parseCounts(*senders, 1, maxBenchSenders); err != nil {
					return usagef("bench", "bench: -senders: %v", err)
				}
				if o.baseline && slices.Contains(o.modes, benchFanout) {
					if o.peers, err = parseCounts(*peers, 1, maxBenchPeers); err != nil {
						return usagef("bench", "bench: -peers: %v", err)
					}
				}
				if o.members, err = parseCounts(*members, 2, maxBenchRoomMembers); err != nil {
					return usagef("bench", "bench: -members: %v", err)
				}
				if err := o.check(); err != nil {
					return err
				}
				if o.cpuProfile != "" {
					f, err := os.Create(o.cpuProfile)
					if err != nil {
						return fmt.Errorf("bench: -cpuprofile: %w", err)
					}
					defer f.Close()
					if err := pprof.StartCPUProfile(f); err != nil {
						return fmt.Errorf("bench: -cpuprofile: %w", err)
					}
					defer pprof.StopCPUProfile()
				}
				if slices.Contains(o.modes, benchRooms) {
					return explain(e.benchRoomsRun(ctx, o))
				}
				if o.failover > 0 {
					return explain(e.benchFailover(ctx, o))
				}
				if o.soak > 0 {
					return explain(e.benchSoak(ctx, o))
				}
				if o.baseline {
					return explain(e.benchSide(ctx, o))
				}
				return explain(e.bench(ctx, o))
			}
		},
	}
}

// check validates the options' combination.
func (o *benchOptions) check() error {
	for _, m := range o.modes {
		if m != benchMessages && m != benchCommits && m != benchRooms && (m != benchFanout || !o.baseline) {
			return usagef("bench", "bench: -mode must be %s or %s (or both, comma-separated; %s too with -baseline), or %s", benchMessages, benchCommits, benchFanout, benchRooms)
		}
	}
	if slices.Contains(o.modes, benchRooms) {
		switch {
		case len(o.modes) > 1:
			return usagef("bench", "bench: -mode %s runs alone", benchRooms)
		case !o.inprocess || o.cluster > 0 || o.failover > 0:
			return usagef("bench", "bench: -mode %s needs -inprocess (a single node it snapshots and restarts)", benchRooms)
		}
		return nil
	}
	cluster := o.cluster > 0 || len(o.opsURLs) > 0
	switch {
	case len(o.modes) == 0:
		return usagef("bench", "bench: -mode must be %s or %s (or both, comma-separated)", benchMessages, benchCommits)
	case o.sharedRoom && !slices.Contains(o.modes, benchCommits):
		return usagef("bench", "bench: -shared-room goes with -mode commits")
	case len(o.servers) == 0 && !o.inprocess:
		return usagef("bench", "bench: -server needs at least one URL")
	case o.duration < 0 || o.duration > time.Hour:
		return usagef("bench", "bench: -duration must be between 0 and 1h")
	case o.ops < 0 || o.ops > 100_000_000:
		return usagef("bench", "bench: -ops must be between 0 and 100000000")
	case o.duration == 0 && o.ops == 0:
		return usagef("bench", "bench: set -duration, -ops or both: every level must end")
	case o.roomSize < 1 || o.roomSize > maxBenchSenders:
		return usagef("bench", "bench: -room-size must be between 1 and %d", maxBenchSenders)
	case o.size < 1 || o.size > 1<<20:
		return usagef("bench", "bench: -size must be between 1 and 1048576")
	case o.cluster < 0 || o.cluster > 9:
		return usagef("bench", "bench: -cluster must be between 0 and 9")
	case o.cluster > 0 && !o.inprocess:
		return usagef("bench", "bench: -cluster starts nodes in this process: add -inprocess (for running nodes, list them in -server and -ops-url)")
	case len(o.opsURLs) > 0 && o.inprocess:
		return usagef("bench", "bench: -ops-url describes running nodes; drop it with -inprocess")
	case len(o.opsURLs) > 0 && len(o.opsURLs) != len(o.servers):
		return usagef("bench", "bench: -ops-url lists %d URLs for %d -server URLs: give each node's operations listener, in the same order", len(o.opsURLs), len(o.servers))
	case o.via != "" && o.via != viaLeader && o.via != viaFollowers && o.via != viaBoth:
		return usagef("bench", "bench: -via must be %s, %s or %s", viaLeader, viaFollowers, viaBoth)
	case o.via != "" && !cluster:
		return usagef("bench", "bench: -via needs a cluster: -inprocess -cluster N, or -server and -ops-url listing its nodes")
	case o.via != viaLeader && o.cluster == 1:
		return usagef("bench", "bench: a 1-node cluster has no followers: -via leader")
	case o.failover < 0 || o.failover > 100:
		return usagef("bench", "bench: -failover must be between 0 and 100")
	case o.failover == 0 && o.soak == 0 && !o.baseline && (o.hubBinary != "" || len(o.hubArgs) > 0):
		return usagef("bench", "bench: -hub-binary and -hub-args go with -failover, -soak or -baseline")
	case o.soak < 0 || o.soak > maxSoak:
		return usagef("bench", "bench: -soak must be between 0 and %s", maxSoak)
	case o.soak > 0 && (o.failover > 0 || o.inprocess || len(o.opsURLs) > 0 || o.cluster > 0):
		return usagef("bench", "bench: -soak starts its own 3 mimi-hub processes: drop -failover, -inprocess, -cluster and -ops-url")
	case o.soak > 0 && len(o.senders) != 1:
		return usagef("bench", "bench: -soak takes one number of -senders")
	case o.soak > 0 && (o.report < time.Second || o.report > o.soak):
		return usagef("bench", "bench: -report must be between 1s and -soak")
	case o.baseline && (o.soak > 0 || o.failover > 0 || o.inprocess || o.cluster > 0 || len(o.opsURLs) > 0 || o.sharedRoom):
		return usagef("bench", "bench: -baseline starts its own processes: drop -soak, -failover, -inprocess, -cluster, -ops-url and -shared-room")
	case o.baseline && (o.passes < 1 || o.passes > 20):
		return usagef("bench", "bench: -passes must be between 1 and 20")
	case o.baseline && (o.putSize < 1 || o.putSize > maxPutBody):
		return usagef("bench", "bench: -put-size must be between 1 and %d", maxPutBody)
	case o.baseline && (o.fanoutSenders < 1 || o.fanoutSenders > maxBenchSenders):
		return usagef("bench", "bench: -fanout-senders must be between 1 and %d", maxBenchSenders)
	case o.baseline && o.duration == 0:
		return usagef("bench", "bench: -baseline needs a -duration")
	}
	if cluster && o.via == "" {
		o.via = viaBoth
	}
	if o.baseline && len(o.servers) > 0 {
		o.servers = nil // -server's default; the mode starts its own nodes
	}
	return nil
}

// splitList reads a comma-separated list, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// parseCounts reads "1,16,64", each between lo and hi.
func parseCounts(s string, lo, hi int) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < lo || n > hi {
			return nil, fmt.Errorf("%q is not a number between %d and %d", f, lo, hi)
		}
		out = append(out, n)
	}
	return out, nil
}

// benchRow is one level's result: one line of the table.
type benchRow struct {
	// Mode is the level's mode (messages or commits).
	Mode string `json:"mode"`
	// Via is the route to a cluster: leader or followers ("" for a
	// single node or servers bench does not tell apart).
	Via     string `json:"via,omitempty"`
	Senders int    `json:"senders"`
	// Ops counts the operations the provider accepted.
	Ops int `json:"ops"`
	// Errors counts failed operations; Refused the commits refused as
	// wrongEpoch (-shared-room), which are not errors.
	Errors  int           `json:"errors"`
	Refused int           `json:"refused"`
	Elapsed time.Duration `json:"elapsed_ns"`
	// OpsPerSec is Ops over Elapsed.
	OpsPerSec float64 `json:"ops_per_s"`
	// Latency percentiles of the accepted operations.
	P50 time.Duration `json:"p50_ns"`
	P90 time.Duration `json:"p90_ns"`
	P99 time.Duration `json:"p99_ns"`
	Max time.Duration `json:"max_ns"`
	// FirstError is the first failure, to explain the errors column.
	FirstError string `json:"first_error,omitempty"`
	// Note flags a level whose route changed under it (a new leader).
	Note string `json:"note,omitempty"`
	// ServerCPUPerOp is the CPU (user and system) the cluster's processes
	// spent per accepted operation during the level, SendersCPUPerOp this
	// process's (the senders' own work); zero where they are not known
	// (-baseline knows them, on Linux).
	ServerCPUPerOp  time.Duration `json:"server_cpu_per_op_ns,omitempty"`
	SendersCPUPerOp time.Duration `json:"senders_cpu_per_op_ns,omitempty"`
	// RaftEntriesPerOp is how many entries the leader's Raft log grew by
	// per accepted operation during the level (-baseline's provider rows).
	RaftEntriesPerOp float64 `json:"raft_entries_per_op,omitempty"`
}

// benchOp is one sender's operation: it returns refused=true when the hub
// refused a commit as wrongEpoch.
type benchOp func(ctx context.Context) (refused bool, err error)

// bencher runs the levels of one bench invocation.
type bencher struct {
	e       *env
	o       *benchOptions
	mode    string   // the current level's mode
	via     string   // the current level's route ("" without a cluster)
	servers []string // the current level's client API URLs
	ca      string
	// prefix makes user names unique to this run.
	prefix string
	// serverPIDs are the processes whose CPU a level reports (none: not
	// reported); onMeasure, when set, runs as the measured part of a
	// level starts (after its setup).
	serverPIDs []int
	onMeasure  func()
	// levels counts the levels set up so far.
	levels int

	mu      sync.Mutex
	closers []func()
	// users and rooms count what the run made on the provider.
	users, rooms int
}

// benchTarget is what the senders talk to: one or more nodes' client
// APIs, and for a cluster the means to find its leader.
type benchTarget struct {
	desc  string
	ca    string
	nodes []string // client API URLs
	// leader returns the index in nodes of the leading node; nil when
	// the target is not known to be a cluster.
	leader func(ctx context.Context) (int, error)
}

// route returns the URLs the senders of a level use, and the leader's
// index (-1 without a cluster).
func (t *benchTarget) route(ctx context.Context, via string) ([]string, int, error) {
	if t.leader == nil || via == "" {
		return t.nodes, -1, nil
	}
	lctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	l, err := t.leader(lctx)
	if err != nil {
		return nil, -1, err
	}
	if via == viaLeader {
		return []string{t.nodes[l]}, l, nil
	}
	var out []string
	for i, u := range t.nodes {
		if i != l {
			out = append(out, u)
		}
	}
	if len(out) == 0 {
		return nil, l, errors.New("the cluster has no followers")
	}
	return out, l, nil
}

// target sets up what bench measures: an in-process provider or cluster,
// or the -server nodes. cleanup stops what it started.
func (e *env) benchTarget(ctx context.Context, o *benchOptions) (*benchTarget, func(), error) {
	switch {
	case o.inprocess && o.cluster > 0:
		var c *localCluster
		caFile, cleanup, err := e.startInprocess("cluster", func(dir string, ca *devca.CA) (io.Closer, error) {
			if !e.json {
				fmt.Fprintf(e.stderr, "mimictl: starting an in-process %d-node cluster\n", o.cluster)
			}
			// Raft logs errors whenever a peer goes away, which every
			// node does at the end: only -v shows the nodes' logs.
			log := slog.New(slog.DiscardHandler)
			if e.verbose {
				log = e.providerLogger()
			}
			var err error
			c, err = startLocalCluster(ctx, localClusterConfig{Domain: "bench.example", DataDir: dir, CA: ca, Nodes: o.cluster, RegistrationKey: o.regKey, Unmetered: true, Logger: log})
			return c, err
		})
		if err != nil {
			return nil, nil, err
		}
		t := &benchTarget{desc: fmt.Sprintf("in-process %d-node cluster %s (Raft over mutual TLS, gossip, default timing)", len(c.Nodes), c.Domain), ca: caFile}
		for _, n := range c.Nodes {
			t.nodes = append(t.nodes, n.ClientURL)
		}
		t.leader = c.Leader
		return t, cleanup, nil
	case o.inprocess:
		var p *localProvider
		caFile, cleanup, err := e.startInprocess("provider", func(dir string, ca *devca.CA) (io.Closer, error) {
			var err error
			p, err = startLocalProvider(ctx, localProviderConfig{Domain: "bench.example", DataDir: dir, CA: ca, RegistrationKey: o.regKey, Unmetered: true, Logger: e.providerLogger()})
			return p, err
		})
		if err != nil {
			return nil, nil, err
		}
		return &benchTarget{desc: "in-process single-node provider " + p.Domain + " at " + p.ClientURL, ca: caFile, nodes: []string{p.ClientURL}}, cleanup, nil
	}
	t := &benchTarget{desc: "server " + strings.Join(o.servers, ", "), ca: o.ca, nodes: o.servers}
	if len(o.opsURLs) > 0 {
		t.leader = func(ctx context.Context) (int, error) { return opsLeader(ctx, e, o.opsURLs, &o.adminToken) }
	}
	return t, func() {}, nil
}

// opsLeader asks each node's operations listener (GET /v1/status) whether
// it leads, until one does (bounded by ctx).
func opsLeader(ctx context.Context, e *env, urls []string, tokens *adminTokenFlags) (int, error) {
	var last error
	for {
		for i, u := range urls {
			token, err := tokens.resolve(e, u)
			if err != nil {
				return 0, err
			}
			st, err := opsStatus(ctx, u, token)
			if err != nil {
				last = err
				continue
			}
			if st.Raft.Leader {
				return i, nil
			}
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("no node of %s leads: %w (last error: %v)", strings.Join(urls, ", "), ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// opsStatus reads GET /v1/status from an operations listener.
func opsStatus(ctx context.Context, base, token string) (*hub.OpsStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+"/v1/status", nil)
	if err != nil {
		return nil, fmt.Errorf("-ops-url %q: %w", base, err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s/v1/status: %w", base, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("GET %s/v1/status: %w", base, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s/v1/status: HTTP %d: %s", base, resp.StatusCode, sanitize(strings.TrimSpace(string(body))))
	}
	var st hub.OpsStatus
	if err := json.Unmarshal(body, &st); err != nil {
		return nil, fmt.Errorf("GET %s/v1/status: %w", base, err)
	}
	return &st, nil
}

// modeDescription says what a mode measures.
func (o *benchOptions) modeDescription(mode string) string {
	if mode == benchCommits {
		if o.sharedRoom {
			return "empty commits (updateRoom), all senders in one room"
		}
		return "empty commits (updateRoom), one room per sender"
	}
	return "application messages (provisionalMessage), " + strconv.Itoa(o.size) + " bytes, rooms of up to " + strconv.Itoa(o.roomSize) + " senders"
}

// bench runs the bench command.
func (e *env) bench(ctx context.Context, o *benchOptions) error {
	b := &bencher{e: e, o: o}
	defer b.closeAll()
	var rnd [4]byte
	if _, err := crand.Read(rnd[:]); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	b.prefix = "bench" + hex.EncodeToString(rnd[:])
	t, cleanup, err := e.benchTarget(ctx, o)
	if err != nil {
		return err
	}
	defer cleanup()
	b.ca = t.ca
	vias := []string{""}
	switch o.via {
	case viaBoth:
		vias = []string{viaLeader, viaFollowers}
	case viaLeader, viaFollowers:
		vias = []string{o.via}
	}
	var bounds []string
	if o.duration > 0 {
		bounds = append(bounds, o.duration.String())
	}
	if o.ops > 0 {
		bounds = append(bounds, strconv.Itoa(o.ops)+" operations")
	}
	e.printf("target:  %s\n", t.desc)
	for _, m := range o.modes {
		e.printf("mode:    %s: %s\n", m, o.modeDescription(m))
	}
	if vias[0] != "" {
		e.printf("via:     %s\n", strings.Join(vias, ", "))
	}
	e.printf("levels:  %s senders, each for at most %s; GOMAXPROCS %d\n\n", joinInts(o.senders), strings.Join(bounds, " or "), runtime.GOMAXPROCS(0))
	if err := e.emit(map[string]any{"target": t.desc, "modes": o.modes, "via": vias, "shared_room": o.sharedRoom, "servers": t.nodes,
		"duration_ns": o.duration, "ops": o.ops, "gomaxprocs": runtime.GOMAXPROCS(0)}); err != nil {
		return err
	}
	tables := map[string][]benchRow{}
	total, done := len(o.modes)*len(vias)*len(o.senders), 0
levels:
	for _, m := range o.modes {
		b.mode = m
		for _, via := range vias {
			for _, n := range o.senders {
				done++
				row, err := b.runLevel(ctx, t, m, via, n, done, total)
				if err != nil {
					if ctx.Err() != nil && done > 1 {
						break levels // interrupted: print what was measured
					}
					return err
				}
				if err := e.emit(row); err != nil {
					return err
				}
				tables[m] = append(tables[m], row)
				if ctx.Err() != nil {
					break levels
				}
			}
		}
	}
	if e.json {
		return nil
	}
	for i, m := range o.modes {
		if len(o.modes) > 1 {
			if i > 0 {
				e.printf("\n")
			}
			e.printf("%s: %s\n", m, o.modeDescription(m))
		}
		if err := printBenchTable(e, tables[m], m == benchCommits && o.sharedRoom); err != nil {
			return err
		}
	}
	if !o.inprocess && b.users > 0 {
		// The client API deletes neither users nor rooms: say what stays.
		e.printf("\nleft on the provider: %d users and %d rooms named %s-* (the client API cannot delete them)\n", b.users, b.rooms, b.prefix)
	}
	return nil
}

// runLevel resolves the level's route and measures it.
func (b *bencher) runLevel(ctx context.Context, t *benchTarget, mode, via string, n, i, total int) (benchRow, error) {
	e := b.e
	servers, leader, err := t.route(ctx, via)
	if err != nil {
		return benchRow{}, fmt.Errorf("bench: %w", err)
	}
	b.servers, b.via = servers, via
	if !e.json {
		route := ""
		if via != "" {
			route = " via " + via
		}
		fmt.Fprintf(e.stderr, "mimictl: level %d of %d: %s, %d senders%s: setting up\n", i, total, mode, n, route)
	}
	row, err := b.level(ctx, n)
	if err != nil {
		return benchRow{}, fmt.Errorf("bench %s with %d senders: %w", mode, n, err)
	}
	row.Mode, row.Via = mode, via
	b.closeAll()
	if leader >= 0 {
		lctx, cancel := context.WithTimeout(ctx, time.Minute)
		after, err := t.leader(lctx)
		cancel()
		if err != nil || after != leader {
			row.Note = "the leader changed during the level; the route is mixed"
		}
	}
	return row, nil
}

// printBenchTable writes the rows as an aligned table, then the first
// error of each row that had errors and the rows' notes.
func printBenchTable(e *env, rows []benchRow, refusals bool) error {
	via := slices.ContainsFunc(rows, func(r benchRow) bool { return r.Via != "" })
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	head := "senders\tops\terrors\t"
	if via {
		head = "via\t" + head
	}
	if refusals {
		head += "refused\t"
	}
	fmt.Fprintln(tw, head+"ops/s\tp50\tp90\tp99\tmax\t")
	for _, r := range rows {
		line := fmt.Sprintf("%d\t%d\t%d\t", r.Senders, r.Ops, r.Errors)
		if via {
			line = r.Via + "\t" + line
		}
		if refusals {
			line += fmt.Sprintf("%d\t", r.Refused)
		}
		fmt.Fprintf(tw, "%s%.1f\t%s\t%s\t%s\t%s\t\n", line, r.OpsPerSec, roundDuration(r.P50), roundDuration(r.P90), roundDuration(r.P99), roundDuration(r.Max))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range rows {
		name := fmt.Sprintf("%d senders", r.Senders)
		if r.Via != "" {
			name += " via " + r.Via
		}
		if r.FirstError != "" {
			fmt.Fprintf(e.stdout, "%s, first error: %s\n", name, r.FirstError)
		}
		if r.Note != "" {
			fmt.Fprintf(e.stdout, "%s: %s\n", name, r.Note)
		}
	}
	return nil
}

// startInprocess makes a temporary data folder and a fresh development
// CA, and starts an in-process target (what names it) in them with start.
// It returns the CA's file, for the senders, and a cleanup that stops the
// target and removes the folder.
func (e *env) startInprocess(what string, start func(dir string, ca *devca.CA) (io.Closer, error)) (caFile string, cleanup func(), err error) {
	dir, err := os.MkdirTemp("", "mimictl-bench-")
	if err != nil {
		return "", nil, fmt.Errorf("bench: %w", err)
	}
	fail := func(err error) (string, func(), error) {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("bench: in-process %s: %w", what, err)
	}
	ca, err := devca.New()
	if err != nil {
		return fail(err)
	}
	if caFile, err = writeCA(ca, dir); err != nil {
		return fail(err)
	}
	target, err := start(dir, ca)
	if err != nil {
		return fail(err)
	}
	cleanup = func() {
		if err := target.Close(); err != nil {
			e.logger().Warn("stopping the in-process "+what, "err", err)
		}
		os.RemoveAll(dir)
	}
	return caFile, cleanup, nil
}

func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ", ")
}

func roundDuration(d time.Duration) time.Duration {
	switch {
	case d >= 100*time.Millisecond:
		return d.Round(time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}

func (b *bencher) closeAll() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range b.closers {
		c()
	}
	b.closers = nil
}

// newMember registers a throwaway client at server and uploads
// keyPackages KeyPackages.
func (b *bencher) newMember(ctx context.Context, server, name string, keyPackages int) (*client.Member, error) {
	m, tr, err := b.e.newMember(ctx, memberSetup{server: server, ca: b.ca, regKey: b.o.regKey, user: name, device: "bench", keyPackages: keyPackages})
	b.mu.Lock()
	if tr != nil {
		b.closers = append(b.closers, tr.CloseIdleConnections)
	}
	if m != nil {
		b.users++
	}
	b.mu.Unlock()
	return m, err
}

// memberSetup describes a throwaway client bench and drill register.
type memberSetup struct {
	server, ca, regKey, user, device string
	keyPackages                      int
}

// newMember registers a client that keeps its state in memory only, and
// uploads its KeyPackages. The transport (returned even on failure, when
// one was made) is the caller's to close.
func (e *env) newMember(ctx context.Context, s memberSetup) (*client.Member, *http.Transport, error) {
	hc, tr, err := httpClient(s.ca, s.regKey)
	if err != nil {
		return nil, nil, err
	}
	tr.MaxIdleConnsPerHost = 4
	// Senders log errors only (everything with -v): a warning per sender
	// cut off at the end of a level is noise.
	log := e.providerLogger()
	api, err := client.NewUser(client.UserConfig{BaseURL: s.server, HTTPClient: hc, Logger: log})
	if err != nil {
		return nil, tr, err
	}
	m, err := client.RegisterMember(ctx, api, s.user, s.device, client.MemberConfig{Logger: log})
	if err != nil {
		return nil, tr, fmt.Errorf("registering %s at %s: %w", s.user, s.server, err)
	}
	if s.keyPackages > 0 {
		if err := m.UploadKeyPackages(ctx, s.keyPackages, false); err != nil {
			return nil, tr, fmt.Errorf("KeyPackages of %s: %w", s.user, err)
		}
	}
	return m, tr, nil
}

// members registers n senders, spread round-robin over the servers, a few
// at a time.
func (b *bencher) members(ctx context.Context, tag string, n, keyPackages int) ([]*client.Member, error) {
	out := make([]*client.Member, n)
	errs := make([]error, n)
	sem := make(chan struct{}, benchSetupParallel)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			out[i], errs[i] = b.newMember(ctx, b.servers[i%len(b.servers)], fmt.Sprintf("%s-%s-%d", b.prefix, tag, i), keyPackages)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("registering senders: %w", err)
	}
	return out, nil
}

// level sets up n senders and measures them.
func (b *bencher) level(ctx context.Context, n int) (benchRow, error) {
	ops, err := b.setup(ctx, n)
	if err != nil {
		return benchRow{}, err
	}
	return b.measure(ctx, ops), nil
}

// setup registers n senders, sets up their rooms for the level's mode and
// returns each sender's operation.
func (b *bencher) setup(ctx context.Context, n int) ([]benchOp, error) {
	setupCtx, cancel := context.WithTimeout(ctx, benchSetupLimit)
	defer cancel()
	// The level's number keeps names unique when -senders repeats a
	// number (64,64: the same level twice).
	b.levels++
	tag := fmt.Sprintf("%c%s%d-%d", b.mode[0], b.via, n, b.levels)
	var ops []benchOp
	switch {
	case b.mode == benchMessages:
		ms, err := b.members(setupCtx, tag, n, 1)
		if err != nil {
			return nil, err
		}
		payload := []byte(strings.Repeat("x", b.o.size))
		for g := 0; g*b.o.roomSize < n; g++ {
			group := ms[g*b.o.roomSize : min((g+1)*b.o.roomSize, n)]
			r, err := b.room(setupCtx, fmt.Sprintf("%s-%s-%d", b.prefix, tag, g), group)
			if err != nil {
				return nil, err
			}
			for _, m := range group {
				ops = append(ops, func(ctx context.Context) (bool, error) { return false, m.Send(ctx, r, payload) })
			}
		}
	case b.o.sharedRoom:
		ms, err := b.members(setupCtx, tag, n, 1)
		if err != nil {
			return nil, err
		}
		r, err := b.room(setupCtx, b.prefix+"-"+tag, ms)
		if err != nil {
			return nil, err
		}
		for _, m := range ms {
			ops = append(ops, racingCommit(m, r))
		}
	default:
		ms, err := b.members(setupCtx, tag, n, 0)
		if err != nil {
			return nil, err
		}
		for i, m := range ms {
			r, err := m.CreateRoom(setupCtx, fmt.Sprintf("%s-%s-%d", b.prefix, tag, i), proto.DefaultPolicy())
			if err != nil {
				return nil, fmt.Errorf("creating rooms: %w", err)
			}
			ops = append(ops, func(ctx context.Context) (bool, error) { return false, m.CommitPending(ctx, r) })
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return ops, nil
}

// racingCommit commits to a room other senders commit to as well: a
// commit refused as wrongEpoch lost the race, and the sender catches up
// (outside the measured time) before its next try.
func racingCommit(m *client.Member, r proto.URI) benchOp {
	behind := false
	return func(ctx context.Context) (bool, error) {
		if behind {
			if _, err := m.Sync(ctx); err != nil {
				return false, fmt.Errorf("catching up: %w", err)
			}
			behind = false
		}
		err := m.CommitPending(ctx, r)
		var re *client.RefusedError
		if errors.As(err, &re) && re.Code == proto.UpdateWrongEpoch {
			behind = true
			return true, nil
		}
		return false, err
	}
}

// room has ms[0] create a room and add the others, and waits until every
// one of them has joined it at its latest epoch.
func (b *bencher) room(ctx context.Context, id string, ms []*client.Member) (proto.URI, error) {
	r, err := shareRoom(ctx, id, ms, nil)
	if err == nil {
		b.mu.Lock()
		b.rooms++
		b.mu.Unlock()
	}
	return r, err
}

// shareRoom has ms[0] create room id and add the others and the users of
// other providers in remote, and waits until each of ms joined (bounded
// by ctx).
func shareRoom(ctx context.Context, id string, ms []*client.Member, remote []proto.URI) (proto.URI, error) {
	r, err := ms[0].CreateRoom(ctx, id, proto.DefaultPolicy())
	if err != nil {
		return "", fmt.Errorf("creating a room: %w", err)
	}
	users := slices.Clone(remote)
	for _, m := range ms[1:] {
		users = append(users, m.User())
	}
	for i := 0; i < len(users); i += benchAddBatch {
		var batch []proto.UserRoles
		for _, u := range users[i:min(i+benchAddBatch, len(users))] {
			batch = append(batch, proto.UserRoles{User: u, Roles: []proto.Role{proto.RoleRegularUser}})
		}
		if err := ms[0].AddUsers(ctx, r, batch); err != nil {
			return "", fmt.Errorf("adding members to %s: %w", r, err)
		}
	}
	want, _ := ms[0].Epoch(r)
	errs := make([]error, len(ms))
	var wg sync.WaitGroup
	for i, m := range ms[1:] {
		wg.Go(func() {
			// Each round waits up to a second; setupCtx bounds the rounds.
			for ctx.Err() == nil {
				if _, err := m.SyncWait(ctx, time.Second); err != nil {
					errs[i] = err
					return
				}
				if e, ok := m.Epoch(r); ok && e == want {
					return
				}
			}
			errs[i] = fmt.Errorf("%s did not reach epoch %d of %s: %w", m.Client(), want, r, ctx.Err())
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return "", fmt.Errorf("joining %s: %w", r, err)
	}
	return r, nil
}

// measure runs every op in its own goroutine until the duration passes or
// the level made -ops operations, and summarizes the latencies of the
// accepted ones.
func (b *bencher) measure(ctx context.Context, ops []benchOp) benchRow {
	runCtx, cancel := ctx, context.CancelFunc(func() {})
	if b.o.duration > 0 {
		runCtx, cancel = context.WithTimeout(ctx, b.o.duration)
	}
	defer cancel()
	// started counts operations begun, so that -ops ends the level.
	var started atomic.Int64
	claim := func() bool { return b.o.ops == 0 || started.Add(1) <= int64(b.o.ops) }
	lat := make([][]time.Duration, len(ops))
	errs, refused := make([]int, len(ops)), make([]int, len(ops))
	firstErr := make([]error, len(ops))
	cpu := startCPUProbe(b.serverPIDs)
	if b.onMeasure != nil {
		b.onMeasure()
	}
	start := time.Now()
	var wg sync.WaitGroup
	for i, op := range ops {
		wg.Go(func() {
			for runCtx.Err() == nil && claim() {
				t0 := time.Now()
				lost, err := op(runCtx)
				d := time.Since(t0)
				switch {
				case err != nil && runCtx.Err() != nil:
					return // cut off by the end of the level
				case err != nil:
					errs[i]++
					if firstErr[i] == nil {
						firstErr[i] = err
					}
					time.Sleep(benchErrorPause)
				case lost:
					refused[i]++
				default:
					lat[i] = append(lat[i], d)
				}
			}
		})
	}
	wg.Wait()
	row := summarize(lat, errs, refused, firstErr, time.Since(start))
	cpu.stop(&row)
	return row
}

// summarize builds a row from each sender's latencies and counts.
func summarize(lat [][]time.Duration, errs, refused []int, firstErr []error, elapsed time.Duration) benchRow {
	all := slices.Concat(lat...)
	slices.Sort(all)
	row := benchRow{Senders: len(lat), Ops: len(all), Elapsed: elapsed}
	if elapsed > 0 {
		row.OpsPerSec = float64(len(all)) / elapsed.Seconds()
	}
	if len(all) > 0 {
		row.P50, row.P90, row.P99, row.Max = percentile(all, 50), percentile(all, 90), percentile(all, 99), all[len(all)-1]
	}
	for i := range lat {
		row.Errors += errs[i]
		row.Refused += refused[i]
		if row.FirstError == "" && firstErr[i] != nil {
			row.FirstError = firstErr[i].Error()
		}
	}
	return row
}

// percentile returns the p-th percentile of sorted (nearest rank).
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := (p*len(sorted) + 99) / 100 // ceil(p/100 * n)
	return sorted[max(rank, 1)-1]
}

// failoverRound is one -failover measurement.
type failoverRound struct {
	Round     int    `json:"round"`
	Killed    string `json:"killed"`
	NewLeader string `json:"new_leader"`
	// Elected is the time from SIGKILL until a survivor reported that it
	// leads; FirstWrite until the first message sent through a survivor
	// after the kill was accepted.
	Elected    time.Duration `json:"elected_ns"`
	FirstWrite time.Duration `json:"first_write_ns"`
	// FailedWrites counts the writes that failed in between.
	FailedWrites int `json:"failed_writes"`
}

// failoverLimit bounds each step of a failover round.
const failoverLimit = 2 * time.Minute

// findHubBinary returns the mimi-hub executable: the -hub-binary flag,
// else mimi-hub beside this executable, else in $PATH.
func findHubBinary(flagValue string) (string, error) {
	if flagValue != "" {
		if _, err := os.Stat(flagValue); err != nil {
			return "", fmt.Errorf("-hub-binary: %w", err)
		}
		return flagValue, nil
	}
	if exe, err := os.Executable(); err == nil {
		cand := filepath.Join(filepath.Dir(exe), "mimi-hub")
		if st, err := os.Stat(cand); err == nil && !st.IsDir() {
			return cand, nil
		}
	}
	if p, err := exec.LookPath("mimi-hub"); err == nil {
		return p, nil
	}
	return "", errors.New("no mimi-hub executable beside mimictl or in $PATH: build both with 'go build -o bin/ ./cmd/mimi-hub ./cmd/mimictl', or pass -hub-binary")
}

// hubProcesses is a 3-node cluster of mimi-hub processes that a bench
// mode (what) starts on 127.0.0.firstIP and the two addresses after it,
// with its data and development CA in a temporary folder.
type hubProcesses struct {
	what       string
	p          *systemtest.Provider
	bin, dir   string
	caDir      string
	roots      *x509.CertPool
	removeDirs func()
}

// withPeers, when not nil, is given the development CA's folder before the
// nodes are configured and returns the peer providers (-peer) they use.
func newHubProcesses(o *benchOptions, what, domain string, firstIP int, flags []string, withPeers func(caDir string) (map[string]string, error)) (*hubProcesses, error) {
	bin, err := findHubBinary(o.hubBinary)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	dir, err := os.MkdirTemp("", "mimictl-"+what+"-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	h := &hubProcesses{what: what, bin: bin, dir: dir, caDir: filepath.Join(dir, "dev-ca"), removeDirs: func() { os.RemoveAll(dir) }}
	if h.roots, err = systemtest.DevCA(h.caDir); err != nil {
		h.removeDirs()
		return nil, fmt.Errorf("bench: %w", err)
	}
	var peers map[string]string
	if withPeers != nil {
		if peers, err = withPeers(h.caDir); err != nil {
			h.removeDirs()
			return nil, fmt.Errorf("bench: %w", err)
		}
	}
	if h.p, err = systemtest.NewProvider(systemtest.ProviderConfig{Binary: bin, Domain: domain, Dir: dir, DevCADir: h.caDir, Nodes: 3, FirstIP: firstIP, Flags: flags, Peers: peers}); err != nil {
		h.removeDirs()
		return nil, fmt.Errorf("bench: %w", err)
	}
	return h, nil
}

// start starts the nodes and waits until one serves.
func (h *hubProcesses) start(ctx context.Context) error {
	if err := h.p.Start(); err != nil {
		return h.fail(err)
	}
	sctx, cancel := context.WithTimeout(ctx, failoverLimit)
	defer cancel()
	if _, err := h.p.WaitServing(sctx); err != nil {
		return h.fail(err)
	}
	return nil
}

// fail adds the nodes' last log lines to an error.
func (h *hubProcesses) fail(err error) error {
	return fmt.Errorf("bench: %s: %w\nthe nodes' last log lines:\n%s", h.what, err, h.p.Logs(30))
}

// close kills the nodes and removes their folder.
func (h *hubProcesses) close() {
	h.p.KillAll()
	h.removeDirs()
}

// benchFailover measures leader failover with real processes: kill -9 of
// the leader of a 3-node cluster, then the time until a survivor leads and
// until the first write is accepted, o.failover times.
func (e *env) benchFailover(ctx context.Context, o *benchOptions) error {
	const domain = "bench.example"
	h, err := newHubProcesses(o, "failover", domain, 41, o.hubArgs, nil)
	if err != nil {
		return err
	}
	defer h.close()
	p, bin, dir, roots := h.p, h.bin, h.dir, h.roots
	flags := "the daemon's defaults"
	if len(o.hubArgs) > 0 {
		flags = strings.Join(o.hubArgs, " ")
	}
	e.printf("target:  3 mimi-hub processes (%s), %s on 127.0.0.41-43, logs in %s while running\n", bin, domain, dir)
	e.printf("flags:   %s\n", flags)
	e.printf("measure: %d times: kill -9 the leader; time until a survivor leads, and until a message sent through a survivor is accepted\n\n", o.failover)
	if err := e.emit(map[string]any{"target": "failover", "binary": bin, "flags": o.hubArgs, "rounds": o.failover}); err != nil {
		return err
	}
	fail := h.fail
	if err := h.start(ctx); err != nil {
		return err
	}

	// The writer talks to whichever nodes run, like clients behind a load
	// balancer; a request to the killed node fails and the next goes on.
	hc := systemtest.FailoverClient(roots, func() []string {
		var addrs []string
		for _, n := range p.Serving() {
			addrs = append(addrs, n.ClientAddr)
		}
		return addrs
	})
	defer hc.CloseIdleConnections()
	api, err := client.NewUser(client.UserConfig{BaseURL: "https://" + domain, HTTPClient: hc, Tries: 1, Timeout: 30 * time.Second, Logger: e.providerLogger()})
	if err != nil {
		return fail(err)
	}
	sctx, cancel := context.WithTimeout(ctx, failoverLimit)
	defer cancel()
	m, err := client.RegisterMember(sctx, api, "writer", "bench", client.MemberConfig{Logger: e.providerLogger()})
	if err != nil {
		return fail(err)
	}
	room, err := m.CreateRoom(sctx, "failover", proto.DefaultPolicy())
	if err != nil {
		return fail(err)
	}
	seq := 0
	// write sends messages until one is accepted (bounded), and counts the
	// failures.
	write := func(ctx context.Context) (int, error) {
		failed := 0
		for {
			seq++
			err := m.Send(ctx, room, []byte("failover "+strconv.Itoa(seq)))
			if err == nil {
				return failed, nil
			}
			failed++
			if ctx.Err() != nil {
				return failed, err
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	var rounds []failoverRound
	for r := 1; r <= o.failover && ctx.Err() == nil; r++ {
		rctx, cancel := context.WithTimeout(ctx, failoverLimit)
		round, err := failoverOnce(rctx, p, write)
		cancel()
		if err != nil {
			return fail(fmt.Errorf("round %d: %w", r, err))
		}
		round.Round = r
		rounds = append(rounds, round)
		if err := e.emit(round); err != nil {
			return err
		}
		if !e.json {
			fmt.Fprintf(e.stderr, "mimictl: round %d of %d: killed %s, %s led after %v, first write after %v\n", r, o.failover, round.Killed, round.NewLeader,
				roundDuration(round.Elected), roundDuration(round.FirstWrite))
		}
	}
	if e.json || len(rounds) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "round\tkilled\tnew leader\tleader after\tfirst write after\tfailed writes\t")
	for _, r := range rounds {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t\n", r.Round, r.Killed, r.NewLeader, roundDuration(r.Elected), roundDuration(r.FirstWrite), r.FailedWrites)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout)
	tw = tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tmin\tmedian\tmax\t")
	for _, c := range []struct {
		name string
		get  func(failoverRound) time.Duration
	}{
		{"leader after", func(r failoverRound) time.Duration { return r.Elected }},
		{"first write after", func(r failoverRound) time.Duration { return r.FirstWrite }},
	} {
		var ds []time.Duration
		for _, r := range rounds {
			ds = append(ds, c.get(r))
		}
		slices.Sort(ds)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", c.name, roundDuration(ds[0]), roundDuration(median(ds)), roundDuration(ds[len(ds)-1]))
	}
	return tw.Flush()
}

// median returns the median of sorted durations.
func median(sorted []time.Duration) time.Duration {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// failoverOnce runs one round: make sure a write goes through, kill the
// leader, time the election and the first accepted write, and restart the
// killed node until it has caught up.
func failoverOnce(ctx context.Context, p *systemtest.Provider, write func(context.Context) (int, error)) (failoverRound, error) {
	var r failoverRound
	leader, err := p.WaitLeader(ctx)
	if err != nil {
		return r, err
	}
	if _, err := write(ctx); err != nil {
		return r, fmt.Errorf("a write before the kill: %w", err)
	}
	r.Killed = leader.ID
	start := time.Now()
	if err := leader.Kill(); err != nil {
		return r, err
	}
	type elected struct {
		id string
		d  time.Duration
	}
	electedCh := make(chan elected, 1)
	go func() {
		for ctx.Err() == nil {
			for _, n := range p.Serving() {
				if st, err := n.Status(ctx); err == nil && st.Raft.Leader {
					electedCh <- elected{n.ID, time.Since(start)}
					return
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
		close(electedCh)
	}()
	failed, err := write(ctx)
	if err != nil {
		return r, fmt.Errorf("no write accepted after the kill: %w", err)
	}
	r.FirstWrite, r.FailedWrites = time.Since(start), failed
	el, ok := <-electedCh
	if !ok {
		return r, fmt.Errorf("no survivor reported leading: %w", ctx.Err())
	}
	r.NewLeader, r.Elected = el.id, el.d

	if err := leader.Start(); err != nil {
		return r, err
	}
	now, err := p.WaitServing(ctx)
	if err != nil {
		return r, err
	}
	st, err := now.Status(ctx)
	if err != nil {
		return r, err
	}
	if _, err := leader.WaitCaughtUp(ctx, st.Raft.CommitIndex); err != nil {
		return r, err
	}
	return r, nil
}
