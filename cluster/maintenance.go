package cluster

import (
	"context"
	"time"

	"github.com/mimihub/mimi-hub/fsm"
)

// DefaultPruneInterval is how often the leader prunes expired KeyPackages
// and claim routes.
const DefaultPruneInterval = 10 * time.Minute

// RunMaintenance applies the FSM's housekeeping commands while this node
// leads, until ctx ends: every interval (DefaultPruneInterval if zero) a
// prune of expired KeyPackages and routes, stamped like any command with
// the leader's clock, so every replica drops the same entries.
func (s *Store) RunMaintenance(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultPruneInterval
	}
	s.node.whileLeading(ctx, func(ctx context.Context) {
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
