package room

import (
	"bytes"
	"slices"
	"testing"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// seedWorld plays the seed's section 6 up to "Bob adds Cathy and Doug":
// Alice (a.example, the hub) creates the room, adds Bob (b.example) with two
// clients, makes him admin, and Bob adds Cathy (c.example, admin) with two
// clients and Doug (d.example) with one.
type seedWorld struct {
	*world
	alice1, bob1, bob2, cathy1, cathy2, doug1 *client
}

func newSeedWorld(t *testing.T) *seedWorld {
	w := &seedWorld{world: newWorld(t)}
	w.alice1 = w.newClient("a.example", "alice", "phone")
	w.bob1 = w.newClient("b.example", "bob", "laptop")
	w.bob2 = w.newClient("b.example", "bob", "phone")
	w.cathy1 = w.newClient("c.example", "cathy", "laptop")
	w.cathy2 = w.newClient("c.example", "cathy", "phone")
	w.doug1 = w.newClient("d.example", "doug", "phone")

	// 6.1 Alice creates a room: members only, several clients per user,
	// owners and admins add, remove and promote.
	w.create(w.alice1, proto.DefaultPolicy())

	// 6.2 Alice adds Bob: she claimed his KeyPackages through the hub (the
	// routes), and commits the patch and the Adds together.
	w.apply(&RouteKeyPackages{Routes: []Route{{Ref: ref(t, w.bob1), Domain: "b.example"}, {Ref: ref(t, w.bob2), Domain: "b.example"}}})
	add := append([]*mls.Proposal{plp([]proto.UserRoles{{User: w.bob1.user, Roles: roles(proto.RoleRegularUser)}}, nil)}, adds(w.bob1, w.bob2)...)
	out := w.must(w.commit(w.alice1, mls.CommitOptions{Proposals: add}, w.bob1, w.bob2), "Alice adds Bob")
	if len(out.Effects) != 2 || out.Effects[1].Fanout.Message.WireFormat != mls.WireWelcome {
		t.Fatalf("adding Bob: %d effects, want the commit and a Welcome", len(out.Effects))
	}
	welcome := out.Effects[1].To
	if len(welcome) != 1 || welcome[0].Domain != "b.example" || len(welcome[0].WelcomeRefs) != 2 {
		t.Fatalf("the Welcome goes to %+v, want b.example with both of Bob's refs", welcome)
	}
	if len(w.room.routes) != 0 {
		t.Fatal("used KeyPackage routes are kept")
	}

	// 6.3 Alice and Bob exchange messages.
	w.must(w.say(w.alice1, "hi Bob"), "Alice says hi")
	w.must(w.say(w.bob2, "hi Alice"), "Bob says hi")

	// 6.4 Alice makes Bob an administrator.
	promote := plp(nil, []proto.UserRoles{{User: w.bob1.user, Roles: roles(proto.RoleRegularUser, proto.RoleAdmin)}})
	w.must(w.commit(w.alice1, mls.CommitOptions{Proposals: []*mls.Proposal{promote}}), "Alice promotes Bob")

	// 6.5 Bob adds Cathy (admin) and Doug.
	patch := plp([]proto.UserRoles{
		{User: w.cathy1.user, Roles: roles(proto.RoleRegularUser, proto.RoleAdmin)},
		{User: w.doug1.user, Roles: roles(proto.RoleRegularUser)},
	}, nil)
	out = w.must(w.commit(w.bob1, mls.CommitOptions{Proposals: append([]*mls.Proposal{patch}, adds(w.cathy1, w.cathy2, w.doug1)...)}, w.cathy1, w.cathy2, w.doug1), "Bob adds Cathy and Doug")
	if got := w.room.Providers(); !slices.Equal(got, []string{"a.example", "b.example", "c.example", "d.example"}) {
		t.Fatalf("providers %v", got)
	}
	if d := out.Effects[1].To; len(d) != 2 || d[0].Domain != "c.example" || d[1].Domain != "d.example" {
		t.Fatalf("the Welcome goes to %+v", d)
	}
	return w
}

func ref(t testing.TB, c *client) []byte {
	t.Helper()
	r, err := c.kp.KeyPackage.Ref()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestSeedScenario plays all of the seed's section 6 with real MLS clients.
func TestSeedScenario(t *testing.T) {
	w := newSeedWorld(t)
	w.must(w.say(w.doug1, "hello from Doug"), "Doug speaks")

	// 6.6 Bob leaves: Bob2 proposes removing himself from the list, a
	// SelfRemove, and the Remove of his other client. The hub queues them.
	leave := []*mls.Proposal{plp(nil, nil, w.bob1.user), mls.SelfRemoveProposal(), mls.RemoveProposal(w.leafOf(w.bob1))}
	w.must(w.propose(w.bob2, leave...), "Bob proposes to leave")
	if len(w.room.queued) != 3 {
		t.Fatalf("%d proposals queued, want 3", len(w.room.queued))
	}
	// A commit that ignores the queue is refused...
	before := w.state()
	w.refused(before, w.commit(w.alice1, mls.CommitOptions{ForcePath: true}), proto.UpdateNotAllowed, "a commit omitting queued proposals")
	// ... and Cathy commits Bob's proposals although she may not remove
	// Alice-level users herself ("Charlie1 commits Alice's pending
	// proposals", seed section 5).
	w.must(w.commit(w.cathy1, mls.CommitOptions{IncludePending: true}), "Cathy commits Bob's departure")
	if !w.bob1.group.Removed() || !w.bob2.group.Removed() {
		t.Fatal("Bob's clients did not learn they were removed")
	}
	if w.participant(w.bob1.user) != "absent" || len(w.room.queued) != 0 {
		t.Fatalf("after Bob left: %s, %d queued", w.participant(w.bob1.user), len(w.room.queued))
	}
	if slices.Contains(w.room.Providers(), "b.example") {
		t.Fatal("b.example still receives fanout")
	}

	// 6.7 Cathy removes Doug.
	w.must(w.commit(w.cathy1, mls.CommitOptions{Proposals: []*mls.Proposal{plp(nil, nil, w.doug1.user), mls.RemoveProposal(w.leafOf(w.doug1))}}), "Cathy removes Doug")
	if w.participant(w.doug1.user) != "absent" || !w.doug1.group.Removed() {
		t.Fatal("Doug is still around")
	}

	// 6.8 Cathy gets a new client, which joins by external commit from the
	// GroupInfo the hub hands to c.example.
	cathy3 := w.newClient("c.example", "cathy", "tablet")
	w.externalJoin(cathy3)
	w.must(w.say(cathy3, "Cathy's tablet is in"), "Cathy's new client speaks")
	w.must(w.say(w.alice1, "welcome, tablet"), "Alice answers")
	if got := w.room.Clients(w.cathy1.user); len(got) != 3 {
		t.Fatalf("Cathy has %d clients, want 3", len(got))
	}
}

// externalJoin claims the GroupInfo for c and joins by external commit.
func (w *world) externalJoin(c *client) {
	w.t.Helper()
	out := w.apply(&ClaimGroupInfo{From: c.domain, Body: &proto.GroupInfoRequest{SignatureKey: c.signer.PublicKey(), Credential: mls.BasicCredential([]byte(c.uri))}})
	if out.GroupInfo == nil || out.GroupInfo.Status != proto.GroupInfoSuccess {
		w.t.Fatalf("%s claims the GroupInfo: %+v", c, out.GroupInfo)
	}
	resp := transmit(w.t, out.GroupInfo)
	g, b, err := mls.JoinExternal(resp.GroupInfo.GroupInfo, resp.RatchetTree.Bytes(), c.signer, mls.ExternalJoinOptions{
		GroupOptions: w.groupOptions(), Credential: mls.BasicCredential([]byte(c.uri)), Capabilities: roomCaps,
		PendingSelfRemoves: resp.PendingProposals, Commit: mls.CommitOptions{GroupInfo: mls.GroupInfoOptions{ExternalPub: true}},
	})
	if err != nil {
		w.t.Fatalf("%s external join: %v", c, err)
	}
	c.group = g
	body := w.bundle(c, b)
	res := w.apply(&UpdateRoom{From: c.domain, Body: body})
	if res.Response.Code != proto.UpdateSuccess {
		w.t.Fatalf("%s external commit: %s %s", c, res.Response.Code, res.Response.Description)
	}
	g.MergePendingCommit()
	w.deliver(res, c)
}

func TestDeterminism(t *testing.T) {
	w := newSeedWorld(t)
	w.must(w.propose(w.bob2, plp(nil, nil, w.bob1.user), mls.SelfRemoveProposal(), mls.RemoveProposal(w.leafOf(w.bob1))), "Bob leaves")
	w.must(w.commit(w.cathy1, mls.CommitOptions{IncludePending: true}), "Cathy commits")
	w.externalJoin(w.newClient("d.example", "doug", "laptop"))
	final := w.state()

	// Replaying the log into fresh rooms reproduces the state byte for
	// byte, and every outcome.
	for run := range 2 {
		var r *Room
		for i, e := range w.log {
			if e.create != nil {
				var err error
				if r, err = Create(w.cfg(), *e.create, e.at); err != nil {
					t.Fatal(err)
				}
				continue
			}
			out := r.Apply(e.req, e.at)
			if out.Err != nil || (out.GroupInfo == nil && out.Response.Code != proto.UpdateSuccess) {
				t.Fatalf("run %d, request %d: %v %s", run, i, out.Err, out.Response.Description)
			}
		}
		if !bytes.Equal(wire.MustMarshal(r), final) {
			t.Fatalf("run %d: the replayed room differs", run)
		}
	}

	restored, err := Restore(w.cfg(), final)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(wire.MustMarshal(restored), final) || !slices.Equal(restored.Providers(), w.room.Providers()) {
		t.Fatal("restore does not reproduce the room")
	}
	if _, err := Restore(w.cfg(), final[:len(final)-3]); err == nil {
		t.Fatal("a truncated state restores")
	}
}
