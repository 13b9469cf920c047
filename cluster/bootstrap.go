package cluster

import (
	"fmt"

	"github.com/hashicorp/raft"
)

// bootstrapServers is the initial configuration a bootstrapping node writes:
// for now, this node as the only voter. Multi-node bootstrap (an expected
// peer set) and joining an existing cluster replace this function, not the
// decision in bootstrapIfNew.
func bootstrapServers(cfg Config, self raft.ServerAddress) []raft.Server {
	return []raft.Server{{
		Suffrage: raft.Voter,
		ID:       raft.ServerID(cfg.NodeID),
		Address:  self,
	}}
}

// bootstrapIfNew writes servers as the first configuration entry if the
// stores hold no Raft state at all (no term, no log, no snapshot). It
// reports whether it bootstrapped. It must run before raft.NewRaft reads the
// stores. A node with existing state never bootstraps again: its
// configuration comes from its log and snapshots.
func bootstrapIfNew(rc *raft.Config, st *stores, trans raft.Transport, servers []raft.Server) (bool, error) {
	existing, err := raft.HasExistingState(st.logs, st.stable, st.snaps)
	if err != nil {
		return false, fmt.Errorf("check existing raft state: %w", err)
	}
	if existing {
		return false, nil
	}
	if err := raft.BootstrapCluster(rc, st.logs, st.stable, st.snaps, trans, raft.Configuration{Servers: servers}); err != nil {
		return false, fmt.Errorf("bootstrap: %w", err)
	}
	return true, nil
}
