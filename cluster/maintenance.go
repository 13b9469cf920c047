package cluster

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/mimihub/mimi-hub/fsm"
	"github.com/mimihub/mimi-hub/internal/pause"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// DefaultPruneInterval is how often the leader prunes expired KeyPackages
// and claim routes.
const DefaultPruneInterval = 10 * time.Minute

// RunMaintenance applies the FSM's housekeeping commands while this node
// leads, until ctx ends: first its configured state bounds when the
// replicated ones differ (imposeBounds) and the outbox's state-wide
// numbering when the log has not switched to it yet (numberOutbox), then
// every interval
// (DefaultPruneInterval if zero) a prune of expired KeyPackages and
// routes, stamped like any command with the leader's clock, so every
// replica drops the same entries.
func (s *Store) RunMaintenance(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultPruneInterval
	}
	s.node.whileLeading(ctx, func(ctx context.Context) {
		s.imposeBounds(ctx)
		s.numberOutbox(ctx)
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

// imposeBounds makes this node's configured state bounds the replicated
// ones when they differ or were never set, retrying until it has or this
// node stops leading: the leader's configuration decides, and every
// replica applies the log with the same bounds (fsm.Bounds). A node
// configured otherwise applies them too, and gossip reports that its
// configuration differs (Node.StateConfigMismatches).
func (s *Store) imposeBounds(ctx context.Context) {
	want := s.fsm.Config().Bounds
	var set bool
	if s.applyUntil(ctx, "setting the state bounds", func(st *fsm.State) bool {
		var have fsm.Bounds
		have, set = st.Bounds()
		return set && have == want
	}, nil, fsm.CmdSetBounds, &fsm.BoundsBody{Bounds: want}) {
		s.node.log.Info("maintenance: the state bounds of every node are now this node's configuration", "were_replicated", set, "bounds", want)
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
