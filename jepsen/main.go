// Command jepsen is mimi-hub's fault-injection harness: it builds the
// mimi-hub binary, runs a provider cluster in Linux network namespaces
// beside a follower provider that records the fanout it gets, drives it
// with real MLS clients while nemeses kill, pause, partition, slow down
// and reshape the cluster, heals, and checks the history for lost or
// forked commits, reused KeyPackages and wrong fanout. It writes a report
// (jepsen/README.md explains it) and exits 1 when it found an anomaly.
//
//	go run ./jepsen -workload all -nemesis mix -time 120s -nodes 5
//	go run ./jepsen -cleanup          # remove what a crashed run left
//
// It needs root (namespaces, iptables); jepsen/install.sh installs the
// Debian packages it uses.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/mimihub/mimi-hub/jepsen/internal/testnet"
)

// Exit codes.
const (
	exitValid   = 0
	exitAnomaly = 1
	exitError   = 2
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	o, err := parseOptions(args)
	if errors.Is(err, flag.ErrHelp) {
		return exitValid
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "jepsen:", err)
		return exitError
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: o.logLevel}))
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "jepsen: needs root: it creates network namespaces, veth links and iptables rules")
		return exitError
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if o.cleanup {
		return cleanup(ctx, log)
	}
	res, err := execute(ctx, o, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "jepsen:", err)
		return exitError
	}
	if o.expect != "" {
		if res.found(o.expect) {
			fmt.Printf("jepsen: found the expected %s anomaly\n", o.expect)
			return exitValid
		}
		fmt.Fprintf(os.Stderr, "jepsen: expected a %s anomaly and found none\n", o.expect)
		return exitAnomaly
	}
	if !res.Valid {
		return exitAnomaly
	}
	return exitValid
}

// cleanup removes the leftovers of dead runs, unless a run is active.
func cleanup(ctx context.Context, log *slog.Logger) int {
	lock, err := testnet.TryLock("")
	if errors.Is(err, testnet.ErrBusy) {
		fmt.Fprintln(os.Stderr, "jepsen: a run is active (it holds the network lock); nothing removed")
		return exitError
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "jepsen:", err)
		return exitError
	}
	defer lock.Unlock()
	before, err := testnet.Scan(ctx, testnet.CleanupConfig{Logger: log})
	if err == nil {
		err = testnet.Cleanup(ctx, testnet.CleanupConfig{Logger: log})
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "jepsen: cleanup:", err)
		return exitError
	}
	var ids []string
	for _, l := range before {
		ids = append(ids, l.RunID)
	}
	if len(ids) == 0 {
		fmt.Println("jepsen: nothing to clean up")
	} else {
		fmt.Printf("jepsen: removed the leftovers of runs %s\n", strings.Join(ids, ", "))
	}
	return exitValid
}

// options are the command line.
type options struct {
	workloads []string
	nemeses   []string
	duration  time.Duration
	nodes     int
	out       string
	unsafe    bool
	binary    string
	cleanup   bool
	seed      uint64
	quiet     time.Duration
	fault     time.Duration
	timeout   time.Duration
	expect    string
	logLevel  slog.Level
	settle    time.Duration
	// joinExpect is -bootstrap-expect for joining nodes (0, the correct
	// value, unless reproducing a misconfiguration).
	joinExpect int
}

// allWorkloads lists the workloads -workload accepts.
func allWorkloads() []string { return []string{"commit-race", "keypackages", "messages"} }

// allNemeses lists the faults -nemesis accepts.
func allNemeses() []string {
	return []string{"kill", "pause", "partition", "loss", "delay", "membership", "snapshot"}
}

func parseOptions(args []string) (*options, error) {
	fs := flag.NewFlagSet("jepsen", flag.ContinueOnError)
	o := &options{}
	workload := fs.String("workload", "all", "workloads: all, or a comma-separated list of "+strings.Join(allWorkloads(), ", "))
	nem := fs.String("nemesis", "mix", "faults: mix (all of them), none, or a comma-separated list of "+strings.Join(allNemeses(), ", "))
	fs.DurationVar(&o.duration, "time", 120*time.Second, "how long the workloads run under faults")
	fs.IntVar(&o.nodes, "nodes", 5, "cluster size (1 runs a single node)")
	fs.StringVar(&o.out, "out", "", "report folder (default jepsen/out/<time>-<run id>)")
	fs.BoolVar(&o.unsafe, "unsafe-build", false, "build mimi-hub with the mimi_unsafe_noepochcheck tag (the hub accepts stale commits): the run must find forks")
	fs.StringVar(&o.binary, "binary", "", "use this mimi-hub binary instead of building one")
	fs.BoolVar(&o.cleanup, "cleanup", false, "remove what crashed runs left (namespaces, links, processes, state files) and exit")
	fs.Uint64Var(&o.seed, "seed", 0, "random seed (0: from the clock)")
	fs.DurationVar(&o.quiet, "quiet", 3*time.Second, "pause between faults")
	fs.DurationVar(&o.fault, "fault", 8*time.Second, "how long each fault lasts")
	fs.DurationVar(&o.timeout, "request-timeout", 3*time.Second, "timeout of one client request")
	fs.DurationVar(&o.settle, "settle", 90*time.Second, "how long to wait for the healed cluster to converge")
	fs.IntVar(&o.joinExpect, "join-bootstrap-expect", 0, "-bootstrap-expect of nodes that join (restarted, added, replacing); 1 checks that a copied single-node configuration still joins")
	fs.StringVar(&o.expect, "expect", "", "exit 0 only if an anomaly of this kind (e.g. forked-epoch) is found")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if err := o.logLevel.UnmarshalText([]byte(*level)); err != nil {
		return nil, fmt.Errorf("-log-level: %w", err)
	}
	var err error
	if o.workloads, err = list(*workload, "all", allWorkloads()); err != nil {
		return nil, fmt.Errorf("-workload: %w", err)
	}
	if o.nemeses, err = list(*nem, "mix", allNemeses()); err != nil {
		return nil, fmt.Errorf("-nemesis: %w", err)
	}
	if o.nodes < 1 || o.nodes > 9 {
		return nil, errors.New("-nodes must be between 1 and 9")
	}
	if o.duration <= 0 || o.duration > 24*time.Hour {
		return nil, errors.New("-time must be between 0 and 24h")
	}
	if o.quiet <= 0 || o.fault <= 0 {
		return nil, errors.New("-quiet and -fault must be positive")
	}
	return o, nil
}

// list parses a comma-separated choice: all (the word) means every valid
// value, "none" none.
func list(s, all string, valid []string) ([]string, error) {
	switch strings.TrimSpace(s) {
	case all:
		return valid, nil
	case "none", "":
		return nil, nil
	}
	var out []string
	for _, v := range strings.Split(s, ",") {
		v = strings.TrimSpace(v)
		ok := false
		for _, w := range valid {
			ok = ok || v == w
		}
		if !ok {
			return nil, fmt.Errorf("unknown %q (want %s, %s or none)", v, all, strings.Join(valid, ", "))
		}
		out = append(out, v)
	}
	return out, nil
}
