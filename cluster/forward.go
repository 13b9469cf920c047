package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// leaderPoll is how often a request waiting for a leader looks again.
const leaderPoll = 20 * time.Millisecond

// onLeader runs fn against the leader: locally (local true) when this node
// is the ready leader, else with the leader's Raft address, through which
// the internal channel reaches it. It waits for a leader up to
// Config.LeaderWait and retries fn while the answer is "not the leader"
// (nothing was done) or, when idempotent is set, while the outcome is
// unknown but ctx still has time: the caller guarantees that doing fn twice
// is the same as doing it once (a command with a request id, a read index).
// The last error is returned when the waits run out.
func (n *Node) onLeader(ctx context.Context, op string, idempotent bool, fn func(ctx context.Context, leader string, local bool) error) error {
	leaderDeadline := time.Now().Add(n.cfg.LeaderWait)
	backoff := leaderPoll
	var last error
	for {
		if n.isStopping() {
			return fmt.Errorf("cluster: %s: %w", op, ErrShutdown)
		}
		local := n.isReadyLeader()
		_, addr := n.Leader()
		reachable := local || (addr != "" && addr != string(n.addr) && n.rpc != nil)
		if reachable {
			err := fn(ctx, addr, local)
			if err == nil {
				return nil
			}
			last = err
			retry := errors.Is(err, ErrNotLeader) || (idempotent && ambiguous(err))
			if !retry || ctx.Err() != nil {
				return err
			}
			if !errors.Is(err, ErrNotLeader) {
				// Unknown outcome with time left: the leader may have
				// changed; the same request is safe to send again.
				leaderDeadline = time.Now().Add(n.cfg.LeaderWait)
			}
		}
		if time.Now().After(leaderDeadline) {
			if last != nil {
				return last
			}
			id, addr := n.Leader()
			return &NotLeaderError{LeaderID: id, LeaderAddr: addr, cause: fmt.Errorf("no leader within %v", n.cfg.LeaderWait)}
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			if last != nil && !errors.Is(last, ErrNotLeader) {
				return last
			}
			return contextError(op, ctx)
		case <-n.stopping:
			t.Stop()
			return fmt.Errorf("cluster: %s: %w", op, ErrShutdown)
		}
		backoff = min(backoff*2, 200*time.Millisecond)
	}
}
