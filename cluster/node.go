package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Node is one Raft server: the replicated log, its durable stores, the
// transport, and the FSM it drives. Its methods are safe for concurrent use.
type Node struct {
	cfg   Config
	log   *slog.Logger
	raft  *raft.Raft
	st    *stores
	addr  raft.ServerAddress
	lead  *leadership
	watch sync.WaitGroup // the leadership pump

	shutdownOnce sync.Once
	stopping     chan struct{} // closed when Shutdown begins
	stopped      chan struct{} // closed when Shutdown has finished
	shutdownErr  error         // set before stopped is closed
}

// Start opens (or creates) the Raft state in cfg.DataDir, starts the
// transport and the Raft node driving fsm, and returns without waiting for
// an election (see WaitLeader). A node with existing state restores its
// latest snapshot into fsm before Start returns; the log entries after the
// snapshot are re-applied once they are known to be committed, which for a
// single voter is right after it elects itself. ctx is checked between the
// start-up steps (restoring a snapshot cannot be interrupted); Raft keeps
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
	var trans raft.Transport
	defer func() {
		if err == nil {
			return
		}
		if c, ok := trans.(raft.WithClose); ok {
			c.Close()
		}
		st.close()
	}()

	opts := TransportOptions{
		BindAddr: cfg.RaftAddr,
		MaxPool:  cfg.TransportMaxPool,
		Timeout:  cfg.TransportTimeout,
		Logger:   logger,
	}
	if cfg.AdvertiseAddr != "" {
		a, err := advertiseAddr(cfg.AdvertiseAddr)
		if err != nil {
			return nil, fmt.Errorf("cluster: start: %w", err)
		}
		opts.Advertise = a
	}
	if trans, err = cfg.Transport(opts); err != nil {
		return nil, fmt.Errorf("cluster: start: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, contextError("start", ctx)
	}

	rc := cfg.raftConfig(logger)
	if cfg.Bootstrap {
		did, err := bootstrapIfNew(rc, st, trans, bootstrapServers(cfg, trans.LocalAddr()))
		if err != nil {
			return nil, fmt.Errorf("cluster: start: %w", err)
		}
		if did {
			logger.Info("bootstrapped a single-voter cluster", "addr", trans.LocalAddr())
		}
	}

	r, err := raft.NewRaft(rc, fsm, st.logs, st.stable, st.snaps, trans)
	if err != nil {
		return nil, fmt.Errorf("cluster: start raft: %w", err)
	}
	n := &Node{
		cfg:      cfg,
		log:      logger,
		raft:     r,
		st:       st,
		addr:     trans.LocalAddr(),
		lead:     newLeadership(),
		stopping: make(chan struct{}),
		stopped:  make(chan struct{}),
	}
	n.watch.Add(1)
	go n.pumpLeadership()
	logger.Info("raft node started", "addr", n.addr, "data_dir", cfg.DataDir)
	return n, nil
}

// pumpLeadership copies raft's leadership signal to the watchers until
// Shutdown begins. It is raft.LeaderCh's only reader.
func (n *Node) pumpLeadership() {
	defer n.watch.Done()
	ch := n.raft.LeaderCh()
	for {
		select {
		case v := <-ch:
			n.log.Info("leadership changed", "leader", v)
			n.lead.set(v)
		case <-n.stopping:
			return
		}
	}
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
	if n.isStopping() {
		return nil, fmt.Errorf("cluster: apply: %w", ErrShutdown)
	}
	ctx, cancel := n.withDefaultDeadline(ctx)
	defer cancel()
	timeout, err := enqueueTimeout("apply", ctx)
	if err != nil {
		return nil, err
	}
	return n.await(ctx, "apply", func() (any, error) {
		f := n.raft.Apply(cmd, timeout)
		if err := f.Error(); err != nil {
			return nil, err
		}
		return f.Response(), nil
	})
}

// Barrier prepares a linearizable read: it confirms with a quorum that this
// node is still the leader and waits until every entry committed before the
// call has been applied to the local FSM. After it returns nil, reading the
// FSM observes every write acknowledged before Barrier was called. It
// fails with ErrNotLeader on a follower. Bounded like Apply.
func (n *Node) Barrier(ctx context.Context) error {
	if n.isStopping() {
		return fmt.Errorf("cluster: barrier: %w", ErrShutdown)
	}
	ctx, cancel := n.withDefaultDeadline(ctx)
	defer cancel()
	if _, err := n.await(ctx, "verify leader", func() (any, error) {
		return nil, n.raft.VerifyLeader().Error()
	}); err != nil {
		return err
	}
	timeout, err := enqueueTimeout("barrier", ctx)
	if err != nil {
		return err
	}
	_, err = n.await(ctx, "barrier", func() (any, error) {
		return nil, n.raft.Barrier(timeout).Error()
	})
	return err
}

// IsLeader reports whether this node currently believes it is the leader.
// Use Barrier before a read that must not be stale.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

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
// closed when ctx ends. A worker that must run only on the leader starts on
// true (after a Barrier, to see all committed state) and stops on false.
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
// while Raft still runs), takes a snapshot if entries were applied since the
// last one (so the next start replays little log), stops Raft and its
// transport, and closes the stores. ctx bounds the
// snapshot and the wait; if ctx ends first, the snapshot is skipped and the
// rest of the shutdown finishes in the background. Shutdown is idempotent:
// every call waits for the same shutdown and returns its result.
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

// shutdown does the work of Shutdown; snapshot false simulates a crash-stop
// in tests (the log is left for replay).
func (n *Node) shutdown(ctx context.Context, snapshot bool) {
	defer close(n.stopped)
	// Leader-only workers stop first, while Raft still runs.
	n.watch.Wait()
	n.lead.close()
	if snapshot {
		n.finalSnapshot(ctx)
	}
	if err := n.raft.Shutdown().Error(); err != nil {
		n.shutdownErr = fmt.Errorf("cluster: shutdown raft: %w", err)
	}
	if err := n.st.close(); err != nil {
		n.shutdownErr = errors.Join(n.shutdownErr, fmt.Errorf("cluster: shutdown: %w", err))
	}
	n.log.Info("raft node stopped")
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
