package cluster

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// NodeInfo is a node's own view of itself, as the internal channel and the
// status endpoint report it.
type NodeInfo struct {
	ID           string `json:"id"`
	RaftAddr     string `json:"raft_addr"`
	State        string `json:"state"`
	Term         uint64 `json:"term"`
	LeaderID     string `json:"leader_id"`
	LastLogIndex uint64 `json:"last_log_index"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
	// LastContactMillis is how long ago a follower last heard from the
	// leader (-1: never; 0 on the leader).
	LastContactMillis int64  `json:"last_contact_ms"`
	LastSnapshotIndex uint64 `json:"last_snapshot_index"`
	HasState          bool   `json:"has_state"`
	BootstrapExpect   int    `json:"bootstrap_expect"`
	ClusterID         string `json:"cluster_id,omitempty"`
}

// Info reports this node's state.
func (n *Node) Info() NodeInfo {
	s := n.Stats()
	lc := int64(-1)
	switch {
	case s.State == raft.Leader.String():
		lc = 0
	case !s.LastContact.IsZero():
		lc = time.Since(s.LastContact).Milliseconds()
	}
	return NodeInfo{
		ID: s.NodeID, RaftAddr: s.Addr, State: s.State, Term: s.Term, LeaderID: s.LeaderID,
		LastLogIndex: s.LastLogIndex, CommitIndex: s.CommitIndex, AppliedIndex: s.FSMIndex,
		LastContactMillis: lc, LastSnapshotIndex: s.LastSnapshotIndex,
		HasState: n.hasState(), BootstrapExpect: n.cfg.BootstrapExpect, ClusterID: n.ClusterID(),
	}
}

// hasState reports whether the node holds any Raft state: a configuration
// (bootstrapped or added by a leader), log entries or a snapshot.
func (n *Node) hasState() bool {
	if n.raft.LastIndex() > 0 {
		return true
	}
	f := n.raft.GetConfiguration()
	return f.Error() == nil && len(f.Configuration().Servers) > 0
}

// handleRPC registers a handler on the internal channel (no-op without
// TLS: a single node has no channel).
func (n *Node) handleRPC(path string, h http.Handler) {
	if n.rpcSrv != nil {
		n.rpcSrv.mux.Handle(path, h)
	}
}

func (n *Node) registerRPC() {
	n.handleRPC(rpcReadIndex, handleJSON(func(ctx context.Context, _ *struct{}) (*readIndexAnswer, error) {
		idx, err := n.leaderReads.get(ctx, n.readRoundContext, n.readIndexLocal)
		return &readIndexAnswer{Index: idx}, err
	}))
	n.handleRPC(rpcNodeInfo, handleJSON(func(context.Context, *struct{}) (*NodeInfo, error) {
		info := n.Info()
		return &info, nil
	}))
	n.handleRPC(rpcRemove, handleJSON(func(ctx context.Context, in *serverRequest) (*struct{}, error) {
		return &struct{}{}, n.removeLocal(ctx, in.ID, true)
	}))
	n.handleRPC(rpcTransfer, handleJSON(func(ctx context.Context, in *serverRequest) (*struct{}, error) {
		return &struct{}{}, n.transferLocal(ctx, in.ID)
	}))
	n.handleRPC(rpcRestore, http.HandlerFunc(n.serveRestore))
	n.handleRPC(rpcKeyring, handleJSON(func(_ context.Context, in *keyringRequest) (*NodeKeyring, error) {
		nk, err := n.keyringLocal(*in)
		if errors.Is(err, ErrKeyring) {
			err = fmt.Errorf("%w: %w", errInvalidRPC, err)
		}
		return &nk, err
	}))
}

type serverRequest struct {
	ID string `json:"id"`
}

// joinLoop contacts the configured gossip peers until one answers, with
// capped exponential backoff, resolving dns: entries again each time. A
// node that finds no one keeps running: it may be the first of its
// cluster.
func (n *Node) joinLoop(join []string) {
	if len(join) == 0 {
		return
	}
	entries := make([]joinEntry, 0, len(join))
	for _, j := range join {
		e, err := parseJoinEntry(j) // checked by Config.validate
		if err != nil {
			n.log.Error("ignoring a join entry", "err", err)
			continue
		}
		entries = append(entries, e)
	}
	wait := 500 * time.Millisecond
	for {
		ctx, cancel := n.untilStopping(context.Background(), resolveTimeout)
		addrs, rerr := n.gossip.resolve(ctx, entries)
		cancel()
		var k int
		var err error
		if len(addrs) > 0 {
			k, err = n.gossip.join(addrs)
		}
		if k > 0 {
			n.joined.Store(true)
			n.log.Info("joined gossip", "contacted", k, "addrs", addrs)
			return
		}
		switch {
		case hasDNSEntries(entries) && len(addrs) == 0:
			n.log.Warn("DNS names no other node yet; resolving again", "join", join, "err", rerr, "in", wait)
		default:
			n.log.Warn("no gossip peer answered; retrying", "peers", addrs, "err", errors.Join(err, rerr), "in", wait)
		}
		select {
		case <-time.After(wait):
		case <-n.stopping:
			return
		}
		wait = min(wait*2, 5*time.Second)
	}
}

// Join asks gossip to contact more nodes (mimictl cluster join).
func (n *Node) Join(addrs []string) (int, error) {
	if n.gossip == nil {
		return 0, errors.New("cluster: join: this node runs without gossip")
	}
	k, err := n.gossip.join(addrs)
	if k == 0 && err == nil {
		err = errors.New("no node answered")
	}
	if err != nil {
		return k, fmt.Errorf("cluster: join %v: %w", addrs, err)
	}
	return k, nil
}

// bootstrapLoop bootstraps a brand-new cluster once exactly
// BootstrapExpect empty nodes, all expecting that many, see each other; it
// ends when the node has state (it bootstrapped, or a leader added it).
// Every one of those nodes writes the same configuration (all of them,
// sorted by ID), so they agree without coordinating. A node that sees any
// node with state never bootstraps: it waits to be added. A node with join
// peers decides only after one of them answered, so that it sees an
// existing cluster before it could start a second one.
func (n *Node) bootstrapLoop() {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	warned := ""
	for {
		select {
		case <-t.C:
		case <-n.gossip.changed():
		case <-n.stopping:
			return
		}
		if n.hasState() {
			return // a leader added this node; learnClusterID takes over
		}
		servers, why := n.bootstrapCandidates()
		if servers == nil {
			if why != warned && why != "" {
				n.log.Info("not bootstrapping yet", "reason", why)
				warned = why
			}
			continue
		}
		err := n.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error()
		switch {
		case err == nil:
			id := bootstrapClusterID(servers)
			if err := n.setClusterID(id); err != nil {
				n.log.Error("bootstrapped, but could not store the cluster id", "err", err)
			}
			n.log.Info("bootstrapped the cluster", "voters", len(servers), "cluster_id", id)
		case errors.Is(err, raft.ErrCantBootstrap):
			n.log.Info("raft state appeared before bootstrap; not bootstrapping")
		default:
			n.log.Error("bootstrap failed", "err", err)
			continue
		}
		return
	}
}

// bootstrapCandidates returns the initial configuration if the cluster can
// be bootstrapped now, or nil and why not.
func (n *Node) bootstrapCandidates() ([]raft.Server, string) {
	expect := n.cfg.BootstrapExpect
	if n.cfg.hasJoinPeers() && !n.joined.Load() {
		return nil, "no join peer answered yet"
	}
	var servers []raft.Server
	for _, m := range n.gossip.snapshot() {
		if m.Status != StatusAlive {
			continue
		}
		if m.Meta.HasState {
			return nil, fmt.Sprintf("node %s already belongs to a cluster; waiting to be added", m.ID)
		}
		if m.Meta.Expect == 0 {
			continue // it waits to be added and takes no part in bootstrap
		}
		if m.Meta.Expect != expect {
			return nil, fmt.Sprintf("node %s expects %d voters, this node %d", m.ID, m.Meta.Expect, expect)
		}
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(m.ID), Address: raft.ServerAddress(m.Meta.RaftAddr)})
	}
	switch {
	case len(servers) < expect:
		return nil, fmt.Sprintf("%d of %d expected nodes seen", len(servers), expect)
	case len(servers) > expect:
		return nil, fmt.Sprintf("%d empty nodes seen but %d expected; refusing to guess", len(servers), expect)
	}
	// Gossip metadata can be stale: ask every candidate directly.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range servers {
		if s.ID == raft.ServerID(n.cfg.NodeID) {
			continue
		}
		var info NodeInfo
		if err := n.rpc.call(ctx, string(s.Address), rpcNodeInfo, nil, &info); err != nil {
			return nil, fmt.Sprintf("node %s did not answer: %v", s.ID, err)
		}
		if info.HasState || info.BootstrapExpect != expect || info.ID != string(s.ID) {
			return nil, fmt.Sprintf("node %s is not an empty node expecting %d", s.ID, expect)
		}
	}
	return servers, ""
}

// admissible reports whether a node unknown to the configuration may be
// added: it must be empty or carry this cluster's ID, by its gossip
// metadata and by its own answer (metadata can be stale; a node of
// another cluster refuses the question outright). A node with the state of
// another Raft history (a cluster it bootstrapped by mistake) must never
// be added: two histories would meet. A node once removed from this
// cluster keeps this cluster's ID and may come back.
func (n *Node) admissible(ctx context.Context, m member) bool {
	mine := n.ClusterID()
	foreign := func(theirs string) bool {
		n.warnOnce("foreign:"+m.ID, "not adding a node that belongs to another cluster; wipe its data folder to join this one",
			"id", m.ID, "addr", m.Meta.RaftAddr, "its_cluster", theirs, "this_cluster", mine)
		return false
	}
	if m.Meta.HasState && m.Meta.ClusterID != mine {
		return foreign(m.Meta.ClusterID)
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var info NodeInfo
	if err := n.rpc.call(cctx, m.Meta.RaftAddr, rpcNodeInfo, nil, &info); err != nil {
		n.log.Debug("not adding a node that does not answer", "id", m.ID, "err", err)
		return false
	}
	if info.ID != m.ID || (info.HasState && info.ClusterID != mine) {
		return foreign(info.ClusterID)
	}
	return true
}

// warnOnce logs a warning the first time key is seen by this leader.
func (n *Node) warnOnce(key, msg string, args ...any) {
	n.recon.mu.Lock()
	seen := n.recon.warned[key]
	if n.recon.warned == nil {
		n.recon.warned = map[string]bool{}
	}
	n.recon.warned[key] = true
	n.recon.mu.Unlock()
	if !seen {
		n.log.Warn(msg, args...)
	}
}

// reconcileState is the leader's bookkeeping between reconcile passes.
type reconcileState struct {
	mu     sync.Mutex
	warned map[string]bool
	// caughtUp is when each non-voter was first seen caught up (and
	// continuously since).
	caughtUp map[string]time.Time
	// missing is when each configured server was first seen absent from
	// gossip (failed servers carry their own time).
	missing map[string]time.Time
}

// reconcileLoop runs on the ready leader until ctx ends: it makes the Raft
// configuration follow gossip, one change per pass.
func (n *Node) reconcileLoop(ctx context.Context) {
	n.recon.mu.Lock()
	n.recon.caughtUp, n.recon.missing = map[string]time.Time{}, map[string]time.Time{}
	n.recon.mu.Unlock()
	t := time.NewTicker(n.cfg.ReconcileInterval)
	defer t.Stop()
	for {
		if err := n.reconcile(ctx); err != nil && ctx.Err() == nil {
			n.log.Warn("membership reconcile", "err", err)
		}
		select {
		case <-t.C:
		case <-n.gossip.changed():
		case <-ctx.Done():
			return
		}
	}
}

// reconcile makes at most one membership change:
//
//  1. an alive node unknown to Raft (or at a new address) is added as a
//     non-voter;
//  2. a server that left gracefully is removed;
//  3. a server failed (or absent) for DeadServerRemoveAfter is removed,
//     unless that would leave fewer than MinVoters voters;
//  4. a non-voter caught up for PromoteAfter is promoted to voter.
//
// No removal may leave the remaining voters without a live quorum.
func (n *Node) reconcile(ctx context.Context) error {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return err
	}
	servers := f.Configuration().Servers
	members := map[string]member{}
	for _, m := range n.gossip.snapshot() {
		members[m.ID] = m
	}
	self := raft.ServerID(n.cfg.NodeID)
	now := time.Now()
	timeout := n.cfg.ApplyTimeout

	for _, id := range sortedKeys(members) {
		m := members[id]
		if m.Status != StatusAlive || m.Meta.RaftAddr == "" {
			continue
		}
		i := slices.IndexFunc(servers, func(s raft.Server) bool { return s.ID == raft.ServerID(id) })
		switch {
		case i < 0 && !n.admissible(ctx, m):
			continue
		case i < 0:
			n.log.Info("adding a node as non-voter", "id", id, "addr", m.Meta.RaftAddr)
			return n.raft.AddNonvoter(raft.ServerID(id), raft.ServerAddress(m.Meta.RaftAddr), 0, timeout).Error()
		case servers[i].Address != raft.ServerAddress(m.Meta.RaftAddr):
			n.log.Info("updating a node's address", "id", id, "from", servers[i].Address, "to", m.Meta.RaftAddr)
			if servers[i].Suffrage == raft.Voter {
				return n.raft.AddVoter(servers[i].ID, raft.ServerAddress(m.Meta.RaftAddr), 0, timeout).Error()
			}
			return n.raft.AddNonvoter(servers[i].ID, raft.ServerAddress(m.Meta.RaftAddr), 0, timeout).Error()
		}
	}

	n.recon.mu.Lock()
	for _, s := range servers {
		if _, ok := members[string(s.ID)]; ok || s.ID == self {
			delete(n.recon.missing, string(s.ID))
		} else if _, seen := n.recon.missing[string(s.ID)]; !seen {
			n.recon.missing[string(s.ID)] = now
		}
	}
	missing := maps.Clone(n.recon.missing)
	n.recon.mu.Unlock()

	for _, s := range servers {
		if s.ID == self {
			continue
		}
		m, known := members[string(s.ID)]
		var why string
		switch {
		case known && m.Status == StatusLeft:
			if !n.canRemove(servers, members, s, false) {
				continue
			}
			why = "left the cluster"
		case known && m.Status == StatusFailed && now.Sub(m.Since) >= n.cfg.DeadServerRemoveAfter,
			!known && now.Sub(missing[string(s.ID)]) >= n.cfg.DeadServerRemoveAfter:
			if !n.canRemove(servers, members, s, true) {
				continue
			}
			why = "failed for longer than " + n.cfg.DeadServerRemoveAfter.String()
		default:
			continue
		}
		n.log.Info("removing a server", "id", s.ID, "why", why)
		return n.raft.RemoveServer(s.ID, 0, timeout).Error()
	}

	return n.promote(ctx, servers, members)
}

// promote makes one caught-up non-voter a voter.
func (n *Node) promote(ctx context.Context, servers []raft.Server, members map[string]member) error {
	commit := n.raft.CommitIndex()
	now := time.Now()
	for _, s := range servers {
		if s.Suffrage != raft.Nonvoter {
			continue
		}
		if m, ok := members[string(s.ID)]; !ok || m.Status != StatusAlive {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		var info NodeInfo
		err := n.rpc.call(cctx, string(s.Address), rpcNodeInfo, nil, &info)
		cancel()
		n.recon.mu.Lock()
		since, ok := n.recon.caughtUp[string(s.ID)]
		if err != nil || info.AppliedIndex+n.cfg.MaxPromoteLag < commit {
			delete(n.recon.caughtUp, string(s.ID))
			n.recon.mu.Unlock()
			continue
		}
		if !ok {
			n.recon.caughtUp[string(s.ID)] = now
			n.recon.mu.Unlock()
			continue
		}
		n.recon.mu.Unlock()
		if now.Sub(since) < n.cfg.PromoteAfter {
			continue
		}
		n.log.Info("promoting a caught-up non-voter", "id", s.ID, "applied", info.AppliedIndex, "commit", commit)
		return n.raft.AddVoter(s.ID, s.Address, 0, n.cfg.ApplyTimeout).Error()
	}
	return nil
}

// canRemove reports whether removing s keeps the cluster safe: the voters
// that remain, counting only live ones, must form a quorum of the new
// configuration, and a failed voter's removal must not go below MinVoters.
func (n *Node) canRemove(servers []raft.Server, members map[string]member, s raft.Server, failed bool) bool {
	if s.Suffrage != raft.Voter {
		return true
	}
	voters, alive := 0, 0
	for _, o := range servers {
		if o.Suffrage != raft.Voter || o.ID == s.ID {
			continue
		}
		voters++
		if o.ID == raft.ServerID(n.cfg.NodeID) || members[string(o.ID)].Status == StatusAlive {
			alive++
		}
	}
	if voters == 0 || alive < voters/2+1 {
		n.log.Warn("not removing a voter: the rest would have no live quorum", "id", s.ID, "voters_after", voters, "alive", alive)
		return false
	}
	if failed && voters < n.cfg.MinVoters {
		n.log.Debug("not removing a failed voter: it would leave fewer than MinVoters", "id", s.ID, "voters_after", voters, "min", n.cfg.MinVoters)
		return false
	}
	return true
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
