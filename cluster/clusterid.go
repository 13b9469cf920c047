package cluster

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// A cluster ID names one Raft history. Bootstrap creates it; a node added
// later learns it from the leader; every node keeps it in its stable store
// and advertises it in gossip. A leader adds only nodes that have no state
// yet or carry its cluster ID, so two clusters that share a gossip pool
// (one bootstrapped by mistake) can never pull each other's nodes in.
var clusterIDKey = []byte("mimi-hub/cluster-id")

// bootstrapClusterID derives the ID of a new cluster from its initial
// configuration, so the nodes of an expect-N bootstrap, which each write
// the same configuration, also agree on the ID. A single voter adds
// randomness: its configuration (one node) says little.
func bootstrapClusterID(servers []raft.Server) string {
	h := sha256.New()
	h.Write([]byte("mimi-hub cluster id\x00"))
	sorted := slices.Clone(servers)
	slices.SortFunc(sorted, func(a, b raft.Server) int { return cmp.Compare(a.ID, b.ID) })
	for _, s := range sorted {
		fmt.Fprintf(h, "%s\x00%s\x00", s.ID, s.Address)
	}
	if len(servers) == 1 {
		var nonce [16]byte
		rand.Read(nonce[:])
		h.Write(nonce[:])
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// loadClusterID reads the stored cluster ID ("" if none yet).
func (st *stores) loadClusterID() (string, error) {
	b, err := st.stable.Get(clusterIDKey)
	if errors.Is(err, raftboltdb.ErrKeyNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read cluster id: %w", err)
	}
	return string(b), nil
}

func (st *stores) storeClusterID(id string) error {
	if err := st.stable.Set(clusterIDKey, []byte(id)); err != nil {
		return fmt.Errorf("store cluster id: %w", err)
	}
	return nil
}

// ClusterID returns the ID of the cluster this node belongs to, "" while
// it has none (an empty node waiting to bootstrap or to be added).
func (n *Node) ClusterID() string {
	if p := n.clusterID.Load(); p != nil {
		return *p
	}
	return ""
}

// setClusterID records the node's cluster ID (durably) and advertises it.
// An ID, once set, never changes.
func (n *Node) setClusterID(id string) error {
	n.adoptMu.Lock()
	defer n.adoptMu.Unlock()
	if cur := n.ClusterID(); cur != "" {
		if cur != id {
			return fmt.Errorf("this node belongs to cluster %s, not %s", cur, id)
		}
		return nil
	}
	if err := n.st.storeClusterID(id); err != nil {
		return err
	}
	n.clusterID.Store(&id)
	if n.gossip != nil {
		n.gossip.setMeta(func(m *nodeMeta) { m.ClusterID, m.HasState = id, true })
	}
	return nil
}

// adoptClusterID makes an empty node a member of the cluster whose Raft
// connection reached it first (see mux.admit). Once set, the ID never
// changes.
func (n *Node) adoptClusterID(id string) error {
	if n.ClusterID() != "" {
		return nil
	}
	n.log.Info("adopting the cluster id of the leader that added this node", "cluster_id", id)
	return n.setClusterID(id)
}

// learnClusterID runs on a node that has no cluster ID: once it has Raft
// state (a leader added it) it asks the leader for the ID and keeps it.
// Nodes that bootstrapped set theirs when they did.
func (n *Node) learnClusterID() {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for n.ClusterID() == "" {
		select {
		case <-t.C:
		case <-n.stopping:
			return
		}
		if !n.hasState() {
			continue
		}
		if n.isReadyLeader() {
			// A leader without an ID (state from before IDs existed):
			// make one now.
			f := n.raft.GetConfiguration()
			if f.Error() == nil {
				if err := n.setClusterID(bootstrapClusterID(f.Configuration().Servers)); err != nil {
					n.log.Error("cluster id", "err", err)
				}
			}
			continue
		}
		_, leader := n.Leader()
		if leader == "" || n.rpc == nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		var info NodeInfo
		err := n.rpc.call(ctx, leader, rpcNodeInfo, nil, &info)
		cancel()
		if err != nil || info.ClusterID == "" {
			continue
		}
		if err := n.setClusterID(info.ClusterID); err != nil {
			n.log.Error("cluster id", "err", err)
			continue
		}
		n.log.Info("joined the cluster", "cluster_id", info.ClusterID)
	}
}
