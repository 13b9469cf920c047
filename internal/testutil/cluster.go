package testutil

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/mimihub/mimi-hub/cluster"
	"github.com/mimihub/mimi-hub/internal/devca"
	"github.com/mimihub/mimi-hub/internal/hub"
)

// ClusterOptions configure StartCluster.
type ClusterOptions struct {
	// Domain is the provider's domain; default "a.example".
	Domain string
	// Configure, when set, adjusts node i's configuration (0-based, node
	// id n{i+1}) before its first start: AdminToken, OnLeave, Raft
	// timings... Addresses, certificates, gossip and data directories are
	// already set.
	Configure func(i int, cfg *hub.Config)
	// LogLevel is the level of the nodes' logs, which go to the test's
	// log. Zero means slog.LevelError.
	LogLevel slog.Level
}

// Cluster is one provider run as a Raft cluster of in-process nodes on
// loopback: mutual TLS from a cluster CA of its own, gossip with the
// "local" profile, every node a voter of the bootstrapped configuration.
// Each node is a Provider (its Domain is the provider's, its
// Config.NodeID n1, n2, ...), so it can be stopped and started again.
type Cluster struct {
	// CA issued the provider's certificate (every node serves the same
	// domain); ClusterCA the nodes' Raft transport certificates.
	CA, ClusterCA *devca.CA
	// Nodes are the nodes, n1 first.
	Nodes []*Provider
}

// StartCluster starts a provider of n nodes (n voters bootstrapped
// through gossip) and waits until every node is ready to serve writes.
// The nodes stop at the end of the test.
func StartCluster(t testing.TB, opts ClusterOptions, n int) *Cluster {
	t.Helper()
	c := NewCluster(t, opts, n)
	c.Start(t)
	return c
}

// NewCluster configures a provider of n nodes without starting them
// (Start starts them all; Provider.Launch one). The nodes that run stop
// at the end of the test.
func NewCluster(t testing.TB, opts ClusterOptions, n int) *Cluster {
	t.Helper()
	if n < 1 {
		t.Fatal("testutil: a cluster needs at least one node")
	}
	domain := opts.Domain
	if domain == "" {
		domain = "a.example"
	}
	ca, err := devca.New()
	if err != nil {
		t.Fatalf("testutil: CA: %v", err)
	}
	clusterCA, err := devca.New()
	if err != nil {
		t.Fatalf("testutil: cluster CA: %v", err)
	}
	cert, err := ca.Issue(domain)
	if err != nil {
		t.Fatalf("testutil: certificate for %s: %v", domain, err)
	}
	log := providerLogger(t, opts.LogLevel)
	gossip := freeGossipAddrs(t, n)
	addrs := FreeAddrs(t, 4*n)
	key := bytes.Repeat([]byte{7}, 32)
	c := &Cluster{CA: ca, ClusterCA: clusterCA}
	for i := range n {
		id := fmt.Sprintf("n%d", i+1)
		nodeCert, err := clusterCA.Issue(id + ".node.test")
		if err != nil {
			t.Fatalf("testutil: node certificate for %s: %v", id, err)
		}
		rc := RaftConfig()
		// Slower heartbeats than a single node's: a follower must not
		// start an election whenever a loaded test machine pauses.
		rc.HeartbeatTimeout = 300 * time.Millisecond
		rc.ElectionTimeout = 600 * time.Millisecond
		rc.LeaderLeaseTimeout = 150 * time.Millisecond
		rc.TLS = &cluster.TLS{Certificate: nodeCert, Roots: clusterCA.Pool()}
		rc.BootstrapExpect = n
		rc.Gossip = &cluster.GossipConfig{
			BindAddr:    gossip[i],
			Join:        slices.Delete(slices.Clone(gossip), i, i+1),
			Key:         key,
			ClusterName: "testutil",
			Profile:     "local",
		}
		rc.LeaderWait = 10 * time.Second
		rc.ReconcileInterval = 100 * time.Millisecond
		rc.PromoteAfter = 300 * time.Millisecond
		rc.DeadServerRemoveAfter = time.Hour
		cfg := hubConfig(t, domain, id, addrs[4*i:4*i+4], cert, ca, rc, log.With("node", id))
		if opts.Configure != nil {
			opts.Configure(i, &cfg)
		}
		c.Nodes = append(c.Nodes, &Provider{Domain: domain, Config: cfg})
	}
	// Registered after the data directories, so it runs before they are
	// removed.
	t.Cleanup(func() {
		for _, p := range c.Nodes {
			if err := p.stop(); err != nil {
				t.Errorf("testutil: stop %s: %v", p.Config.NodeID, err)
			}
		}
	})
	return c
}

// Start starts every node, then waits until each is ready to serve
// writes: the first election needs them all.
func (c *Cluster) Start(t testing.TB) {
	t.Helper()
	for _, p := range c.Nodes {
		p.Launch(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	for _, p := range c.Nodes {
		if err := p.Hub(t).WaitReady(ctx); err != nil {
			t.Fatalf("testutil: %s not ready: %v", p.Config.NodeID, err)
		}
	}
	for _, p := range c.Nodes {
		if err := waitBounds(ctx, p.Hub(t)); err != nil {
			t.Fatalf("testutil: %s: %v", p.Config.NodeID, err)
		}
	}
}

// Launch starts the provider (again, after Stop) without waiting until it
// can serve: a node of a new cluster waits for its peers.
func (p *Provider) Launch(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.hub != nil {
		t.Fatalf("testutil: %s (node %s) is running", p.Domain, p.Config.NodeID)
	}
	h, err := hub.Start(ctx, p.Config)
	if err != nil {
		t.Fatalf("testutil: start %s (node %s): %v", p.Domain, p.Config.NodeID, err)
	}
	p.hub = h
}

// Node returns the node with Raft id id (the test fails if there is none).
func (c *Cluster) Node(t testing.TB, id string) *Provider {
	t.Helper()
	for _, p := range c.Nodes {
		if p.Config.NodeID == id {
			return p
		}
	}
	t.Fatalf("testutil: no node %s", id)
	return nil
}

// Leader waits (up to Wait) until a running node leads and has caught up,
// and returns it.
func (c *Cluster) Leader(t testing.TB) *Provider {
	t.Helper()
	deadline := time.Now().Add(Wait)
	for {
		for _, p := range c.Nodes {
			if !p.Running() {
				continue
			}
			h := p.Hub(t)
			if h.Store().Node().IsLeader() && h.Ready() == nil {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("testutil: no ready leader")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Followers returns the running nodes other than the leader, once there
// is one.
func (c *Cluster) Followers(t testing.TB) []*Provider {
	t.Helper()
	l := c.Leader(t)
	var out []*Provider
	for _, p := range c.Nodes {
		if p != l && p.Running() {
			out = append(out, p)
		}
	}
	return out
}

// OpsURL is the base URL of the node's operations listener.
func (p *Provider) OpsURL() string { return "http://" + p.Config.OpsAddr }

// freeGossipAddrs returns n loopback addresses whose port is free for
// both TCP and UDP (memberlist binds both), never returned before.
func freeGossipAddrs(t testing.TB, n int) []string {
	t.Helper()
	var out []string
	for tries := 0; len(out) < n; tries++ {
		if tries > 100*n+100 {
			t.Fatalf("testutil: found only %d free gossip ports of %d", len(out), n)
		}
		addr := FreeAddrs(t, 1)[0]
		u, err := net.ListenPacket("udp", addr)
		if err != nil {
			continue
		}
		u.Close()
		out = append(out, addr)
	}
	return out
}
