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
	leading := s.node.WatchLeadership(ctx)
	var tick <-chan time.Time
	var t *time.Ticker
	defer func() {
		if t != nil {
			t.Stop()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case lead, ok := <-leading:
			if !ok {
				return
			}
			if t != nil {
				t.Stop()
				t, tick = nil, nil
			}
			if lead {
				t = time.NewTicker(interval)
				tick = t.C
			}
		case <-tick:
			actx, cancel := context.WithTimeout(ctx, s.node.cfg.ApplyTimeout)
			res, err := s.Apply(actx, fsm.CmdPrune, nil, "", nil)
			cancel()
			switch {
			case err != nil:
				s.node.log.Warn("maintenance: prune", "err", err)
			case res.Err() != nil:
				s.node.log.Warn("maintenance: prune refused", "err", res.Err())
			}
		}
	}
}
