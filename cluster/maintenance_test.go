package cluster

import (
	"context"
	"testing"
	"time"

	"github.com/mimihub/mimi-hub/fsm"
)

// TestMaintenancePrunesOnTheLeader: the leader applies prune commands on
// its interval; they advance the replicated clock.
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
		_ = s.Read(ctx, false, func(st *fsm.State) error { at = st.LastAcceptedAt(); return nil })
		if at > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no prune was applied")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
}
