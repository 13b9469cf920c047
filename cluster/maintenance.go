package cluster

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/mimihub/mimi-hub/fsm"
	"github.com/mimihub/mimi-hub/internal/pause"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// DefaultPruneInterval is how often the leader prunes expired KeyPackages
// and claim routes.
const DefaultPruneInterval = 10 * time.Minute

// RunMaintenance applies the FSM's housekeeping commands while this node
// leads, until ctx ends: its configured state bounds when the replicated
// ones differ and the cluster agrees (setBounds), the outbox's state-wide
// numbering when the log has not switched to it yet (numberOutbox), this
// release's rules when the log does not apply them yet (raiseLevel), and
// every interval (DefaultPruneInterval if zero) a prune of expired
// KeyPackages and routes, stamped like any command with the leader's
// clock, so every replica drops the same entries. The first three wait
// for the other nodes, maybe for long, so they run beside the prunes.
func (s *Store) RunMaintenance(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultPruneInterval
	}
	s.node.whileLeading(ctx, func(ctx context.Context) {
		var wg sync.WaitGroup
		defer wg.Wait()
		wg.Go(func() { s.setBounds(ctx) })
		wg.Go(func() { s.numberOutbox(ctx) })
		wg.Go(func() { s.raiseLevel(ctx) })
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				s.prune(ctx)
			}
		}
	})
}

// prune applies one CmdPrune, logging a failure: the next tick retries.
func (s *Store) prune(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, s.node.cfg.ApplyTimeout)
	defer cancel()
	res, err := s.Apply(ctx, fsm.CmdPrune, nil, "", nil)
	switch {
	case err != nil:
		s.node.log.Warn("maintenance: prune", "err", err)
	case res.Err() != nil:
		s.node.log.Warn("maintenance: prune refused", "err", res.Err())
	}
}

// setBounds makes this node's configured state bounds the replicated ones
// (every replica applies the log with them: fsm.Bounds) when they differ,
// retrying until it has or this node stops leading. The first bounds are
// the first leader's configuration. A change waits until every server of
// the Raft configuration advertises this node's state configuration
// (Node.serversConfiguredOtherwise), so a node configured otherwise by
// mistake never imposes its values by winning an election: the bounds
// change once the last node of a rolling restart runs the new values,
// whichever node leads. Until then gossip reports the difference
// (Node.StateConfigMismatches) and the leader logs whom it waits for.
func (s *Store) setBounds(ctx context.Context) {
	want := s.fsm.Config().Bounds
	var set bool
	agreed := func() error {
		if !set {
			return nil
		}
		others, err := s.node.serversConfiguredOtherwise()
		if err == nil && len(others) > 0 {
			err = fmt.Errorf("keeping the replicated bounds until every server is configured as this one: %s not known to be", strings.Join(others, ", "))
		}
		return err
	}
	if s.applyUntil(ctx, "setting the state bounds", func(st *fsm.State) bool {
		var have fsm.Bounds
		have, set = st.Bounds()
		return set && have == want
	}, agreed, fsm.CmdSetBounds, &fsm.BoundsBody{Bounds: want}) {
		s.node.log.Info("maintenance: the replicated state bounds are now this node's configuration", "were_replicated", set, "bounds", want)
	}
}

// numberOutbox switches the outbox to state-wide item ids (CmdOutboxIDs)
// if the log has not yet, retrying until it has or this node stops
// leading: until then every replica numbers each queue's items and keeps
// empty queues, as the previous release did (fsm/DESIGN.md "The outbox").
// It waits until every server runs a release that applies the command
// (fsm.LogLevelOutboxIDs): one that does not would refuse it and go on
// numbering per queue, and, leading later, trim items by ids that mean
// something else to the others.
func (s *Store) numberOutbox(ctx context.Context) {
	ready := func() error {
		below, err := s.node.serversBelowLogLevel(fsm.LogLevelOutboxIDs)
		if err == nil && len(below) > 0 {
			err = fmt.Errorf("waiting for %s to run a release that applies command %d (log level %d)", strings.Join(below, ", "), fsm.CmdOutboxIDs, fsm.LogLevelOutboxIDs)
		}
		return err
	}
	if s.applyUntil(ctx, "numbering the outbox state-wide", (*fsm.State).OutboxStateWide, ready, fsm.CmdOutboxIDs, nil) {
		s.node.log.Info("maintenance: outbox items are numbered state-wide; empty queues are forgotten")
	}
}

// raiseLevel makes the state apply the rules of this release's log level
// (CmdLogLevel, fsm/levels.go) if it does not yet, retrying until it does
// or this node stops leading. It waits until every server runs a release
// that applies the command: one that does not would refuse it and go on
// applying the log by the old rules, its state drifting from the others'.
func (s *Store) raiseLevel(ctx context.Context) {
	ready := func() error {
		below, err := s.node.serversBelowLogLevel(fsm.LogLevel)
		if err == nil && len(below) > 0 {
			err = fmt.Errorf("waiting for %s to run a release of log level %d", strings.Join(below, ", "), fsm.LogLevel)
		}
		return err
	}
	raised := func(st *fsm.State) bool { return st.RulesLevel() >= fsm.LogLevel }
	if s.applyUntil(ctx, "raising the log level", raised, ready, fsm.CmdLogLevel, &fsm.LogLevelBody{Level: fsm.LogLevel}) {
		s.node.log.Info("maintenance: every node applies the rules of this release's log level", "level", fsm.LogLevel)
	}
}

// applyUntil applies a command of type typ unless done already holds on
// the state, once ready (nil: at once) says nothing stands in the way,
// retrying with backoff until it is applied or this node stops leading;
// it reports whether it applied one.
func (s *Store) applyUntil(ctx context.Context, what string, done func(*fsm.State) bool, ready func() error, typ fsm.CommandType, body wire.Encoder) bool {
	for backoff := time.Second; ; backoff = min(2*backoff, time.Minute) {
		var ok bool
		_ = s.fsm.Read(func(st *fsm.State) error { ok = done(st); return nil })
		if ok {
			return false
		}
		var err error
		if ready != nil {
			err = ready()
		}
		if err == nil {
			actx, cancel := context.WithTimeout(ctx, s.node.cfg.ApplyTimeout)
			var res *fsm.Result
			if res, err = s.Apply(actx, typ, nil, "", body); err == nil {
				err = res.Err()
			}
			cancel()
		}
		if err == nil {
			return true
		}
		s.node.log.Warn("maintenance: "+what, "err", err, "retry_in", backoff)
		if !pause.For(ctx, backoff) {
			return false
		}
	}
}
