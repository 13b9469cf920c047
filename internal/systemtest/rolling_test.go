package systemtest

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestRollingRestart stops every node of a 3-node hub in turn with SIGTERM
// and starts it again from its data folder, while alice and carol
// (a.example) and bob (b.example) keep sending and committing.
//
// It proves that the service goes on through every restart (writes are
// acknowledged while each node is down and after it is back), that no
// acknowledged write is lost and no epoch accepted twice (the same checks
// as leaderKill), and that a graceful stop is graceful: the process exits
// with status 0, a leader hands leadership over before it goes, and every
// node snapshots on the way out.
func TestRollingRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: restarts every node under load")
	}
	w := newWorld(t, worldOptions{nodes: 3, follower: true})
	ctx := w.ctx()
	nodes := w.a.Nodes()
	alice := newParty(t, w, w.a, nodes[0], "alice", "phone")
	carol := newParty(t, w, w.a, nodes[1], "carol", "laptop")
	bob := newParty(t, w, w.b, nil, "bob", "laptop")
	alice.committer, bob.committer = true, true
	room := setupRoom(t, w, alice, bob, carol)
	hub := watchHub(w, room, alice.token)
	l := newLoad(t, w, room, alice, bob, carol)
	loadCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	l.start(loadCtx)
	waitFor(t, "writes before the first restart", func() bool { return l.ops.Load() >= 6 }, l.progress)

	for _, n := range nodes {
		if _, err := w.a.WaitLeader(ctx); err != nil {
			t.Fatal(err)
		}
		handoffs := n.LogCount("handed leadership over before shutdown")
		snapshots := n.LogCount("snapshot on shutdown")
		before := l.ops.Load()
		stopAt := time.Now()
		stopCtx, stopCancel := context.WithTimeout(ctx, 60*time.Second)
		err := n.Terminate(stopCtx)
		stopCancel()
		if err != nil {
			t.Fatalf("SIGTERM: %v", err)
		}
		stopped := time.Since(stopAt)
		wasLeader := ledWhenStopped(n)
		if wasLeader && n.LogCount("handed leadership over before shutdown") == handoffs {
			t.Errorf("%s led, but did not hand leadership over before it stopped", n.ID)
		}
		if n.LogCount("snapshot on shutdown") == snapshots {
			t.Errorf("%s did not snapshot on its graceful stop", n.ID)
		}
		waitFor(t, "writes while "+n.ID+" is down", func() bool { return l.ops.Load() >= before+3 }, l.progress)
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
		next, err := w.a.WaitServing(ctx)
		if err != nil {
			t.Fatal(err)
		}
		st, err := next.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := n.WaitCaughtUp(ctx, st.Raft.CommitIndex); err != nil {
			t.Fatal(err)
		}
		back := l.ops.Load()
		waitFor(t, "writes after "+n.ID+" is back", func() bool { return l.ops.Load() >= back+3 }, l.progress)
		t.Logf("restarted %s (leader: %v; SIGTERM to exit %v; back and caught up %v later): %s",
			n.ID, wasLeader, stopped.Round(time.Millisecond), time.Since(stopAt).Round(time.Millisecond), describe(ctx, w.a))
	}
	l.finish()
	cancel()

	ctx = w.ctx()
	l.finalRound(ctx)
	final := hub.finish(t)
	l.check(final)
	l.checkStreams(ctx)
}

// ledWhenStopped reports whether the node's last run led when it began
// stopping: its last leadership line before "stopping" is "leading".
func ledWhenStopped(n *Node) bool {
	log, err := n.Log()
	if err != nil {
		return false
	}
	if i := strings.LastIndex(log, "=== systemtest: start"); i >= 0 {
		log = log[i:]
	}
	if i := strings.Index(log, "msg=stopping"); i >= 0 {
		log = log[:i]
	}
	return strings.LastIndex(log, "msg=leading") > strings.LastIndex(log, `msg="leadership lost"`)
}
