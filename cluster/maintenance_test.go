package cluster

import (
	"context"
	"testing"
	"time"

	"github.com/mimihub/mimi-hub/fsm"
)

// TestMaintenancePrunesOnTheLeader: the leader sets the replicated bounds
// and numbers the outbox state-wide as it starts leading, and applies
// prune commands on its interval; they advance the replicated clock.
func TestMaintenancePrunesOnTheLeader(t *testing.T) {
	s := startStore(t)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.RunMaintenance(ctx, 10*time.Millisecond)
	}()
	deadline := time.Now().Add(testWait)
	for {
		var at uint64
		var wide, bounds bool
		_ = s.Read(ctx, false, func(st *fsm.State) error {
			at, wide = st.LastAcceptedAt(), st.OutboxStateWide()
			_, bounds = st.Bounds()
			return nil
		})
		if at > 0 && wide && bounds {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("clock %d, outbox numbered state-wide %v, bounds set %v", at, wide, bounds)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
}
