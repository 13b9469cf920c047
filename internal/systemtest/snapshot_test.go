package systemtest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mimihub/mimi-hub/mimi/client"
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

// TestKillDuringSnapshot kills a single node with SIGKILL while it writes
// a snapshot (its unfinished ".tmp" folder is on disk) and starts it
// again: the unfinished snapshot is gone, the node serves, and what was
// acknowledged before the kill is there (the stream of a member who read
// nothing holds every message sent).
func TestKillDuringSnapshot(t *testing.T) {
	w := newWorld(t, worldOptions{nodes: 1, flags: []string{
		"-snapshot-threshold", "8", "-snapshot-interval", "1s", "-room-log-bytes", strconv.Itoa(256 << 20), "-log-bytes", strconv.Itoa(512 << 20),
		"-client-bytes-per-second", "-1", // 512 KiB messages as fast as they go
	}})
	ctx := w.ctx()
	n := w.a.Nodes()[0]
	alice := newParty(t, w, w.a, n, "alice", "phone")
	bob := newParty(t, w, w.a, n, "bob", "laptop")
	room, err := alice.m.CreateRoom(ctx, "big", proto.DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	// Bob is added and reads nothing: his Welcome makes his client follow
	// the room, so his stream must hold every message Alice sends (the
	// hub does not echo Alice's own messages to her).
	if err := alice.m.AddUsers(ctx, room, []proto.UserRoles{{User: bob.m.User(), Roles: []proto.Role{proto.RoleRegularUser}}}); err != nil {
		t.Fatal(err)
	}
	snaps := filepath.Join(n.DataDir, "raft", "snapshots")
	unfinished := func() []string {
		entries, _ := os.ReadDir(snaps)
		var out []string
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".tmp") {
				out = append(out, e.Name())
			}
		}
		return out
	}
	// Messages of 512 KiB until a snapshot is caught being written: the
	// room's log makes each snapshot larger, and slower to write.
	payload := make([]byte, 512<<10)
	sent := 0
	caught := false
	for !caught && sent < 400 {
		if err := alice.m.Send(ctx, room, payload); err != nil {
			t.Fatalf("message %d: %v", sent, err)
		}
		sent++
		for range 50 {
			if len(unfinished()) > 0 {
				caught = true
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	if !caught {
		t.Fatalf("no snapshot was caught being written in %d messages", sent)
	}
	if err := n.Kill(); err != nil {
		t.Fatal(err)
	}
	left := unfinished()
	if len(left) == 0 {
		t.Fatal("the kill came after the snapshot finished")
	}
	t.Logf("killed %s during a snapshot after %d messages; left behind: %v", n.ID, sent, left)
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.a.WaitServing(ctx); err != nil {
		t.Fatal(err)
	}
	if left := unfinished(); len(left) != 0 {
		t.Fatalf("unfinished snapshots after the restart: %v", left)
	}
	// Every acknowledged message is in Bob's stream (he has read none),
	// and the room goes on.
	api := w.pinnedUser(w.a, n, bob.token)
	page, err := api.Stream(ctx, client.StreamOptions{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	messages := 0
	for _, it := range page.Items {
		if it.Kind == client.ItemMessage && it.Room == room {
			messages++
		}
	}
	if messages != sent || page.Gap {
		t.Fatalf("after the restart Bob's stream holds %d of the %d messages (gap %v)", messages, sent, page.Gap)
	}
	if err := alice.m.Send(ctx, room, []byte("after the restart")); err != nil {
		t.Fatal(err)
	}
}
