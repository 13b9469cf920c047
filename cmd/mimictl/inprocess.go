package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/mimihub/mimi-hub/cluster"
	"github.com/mimihub/mimi-hub/httpapi"
	"github.com/mimihub/mimi-hub/internal/devca"
	"github.com/mimihub/mimi-hub/internal/freeport"
	"github.com/mimihub/mimi-hub/internal/hub"
)

// localProvider is a single-node provider running in this process on
// loopback (bench -inprocess and the tests).
type localProvider struct {
	Hub    *hub.Hub
	Domain string
	// ClientURL is the client API's URL.
	ClientURL string
	// FederationAddr is the federation endpoints' host:port.
	FederationAddr string
	// OpsURL is the operations listener's URL.
	OpsURL string
}

// localProviderConfig describes a localProvider.
type localProviderConfig struct {
	Domain  string
	DataDir string
	CA      *devca.CA
	// FederationAddr and ClientAddr are the federation and client API
	// listen addresses; empty picks a free loopback port.
	FederationAddr, ClientAddr string
	// Peers maps peer domains to their federation host:port.
	Peers map[string]string
	// RegistrationKey guards registration when set.
	RegistrationKey string
	// AdminToken guards the operations listener's /v1/ endpoints when set.
	AdminToken string
	// Unmetered lifts the per-client budgets: bench measures what the
	// provider can do, not what one client is allowed.
	Unmetered bool
	Logger    *slog.Logger
}

// reservePort returns a free loopback address below the ephemeral range
// (see internal/freeport), so that a provider restarted on it finds it
// free. Providers must know each other's federation addresses before they
// start, so tests and the bench pick them first.
func reservePort() (string, error) { return freeport.Addr("127.0.0.1") }

// startLocalProvider starts a provider with a certificate from cfg.CA and
// waits until it leads its single-node Raft cluster.
func startLocalProvider(ctx context.Context, cfg localProviderConfig) (*localProvider, error) {
	// Exactly one DNS name: peers take a provider's domain from its
	// certificate's only DNS name (httpapi.PeerFromTLS). Clients reach
	// the client API at 127.0.0.1.
	cert, err := cfg.CA.Issue(cfg.Domain, "127.0.0.1", "::1")
	if err != nil {
		return nil, fmt.Errorf("certificate for %s: %w", cfg.Domain, err)
	}
	fed := cfg.FederationAddr
	if fed == "" {
		if fed, err = reservePort(); err != nil {
			return nil, err
		}
	}
	_, port, err := net.SplitHostPort(fed)
	if err != nil {
		return nil, fmt.Errorf("federation address %q: %w", fed, err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	clientAddr := cfg.ClientAddr
	if clientAddr == "" {
		clientAddr = "127.0.0.1:0"
	}
	h, err := hub.Start(ctx, hub.Config{
		Domain:         cfg.Domain,
		DataDir:        cfg.DataDir,
		FederationAddr: fed,
		ClientAddr:     clientAddr,
		OpsAddr:        "127.0.0.1:0",
		AdminToken:     cfg.AdminToken,
		RaftAddr:       "127.0.0.1:0",
		// A benchmark registers its senders from one address.
		AccountRateLimits: httpapi.NoRateLimits,
		PublicURL:         "https://" + net.JoinHostPort(cfg.Domain, port),
		Certificate:       cert,
		PeerRoots:         cfg.CA.Pool(),
		Peers:             cfg.Peers,
		RegistrationKey:   cfg.RegistrationKey,
		Raft: cluster.Config{
			HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond,
			LeaderLeaseTimeout: 100 * time.Millisecond,
		},
		Delivery: cluster.DeliveryConfig{MinBackoff: 50 * time.Millisecond, MaxBackoff: 2 * time.Second},
		Limits:   limits(cfg.Unmetered),
		Logger:   log,
	})
	if err != nil {
		return nil, fmt.Errorf("starting %s: %w", cfg.Domain, err)
	}
	readyCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := h.WaitReady(readyCtx); err != nil {
		h.Close(context.Background())
		return nil, fmt.Errorf("%s did not become ready: %w", cfg.Domain, err)
	}
	return &localProvider{Hub: h, Domain: cfg.Domain, ClientURL: "https://" + h.Addr("client"), FederationAddr: fed, OpsURL: "http://" + h.Addr("ops")}, nil
}

// Close stops the provider.
func (p *localProvider) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return p.Hub.Close(ctx)
}

// writeCA writes the CA certificate into dir and returns the file's path.
func writeCA(ca *devca.CA, dir string) (string, error) {
	path := filepath.Join(dir, "dev-ca.pem")
	if err := os.WriteFile(path, ca.PEM, 0o644); err != nil {
		return "", fmt.Errorf("writing the CA certificate: %w", err)
	}
	return path, nil
}

// localCluster is a provider of several nodes running in this process on
// loopback (bench -inprocess -cluster N): a Raft cluster over mutual TLS
// with gossip discovery, as cluster.Config describes, with the daemon's
// default Raft timing.
type localCluster struct {
	Domain string
	// Nodes are the cluster's nodes, n1, n2, ...
	Nodes []*localProvider
}

// localClusterConfig describes a localCluster.
type localClusterConfig struct {
	Domain string
	// DataDir holds one folder per node.
	DataDir string
	// CA issues the provider certificate, the nodes' cluster
	// certificates, and verifies both.
	CA *devca.CA
	// Nodes is the cluster's size (the voters it bootstraps with).
	Nodes           int
	RegistrationKey string
	// AdminToken guards the operations listeners when set.
	AdminToken string
	// Unmetered lifts the per-client budgets (see localProviderConfig).
	Unmetered bool
	Logger    *slog.Logger
}

// startLocalCluster starts cfg.Nodes nodes that find each other through
// gossip and bootstrap together, and waits until every node knows the
// leader and serves linearizable reads.
func startLocalCluster(ctx context.Context, cfg localClusterConfig) (_ *localCluster, err error) {
	if cfg.Nodes < 1 {
		return nil, errors.New("a cluster needs at least one node")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cert, err := cfg.CA.Issue(cfg.Domain, "127.0.0.1", "::1")
	if err != nil {
		return nil, fmt.Errorf("certificate for %s: %w", cfg.Domain, err)
	}
	gossipKey := make([]byte, 32)
	rand.Read(gossipKey)
	type addrs struct{ fed, gossip string }
	var as []addrs
	for range cfg.Nodes {
		fed, err := reservePort()
		if err != nil {
			return nil, err
		}
		// Gossip needs the port for UDP too.
		port, err := freeport.Get("127.0.0.1")
		if err != nil {
			return nil, err
		}
		as = append(as, addrs{fed, net.JoinHostPort("127.0.0.1", strconv.Itoa(port))})
	}
	c := &localCluster{Domain: cfg.Domain}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(as[0].fed)
	for i, a := range as {
		id := fmt.Sprintf("n%d", i+1)
		nodeCert, err := cfg.CA.Issue(id + ".node." + cfg.Domain)
		if err != nil {
			return nil, fmt.Errorf("cluster certificate for %s: %w", id, err)
		}
		var join []string
		for j, o := range as {
			if j != i {
				join = append(join, o.gossip)
			}
		}
		h, err := hub.Start(ctx, hub.Config{
			Domain: cfg.Domain, NodeID: id,
			DataDir:        filepath.Join(cfg.DataDir, id),
			FederationAddr: a.fed, ClientAddr: "127.0.0.1:0", OpsAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0",
			PublicURL:       "https://" + net.JoinHostPort(cfg.Domain, port),
			Certificate:     cert,
			PeerRoots:       cfg.CA.Pool(),
			RegistrationKey: cfg.RegistrationKey,
			AdminToken:      cfg.AdminToken,
			// A benchmark registers its senders from one address.
			AccountRateLimits: httpapi.NoRateLimits,
			Raft: cluster.Config{
				BootstrapExpect: cfg.Nodes,
				TLS:             &cluster.TLS{Certificate: nodeCert, Roots: cfg.CA.Pool()},
				Gossip:          &cluster.GossipConfig{BindAddr: a.gossip, Join: join, Key: gossipKey, ClusterName: cfg.Domain},
			},
			Limits: limits(cfg.Unmetered),
			Logger: log,
		})
		if err != nil {
			return nil, fmt.Errorf("starting %s/%s: %w", cfg.Domain, id, err)
		}
		c.Nodes = append(c.Nodes, &localProvider{Hub: h, Domain: cfg.Domain, ClientURL: "https://" + h.Addr("client"), FederationAddr: a.fed, OpsURL: "http://" + h.Addr("ops")})
	}
	readyCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for _, n := range c.Nodes {
		if err := n.Hub.WaitReady(readyCtx); err != nil {
			return nil, fmt.Errorf("%s did not become ready: %w", cfg.Domain, err)
		}
	}
	return c, nil
}

// Leader returns the index of the node that leads and is ready to serve,
// waiting for one (bounded by ctx).
func (c *localCluster) Leader(ctx context.Context) (int, error) {
	for {
		for i, n := range c.Nodes {
			if n.Hub.Store().Node().IsLeader() && n.Hub.WaitReady(ctx) == nil && n.Hub.Store().Node().IsLeader() {
				return i, nil
			}
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("no leader in %s: %w", c.Domain, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Close stops every node, the leader first: it hands leadership to a
// follower that is still up, instead of trying to once they are gone.
func (c *localCluster) Close() error {
	nodes := slices.Clone(c.Nodes)
	slices.SortStableFunc(nodes, func(a, b *localProvider) int {
		switch {
		case a.Hub.Store().Node().IsLeader():
			return -1
		case b.Hub.Store().Node().IsLeader():
			return 1
		}
		return 0
	})
	var errs []error
	for _, n := range nodes {
		errs = append(errs, n.Close())
	}
	return errors.Join(errs...)
}

// limits returns the per-node limits of an in-process node: the defaults,
// or without per-client budgets.
func limits(unmetered bool) hub.Limits {
	if !unmetered {
		return hub.Limits{}
	}
	return hub.Limits{ClientBudget: httpapi.Budget{Requests: -1, Bytes: -1}}
}
