package room

import (
	"bytes"
	"errors"
	"testing"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// TestWelcomeTreeByReference: a Welcome without the tree; its recipient
// asks for the tree of the Welcome's epoch three commits later, joins, and
// catches up on the commits since. Only the recipient, through its own
// provider, gets it; the record survives a snapshot and expires.
func TestWelcomeTreeByReference(t *testing.T) {
	w := newSeedWorld(t)
	erin := w.newClient("e.example", "erin", "phone")
	add := append([]*mls.Proposal{plp([]proto.UserRoles{{User: erin.user, Roles: roles(proto.RoleRegularUser)}}, nil)}, adds(erin)...)
	opts := mls.CommitOptions{Proposals: add, GroupInfo: mls.GroupInfoOptions{ExternalPub: true}}
	b, err := w.alice1.group.Commit(opts)
	if err != nil {
		t.Fatal(err)
	}
	body := transmit(t, &proto.UpdateRoomRequest{Message: b.Commit, Welcome: b.Welcome, GroupInfo: b.GroupInfo,
		RatchetTree: proto.RatchetTreeOption{Representation: proto.TreeByReference}})
	out := w.must(w.apply(&UpdateRoom{From: "a.example", Body: body}), "Alice adds Erin")
	w.alice1.group.MergePendingCommit()
	w.deliver(out, w.alice1)
	welcomeEpoch := w.room.Epoch()
	var later []*mls.Message
	for range 3 {
		out := w.must(w.commit(w.bob1, mls.CommitOptions{ForcePath: true}), "Bob updates")
		later = append(later, out.Effects[0].Fanout.Message)
	}

	kpRef := ref(t, erin)
	for _, bad := range []struct {
		from   string
		client proto.URI
		ref    []byte
		want   error
	}{
		{"b.example", w.bob1.uri, kpRef, ErrNotAllowed}, // another client
		{"b.example", erin.uri, kpRef, ErrNotAllowed},   // another provider, for Erin
		{"e.example", erin.uri, []byte("no such ref"), ErrUnknownWelcome},
	} {
		if _, err := w.room.WelcomeTree(bad.from, bad.client, bad.ref); !errors.Is(err, bad.want) {
			t.Fatalf("%s asking as %s: %v, want %v", bad.from, bad.client, err, bad.want)
		}
	}

	view, err := w.room.WelcomeTree("e.example", erin.uri, kpRef)
	if err != nil {
		t.Fatal(err)
	}
	g, err := mls.JoinFromWelcome(body.Welcome.Welcome, erin.kp, view.Bytes(), w.groupOptions())
	if err != nil {
		t.Fatalf("Erin joins with the fetched tree: %v", err)
	}
	if g.Epoch() != welcomeEpoch {
		t.Fatalf("Erin joined epoch %d, want %d", g.Epoch(), welcomeEpoch)
	}
	for _, m := range later {
		if _, err := g.Process(transmit(t, m)); err != nil {
			t.Fatalf("Erin catching up: %v", err)
		}
	}
	hc := w.room.Group().GroupContext()
	if gc := g.GroupContext(); !gc.Equal(&hc) {
		t.Fatal("Erin and the hub disagree after catching up")
	}

	// The record and the past trees are state: a restored room answers
	// the same and encodes the same.
	state := wire.MustMarshal(w.room)
	restored, err := Restore(w.cfg(), state)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := restored.WelcomeTree("e.example", erin.uri, kpRef); err != nil || !bytes.Equal(again.Bytes(), view.Bytes()) {
		t.Fatalf("restored room: %v", err)
	}
	if !bytes.Equal(wire.MustMarshal(restored), state) {
		t.Fatal("the restored room encodes differently")
	}

	// A day later the record is gone, and so are the past trees.
	w.now += WelcomeTreeTTL
	w.must(w.commit(w.bob1, mls.CommitOptions{ForcePath: true}), "Bob updates a day later")
	if _, err := w.room.WelcomeTree("e.example", erin.uri, kpRef); !errors.Is(err, ErrUnknownWelcome) {
		t.Fatalf("a day later: %v", err)
	}
	if n := w.room.Group().TreeHistoryBytes(); n != 0 {
		t.Fatalf("%d bytes of past trees kept with no Welcome waiting", n)
	}
}

// TestWelcomeTreeGone: when the byte bound drops the tree of a Welcome's
// epoch, its recipient is told the tree is gone (and joins by external
// commit), not that the Welcome is unknown.
func TestWelcomeTreeGone(t *testing.T) {
	w := newSeedWorld(t)
	w.room.cfg.MaxTreeHistory = 1 // keep no past tree at all
	erin := w.newClient("e.example", "erin", "phone")
	add := append([]*mls.Proposal{plp([]proto.UserRoles{{User: erin.user, Roles: roles(proto.RoleRegularUser)}}, nil)}, adds(erin)...)
	w.must(w.commit(w.alice1, mls.CommitOptions{Proposals: add}, erin), "Alice adds Erin")
	if _, err := w.room.WelcomeTree("e.example", erin.uri, ref(t, erin)); err != nil {
		t.Fatalf("the current epoch's tree: %v", err)
	}
	w.must(w.commit(w.bob1, mls.CommitOptions{ForcePath: true}), "Bob updates")
	if _, err := w.room.WelcomeTree("e.example", erin.uri, ref(t, erin)); !errors.Is(err, ErrTreeGone) {
		t.Fatalf("a dropped tree: %v, want ErrTreeGone", err)
	}
	if n := w.room.Group().TreeHistoryBytes(); n > 1 {
		t.Fatalf("%d bytes kept over a bound of 1", n)
	}
}
