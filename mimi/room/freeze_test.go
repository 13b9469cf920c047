package room

import (
	"bytes"
	"testing"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// TestFrozenKeepsTheEncoding: a frozen copy encodes exactly what the room
// encoded when it was taken, however the room changes afterwards (commits
// that add, remove and update members, pending proposals, routes,
// messages, participant list changes, revocations, Welcome records), and
// a fresh copy encodes the room as it is now. A field Room.EncodeTLS
// writes but Frozen does not copy, or copies by a reference the room later
// writes through, fails here.
func TestFrozenKeepsTheEncoding(t *testing.T) {
	w := newSeedWorld(t)
	type frozen struct {
		copy *Room
		want []byte
	}
	var taken []frozen
	freeze := func() {
		f := w.room.Frozen()
		taken = append(taken, frozen{f, w.state()})
		if got := wire.MustMarshal(f); !bytes.Equal(got, w.state()) {
			t.Fatal("a fresh frozen copy encodes differently from the room")
		}
	}
	freeze()
	w.must(w.commit(w.alice1, mls.CommitOptions{ForcePath: true}), "Alice updates")
	freeze()
	w.must(w.say(w.bob1, "hello"), "Bob says hello")
	freeze()
	w.must(w.propose(w.bob1, mls.RemoveProposal(w.leafOf(w.bob2))), "Bob proposes to remove his phone")
	freeze()
	w.apply(&RouteKeyPackages{Routes: []Route{{Ref: []byte("ref-1"), Domain: "c.example"}}})
	freeze()
	out := w.apply(&RemoveClients{From: "d.example", Clients: []proto.URI{w.doug1.uri}})
	if out.Err != nil {
		t.Fatal(out.Err)
	}
	w.deliver(out, nil)
	freeze()
	erin := w.newClient("c.example", "erin", "phone")
	patch := plp([]proto.UserRoles{{User: erin.user, Roles: roles(proto.RoleRegularUser)}}, []proto.UserRoles{{User: w.bob1.user, Roles: roles(proto.RoleRegularUser, proto.RoleAdmin)}})
	w.must(w.commit(w.alice1, mls.CommitOptions{Proposals: append([]*mls.Proposal{patch}, adds(erin)...), IncludePending: true}, erin), "Alice adds Erin, promotes Bob, removes his phone and Doug")
	freeze()
	w.must(w.commit(w.alice1, mls.CommitOptions{Proposals: []*mls.Proposal{plp(nil, nil, erin.user), mls.RemoveProposal(w.leafOf(erin))}}), "Alice removes Erin")
	for i, f := range taken {
		if got := wire.MustMarshal(f.copy); !bytes.Equal(got, f.want) {
			t.Fatalf("frozen copy %d changed with the room", i)
		}
		if _, err := Restore(Config{Hub: hub}, f.want); err != nil {
			t.Fatalf("frozen copy %d does not restore: %v", i, err)
		}
	}
}
