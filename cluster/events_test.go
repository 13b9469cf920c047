package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// recordingHandler keeps every record (debug included) for inspection.
type recordingHandler struct {
	mu      *sync.Mutex
	records *[]slog.Record
}

func newRecordingHandler() recordingHandler {
	return recordingHandler{mu: &sync.Mutex{}, records: &[]slog.Record{}}
}

func (h recordingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h recordingHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h recordingHandler) WithGroup(string) slog.Handler            { return h }
func (h recordingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	*h.records = append(*h.records, r.Clone())
	return nil
}

// lines returns the messages at level or above that contain any of parts.
func (h recordingHandler) lines(level slog.Level, parts ...string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, r := range *h.records {
		if r.Level >= level && slices.ContainsFunc(parts, func(p string) bool { return strings.Contains(r.Message, p) }) {
			out = append(out, fmt.Sprintf("%s %s", r.Level, r.Message))
		}
	}
	return out
}

// TestClusterDeadFollowerIsOneLogLine stops a follower for long enough
// that the leader fails dozens of heartbeats, and checks the leader logs
// one line when it goes down and one when it is back, hashicorp/raft's
// per-heartbeat errors staying at debug, and records both as events.
func TestClusterDeadFollowerIsOneLogLine(t *testing.T) {
	c := newTestCluster(t)
	logs := map[string]recordingHandler{}
	cfgs := c.configs(3, func(cfg *Config) {
		h := newRecordingHandler()
		logs[cfg.NodeID] = h
		cfg.Logger = slog.New(h)
		// Slower than the other tests' timing: one leader for the whole
		// test even on a loaded machine.
		cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = 300*time.Millisecond, 600*time.Millisecond, 150*time.Millisecond
	})
	for _, cfg := range cfgs {
		c.start(cfg)
	}
	leader := c.leader()
	victim := c.follower()
	crashStop(t, victim.node)
	victim.node.gossip.shutdown()
	log := logs[leader.id]
	heartbeatLines := []string{"failed to heartbeat", "failed to appendEntries", "failed to contact", "does not answer heartbeats", "answers heartbeats again"}
	c.waitFor("the leader to fail heartbeats many times", func() bool {
		return len(log.lines(slog.LevelDebug, "failed to heartbeat")) >= 20
	})
	// One line per term the leader led in (one, unless the machine was
	// so loaded that it lost and won leadership again).
	terms := map[uint64]bool{}
	for _, e := range leader.node.Events() {
		if e.Kind == EventLeader && e.Node == leader.id {
			terms[e.Term] = true
		}
	}
	down := log.lines(slog.LevelInfo, heartbeatLines...)
	if len(down) == 0 || len(down) > len(terms) || slices.ContainsFunc(down, func(l string) bool { return !strings.Contains(l, "node "+victim.id+" is down") }) {
		t.Fatalf("leader's log above debug about heartbeats: %q, want one 'node %s is down' line (per term led: %d)", down, victim.id, len(terms))
	}
	delete(c.nodes, victim.id)
	back := c.start(victim.cfg)
	c.waitFor("the leader to see it answer again (or lose leadership to its return)", func() bool {
		return len(log.lines(slog.LevelInfo, "is up: it answers heartbeats again")) > 0 || !leader.node.isReadyLeader()
	})
	register(t, back.store, "after-return")
	if len(log.lines(slog.LevelInfo, "is up: it answers heartbeats again")) == 0 {
		// On a loaded machine the returning node may call an election
		// before it hears from the leader; the node that stops leading
		// stops judging heartbeats (a new leader starts afresh).
		t.Logf("%s's return cost %s its leadership; only the down line was checked", victim.id, leader.id)
		return
	}
	time.Sleep(500 * time.Millisecond) // heartbeats keep succeeding: no more lines
	lines := log.lines(slog.LevelInfo, heartbeatLines...)
	if len(lines) != len(down)+1 || !strings.Contains(lines[len(lines)-1], "node "+victim.id+" is up") {
		t.Fatalf("leader's log above debug about heartbeats: %q, want the down line(s) and one up line", lines)
	}
	var kinds []EventKind
	for _, e := range leader.node.Events() {
		if e.Node == victim.id && (e.Kind == EventUnreachable || e.Kind == EventReachable) {
			kinds = append(kinds, e.Kind)
		}
	}
	if len(kinds) < 2 || kinds[0] != EventUnreachable || kinds[len(kinds)-1] != EventReachable {
		t.Errorf("leader's events about %s: %v", victim.id, kinds)
	}
	if !slices.ContainsFunc(leader.node.Events(), func(e Event) bool { return e.Kind == EventLeader && e.Node == leader.id }) {
		t.Errorf("leader's events lack its own election: %+v", leader.node.Events())
	}
}
