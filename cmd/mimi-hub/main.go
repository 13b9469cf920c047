// Command mimi-hub runs a MIMI provider: the hub of the rooms it hosts and
// a follower provider for rooms hosted elsewhere, with its state in Raft.
//
// With no arguments it runs a single-node provider for "localhost": the MIMI
// federation endpoints on 127.0.0.1:8443 (mutual TLS), the client API on
// 127.0.0.1:8444, the operations endpoints (/healthz, /readyz, /metrics,
// the operator API) on 127.0.0.1:8445, Raft and the internal channel on
// 127.0.0.1:8446 and gossip on 127.0.0.1:8447, with its data in
// ./mimi-hub-data and development CAs, certificates and gossip key made
// there on first start. The same binary runs the nodes of a provider's
// cluster: give each a -node-id, its addresses, -join and
// -bootstrap-expect (see the README). `mimi-hub -h` lists the flags; every
// flag can also come from a JSON file (-config) or a MIMI_HUB_*
// environment variable. `mimi-hub -version` prints the build's version
// and revision; `mimi-hub healthcheck` (with the daemon's configuration)
// exits 0 once the node's /readyz answers 200, for container health
// checks. SIGTERM and SIGINT stop it cleanly: servers drain, a leader
// hands leadership over, then Raft snapshots and closes. SIGHUP reloads
// the certificates, CA roots, peer map and log level without dropping
// connections (see reload.go).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/mimihub/mimi-hub/cluster"
	"github.com/mimihub/mimi-hub/httpapi"
	"github.com/mimihub/mimi-hub/internal/hub"
)

func main() {
	if handled, err := runTool(os.Args[1:], os.Getenv, os.Stdout, os.Stderr); handled {
		if err != nil && !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "mimi-hub:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(os.Args[1:], os.Getenv, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "mimi-hub:", err)
		os.Exit(1)
	}
}

func run(args []string, getenv func(string) string, stderr io.Writer) error {
	// SIGHUP reloads (reload.go); caught from the start, so that it never
	// kills the daemon, and handled once the provider runs.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	cfg, err := loadConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	level := new(slog.LevelVar)
	log, err := cfg.logger(stderr, level)
	if err != nil {
		return err
	}
	mat, err := cfg.loadMaterial(log)
	if err != nil {
		return err
	}
	if cfg.AdminToken, err = cfg.adminToken(stderr); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	startCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	hc := cfg.hubConfig(mat, log)
	hc.OnLeave = stop // after `mimictl cluster leave`, stop as on SIGTERM
	h, err := hub.Start(startCtx, hc)
	if err != nil {
		return err
	}
	r := &reloader{args: args, getenv: getenv, level: level, log: log, hub: h, current: cfg}
	for ctx.Err() == nil {
		select {
		case <-hup:
			if err := r.reload(); err != nil {
				log.Error("reload failed; still running with the previous settings", "err", err)
			}
		case <-ctx.Done():
		}
	}
	log.Info("stopping")
	closeCtx, cancelClose := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelClose()
	return h.Close(closeCtx)
}

// hubConfig maps the daemon's configuration onto the provider's.
func (c config) hubConfig(m material, log *slog.Logger) hub.Config {
	h := hub.Config{
		Domain:          c.Domain,
		NodeID:          c.NodeID,
		DataDir:         c.DataDir,
		FederationAddr:  c.FederationAddr,
		ClientAddr:      c.ClientAddr,
		OpsAddr:         c.OpsAddr,
		RaftAddr:        c.RaftAddr,
		PublicURL:       c.PublicURL,
		Certificate:     m.cert,
		PeerRoots:       m.peerRoots,
		AssetRoots:      m.assetRoots,
		Peers:           c.Peers,
		AssetHosts:      c.AssetHosts,
		RegistrationKey: c.RegistrationKey,
		Registration:    c.Registration,
		AdminToken:      c.AdminToken,
		OpsHosts:        c.OpsHosts,
		RequireConsent:  c.RequireConsent,
		Raft: cluster.Config{
			AdvertiseAddr:   c.RaftAdvertise,
			BootstrapExpect: c.BootstrapExpect,
			TLS:             m.cluster,
			Gossip: &cluster.GossipConfig{
				BindAddr:      c.GossipAddr,
				AdvertiseAddr: c.GossipAdvertise,
				Join:          c.Join,
				Key:           m.gossipKey,
				ClusterName:   c.ClusterName,
			},
			LeaderWait:            time.Duration(c.LeaderWait),
			DeadServerRemoveAfter: time.Duration(c.DeadNodeRemoveAfter),
			SnapshotThreshold:     c.SnapshotThreshold,
			SnapshotInterval:      time.Duration(c.SnapshotInterval),
			TrailingLogs:          c.TrailingLogs,
			HeartbeatTimeout:      time.Duration(c.RaftHeartbeatTimeout),
			ElectionTimeout:       time.Duration(c.RaftElectionTimeout),
			LeaderLeaseTimeout:    time.Duration(c.RaftLeaseTimeout),
			CommitTimeout:         time.Duration(c.RaftCommitTimeout),
		},
		AccountRateLimits: c.accountRateLimits(),
		Logger:            log,
	}
	c.limitsConfig.apply(&h)
	return h
}

// accountRateLimits is the limits -no-account-rate-limits selects.
func (c config) accountRateLimits() httpapi.RateLimits {
	if c.NoAccountLimits {
		return httpapi.NoRateLimits
	}
	return httpapi.RateLimits{}
}
