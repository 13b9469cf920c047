package cluster

import (
	"context"
	"time"

	"github.com/mimihub/mimi-hub/fsm"
	"github.com/mimihub/mimi-hub/internal/pause"
)

// DefaultPruneInterval is how often the leader prunes expired KeyPackages
// and claim routes.
const DefaultPruneInterval = 10 * time.Minute

// RunMaintenance applies the FSM's housekeeping commands while this node
// leads, until ctx ends: first its configured state bounds when the
// replicated ones differ (imposeBounds), then every interval
// (DefaultPruneInterval if zero) a prune of expired KeyPackages and
// routes, stamped like any command with the leader's clock, so every
// replica drops the same entries.
func (s *Store) RunMaintenance(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultPruneInterval
	}
	s.node.whileLeading(ctx, func(ctx context.Context) {
		s.imposeBounds(ctx)
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
	for backoff := time.Second; ; backoff = min(2*backoff, time.Minute) {
		var have fsm.Bounds
		var set bool
		_ = s.fsm.Read(func(st *fsm.State) error { have, set = st.Bounds(); return nil })
		if set && have == want {
			return
		}
		actx, cancel := context.WithTimeout(ctx, s.node.cfg.ApplyTimeout)
		res, err := s.Apply(actx, fsm.CmdSetBounds, nil, "", &fsm.BoundsBody{Bounds: want})
		cancel()
		if err == nil {
			err = res.Err()
		}
		if err == nil {
			s.node.log.Info("maintenance: the state bounds of every node are now this node's configuration", "were_replicated", set, "bounds", want)
			return
		}
		s.node.log.Warn("maintenance: setting the state bounds", "err", err, "retry_in", backoff)
		if !pause.For(ctx, backoff) {
			return
		}
	}
}
