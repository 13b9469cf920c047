package cluster

import (
	"context"
	"slices"
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

// TestOutboxNumberingWaitsForEveryServer: during a rolling upgrade, the
// leader does not switch the outbox to state-wide ids while a server of
// the configuration runs a release that would refuse the command (it
// advertises no log level); once that server runs this release, it does,
// on every node.
func TestOutboxNumberingWaitsForEveryServer(t *testing.T) {
	c := newTestCluster(t)
	cfgs := c.configs(3, nil)
	cfgs[2].olderRelease = true // n3 is still the previous release
	for _, cfg := range cfgs {
		c.start(cfg)
	}
	l := c.leader()
	c.waitFor("gossip to know every node's level", func() bool {
		below, err := l.node.serversBelowLogLevel(fsm.LogLevelOutboxIDs)
		return err == nil && slices.Equal(below, []string{"n3"})
	})
	wide := func(n *clusterNode) bool {
		var ok bool
		_ = n.fsm.Read(func(st *fsm.State) error { ok = st.OutboxStateWide(); return nil })
		return ok
	}
	// numberOutbox checks, finds n3 behind, and gives up when ctx ends.
	ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
	l.store.numberOutbox(ctx)
	cancel()
	for _, n := range c.nodes {
		if wide(n) {
			t.Fatalf("%s numbers the outbox state-wide while n3 runs the previous release", n.id)
		}
	}
	// n3 is upgraded (restarted as this release): the switch goes through.
	old := c.nodes["n3"]
	if err := old.node.Shutdown(ctxTimeout(t, testWait)); err != nil {
		t.Fatal(err)
	}
	delete(c.nodes, "n3")
	cfg := old.cfg
	cfg.olderRelease = false
	c.start(cfg)
	l = c.leader()
	c.waitFor("every server to advertise this release's level", func() bool {
		below, err := l.node.serversBelowLogLevel(fsm.LogLevelOutboxIDs)
		return err == nil && len(below) == 0
	})
	ctx, cancel = context.WithTimeout(t.Context(), testWait)
	defer cancel()
	l.store.numberOutbox(ctx)
	c.waitFor("every node to number the outbox state-wide", func() bool {
		for _, n := range c.nodes {
			if !wide(n) {
				return false
			}
		}
		return true
	})
}

// TestBelowLogLevel: a server gossip does not know, or that advertises a
// lower level, is behind; the others are not.
func TestBelowLogLevel(t *testing.T) {
	g := &gossip{now: time.Now, members: map[string]*member{}}
	for id, level := range map[string]int{"n1": 1, "n2": 2, "old": 0} {
		g.members[id] = &member{ID: id, Status: StatusAlive, Since: time.Now(), Meta: nodeMeta{LogLevel: level}}
	}
	for _, c := range []struct {
		level int
		want  []string
	}{
		{0, []string{"ghost"}},
		{1, []string{"ghost", "old"}},
		{2, []string{"ghost", "n1", "old"}},
	} {
		if got := g.belowLogLevel([]string{"old", "n2", "ghost", "n1"}, c.level); !slices.Equal(got, c.want) {
			t.Errorf("level %d: %v, want %v", c.level, got, c.want)
		}
	}
}
