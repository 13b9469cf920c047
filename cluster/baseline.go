package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// A baseline node is raw hashicorp/raft with a state machine that does
// nothing, on the same stores (raft-boltdb/v2 behind the same log cache,
// the file snapshot store), the same Raft configuration and timing as a
// Node, over raft's plain TCP transport as raft ships it: no TLS, and
// pipelined replication, which the provider turns off (cluster/DESIGN.md,
// MaxRPCsInFlight), so the baseline is raw Raft at its best. `mimictl
// bench -baseline` runs
// three of them beside the provider so that every throughput figure of
// the provider comes with what Raft alone does on the same machine in
// the same run: the floor a replicated write cannot go below.

// BaselineConfig configures a baseline node.
type BaselineConfig struct {
	// NodeID, DataDir and RaftAddr are as in Config; RaftAddr must be a
	// concrete host:port (the peers dial it).
	NodeID, DataDir, RaftAddr string
	// Voters are every voter's ID and Raft address, this node's included.
	// A node with no Raft state bootstraps with them; all nodes must list
	// the same voters.
	Voters map[string]string
	// Timing is the Raft timing and snapshot policy; zero fields take the
	// same defaults as a Node's.
	Timing Config
}

// Baseline is a running baseline node.
type Baseline struct {
	raft *raft.Raft
	st   *stores
	tr   *raft.NetworkTransport
}

// StartBaseline starts a baseline node. It returns without waiting for a
// leader.
func StartBaseline(cfg BaselineConfig) (_ *Baseline, err error) {
	if cfg.NodeID == "" || cfg.DataDir == "" || cfg.RaftAddr == "" || len(cfg.Voters) == 0 {
		return nil, errors.New("cluster: baseline: NodeID, DataDir, RaftAddr and Voters are required")
	}
	c := cfg.Timing
	c.NodeID, c.DataDir, c.RaftAddr = cfg.NodeID, cfg.DataDir, cfg.RaftAddr
	c = c.withDefaults()
	hl := newHCLogger(c.Logger, "raft")
	st, err := openStores(c, hl)
	if err != nil {
		return nil, fmt.Errorf("cluster: baseline: %w", err)
	}
	defer func() {
		if err != nil {
			st.close()
		}
	}()
	addr, err := net.ResolveTCPAddr("tcp", cfg.RaftAddr)
	if err != nil {
		return nil, fmt.Errorf("cluster: baseline: raft address: %w", err)
	}
	tr, err := raft.NewTCPTransportWithLogger(cfg.RaftAddr, addr, c.TransportMaxPool, c.TransportTimeout, newHCLogger(c.Logger, "raft-net"))
	if err != nil {
		return nil, fmt.Errorf("cluster: baseline: transport: %w", err)
	}
	defer func() {
		if err != nil {
			tr.Close()
		}
	}()
	rc := c.raftConfig(c.Logger)
	has, err := raft.HasExistingState(st.logs, st.stable, st.snaps)
	if err != nil {
		return nil, fmt.Errorf("cluster: baseline: %w", err)
	}
	if !has {
		var conf raft.Configuration
		for id, a := range cfg.Voters {
			conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(id), Address: raft.ServerAddress(a)})
		}
		if err := raft.BootstrapCluster(rc, st.logs, st.stable, st.snaps, tr, conf); err != nil {
			return nil, fmt.Errorf("cluster: baseline: bootstrap: %w", err)
		}
	}
	r, err := raft.NewRaft(rc, noopFSM{}, st.logs, st.stable, st.snaps, tr)
	if err != nil {
		return nil, fmt.Errorf("cluster: baseline: %w", err)
	}
	return &Baseline{raft: r, st: st, tr: tr}, nil
}

// IsLeader reports whether this node leads.
func (b *Baseline) IsLeader() bool { return b.raft.State() == raft.Leader }

// Apply replicates data as one log entry and waits until it is committed
// and applied (by the state machine that does nothing), bounded by ctx.
func (b *Baseline) Apply(ctx context.Context, data []byte) error {
	timeout := DefaultApplyTimeout
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	f := b.raft.Apply(data, timeout)
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Shutdown stops Raft and closes the transport and stores.
func (b *Baseline) Shutdown() error {
	err := b.raft.Shutdown().Error()
	b.tr.Close()
	return errors.Join(err, b.st.close())
}

// noopFSM is the baseline's state machine: it keeps nothing.
type noopFSM struct{}

func (noopFSM) Apply(*raft.Log) any                 { return nil }
func (noopFSM) Snapshot() (raft.FSMSnapshot, error) { return noopSnapshot{}, nil }
func (noopFSM) Restore(rc io.ReadCloser) error      { return rc.Close() }

type noopSnapshot struct{}

func (noopSnapshot) Persist(sink raft.SnapshotSink) error { return sink.Close() }
func (noopSnapshot) Release()                             {}
