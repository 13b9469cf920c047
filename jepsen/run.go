package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mimihub/mimi-hub/internal/devca"
	"github.com/mimihub/mimi-hub/jepsen/internal/check"
	"github.com/mimihub/mimi-hub/jepsen/internal/history"
	"github.com/mimihub/mimi-hub/jepsen/internal/hubproc"
	"github.com/mimihub/mimi-hub/jepsen/internal/nemesis"
	"github.com/mimihub/mimi-hub/jepsen/internal/recorder"
	"github.com/mimihub/mimi-hub/jepsen/internal/report"
	"github.com/mimihub/mimi-hub/jepsen/internal/testnet"
	"github.com/mimihub/mimi-hub/jepsen/internal/workload"
	"github.com/mimihub/mimi-hub/mimi/client"
)

// The run's fixed names.
const (
	hubDomain      = "hub.example"
	followerDomain = "f.example"
	followerPort   = 8443
	// unsafeTag is the product's build tag that disables the epoch check.
	unsafeTag = "mimi_unsafe_noepochcheck"
	// spareHosts are hosts beyond -nodes for the membership nemesis.
	spareHosts = 2
)

// clusterSettings are the node flags the harness sets when the binary has
// them: quick dead-node removal, small snapshots and a short wait for a
// leader, so faults show within a short run; no account rate limits (the
// workloads register many clients from one address). Raft's timings stay the
// product's: shorter ones make leaders step down under the CPU load of a
// small test machine.
func clusterSettings() map[string]string {
	return map[string]string{
		"dead-node-remove-after": "10s",
		"snapshot-threshold":     "256",
		"trailing-logs":          "64",
		"snapshot-interval":      "2s",
		"leader-wait":            "2s",
		"no-account-rate-limits": "true",
	}
}

// snapshotWrites is how many writes the snapshot nemesis drives while a
// follower is paused: past the threshold plus the trailing logs.
const snapshotWrites = 256 + 64 + 200

// outcome is a finished run.
type outcome struct {
	check.Result
}

func (o outcome) found(kind string) bool {
	return slices.ContainsFunc(o.Anomalies, func(a check.Anomaly) bool { return string(a.Kind) == kind })
}

// execute runs the whole test.
func execute(ctx context.Context, o *options, log *slog.Logger) (outcome, error) {
	started := time.Now()
	for _, tool := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			return outcome{}, fmt.Errorf("%s is missing: run jepsen/install.sh", tool)
		}
	}
	runID, err := testnet.NewRunID()
	if err != nil {
		return outcome{}, err
	}
	if o.seed == 0 {
		o.seed = uint64(time.Now().UnixNano())
	}
	root, err := moduleRoot(ctx)
	if err != nil {
		return outcome{}, err
	}
	if o.out == "" {
		o.out = filepath.Join(root, "jepsen", "out", time.Now().Format("20060102-150405")+"-"+runID)
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return outcome{}, err
	}
	logFile, err := os.Create(filepath.Join(o.out, "harness.log"))
	if err != nil {
		return outcome{}, err
	}
	defer logFile.Close()
	log = slog.New(teeHandler{log.Handler(), slog.NewTextHandler(logFile, &slog.HandlerOptions{Level: slog.LevelDebug})}).With("run", runID)
	log.Info("jepsen run", "workloads", o.workloads, "nemeses", o.nemeses, "nodes", o.nodes, "time", o.duration, "seed", o.seed, "out", o.out)
	rng := rand.New(rand.NewPCG(o.seed, 0))

	// The binary.
	bin, err := binary(ctx, o, root, log)
	if err != nil {
		return outcome{}, err
	}
	nodes := o.nodes
	if !bin.Clustered() && nodes > 1 {
		log.Warn("the binary runs a single node only; running one", "binary", bin.Path)
		nodes = 1
	}
	var notes []string
	if nodes != o.nodes {
		notes = append(notes, fmt.Sprintf("the binary has no cluster flags: ran 1 node instead of %d", o.nodes))
	}

	// The network: nodes, spares, and the follower provider's host.
	hosts := nodes + 1
	if bin.Clustered() {
		hosts += spareHosts
	}
	network, err := testnet.Create(ctx, testnet.Config{RunID: runID, Hosts: hosts, Logger: log})
	if err != nil {
		return outcome{}, err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		if err := network.Close(cctx); err != nil {
			log.Error("removing the test network", "err", err)
		}
	}()
	recHost := network.Hosts[len(network.Hosts)-1]
	nodeHosts := network.Hosts[:len(network.Hosts)-1]

	// The development CA, the follower provider, then the cluster.
	clusterDir := filepath.Join(o.out, "cluster")
	ca, err := devca.LoadOrCreate(filepath.Join(clusterDir, "dev-ca"))
	if err != nil {
		return outcome{}, err
	}
	hist := history.New()
	rec, err := startRecorder(recHost, ca, hist, log)
	if err != nil {
		return outcome{}, err
	}
	defer rec.Close(context.WithoutCancel(ctx))
	cluster, err := hubproc.Start(ctx, hubproc.Config{
		Binary: bin, Domain: hubDomain, Hosts: nodeHosts, Nodes: nodes, Dir: clusterDir, ClusterName: "mj" + runID,
		Peers:    map[string]string{followerDomain: netip.AddrPortFrom(recHost.Addr, followerPort).String()},
		Settings: clusterSettings(), JoinBootstrapExpect: o.joinExpect, Rand: rand.New(rand.NewPCG(o.seed, 1)), Logger: log,
	})
	if err != nil {
		return outcome{}, err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if err := cluster.Stop(cctx); err != nil {
			log.Error("stopping the cluster", "err", err)
		}
	}()
	notes = append(notes, cluster.Notes()...)

	// Workloads, set up before any fault.
	env := workload.NewEnv(workload.Config{
		Domain: hubDomain, Roots: ca.Pool(), History: hist, Timeout: o.timeout, Prefix: "j" + runID, Seed: o.seed, Logger: log,
		Endpoints: func() []workload.Endpoint {
			var eps []workload.Endpoint
			for _, n := range cluster.Members() {
				eps = append(eps, workload.Endpoint{Node: n.ID, URL: hubproc.ClientURL(n)})
			}
			return eps
		},
	})
	defer env.Close()
	var (
		race *workload.CommitRace
		kps  *workload.KeyPackages
		msgs *workload.Messages
		runs []func(context.Context) error
	)
	for _, w := range o.workloads {
		switch w {
		case "commit-race":
			race = &workload.CommitRace{Env: env}
			if err := race.Setup(ctx); err != nil {
				return outcome{}, fmt.Errorf("commit race setup: %w", err)
			}
			runs = append(runs, race.Run)
		case "keypackages":
			kps = &workload.KeyPackages{Env: env}
			if err := kps.Setup(ctx); err != nil {
				return outcome{}, fmt.Errorf("keypackages setup: %w", err)
			}
			runs = append(runs, kps.Run)
		case "messages":
			msgs = &workload.Messages{Env: env, FollowerDomain: followerDomain}
			if err := msgs.Setup(ctx); err != nil {
				return outcome{}, fmt.Errorf("messages setup: %w", err)
			}
			runs = append(runs, msgs.Run)
		}
	}
	log.Info("setup done; running the workloads under faults", "time", o.duration)

	// The run: workloads and nemeses together for o.duration.
	faults := nemesis.NewLog(hist.Now)
	nems, skipped := buildNemeses(o.nemeses, cluster, env, bin.Clustered(), nodes, rng)
	notes = append(notes, skipped...)
	runCtx, cancel := context.WithTimeout(ctx, o.duration)
	var wg sync.WaitGroup
	for _, r := range runs {
		wg.Go(func() {
			if err := r(runCtx); err != nil {
				log.Error("workload", "err", err)
			}
		})
	}
	var healErr error
	wg.Go(func() {
		s := &nemesis.Schedule{Nemeses: nems, Quiet: o.quiet, Fault: o.fault, Rand: rng, Log: faults, Logger: log}
		healErr = s.Run(runCtx)
	})
	wg.Wait()
	cancel()
	if ctx.Err() != nil {
		return outcome{}, fmt.Errorf("interrupted: %w", ctx.Err())
	}

	// Heal everything, whatever the schedule left, and let the cluster
	// converge.
	if err := healAll(ctx, cluster, network, log); err != nil {
		notes = append(notes, "final heal: "+err.Error())
	}
	if healErr != nil {
		notes = append(notes, "a nemesis failed to heal: "+healErr.Error())
	}
	if err := converge(ctx, cluster, o.settle, log); err != nil {
		notes = append(notes, "convergence: "+err.Error())
		log.Warn("the cluster did not converge", "err", err)
	}

	// Final state.
	if race != nil {
		finals(ctx, env, cluster, race, hist)
	}
	if msgs != nil {
		if err := msgs.Observe(ctx); err != nil {
			notes = append(notes, err.Error())
		}
	}

	// Check and report.
	snap := hist.Snapshot()
	res := check.Run(snap, check.Options{})
	run := report.Run{ID: runID, Workload: strings.Join(o.workloads, ","), Nemesis: strings.Join(o.nemeses, ","), Nodes: nodes,
		Duration: o.duration, Unsafe: o.unsafe, Seed: o.seed, Elapsed: time.Since(started), Notes: notes}
	summary, err := report.Write(o.out, run, snap, res, faults.Windows())
	if err != nil {
		return outcome{}, err
	}
	fmt.Print("\n" + summary)
	fmt.Printf("report: %s\n", o.out)
	return outcome{res}, nil
}

// moduleRoot is the folder of the mimi-hub module.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("run the harness inside the mimi-hub module (go run ./jepsen)")
	}
	return filepath.Dir(mod), nil
}

// binary builds (or inspects) the mimi-hub binary.
func binary(ctx context.Context, o *options, root string, log *slog.Logger) (*hubproc.Binary, error) {
	if o.binary != "" {
		return hubproc.Inspect(ctx, o.binary)
	}
	var tags []string
	if o.unsafe {
		tags = append(tags, unsafeTag)
	}
	out := filepath.Join(o.out, "bin", "mimi-hub")
	log.Info("building mimi-hub", "tags", tags, "out", out)
	return hubproc.Build(ctx, root, out, tags)
}

// startRecorder runs the follower provider in its host's namespace.
func startRecorder(h testnet.Host, ca *devca.CA, hist *history.History, log *slog.Logger) (*recorder.Recorder, error) {
	cert, err := ca.Issue(followerDomain)
	if err != nil {
		return nil, err
	}
	var ln net.Listener
	if err := h.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", netip.AddrPortFrom(h.Addr, followerPort).String())
		return err
	}); err != nil {
		return nil, fmt.Errorf("follower provider: %w", err)
	}
	log.Info("follower provider listening", "domain", followerDomain, "addr", ln.Addr())
	return recorder.Serve(ln, recorder.Config{Hub: hubDomain, Certificate: cert, Roots: ca.Pool(), History: hist, Logger: log}), nil
}

// buildNemeses makes the requested nemeses; the ones that need a cluster
// of several nodes are skipped (and said so) on a single node.
func buildNemeses(kinds []string, c *hubproc.Cluster, env *workload.Env, clustered bool, nodes int, rng *rand.Rand) ([]nemesis.Nemesis, []string) {
	rules := nemesis.Rules{FW: nemesis.IPTables{}}
	loader := loader{env: env, cluster: c}
	var out []nemesis.Nemesis
	var notes []string
	for _, k := range kinds {
		multi := k == "partition" || k == "loss" || k == "delay" || k == "membership" || k == "snapshot"
		if multi && (nodes < 3 || !clustered) {
			notes = append(notes, fmt.Sprintf("nemesis %s skipped: it needs a cluster of 3 or more nodes", k))
			continue
		}
		switch k {
		case "kill":
			out = append(out, &nemesis.Kill{Cluster: c, Rand: rng})
		case "pause":
			out = append(out, &nemesis.Pause{Cluster: c, Rand: rng})
		case "partition":
			out = append(out, &nemesis.Partition{Cluster: c, Rules: rules, Rand: rng})
		case "loss":
			out = append(out, &nemesis.Loss{Cluster: c, Rules: rules})
		case "delay":
			out = append(out, &nemesis.Delay{Cluster: c, Rules: rules})
		case "membership":
			out = append(out, &nemesis.Membership{Cluster: c, Rand: rng})
		case "snapshot":
			out = append(out, &nemesis.Snapshot{Cluster: c, Loader: loader, Rand: rng, Writes: snapshotWrites})
		}
	}
	return out, notes
}

// loader is the snapshot nemesis's Loader.
type loader struct {
	env     *workload.Env
	cluster *hubproc.Cluster
}

// Load drives n writes, avoiding some nodes.
func (l loader) Load(ctx context.Context, n int, avoid []string) error {
	return l.env.Load(ctx, n, avoid)
}

// CaughtUp waits until node id applied what the leader had committed when
// it started waiting.
func (l loader) CaughtUp(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var target uint64
	for range 1000 {
		if target == 0 {
			if leader, err := l.cluster.Leader(ctx); err == nil {
				if s, err := l.cluster.Status(ctx, leader); err == nil {
					target = s.Raft.CommitIndex
				}
			}
		}
		if s, err := l.cluster.Status(ctx, id); err == nil && target > 0 && s.Raft.AppliedIndex >= target {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s has not applied index %d: %w", id, target, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s did not catch up", id)
}

// Progress reads a node's applied and snapshot indexes.
func (l loader) Progress(ctx context.Context, id string) (uint64, uint64, error) {
	s, err := l.cluster.Status(ctx, id)
	if err != nil {
		return 0, 0, err
	}
	return s.Raft.AppliedIndex, s.Raft.LastSnapshotIndex, nil
}

// healAll flushes every nemesis rule, continues paused nodes and starts
// killed ones.
func healAll(ctx context.Context, c *hubproc.Cluster, n *testnet.Network, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Minute)
	defer cancel()
	rules := nemesis.Rules{FW: nemesis.IPTables{}}
	var errs []error
	for _, h := range n.Hosts {
		// Hosts the nemeses never touched have no chains: ignore that.
		_ = rules.Flush(ctx, h.Namespace)
	}
	if err := c.ResumeAll(ctx); err != nil {
		errs = append(errs, err)
	}
	log.Info("healed: rules flushed, every node running")
	return errors.Join(errs...)
}

// converge waits until every node is ready, they agree on the applied
// index, and nothing waits in the outbox for the follower.
func converge(ctx context.Context, c *hubproc.Cluster, within time.Duration, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	var last string
	for range 100_000 {
		last = convergence(ctx, c)
		if last == "" {
			log.Info("the cluster converged")
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not converged after %v: %s", within, last)
		case <-time.After(500 * time.Millisecond):
		}
	}
	return errors.New(last)
}

// convergence returns "" when the cluster converged, else why not.
func convergence(ctx context.Context, c *hubproc.Cluster) string {
	applied := map[uint64][]string{}
	for _, n := range c.Members() {
		if err := c.WaitReadyOnce(ctx, n.ID); err != nil {
			return fmt.Sprintf("%s not ready: %v", n.ID, err)
		}
		s, err := c.Status(ctx, n.ID)
		if err != nil {
			return fmt.Sprintf("%s status: %v", n.ID, err)
		}
		applied[s.Raft.AppliedIndex] = append(applied[s.Raft.AppliedIndex], n.ID)
		if p, ok := s.Peers[followerDomain]; ok && p.Outbox > 0 {
			return fmt.Sprintf("%d items wait for %s (last error %q)", p.Outbox, followerDomain, p.LastError)
		}
	}
	if len(applied) > 1 {
		return fmt.Sprintf("applied indexes differ: %v", applied)
	}
	return ""
}

// finals reads every race room's state through every node.
func finals(ctx context.Context, env *workload.Env, c *hubproc.Cluster, race *workload.CommitRace, hist *history.History) {
	for _, n := range c.Members() {
		ep := workload.Endpoint{Node: n.ID, URL: hubproc.ClientURL(n)}
		for _, r := range race.RoomURIs() {
			f := history.Final{Node: n.ID, Room: string(r)}
			info, err := race.ReadAt(ctx, r, ep)
			if err != nil {
				f.Error = err.Error()
			} else {
				f.Epoch, f.Hash = info.Epoch, hexOf(info)
			}
			hist.AddFinal(f)
		}
	}
}

func hexOf(info *client.RoomInfo) string { return fmt.Sprintf("%x", info.TranscriptHash) }

// teeHandler sends records to two handlers.
type teeHandler struct{ a, b slog.Handler }

// Enabled implements slog.Handler.
func (t teeHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return t.a.Enabled(ctx, l) || t.b.Enabled(ctx, l)
}

// Handle implements slog.Handler.
func (t teeHandler) Handle(ctx context.Context, r slog.Record) error {
	var errs []error
	if t.a.Enabled(ctx, r.Level) {
		errs = append(errs, t.a.Handle(ctx, r.Clone()))
	}
	if t.b.Enabled(ctx, r.Level) {
		errs = append(errs, t.b.Handle(ctx, r))
	}
	return errors.Join(errs...)
}

// WithAttrs implements slog.Handler.
func (t teeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return teeHandler{t.a.WithAttrs(as), t.b.WithAttrs(as)}
}

// WithGroup implements slog.Handler.
func (t teeHandler) WithGroup(name string) slog.Handler {
	return teeHandler{t.a.WithGroup(name), t.b.WithGroup(name)}
}
