package systemtest

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/mimihub/mimi-hub/mimi/proto"
)

// Snapshot policy of TestLaggingNodeSnapshot: a snapshot every 64 entries,
// 32 kept behind it, checked every second.
const (
	snapThreshold = 64
	snapTrailing  = 32
)

// TestLaggingNodeSnapshot freezes a follower of a 3-node hub (SIGSTOP),
// writes until the leader has compacted its log past everything the
// follower has, and thaws it (SIGCONT).
//
// It proves that a follower too far behind for log replay catches up by
// InstallSnapshot (its log says so and its own snapshot index jumps to the
// leader's), that the restored state is complete (clients registered while
// it was frozen authenticate on it), and that it then serves linearizable
// reads: a room read on the follower right after each commit acknowledged
// by the leader shows that commit.
func TestLaggingNodeSnapshot(t *testing.T) {
	w := newWorld(t, worldOptions{nodes: 3, flags: []string{
		"-snapshot-threshold", strconv.Itoa(snapThreshold), "-trailing-logs", strconv.Itoa(snapTrailing), "-snapshot-interval", "1s",
	}})
	ctx := w.ctx()
	leader, err := w.a.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var lagger *Node
	for _, n := range w.a.Nodes() {
		if n != leader {
			lagger = n
		}
	}
	alice := newParty(t, w, w.a, leader, "alice", "phone")
	room, err := alice.m.CreateRoom(ctx, "room1", proto.DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}

	st, err := lagger.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	installs := lagger.LogCount("Installed remote snapshot")
	if err := lagger.Pause(); err != nil {
		t.Fatal(err)
	}
	t.Logf("froze %s at index %d", lagger.ID, st.Raft.LastIndex)
	if leader, err = w.a.WaitLeader(ctx); err != nil { // the others go on
		t.Fatal(err)
	}

	// Write until the leader's log no longer holds the entry after the
	// lagger's last one: its snapshot index, less the trailing entries it
	// keeps, is past that.
	reg := newRegistrar(t, w)
	need := st.Raft.LastIndex + snapTrailing + 2
	var leaderSnap uint64
	for round := 0; ; round++ {
		if round > 40 {
			t.Fatalf("the leader did not compact its log past %d: %s", need, describe(ctx, w.a))
		}
		registerParallel(t, ctx, reg, 4, 25)
		if leader, err = w.a.WaitLeader(ctx); err != nil {
			t.Fatal(err)
		}
		ls, err := leader.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ls.Raft.LastSnapshotIndex >= need {
			leaderSnap = ls.Raft.LastSnapshotIndex
			break
		}
		if ls.Raft.CommitIndex > need+2*snapThreshold {
			time.Sleep(500 * time.Millisecond) // the next snapshot check is at most 2s away
		}
	}
	reg.register(ctx, 3) // kept: checked on the lagger
	t.Logf("the leader snapshotted at %d (the lagger has up to %d): %s", leaderSnap, st.Raft.LastIndex, describe(ctx, w.a))

	if err := lagger.Resume(); err != nil {
		t.Fatal(err)
	}
	if leader, err = w.a.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	ls, err := leader.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	caught, err := lagger.WaitCaughtUp(ctx, ls.Raft.CommitIndex)
	if err != nil {
		t.Fatal(err)
	}
	if lagger.LogCount("Installed remote snapshot") == installs {
		t.Errorf("%s caught up without installing the leader's snapshot", lagger.ID)
	}
	if caught.Raft.LastSnapshotIndex < leaderSnap {
		t.Errorf("%s's snapshot index is %d, below the leader's snapshot %d", lagger.ID, caught.Raft.LastSnapshotIndex, leaderSnap)
	}
	t.Logf("%s caught up: %s", lagger.ID, describe(ctx, w.a))

	// The restored state holds what was written while it was frozen.
	reg.checkOn(ctx, lagger)
	// Reads on the lagger are linearizable: each commit alice's leader
	// acknowledges is in the next read on the lagger.
	reader := w.pinnedUser(w.a, lagger, alice.token)
	for i := range 5 {
		if err := alice.m.CommitPending(ctx, room); err != nil {
			t.Fatalf("commit %d: %v", i, err)
		}
		epoch, _ := alice.m.Epoch(room)
		info, err := reader.Room(ctx, room)
		if err != nil {
			t.Fatalf("reading the room on %s: %v", lagger.ID, err)
		}
		if info.Epoch != epoch {
			t.Fatalf("%s reports epoch %d right after the leader acknowledged epoch %d", lagger.ID, info.Epoch, epoch)
		}
	}
}

// registerParallel registers n clients with k workers.
func registerParallel(t *testing.T, ctx context.Context, r *registrar, k, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, k)
	for i := range k {
		wg.Go(func() {
			for range n / k {
				if err := r.registerOne(ctx); err != nil {
					errs[i] = err
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}
