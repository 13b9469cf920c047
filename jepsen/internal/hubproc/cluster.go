package hubproc

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mimihub/mimi-hub/internal/devca"
	"github.com/mimihub/mimi-hub/jepsen/internal/nemesis"
	"github.com/mimihub/mimi-hub/jepsen/internal/testnet"
)

// Ports every node listens on, at its host's address.
const (
	PortFederation = 8443
	PortClient     = 8444
	PortOps        = 8445
	PortRaft       = 8446
	PortGossip     = 8447
)

// Config describes the provider cluster to run.
type Config struct {
	Binary *Binary
	// Domain is the provider's domain (every node's).
	Domain string
	// Hosts are the hosts available; the first Nodes start as the
	// cluster, the others are spares for membership changes.
	Hosts []testnet.Host
	Nodes int
	// Dir holds each node's data and log, and the shared development CA.
	Dir string
	// ClusterName labels the gossip pool.
	ClusterName string
	// Peers are -peer DOMAIN=HOST:PORT overrides (the follower provider).
	Peers map[string]string
	// Settings are further flags (name without dash -> value), passed when
	// the binary has them: timeouts, snapshot thresholds, ...
	Settings map[string]string
	// JoinBootstrapExpect is the -bootstrap-expect of every start but the
	// first start of the first nodes: 0 (join an existing cluster), or
	// another value to reproduce a misconfigured joining node.
	JoinBootstrapExpect int
	// Rand picks nodes; nil means a fixed seed.
	Rand   *rand.Rand
	Logger *slog.Logger
}

// Node is a running (or killed, or paused) node process.
type Node struct {
	ID   string
	Host testnet.Host
	Dir  string
	Log  string

	cmd    *exec.Cmd
	done   chan struct{}
	paused bool
}

// Cluster is the provider's node processes.
type Cluster struct {
	cfg    Config
	ca     *devca.CA
	log    *slog.Logger
	ops    *opsClient
	token  string
	notes  []string
	serial int

	mu      sync.Mutex
	members []*Node // meant to be in the cluster
	spares  []testnet.Host
	initial []string // gossip addresses of the first nodes (join targets)
}

// Start starts the first cfg.Nodes nodes and waits until each is ready.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	if cfg.Nodes < 1 || cfg.Nodes > len(cfg.Hosts) {
		return nil, fmt.Errorf("hubproc: %d nodes on %d hosts", cfg.Nodes, len(cfg.Hosts))
	}
	if cfg.Nodes > 1 && !cfg.Binary.Clustered() {
		return nil, fmt.Errorf("hubproc: %s has no -node-id/-join/-gossip-addr flags: it runs a single node only", cfg.Binary.Path)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.New(rand.NewPCG(1, 1))
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("hubproc: %w", err)
	}
	// One CA for every node, made before any starts (they would race to
	// create it).
	ca, err := devca.LoadOrCreate(filepath.Join(cfg.Dir, "dev-ca"))
	if err != nil {
		return nil, fmt.Errorf("hubproc: dev CA: %w", err)
	}
	var tok [16]byte
	if _, err := crand.Read(tok[:]); err != nil {
		return nil, err
	}
	c := &Cluster{cfg: cfg, ca: ca, log: cfg.Logger, token: hex.EncodeToString(tok[:])}
	if !cfg.Binary.Has("admin-token") {
		c.token = ""
	}
	c.ops = &opsClient{hc: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}, token: c.token}
	for _, h := range cfg.Hosts[:cfg.Nodes] {
		c.initial = append(c.initial, netip.AddrPortFrom(h.Addr, PortGossip).String())
	}
	c.spares = slices.Clone(cfg.Hosts[cfg.Nodes:])
	for _, h := range cfg.Hosts[:cfg.Nodes] {
		n := c.newNode(h)
		if err := c.launch(n, true); err != nil {
			return nil, errors.Join(err, c.Stop(context.WithoutCancel(ctx)))
		}
		c.members = append(c.members, n)
	}
	for _, n := range c.Members() {
		if err := c.WaitReady(ctx, n.ID); err != nil {
			return nil, errors.Join(err, c.Stop(context.WithoutCancel(ctx)))
		}
	}
	return c, nil
}

// CA returns the development CA every node's certificate comes from.
func (c *Cluster) CA() *devca.CA { return c.ca }

// CADir is the shared development CA folder.
func (c *Cluster) CADir() string { return filepath.Join(c.cfg.Dir, "dev-ca") }

// Notes lists flags the binary lacked and other remarks.
func (c *Cluster) Notes() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.notes)
}

func (c *Cluster) newNode(h testnet.Host) *Node {
	c.serial++
	id := "n" + strconv.Itoa(c.serial)
	return &Node{ID: id, Host: h, Dir: filepath.Join(c.cfg.Dir, id), Log: filepath.Join(c.cfg.Dir, id+".log")}
}

// args builds a node's command line from the flags the binary has.
func (c *Cluster) args(n *Node, bootstrap bool) []string {
	addr := func(port int) string { return netip.AddrPortFrom(n.Host.Addr, uint16(port)).String() }
	flags := [][2]string{
		{"domain", c.cfg.Domain},
		{"data", n.Dir},
		{"federation-addr", addr(PortFederation)},
		{"client-addr", addr(PortClient)},
		{"ops-addr", addr(PortOps)},
		{"raft-addr", addr(PortRaft)},
		{"dev-ca-dir", c.CADir()},
		{"log-level", "info"},
	}
	if c.token != "" {
		flags = append(flags, [2]string{"admin-token", c.token})
	}
	var peers []string
	for d, a := range c.cfg.Peers {
		peers = append(peers, d+"="+a)
	}
	slices.Sort(peers)
	if len(peers) > 0 {
		flags = append(flags, [2]string{"peer", strings.Join(peers, ",")})
	}
	if c.cfg.Binary.Clustered() {
		flags = append(flags, [2]string{"node-id", n.ID}, [2]string{"gossip-addr", addr(PortGossip)},
			[2]string{"cluster-name", c.cfg.ClusterName})
		var join []string
		for _, a := range c.initial {
			if a != addr(PortGossip) {
				join = append(join, a)
			}
		}
		if len(join) > 0 {
			flags = append(flags, [2]string{"join", strings.Join(join, ",")})
		}
		// The first start of the first nodes bootstraps the cluster; every
		// other start joins it (the product's default, 1, would make a
		// joining node bootstrap a cluster of its own).
		expect := c.cfg.JoinBootstrapExpect
		if bootstrap {
			expect = c.cfg.Nodes
		}
		flags = append(flags, [2]string{"bootstrap-expect", strconv.Itoa(expect)})
	}
	for _, k := range slices.Sorted(maps.Keys(c.cfg.Settings)) {
		flags = append(flags, [2]string{k, c.cfg.Settings[k]})
	}
	var args []string
	for _, f := range flags {
		if !c.cfg.Binary.Has(f[0]) {
			note := fmt.Sprintf("the binary has no -%s flag; not set", f[0])
			if !slices.Contains(c.notes, note) {
				c.notes = append(c.notes, note)
			}
			continue
		}
		args = append(args, "-"+f[0]+"="+f[1])
	}
	return args
}

// launch starts n's process (c.mu may be held).
func (c *Cluster) launch(n *Node, bootstrap bool) error {
	logf, err := os.OpenFile(n.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("hubproc: %w", err)
	}
	args := c.args(n, bootstrap)
	fmt.Fprintf(logf, "=== %s start: %s %s\n", time.Now().Format(time.RFC3339Nano), c.cfg.Binary.Path, strings.Join(args, " "))
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.Host.Namespace, c.cfg.Binary.Path}, args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// The node dies with the harness; ip netns exec execs the binary, so
	// the pid is the node's.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("hubproc: starting %s: %w", n.ID, err)
	}
	n.cmd, n.done, n.paused = cmd, make(chan struct{}), false
	done := n.done
	go func() {
		err := cmd.Wait()
		fmt.Fprintf(logf, "=== %s exit: %v\n", time.Now().Format(time.RFC3339Nano), err)
		logf.Close()
		close(done)
	}()
	c.log.Info("node started", "node", n.ID, "host", n.Host.Addr, "pid", cmd.Process.Pid)
	return nil
}

// Members returns the nodes meant to be in the cluster.
func (c *Cluster) Members() []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.members)
}

func (c *Cluster) node(id string) (*Node, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.members {
		if n.ID == id {
			return n, nil
		}
	}
	return nil, fmt.Errorf("hubproc: no node %s", id)
}

// Nodes implements nemesis.Cluster.
func (c *Cluster) Nodes() []nemesis.Node {
	var out []nemesis.Node
	for _, n := range c.Members() {
		out = append(out, nemesis.Node{ID: n.ID, Namespace: n.Host.Namespace, Addr: n.Host.Addr})
	}
	return out
}

// OpsURL returns a node's operations base URL.
func OpsURL(n *Node) string { return "http://" + netip.AddrPortFrom(n.Host.Addr, PortOps).String() }

// ClientURL returns a node's client API base URL.
func ClientURL(n *Node) string {
	return "https://" + netip.AddrPortFrom(n.Host.Addr, PortClient).String()
}

// FederationAddr returns a node's federation address.
func FederationAddr(n *Node) string { return netip.AddrPortFrom(n.Host.Addr, PortFederation).String() }

// WaitReady waits until node id answers /readyz with 200.
func (c *Cluster) WaitReady(ctx context.Context, id string) error {
	n, err := c.node(id)
	if err != nil {
		return err
	}
	return c.waitReady(ctx, n)
}

func (c *Cluster) waitReady(ctx context.Context, n *Node) error {
	id := n.ID
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var last error
	for {
		select {
		case <-n.done:
			return fmt.Errorf("hubproc: %s exited before it was ready (see %s)", id, n.Log)
		default:
		}
		last = c.ops.do(ctx, http.MethodGet, OpsURL(n)+"/readyz", nil, nil)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("hubproc: %s not ready: %w (last: %v; see %s)", id, ctx.Err(), last, n.Log)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// WaitReadyOnce asks node id's /readyz once.
func (c *Cluster) WaitReadyOnce(ctx context.Context, id string) error {
	n, err := c.node(id)
	if err != nil {
		return err
	}
	return c.ops.do(ctx, http.MethodGet, OpsURL(n)+"/readyz", nil, nil)
}

// Status reads a node's /v1/status.
func (c *Cluster) Status(ctx context.Context, id string) (*Status, error) {
	n, err := c.node(id)
	if err != nil {
		return nil, err
	}
	var s Status
	if err := c.ops.do(ctx, http.MethodGet, OpsURL(n)+"/v1/status", nil, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// Leader implements nemesis.Cluster: the leader the first answering node
// names, mapped to a node id.
func (c *Cluster) Leader(ctx context.Context) (string, error) {
	members := c.Members()
	var errs []error
	for _, i := range c.cfg.Rand.Perm(len(members)) {
		n := members[i]
		s, err := c.Status(ctx, n.ID)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if s.Raft.Leader {
			return n.ID, nil
		}
		if s.Raft.LeaderID == "" {
			continue
		}
		for _, m := range members {
			if m.ID == s.Raft.LeaderID {
				return m.ID, nil
			}
		}
		if len(members) == 1 {
			return members[0].ID, nil
		}
	}
	return "", fmt.Errorf("hubproc: no node names a leader: %w", errors.Join(errs...))
}

// signal sends sig to a node's process.
func (n *Node) signal(sig syscall.Signal) error {
	if n.cmd == nil || n.cmd.Process == nil {
		return fmt.Errorf("hubproc: %s was never started", n.ID)
	}
	select {
	case <-n.done:
		return fmt.Errorf("hubproc: %s is not running", n.ID)
	default:
	}
	return syscall.Kill(n.cmd.Process.Pid, sig)
}

// Running reports whether the node's process runs.
func (n *Node) Running() bool {
	if n.done == nil {
		return false
	}
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

func waitExit(ctx context.Context, n *Node, within time.Duration) error {
	t := time.NewTimer(within)
	defer t.Stop()
	select {
	case <-n.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return fmt.Errorf("hubproc: %s did not exit within %v", n.ID, within)
	}
}

// Kill implements nemesis.Cluster: SIGKILL, then wait for the exit.
func (c *Cluster) Kill(ctx context.Context, id string) error {
	n, err := c.node(id)
	if err != nil {
		return err
	}
	if !n.Running() {
		return nil
	}
	if err := n.signal(syscall.SIGKILL); err != nil {
		return err
	}
	return waitExit(ctx, n, 30*time.Second)
}

// Start implements nemesis.Cluster: it starts a killed node on its data
// and waits until it is ready.
func (c *Cluster) Start(ctx context.Context, id string) error {
	n, err := c.node(id)
	if err != nil {
		return err
	}
	if n.Running() {
		return nil
	}
	c.mu.Lock()
	err = c.launch(n, false)
	c.mu.Unlock()
	if err != nil {
		return err
	}
	return c.WaitReady(ctx, id)
}

// Pause implements nemesis.Cluster.
func (c *Cluster) Pause(_ context.Context, id string) error {
	n, err := c.node(id)
	if err != nil {
		return err
	}
	if err := n.signal(syscall.SIGSTOP); err != nil {
		return err
	}
	c.mu.Lock()
	n.paused = true
	c.mu.Unlock()
	return nil
}

// Resume implements nemesis.Cluster.
func (c *Cluster) Resume(_ context.Context, id string) error {
	n, err := c.node(id)
	if err != nil {
		return err
	}
	c.mu.Lock()
	n.paused = false
	c.mu.Unlock()
	if !n.Running() {
		return nil
	}
	return n.signal(syscall.SIGCONT)
}

// Settle implements nemesis.Members: it waits until a node reports a
// leader and a Raft configuration whose voters are exactly the members
// (joined nodes promoted, departed and dead ones removed), as an operator
// waits before the next change. Bounded by ctx.
func (c *Cluster) Settle(ctx context.Context) error {
	var last string
	for range 100_000 {
		last = c.settled(ctx)
		if last == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("hubproc: membership not settled: %s", last)
		case <-time.After(500 * time.Millisecond):
		}
	}
	return errors.New(last)
}

// settled returns "" when the voters are the members, else what differs.
func (c *Cluster) settled(ctx context.Context) string {
	want := map[string]bool{}
	for _, n := range c.Members() {
		want[n.ID] = true
	}
	var why string
	for _, n := range c.Members() {
		if !n.Running() {
			continue
		}
		var st ClusterStatus
		if err := c.ops.do(ctx, http.MethodGet, OpsURL(n)+"/v1/cluster/status", nil, &st); err != nil {
			why = err.Error()
			continue
		}
		if st.LeaderID == "" {
			why = n.ID + " knows no leader"
			continue
		}
		var voters []string
		for _, s := range st.Servers {
			if s.Suffrage == "voter" {
				voters = append(voters, s.ID)
			}
		}
		slices.Sort(voters)
		got := map[string]bool{}
		for _, v := range voters {
			got[v] = true
		}
		if len(got) == len(want) && !slices.ContainsFunc(voters, func(v string) bool { return !want[v] }) {
			return ""
		}
		return fmt.Sprintf("voters %v, members %v (as %s sees it)", voters, slices.Sorted(maps.Keys(want)), n.ID)
	}
	return why
}

// Spares implements nemesis.Members.
func (c *Cluster) Spares() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.cfg.Binary.Clustered() {
		return 0
	}
	return len(c.spares)
}

// Add implements nemesis.Members: a new node on a spare host joins
// through gossip (the leader adds it as a non-voter and promotes it).
func (c *Cluster) Add(ctx context.Context) (string, error) {
	if !c.cfg.Binary.Clustered() {
		return "", errors.New("hubproc: the binary runs a single node only")
	}
	c.mu.Lock()
	if len(c.spares) == 0 {
		c.mu.Unlock()
		return "", errors.New("hubproc: no spare host")
	}
	h := c.spares[0]
	c.spares = c.spares[1:]
	n := c.newNode(h)
	err := c.launch(n, false)
	if err != nil {
		c.spares = append(c.spares, h)
	}
	c.mu.Unlock()
	if err != nil {
		return "", err
	}
	// A member (clients use it) once ready, as behind a load balancer
	// that checks readiness.
	if err := c.waitReady(ctx, n); err != nil {
		_ = c.stopNode(context.WithoutCancel(ctx), n)
		c.mu.Lock()
		c.spares = append(c.spares, h)
		c.mu.Unlock()
		return "", err
	}
	c.mu.Lock()
	c.members = append(c.members, n)
	c.mu.Unlock()
	return n.ID, nil
}

// Remove implements nemesis.Members: POST /v1/cluster/leave on the node,
// then SIGTERM; its host becomes a spare and its data is deleted.
func (c *Cluster) Remove(ctx context.Context, id string) error {
	n, err := c.node(id)
	if err != nil {
		return err
	}
	if !n.Running() {
		return fmt.Errorf("hubproc: %s is not running and cannot leave", id)
	}
	if err := c.ops.do(ctx, http.MethodPost, OpsURL(n)+"/v1/cluster/leave", struct{}{}, nil); err != nil {
		return fmt.Errorf("hubproc: %s leave: %w", id, err)
	}
	if err := c.stopNode(ctx, n); err != nil {
		return err
	}
	c.retire(n)
	return nil
}

// Replace implements nemesis.Members: kill -9, wipe, and a fresh node (new
// id) on a spare host joins in its place; the cluster removes the dead one
// after its dead-node delay. The dead node's host goes to the back of the
// spares, so its address is not reused while the cluster may still list
// the dead node.
func (c *Cluster) Replace(ctx context.Context, id string) (string, error) {
	if !c.cfg.Binary.Clustered() {
		return "", errors.New("hubproc: the binary runs a single node only")
	}
	n, err := c.node(id)
	if err != nil {
		return "", err
	}
	if err := c.Kill(ctx, id); err != nil {
		return "", err
	}
	c.retire(n)
	return c.Add(ctx)
}

// retire drops n from the members, deletes its data and puts its host at
// the back of the spares.
func (c *Cluster) retire(n *Node) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.members = slices.DeleteFunc(c.members, func(m *Node) bool { return m == n })
	if err := os.RemoveAll(n.Dir); err != nil {
		c.log.Warn("removing a retired node's data", "node", n.ID, "err", err)
	}
	c.spares = append(c.spares, n.Host)
}

// stopNode stops a node gracefully (SIGCONT, SIGTERM), killing it after
// 30s.
func (c *Cluster) stopNode(ctx context.Context, n *Node) error {
	if !n.Running() {
		return nil
	}
	_ = n.signal(syscall.SIGCONT)
	if err := n.signal(syscall.SIGTERM); err != nil && n.Running() {
		return err
	}
	if err := waitExit(ctx, n, 30*time.Second); err != nil {
		c.log.Warn("node did not stop; killing it", "node", n.ID, "err", err)
		_ = n.signal(syscall.SIGKILL)
		return waitExit(context.WithoutCancel(ctx), n, 10*time.Second)
	}
	return nil
}

// Stop stops every node.
func (c *Cluster) Stop(ctx context.Context) error {
	c.mu.Lock()
	nodes := slices.Clone(c.members)
	c.mu.Unlock()
	var wg sync.WaitGroup
	errs := make([]error, len(nodes))
	for i, n := range nodes {
		wg.Go(func() { errs[i] = c.stopNode(ctx, n) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// ResumeAll continues every paused node and starts every killed one (the
// final heal).
func (c *Cluster) ResumeAll(ctx context.Context) error {
	var errs []error
	for _, n := range c.Members() {
		if n.Running() {
			if err := n.signal(syscall.SIGCONT); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		if err := c.Start(ctx, n.ID); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
