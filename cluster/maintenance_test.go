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
		var level int
		_ = s.Read(ctx, false, func(st *fsm.State) error {
			at, wide, level = st.LastAcceptedAt(), st.OutboxStateWide(), st.RulesLevel()
			_, bounds = st.Bounds()
			return nil
		})
		if at > 0 && wide && bounds && level == fsm.LogLevel {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("clock %d, outbox numbered state-wide %v, bounds set %v, log level %d", at, wide, bounds, level)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
}

// TestOutboxNumberingWaitsForEveryServer: during a rolling upgrade, the
// leader neither switches the outbox to state-wide ids nor raises the
// rules level while a server of the configuration runs a release that
// would refuse the commands (it advertises no log level), and its
// maintenance prunes meanwhile; once that server runs this release, it
// does both, on every node.
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
	level := func(n *clusterNode) int {
		var l int
		_ = n.fsm.Read(func(st *fsm.State) error { l = st.RulesLevel(); return nil })
		return l
	}
	// numberOutbox checks, finds n3 behind, and gives up when ctx ends.
	ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
	l.store.numberOutbox(ctx)
	cancel()
	ctx, cancel = context.WithTimeout(t.Context(), 1500*time.Millisecond)
	l.store.raiseLevel(ctx)
	cancel()
	for _, n := range c.nodes {
		if wide(n) {
			t.Fatalf("%s numbers the outbox state-wide while n3 runs the previous release", n.id)
		}
		if l := level(n); l != 0 {
			t.Fatalf("%s applies the rules of log level %d while n3 runs the previous release", n.id, l)
		}
	}
	// Meanwhile the leader's maintenance still prunes: the wait runs
	// beside the prunes, not before them. (The bounds are set first, so
	// that only a prune can move the clock.)
	ctx, cancel = context.WithTimeout(t.Context(), testWait)
	l.store.setBounds(ctx)
	cancel()
	var before uint64
	_ = l.fsm.Read(func(st *fsm.State) error { before = st.LastAcceptedAt(); return nil })
	ctx, cancel = context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.store.RunMaintenance(ctx, 10*time.Millisecond)
	}()
	c.waitFor("a prune while the switch waits for n3", func() bool {
		var at uint64
		_ = l.fsm.Read(func(st *fsm.State) error { at = st.LastAcceptedAt(); return nil })
		return at > before && !wide(l)
	})
	cancel()
	<-done
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
	l.store.raiseLevel(ctx)
	c.waitFor("every node to number the outbox state-wide and apply this release's rules", func() bool {
		for _, n := range c.nodes {
			if !wide(n) || level(n) != fsm.LogLevel {
				return false
			}
		}
		return true
	})
}

// TestBoundsChangeWhenEveryServerAgrees: the first leader's configured
// state bounds become the replicated ones; a node configured otherwise
// that wins an election later does not impose its own; once every server
// runs the new values (a rolling restart), the leader sets them.
func TestBoundsChangeWhenEveryServerAgrees(t *testing.T) {
	base := fsm.Config{Domain: "a.example"}
	odd := base
	odd.InboxLimit = 17
	c := newTestCluster(t)
	cfgs := c.configs(3, nil)
	states := map[string]fsm.Config{"n1": base, "n2": base, "n3": odd}
	for _, cfg := range cfgs {
		cfg.StateDigest = states[cfg.NodeID].Digest()
		c.startState(cfg, states[cfg.NodeID])
	}
	if c.leader().id == "n3" {
		transferTo(t, c, "n1")
	}
	everyNode := func(want fsm.Bounds, why string) {
		t.Helper()
		c.waitFor(why, func() bool {
			for _, n := range c.nodes {
				var b fsm.Bounds
				var set bool
				_ = n.fsm.Read(func(st *fsm.State) error { b, set = st.Bounds(); return nil })
				if !set || b != want {
					return false
				}
			}
			return true
		})
	}
	ctx, cancel := context.WithTimeout(t.Context(), testWait)
	c.leader().store.setBounds(ctx) // none replicated yet: the leader's own
	cancel()
	baseBounds := c.nodes["n1"].fsm.Config().Bounds
	everyNode(baseBounds, "every node to apply the first leader's bounds")

	// n3 leads: its setBounds finds n1 and n2 configured otherwise, keeps
	// the replicated bounds, and gives up when ctx ends.
	transferTo(t, c, "n3")
	c.waitFor("gossip to show n1 and n2 configured otherwise than n3", func() bool {
		others, err := c.nodes["n3"].node.serversConfiguredOtherwise()
		return err == nil && slices.Equal(others, []string{"n1", "n2"})
	})
	ctx, cancel = context.WithTimeout(t.Context(), 1500*time.Millisecond)
	c.nodes["n3"].store.setBounds(ctx)
	cancel()
	for _, n := range c.nodes {
		var b fsm.Bounds
		_ = n.fsm.Read(func(st *fsm.State) error { b, _ = st.Bounds(); return nil })
		if b != baseBounds {
			t.Fatalf("%s applies %+v after the odd node led, want the replicated %+v", n.id, b, baseBounds)
		}
	}

	// The rolling restart: n1 and n2 come back with n3's values.
	for _, id := range []string{"n1", "n2"} {
		old := c.nodes[id]
		if err := old.node.Shutdown(ctxTimeout(t, testWait)); err != nil {
			t.Fatal(err)
		}
		delete(c.nodes, id)
		cfg := old.cfg
		cfg.StateDigest = odd.Digest()
		c.startState(cfg, odd)
	}
	l := c.leader()
	c.waitFor("gossip to show every server configured alike", func() bool {
		others, err := l.node.serversConfiguredOtherwise()
		return err == nil && len(others) == 0
	})
	ctx, cancel = context.WithTimeout(t.Context(), testWait)
	defer cancel()
	l.store.setBounds(ctx)
	everyNode(c.nodes["n3"].fsm.Config().Bounds, "every node to apply the values every server now runs")
}

// transferTo moves leadership to the node id and waits until it leads.
func transferTo(t *testing.T, c *testCluster, id string) {
	t.Helper()
	if err := c.leader().node.TransferLeadership(ctxTimeout(t, testWait), id); err != nil {
		t.Fatalf("transfer leadership to %s: %v", id, err)
	}
	c.waitFor(id+" to lead", func() bool { return c.nodes[id].node.isReadyLeader() })
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
