package systemtest

import (
	"context"
	"testing"
	"time"
)

// TestLeaderKill3Nodes kills the leader of a 3-node hub with SIGKILL in
// the middle of the seed's scenario (see leaderKill).
func TestLeaderKill3Nodes(t *testing.T) {
	leaderKill(t, 3)
}

// TestLeaderKill5Nodes is TestLeaderKill3Nodes on five nodes.
func TestLeaderKill5Nodes(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the 3-node variant covers the same ground")
	}
	leaderKill(t, 5)
}

// leaderKill plays the seed's scenario on a hub of n nodes with a follower
// provider: alice (a.example, talking to the leader) creates a room and
// adds carol (a.example, talking to a follower) and bob (b.example); the
// three keep sending messages, alice and bob also commit; the leader is
// killed with SIGKILL while they do; then alice adds dave (b.example) and
// everyone goes on. The killed node then restarts from its data folder.
//
// It proves that no acknowledged message or commit is lost, no epoch is
// accepted twice, every client (b.example's through the fanout of a new
// leader) receives every message once and in hub order, and the killed
// node catches up and agrees.
func leaderKill(t *testing.T, n int) {
	w := newWorld(t, worldOptions{nodes: n, follower: true})
	ctx := w.ctx()
	leader, err := w.a.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var follower *Node
	for _, o := range w.a.Nodes() {
		if o != leader {
			follower = o
			break
		}
	}
	alice := newParty(t, w, w.a, leader, "alice", "phone")
	carol := newParty(t, w, w.a, follower, "carol", "laptop")
	bob := newParty(t, w, w.b, nil, "bob", "laptop")
	dave := newParty(t, w, w.b, nil, "dave", "phone")
	alice.committer, bob.committer = true, true

	room := setupRoom(t, w, alice, bob, carol)
	hub := watchHub(w, room, alice.token)
	l := newLoad(t, w, room, alice, bob, carol, dave)
	loadCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	l.start(loadCtx)

	// Kill the leader once every sender has had some writes acknowledged.
	waitFor(t, "writes before the kill", func() bool {
		return l.ackedBy(alice) >= 3 && l.ackedBy(bob) >= 3 && l.ackedBy(carol) >= 3
	}, l.progress)
	before := l.ops.Load()
	t.Logf("killing leader %s after %d acknowledged writes: %s", leader.ID, before, describe(ctx, w.a))
	killedAt := time.Now()
	if err := leader.Kill(); err != nil {
		t.Fatal(err)
	}
	next, err := w.a.WaitLeader(ctx, leader)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s leads %v after the kill", next.ID, time.Since(killedAt).Round(time.Millisecond))
	waitFor(t, "a write acknowledged after the kill", func() bool { return l.ops.Load() > before }, l.progress)
	t.Logf("first write acknowledged after the kill within %v", time.Since(killedAt).Round(time.Millisecond))

	// The scenario goes on: alice adds dave, a b.example user.
	alice.extra <- l.addUsers(dave)
	waitFor(t, "dave to join and everyone to write after the kill", func() bool {
		return dave.isJoined() && l.ackedBy(dave) >= 3 && l.ackedBy(alice) >= 8 && l.ackedBy(bob) >= 8 && l.ackedBy(carol) >= 8
	}, l.progress)
	l.finish()
	cancel()

	// The killed node restarts from its data folder and catches up.
	if err := leader.Start(); err != nil {
		t.Fatal(err)
	}
	now, err := w.a.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st, err := now.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leader.WaitCaughtUp(ctx, st.Raft.CommitIndex); err != nil {
		t.Fatal(err)
	}
	if _, err := w.a.WaitServing(ctx); err != nil {
		t.Fatal(err)
	}

	ctx = w.ctx()
	l.finalRound(ctx)
	final := hub.finish(t) // every node, the restarted one included
	l.check(final)
	l.checkStreams(ctx)
	t.Logf("end: %s", describe(ctx, w.a))
}
