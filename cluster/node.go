package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// Node is one Raft server: the replicated log, its durable stores, the
// transport and internal channel, gossip, and the FSM it drives. Its
// methods are safe for concurrent use.
type Node struct {
	cfg  Config
	log  *slog.Logger
	raft *raft.Raft
	st   *stores
	fsm  *indexedFSM
	// logLevel is what the FSM says it applies (LogLeveled), advertised.
	logLevel int
	addr     raft.ServerAddress
	lead     *leadership
	mux      *mux       // nil without TLS
	rpc      *rpcClient // nil without TLS
	rpcSrv   *rpcServer // nil without TLS
	gossip   *gossip    // nil without gossip
	trans    raft.Transport

	// readyTerm is the term in which this node, as leader, has applied its
	// own noop entry, so its FSM holds everything committed before it
	// led; 0 when not a ready leader. Linearizable reads and leader-only
	// work wait for it.
	readyTerm atomic.Uint64
	// clusterID names the Raft history this node belongs to (clusterid.go).
	clusterID atomic.Pointer[string]
	adoptMu   sync.Mutex // serializes setClusterID
	// handedTo names the node a graceful shutdown handed leadership to.
	handedTo atomic.Pointer[string]
	// joined is set once a configured gossip join peer answered; until
	// then a node with join peers does not bootstrap.
	joined atomic.Bool

	watch sync.WaitGroup // the leadership pump
	bg    sync.WaitGroup // gossip joins, bootstrap, reconciliation

	recon  reconcileState // the leader's membership bookkeeping
	events eventLog       // recent cluster events (events.go)

	// reads shares ReadIndex rounds among concurrent callers, leaderReads
	// the leader's answers to followers' read index requests (readbatch.go).
	reads, leaderReads readBatch

	shutdownOnce sync.Once
	stopping     chan struct{} // closed when Shutdown begins
	stopped      chan struct{} // closed when Shutdown has finished
	shutdownErr  error         // set before stopped is closed
}

// Start opens (or creates) the Raft state in cfg.DataDir, starts the
// transport, the internal channel and gossip, and the Raft node driving
// fsm, and returns without waiting for an election (see WaitLeader). A
// node with existing state restores its latest snapshot into fsm before
// Start returns; the log entries after the snapshot are re-applied once
// they are known to be committed. A new node bootstraps as
// Config.BootstrapExpect says, at once (1) or once the expected peers are
// seen (more). ctx is checked between the start-up steps; Raft keeps
// running after Start returns until Shutdown.
func Start(ctx context.Context, cfg Config, fsm raft.FSM) (_ *Node, err error) {
	if fsm == nil {
		return nil, errors.New("cluster: start: nil FSM")
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, contextError("start", ctx)
	}
	logger := cfg.Logger.With("component", "cluster", "node", cfg.NodeID)
	hl := newHCLogger(logger, "raft")

	st, err := openStores(cfg, hl)
	if err != nil {
		return nil, fmt.Errorf("cluster: start: %w", err)
	}
	n := &Node{
		cfg:      cfg,
		log:      logger,
		st:       st,
		fsm:      newIndexedFSM(fsm, cfg.Observer),
		lead:     newLeadership(),
		stopping: make(chan struct{}),
		stopped:  make(chan struct{}),
	}
	if l, ok := fsm.(LogLeveled); ok && !cfg.olderRelease {
		n.logLevel = l.LogLevel()
	}
	defer func() {
		if err != nil {
			n.closeNetwork()
			st.close()
		}
	}()
	if err := n.openTransport(); err != nil {
		return nil, fmt.Errorf("cluster: start: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, contextError("start", ctx)
	}
	hasState, err := raft.HasExistingState(st.logs, st.stable, st.snaps)
	if err != nil {
		return nil, fmt.Errorf("cluster: start: check existing raft state: %w", err)
	}
	rc := cfg.raftConfig(logger)
	clusterID, err := st.loadClusterID()
	if err != nil {
		return nil, fmt.Errorf("cluster: start: %w", err)
	}
	// A single voter bootstraps at once, unless it was told of peers: then
	// it first asks them (bootstrapLoop), because a node that joins an
	// existing cluster must never start a history of its own.
	if !hasState && cfg.BootstrapExpect == 1 && !cfg.hasJoinPeers() {
		servers := []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(cfg.NodeID), Address: n.addr}}
		if err := raft.BootstrapCluster(rc, st.logs, st.stable, st.snaps, n.trans, raft.Configuration{Servers: servers}); err != nil {
			return nil, fmt.Errorf("cluster: start: bootstrap: %w", err)
		}
		clusterID = bootstrapClusterID(servers)
		if err := st.storeClusterID(clusterID); err != nil {
			return nil, fmt.Errorf("cluster: start: %w", err)
		}
		hasState = true
		logger.Info("bootstrapped a single-voter cluster", "addr", n.addr, "cluster_id", clusterID)
	}
	if clusterID != "" {
		n.clusterID.Store(&clusterID)
	}
	if n.raft, err = raft.NewRaft(rc, n.fsm, st.logs, st.stable, st.snaps, n.trans); err != nil {
		return nil, fmt.Errorf("cluster: start raft: %w", err)
	}
	n.startObserving()
	if n.rpcSrv != nil {
		n.registerRPC()
		n.bg.Add(1)
		go func() {
			defer n.bg.Done()
			n.rpcSrv.serve(n.mux.subs[protoRPC])
		}()
	}
	if cfg.Gossip != nil {
		meta := nodeMeta{Version: 1, RaftAddr: string(n.addr), Expect: cfg.BootstrapExpect, HasState: hasState, ClusterID: clusterID, StateDigest: cfg.StateDigest,
			LogLevel: n.logLevel}
		keys, err := loadKeyring(cfg.DataDir, cfg.Gossip.Key, logger)
		if err != nil {
			n.raft.Shutdown().Error()
			return nil, fmt.Errorf("cluster: start: %w", err)
		}
		if n.gossip, err = startGossip(ctx, cfg.Gossip, cfg.NodeID, meta, keys, logger, n.gossipChanged); err != nil {
			n.raft.Shutdown().Error()
			return nil, fmt.Errorf("cluster: start: %w", err)
		}
		n.bg.Add(1)
		go func() {
			defer n.bg.Done()
			n.joinLoop(cfg.Gossip.Join)
		}()
		if !hasState && cfg.BootstrapExpect > 0 {
			n.bg.Add(1)
			go func() {
				defer n.bg.Done()
				n.bootstrapLoop()
			}()
		}
		if clusterID == "" {
			n.bg.Add(1)
			go func() {
				defer n.bg.Done()
				n.learnClusterID()
			}()
		}
	}
	n.watch.Add(1)
	go n.pumpLeadership()
	logger.Info("raft node started", "addr", n.addr, "data_dir", cfg.DataDir, "tls", cfg.TLS != nil, "gossip", cfg.Gossip != nil)
	return n, nil
}

// openTransport opens the Raft transport: the TLS mux on RaftAddr with the
// internal channel beside Raft, or, without TLS, an in-memory transport
// that reaches no one (a single voter needs none).
func (n *Node) openTransport() error {
	cfg := n.cfg
	if cfg.TLS == nil {
		addr, trans := raft.NewInmemTransport(raft.ServerAddress("inmem:" + cfg.NodeID))
		n.addr, n.trans = addr, trans
		return nil
	}
	var adv net.Addr
	if cfg.AdvertiseAddr != "" {
		a, err := advertiseAddr(cfg.AdvertiseAddr)
		if err != nil {
			return err
		}
		adv = a
	}
	ids := clusterIDs{get: n.ClusterID, adopt: n.adoptClusterID}
	m, err := newMux(cfg.RaftAddr, adv, cfg.TLS, ids, n.log)
	if err != nil {
		return fmt.Errorf("raft transport: %w", err)
	}
	n.mux = m
	n.addr = raft.ServerAddress(m.advertise.String())
	n.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  raftLayer{subListener: m.subs[protoRaft], m: m},
		MaxPool: cfg.TransportMaxPool,
		Timeout: cfg.TransportTimeout,
		Logger:  newHCLogger(n.log, "raft-net"),
		// No pipelined replication: in hashicorp/raft v1.7 a pipeline
		// whose decoder stops (a follower's newer term or a refused
		// AppendEntries) can leave the sender parked on a channel nobody
		// reads, so that follower gets no more entries and Shutdown never
		// returns (seen here as a leader's stop hanging under load).
		// Synchronous replication still sends batches of entries, and
		// hashicorp's own measurements (raft PR 541) found pipelining of
		// little benefit with batching.
		MaxRPCsInFlight: 1,
	})
	n.rpc = newRPCClient(m)
	n.rpcSrv = newRPCServer(n.log)
	return nil
}

// closeNetwork closes the transport, the internal channel and the mux
// (Raft must be shut down already, or never started).
func (n *Node) closeNetwork() {
	if n.rpcSrv != nil {
		n.rpcSrv.server.Close()
	}
	if n.rpc != nil {
		n.rpc.close()
	}
	if c, ok := n.trans.(raft.WithClose); ok {
		c.Close()
	}
	if n.mux != nil {
		n.mux.close()
	}
}

// pumpLeadership turns raft's leadership signal into ready leadership and
// copies it to the watchers until Shutdown begins. It is raft.LeaderCh's
// only reader. On gaining leadership it first applies a noop entry, so
// watchers told "true" see every entry committed by earlier leaders.
func (n *Node) pumpLeadership() {
	defer n.watch.Done()
	ch := n.raft.LeaderCh()
	var stopLeaderWork context.CancelFunc
	defer func() {
		if stopLeaderWork != nil {
			stopLeaderWork()
		}
	}()
	for {
		select {
		case v := <-ch:
			if stopLeaderWork != nil {
				stopLeaderWork()
				stopLeaderWork = nil
			}
			if !v {
				n.readyTerm.Store(0)
				n.log.Info("leadership lost")
				n.lead.set(false)
				continue
			}
			term := n.raft.CurrentTerm()
			if err := n.markReady(); err != nil {
				n.log.Warn("won an election but could not commit the noop entry", "term", term, "err", err)
				continue
			}
			n.readyTerm.Store(term)
			n.log.Info("leading", "term", term)
			n.lead.set(true)
			if n.gossip != nil {
				ctx, cancel := context.WithCancel(context.Background())
				stopLeaderWork = cancel
				n.bg.Add(1)
				go func() {
					defer n.bg.Done()
					n.reconcileLoop(ctx)
				}()
			}
		case <-n.stopping:
			return
		}
	}
}

// markReady applies a noop entry and waits until the FSM has consumed it.
// Raft's own noop at the start of a term never reaches the FSM; this one
// does, so after it the FSM's index has caught up with the commit index.
func (n *Node) markReady() error {
	ctx, cancel := n.untilStopping(context.Background(), n.cfg.ApplyTimeout)
	defer cancel()
	timeout, err := enqueueTimeout("noop", ctx)
	if err != nil {
		return err
	}
	_, err = n.await(ctx, "noop", func() (any, error) {
		return nil, n.raft.ApplyLog(raft.Log{Extensions: noopExtension}, timeout).Error()
	})
	return err
}

// untilStopping derives a context from parent that ends after timeout or
// when Shutdown begins.
func (n *Node) untilStopping(parent context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(parent, timeout)
	go func() {
		select {
		case <-n.stopping:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// isReadyLeader reports whether this node leads and has caught up in its
// current term.
func (n *Node) isReadyLeader() bool {
	t := n.readyTerm.Load()
	return t != 0 && n.raft.State() == raft.Leader && t == n.raft.CurrentTerm()
}

// Addr is the address peers reach this node's Raft transport at.
func (n *Node) Addr() string { return string(n.addr) }

// ID is this node's Raft server ID.
func (n *Node) ID() string { return n.cfg.NodeID }

// Apply appends cmd to the replicated log and waits until this node's FSM
// has applied it, returning the value the FSM's Apply returned. The FSM's
// error values are part of that response: err is nil for every committed
// entry, including one the FSM rejected. err is non-nil only if Raft did
// not (or cannot say whether it did) commit the entry:
//
//   - ErrNotLeader (a *NotLeaderError): not applied; retry on the leader.
//   - ErrShutdown: not applied.
//   - ErrTimeout (also context.DeadlineExceeded), a context.Canceled
//     error, or ErrLeadershipLost: the outcome is unknown; the entry may
//     still commit. Retry only with a command the FSM deduplicates.
//
// The wait is bounded by ctx, or by Config.ApplyTimeout if ctx has no
// deadline. cmd must not be modified after the call.
func (n *Node) Apply(ctx context.Context, cmd []byte) (any, error) {
	resp, _, err := n.applyIndexed(ctx, cmd)
	return resp, err
}

// applyIndexed is Apply that also returns the entry's log index.
func (n *Node) applyIndexed(ctx context.Context, cmd []byte) (any, uint64, error) {
	if n.isStopping() {
		return nil, 0, fmt.Errorf("cluster: apply: %w", ErrShutdown)
	}
	ctx, cancel := n.withDefaultDeadline(ctx)
	defer cancel()
	timeout, err := enqueueTimeout("apply", ctx)
	if err != nil {
		return nil, 0, err
	}
	type applied struct {
		resp  any
		index uint64
	}
	start := time.Now()
	v, err := n.await(ctx, "apply", func() (any, error) {
		f := n.raft.Apply(cmd, timeout)
		if err := f.Error(); err != nil {
			return nil, err
		}
		return applied{f.Response(), f.Index()}, nil
	})
	if err != nil {
		return nil, 0, err
	}
	n.cfg.Observer.Committed(time.Since(start))
	a := v.(applied)
	return a.resp, a.index, nil
}

// Barrier prepares a linearizable read on this node, leader or follower:
// it obtains a read index (the leader's commit index, once a quorum has
// confirmed it still leads) and waits until the local FSM has consumed
// that index. After it returns nil, reading the local FSM observes every
// write acknowledged before Barrier was called. A follower asks the leader
// over the internal channel; while there is no leader it waits up to
// Config.LeaderWait, then fails with ErrNotLeader. Bounded like Apply.
func (n *Node) Barrier(ctx context.Context) error {
	if n.isStopping() {
		return fmt.Errorf("cluster: barrier: %w", ErrShutdown)
	}
	ctx, cancel := n.withDefaultDeadline(ctx)
	defer cancel()
	idx, err := n.ReadIndex(ctx)
	if err != nil {
		return err
	}
	if err := n.fsm.waitIndex(ctx, idx, n.stopping); err != nil {
		if errors.Is(err, ErrShutdown) {
			return fmt.Errorf("cluster: barrier: %w", ErrShutdown)
		}
		return contextError("barrier", ctx)
	}
	return nil
}

// ReadIndex returns an index at or above every entry committed before the
// call: the leader's commit index after a quorum confirmed its leadership.
// A follower forwards the question to the leader.
// Concurrent callers share rounds (readBatch).
func (n *Node) ReadIndex(ctx context.Context) (uint64, error) {
	return n.reads.get(ctx, n.readRoundContext, n.readIndexOnce)
}

// readRoundContext bounds one shared read index round.
func (n *Node) readRoundContext() (context.Context, context.CancelFunc) {
	return n.untilStopping(context.Background(), n.cfg.ApplyTimeout)
}

// readIndexOnce is one read index request: local on the leader, forwarded
// by a follower.
func (n *Node) readIndexOnce(ctx context.Context) (uint64, error) {
	var idx uint64
	err := n.onLeader(ctx, "read index", true, func(ctx context.Context, leader string, local bool) error {
		if local {
			var err error
			idx, err = n.readIndexLocal(ctx)
			return err
		}
		var out readIndexAnswer
		err := n.rpc.call(ctx, leader, rpcReadIndex, struct{}{}, &out)
		idx = out.Index
		return err
	})
	return idx, err
}

type readIndexAnswer struct {
	Index uint64 `json:"index"`
}

// readIndexLocal is ReadIndex on the leader.
func (n *Node) readIndexLocal(ctx context.Context) (uint64, error) {
	if !n.isReadyLeader() {
		id, addr := n.Leader()
		return 0, &NotLeaderError{LeaderID: id, LeaderAddr: addr}
	}
	if _, err := n.await(ctx, "verify leader", func() (any, error) {
		return nil, n.raft.VerifyLeader().Error()
	}); err != nil {
		return 0, err
	}
	return n.raft.CommitIndex(), nil
}

// FSMIndex returns the index of the last log entry the FSM consumed.
func (n *Node) FSMIndex() uint64 { return n.fsm.Index() }

// IsLeader reports whether this node currently believes it is the leader.
// Use Barrier before a read that must not be stale.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// StateConfigMismatches lists, sorted, the cluster's nodes (gossip
// members not failed or gone) that advertise a state machine
// configuration other than this node's (Config.StateDigest): each applies
// the same log differently from this node. Nil without gossip or a
// digest.
func (n *Node) StateConfigMismatches() []string {
	if n.gossip == nil {
		return nil
	}
	return n.gossip.stateMismatches(n.cfg.NodeID)
}

// LogLeveled is what a state machine implements to say which command set
// it applies (fsm.LogLevel); the node advertises it through gossip, 0 for
// a state machine without it.
type LogLeveled interface {
	LogLevel() int
}

// serversBelowLogLevel returns the servers of the Raft configuration, voters
// or not, that do not advertise log level level (fsm.LogLevel): the ones
// still to be upgraded, or that gossip does not know. Without gossip only
// a configuration of this node alone is known to be ready.
func (n *Node) serversBelowLogLevel(level int) ([]string, error) {
	others, err := n.otherServers()
	if err != nil {
		return nil, err
	}
	if n.logLevel < level {
		others = append(others, n.cfg.NodeID)
	}
	if n.gossip == nil {
		slices.Sort(others)
		return others, nil
	}
	return n.gossip.belowLogLevel(others, level), nil
}

// serversConfiguredOtherwise returns the other servers of the Raft
// configuration, voters or not, not known to share this node's state
// machine configuration (Config.StateDigest): they advertise another
// digest or none, or gossip does not know them. Without gossip or a
// digest only a configuration of this node alone is known to agree.
func (n *Node) serversConfiguredOtherwise() ([]string, error) {
	others, err := n.otherServers()
	if err != nil {
		return nil, err
	}
	if n.gossip == nil || n.cfg.StateDigest == "" {
		slices.Sort(others)
		return others, nil
	}
	return n.gossip.digestOtherwise(others, n.cfg.StateDigest), nil
}

// otherServers returns the IDs of the Raft configuration's servers but
// this node.
func (n *Node) otherServers() ([]string, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, n.translate("configuration", err)
	}
	var others []string
	for _, s := range f.Configuration().Servers {
		if string(s.ID) != n.cfg.NodeID {
			others = append(others, string(s.ID))
		}
	}
	return others, nil
}

// Leader returns the current leader's server ID and Raft address, or empty
// strings if no leader is known.
func (n *Node) Leader() (id, addr string) {
	a, i := n.raft.LeaderWithID()
	return string(i), string(a)
}

// WatchLeadership returns a channel carrying whether this node is the
// leader: first the current state, then each change. Values are
// coalesced: a slow receiver gets the latest state, and two equal values in
// a row mean leadership was lost and regained in between. The channel
// receives a final false and is closed when the node shuts down, and is
// closed when ctx ends. True is sent only once the new leader's FSM holds
// every entry committed before it led (its noop entry is applied), so a
// worker that must run only on the leader starts on true and stops on
// false.
func (n *Node) WatchLeadership(ctx context.Context) <-chan bool {
	return n.lead.watch(ctx)
}

// WaitLeader blocks until some node (this one or, later, a peer) is known
// to be the leader, and returns it.
func (n *Node) WaitLeader(ctx context.Context) (id, addr string, err error) {
	obs := make(chan raft.Observation, 4)
	o := raft.NewObserver(obs, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	n.raft.RegisterObserver(o)
	defer n.raft.DeregisterObserver(o)
	for {
		if id, addr := n.Leader(); addr != "" {
			return id, addr, nil
		}
		select {
		case <-obs:
		case <-n.stopping:
			return "", "", fmt.Errorf("cluster: wait leader: %w", ErrShutdown)
		case <-ctx.Done():
			return "", "", contextError("wait leader", ctx)
		}
	}
}

// Stats is a point-in-time view of a node, for status pages and metrics.
type Stats struct {
	NodeID     string
	Addr       string
	State      string // "Follower", "Candidate", "Leader" or "Shutdown"
	Term       uint64
	LeaderID   string
	LeaderAddr string
	// LastLogIndex is the index of the last entry in the log (or the last
	// snapshot, if the log is empty).
	LastLogIndex uint64
	// CommitIndex is the highest index known to be committed.
	CommitIndex uint64
	// AppliedIndex is the highest index handed to the FSM (it may still be
	// applying it).
	AppliedIndex uint64
	// FSMIndex is the index of the last entry the FSM has consumed.
	FSMIndex uint64
	// LastSnapshotIndex and LastSnapshotTerm identify the latest snapshot;
	// zero if none.
	LastSnapshotIndex uint64
	LastSnapshotTerm  uint64
	// LastContact is when a follower last heard from the leader; zero if
	// never. Not meaningful on the leader.
	LastContact time.Time
}

// Stats reports the node's Raft state.
func (n *Node) Stats() Stats {
	id, addr := n.Leader()
	m := n.raft.Stats()
	u := func(key string) uint64 {
		v, _ := strconv.ParseUint(m[key], 10, 64)
		return v
	}
	return Stats{
		NodeID:            n.cfg.NodeID,
		Addr:              string(n.addr),
		State:             n.raft.State().String(),
		Term:              n.raft.CurrentTerm(),
		LeaderID:          id,
		LeaderAddr:        addr,
		LastLogIndex:      n.raft.LastIndex(),
		CommitIndex:       n.raft.CommitIndex(),
		AppliedIndex:      n.raft.AppliedIndex(),
		FSMIndex:          n.fsm.Index(),
		LastSnapshotIndex: u("last_snapshot_index"),
		LastSnapshotTerm:  u("last_snapshot_term"),
		LastContact:       n.raft.LastContact(),
	}
}

// Snapshot takes a snapshot of the FSM now and compacts the log behind it
// (keeping Config.TrailingLogs entries). It returns ErrNothingToSnapshot if
// the FSM has applied nothing since start. Bounded by ctx only: a large
// snapshot may take a while.
func (n *Node) Snapshot(ctx context.Context) error {
	if n.isStopping() {
		return fmt.Errorf("cluster: snapshot: %w", ErrShutdown)
	}
	return n.snapshot(ctx)
}

func (n *Node) snapshot(ctx context.Context) error {
	_, err := n.await(ctx, "snapshot", func() (any, error) {
		return nil, n.raft.Snapshot().Error()
	})
	return err
}

// Shutdown stops the node: it refuses new operations, tells leadership
// watchers false and closes their channels (so leader-only workers stop
// while Raft still runs), hands leadership to another voter if it leads,
// takes a snapshot if entries were applied since the last one (so the next
// start replays little log), drains the internal channel, stops gossip
// (without leaving: a restarting node stays a member; see Leave), Raft
// and its transport, and closes the stores. ctx bounds the transfer, the
// snapshot and the wait; if ctx ends first, what remains is skipped or
// finishes in the background. Shutdown is idempotent: every call waits
// for the same shutdown and returns its result.
func (n *Node) Shutdown(ctx context.Context) error {
	n.shutdownOnce.Do(func() {
		close(n.stopping)
		go n.shutdown(ctx, true)
	})
	select {
	case <-n.stopped:
		return n.shutdownErr
	case <-ctx.Done():
		return contextError("shutdown", ctx)
	}
}

// shutdown does the work of Shutdown; graceful false simulates a
// crash-stop in tests (no transfer, no snapshot: the log is left for
// replay).
func (n *Node) shutdown(ctx context.Context, graceful bool) {
	defer close(n.stopped)
	// Leader-only workers stop first, while Raft still runs.
	n.watch.Wait()
	n.lead.close()
	if graceful {
		n.handOffLeadership(ctx)
		n.finalSnapshot(ctx)
	}
	if n.rpcSrv != nil {
		drain, cancel := context.WithTimeout(ctx, 2*time.Second)
		n.rpcSrv.server.Shutdown(drain)
		cancel()
	}
	if n.gossip != nil {
		if err := n.gossip.shutdown(); err != nil {
			n.log.Warn("gossip shutdown", "err", err)
		}
	}
	if err := n.raft.Shutdown().Error(); err != nil {
		n.shutdownErr = fmt.Errorf("cluster: shutdown raft: %w", err)
	}
	n.closeNetwork()
	n.bg.Wait()
	if err := n.st.close(); err != nil {
		n.shutdownErr = errors.Join(n.shutdownErr, fmt.Errorf("cluster: shutdown: %w", err))
	}
	n.log.Info("raft node stopped")
}

// handOffLeadership transfers leadership to another voter before a
// graceful stop, so the cluster does not wait out an election timeout.
func (n *Node) handOffLeadership(ctx context.Context) {
	if n.raft.State() != raft.Leader || n.otherVoters() == 0 {
		return
	}
	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := n.await(tctx, "transfer leadership", func() (any, error) {
		return nil, n.raft.LeadershipTransfer().Error()
	})
	if err != nil {
		n.log.Warn("leadership transfer before shutdown failed", "err", err)
		return
	}
	// The new leader announces itself with its first heartbeat.
	id, _ := n.Leader()
	for deadline := time.Now().Add(2 * time.Second); id == "" && time.Now().Before(deadline); id, _ = n.Leader() {
		time.Sleep(10 * time.Millisecond)
	}
	n.handedTo.Store(&id)
	n.log.Info("handed leadership over before shutdown", "to", id)
}

// otherVoters counts the voters of the latest configuration besides this
// node.
func (n *Node) otherVoters() int {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return 0
	}
	c := 0
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter && s.ID != raft.ServerID(n.cfg.NodeID) {
			c++
		}
	}
	return c
}

func (n *Node) finalSnapshot(ctx context.Context) {
	s := n.Stats()
	if s.AppliedIndex <= s.LastSnapshotIndex {
		return
	}
	switch err := n.snapshot(ctx); {
	case err == nil:
		n.log.Info("snapshot on shutdown", "applied_index", s.AppliedIndex)
	case errors.Is(err, ErrNothingToSnapshot):
	default:
		n.log.Warn("snapshot on shutdown failed; the log will be replayed on start", "err", err)
	}
}

func (n *Node) isStopping() bool {
	select {
	case <-n.stopping:
		return true
	default:
		return false
	}
}

// await runs fn, which blocks on a hashicorp/raft future, and waits for it,
// for ctx, or for the node to finish shutting down, whichever comes first.
// Raft futures cannot be cancelled: if ctx ends first, fn's goroutine runs
// on until its future resolves, which Raft guarantees by shutdown at the
// latest.
func (n *Node) await(ctx context.Context, op string, fn func() (any, error)) (any, error) {
	type result struct {
		v   any
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := fn()
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, n.translate(op, r.err)
	case <-ctx.Done():
		return nil, contextError(op, ctx)
	case <-n.stopped:
		return nil, fmt.Errorf("cluster: %s: %w", op, ErrShutdown)
	}
}

// withDefaultDeadline bounds ctx by Config.ApplyTimeout if it has no
// deadline of its own.
func (n *Node) withDefaultDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, n.cfg.ApplyTimeout)
}

// enqueueTimeout turns ctx's deadline into the enqueue timeout raft's
// Apply and Barrier take.
func enqueueTimeout(op string, ctx context.Context) (time.Duration, error) {
	if ctx.Err() != nil {
		return 0, contextError(op, ctx)
	}
	d, ok := ctx.Deadline()
	if !ok {
		return 0, nil
	}
	t := time.Until(d)
	if t <= 0 {
		return 0, fmt.Errorf("cluster: %s: %w: %w", op, ErrTimeout, context.DeadlineExceeded)
	}
	return t, nil
}
