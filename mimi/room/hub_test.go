package room

import (
	"errors"
	"slices"
	"testing"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// hubProposalsOf returns the effects of out that are the hub's own
// proposals.
func hubProposalsOf(out Outcome) []Effect {
	var hp []Effect
	for _, e := range out.Effects {
		if pm := e.Fanout.Message.Public; pm != nil && pm.Content.Sender.Type == mls.SenderExternal {
			hp = append(hp, e)
		}
	}
	return hp
}

func TestHubRemovesLingeringClients(t *testing.T) {
	for _, ban := range []bool{false, true} {
		w := newSeedWorld(t)
		change := plp(nil, nil, w.doug1.user)
		if ban {
			change = plp(nil, []proto.UserRoles{{User: w.doug1.user, Roles: roles(proto.RoleBanned)}})
		}
		out := w.must(w.commit(w.alice1, mls.CommitOptions{Proposals: []*mls.Proposal{change}}), "Alice takes Doug out without his client")
		hp := hubProposalsOf(out)
		if len(hp) != 1 || hp[0].Fanout.Message.Public.Content.Proposal.Removed != w.leafOf(w.doug1) {
			t.Fatalf("ban=%v: the hub proposed %d proposals, want the Remove of Doug1", ban, len(hp))
		}
		if addressed(hp[0], w.doug1) {
			t.Fatal("the lingering client receives the hub's proposal")
		}
		if len(w.room.queued) != 1 {
			t.Fatalf("%d queued, want the hub's Remove", len(w.room.queued))
		}
		// A commit that leaves the hub's Remove out is refused; Cathy's
		// honest commit covers it.
		before := w.state()
		w.refused(before, w.commit(w.cathy1, mls.CommitOptions{ForcePath: true}), proto.UpdateNotAllowed, "a commit without the hub's Remove")
		w.must(w.commit(w.cathy1, mls.CommitOptions{ForcePath: true, References: w.honestRefs(w.cathy1)}), "Cathy commits the hub's Remove")
		if _, in := w.room.members.byClient[w.doug1.uri]; in || len(w.room.lingering) != 0 {
			t.Fatalf("ban=%v: Doug1 is still in the room", ban)
		}
	}
}

func TestRemoveClients(t *testing.T) {
	w := newSeedWorld(t)
	before := w.state()
	// A peer names only its own clients.
	out := w.apply(&RemoveClients{From: "b.example", Clients: []proto.URI{w.bob2.uri, w.cathy1.uri}})
	if !errors.Is(out.Err, ErrNotAllowed) || w.state() == nil || string(before) != string(w.state()) {
		t.Fatalf("b.example removes a client of c.example: %v", out.Err)
	}
	// Bob's provider revokes Bob2; a client that is not a member is
	// skipped.
	out = w.apply(&RemoveClients{From: "b.example", Clients: []proto.URI{w.bob2.uri, proto.ClientURI("b.example", "bob", "gone")}})
	if out.Err != nil || len(hubProposalsOf(out)) != 1 {
		t.Fatalf("revoking Bob2: %v, %d hub proposals", out.Err, len(hubProposalsOf(out)))
	}
	w.deliver(out, nil)
	// Asking again changes nothing: Bob2 is already being removed.
	before = w.state()
	if out := w.apply(&RemoveClients{From: "b.example", Clients: []proto.URI{w.bob2.uri}}); out.Err != nil || len(out.Effects) != 0 || string(before) != string(w.state()) {
		t.Fatalf("a second revocation: %v, %d effects", out.Err, len(out.Effects))
	}
	// Bob2 may no longer propose anything touching its leaf.
	before = w.state()
	w.refused(before, w.propose(w.bob2, mls.SelfRemoveProposal()), proto.UpdateInvalidProposal, "the revoked client removes itself")
	// The hub's own local client, too.
	out = w.apply(&RemoveClients{From: hub, Clients: []proto.URI{w.alice1.uri}})
	if out.Err != nil || len(hubProposalsOf(out)) != 1 {
		t.Fatalf("revoking Alice1: %v", out.Err)
	}
	w.deliver(out, nil)
	w.must(w.commit(w.cathy1, mls.CommitOptions{ForcePath: true, References: w.honestRefs(w.cathy1)}), "Cathy commits the revocations")
	for _, c := range []*client{w.bob2, w.alice1} {
		if _, in := w.room.members.byClient[c.uri]; in {
			t.Fatalf("%s is still in the room", c)
		}
	}
	if w.participant(w.alice1.user) == "absent" {
		t.Fatal("revoking a device took its user off the list")
	}
}

// TestRoomWithoutHubSender plays a room made before the hub had keys (as
// every room of the previous release is): it works as before, the hub
// cannot propose, and an external joiner waits until the queue is
// committed. Giving the hub its keys changes nothing until a policy change
// lists the hub; then the hub proposes.
func TestRoomWithoutHubSender(t *testing.T) {
	w := newWorld(t)
	w.keys = nil
	alice, bob1, bob2 := w.newClient("a.example", "alice", "phone"), w.newClient("b.example", "bob", "laptop"), w.newClient("b.example", "bob", "phone")
	w.create(alice, proto.DefaultPolicy())
	w.must(w.commit(alice, mls.CommitOptions{Proposals: append([]*mls.Proposal{plp([]proto.UserRoles{{User: bob1.user, Roles: roles(proto.RoleRegularUser)}}, nil)}, adds(bob1, bob2)...)}, bob1, bob2), "Alice adds Bob")
	if w.room.HubProposals() {
		t.Fatal("a room without keys takes hub proposals")
	}
	if out := w.apply(&RemoveClients{From: "b.example", Clients: []proto.URI{bob2.uri}}); !errors.Is(out.Err, ErrNotAllowed) {
		t.Fatalf("RemoveClients in a room without the hub sender: %v", out.Err)
	}
	w.must(w.propose(bob2, plp(nil, nil, bob1.user), mls.SelfRemoveProposal(), mls.RemoveProposal(w.leafOf(bob1))), "Bob leaves")
	alice2 := w.newClient("a.example", "alice", "laptop")
	b := w.claimAndJoin(alice2, mls.ExternalJoinOptions{})
	before := w.state()
	out := w.apply(&UpdateRoom{From: "a.example", Body: w.bundle(alice2, b)})
	w.refused(before, out, proto.UpdateNotAllowed, "an external join while a departure is queued in a room without the hub sender")
	alice2.group.DiscardPendingCommit()
	if _, err := alice2.group.Process(b.Commit); !errors.Is(err, mls.ErrRemoved) {
		t.Fatalf("a refused joiner's group processes messages: %v", err)
	}
	alice2.group = nil
	w.must(w.commit(alice, mls.CommitOptions{ForcePath: true, References: w.honestRefs(alice)}), "Alice commits Bob's departure")
	w.externalJoin(alice2)

	// The snapshot restores with keys: still without hub proposals.
	keys, err := NewHubKeys(hub, testHubSecret)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Restore(Config{Hub: hub, Keys: keys}, w.state())
	if err != nil || r.HubProposals() {
		t.Fatalf("restored: %v, hub proposals %v", err, r != nil && r.HubProposals())
	}
	w.room, w.keys = r, keys
	w.must(w.commit(alice, mls.CommitOptions{Proposals: []*mls.Proposal{mls.GroupContextExtensionsProposal(append(w.roomExtensions(proto.DefaultPolicy()), w.hubExtensions()...))}}), "Alice lists the hub")
	if !w.room.HubProposals() {
		t.Fatal("listing the hub did not enable hub proposals")
	}
	before = w.state()
	defaultPolicy := proto.DefaultPolicy()
	w.refused(before, w.commit(alice, mls.CommitOptions{Proposals: []*mls.Proposal{mls.GroupContextExtensionsProposal(mls.Extensions{defaultPolicy.Extension()})}}), proto.UpdateInvalidProposal, "dropping the hub again")
}

func TestHubSenderRules(t *testing.T) {
	w := newWorld(t)
	alice := w.newClient("a.example", "alice", "phone")
	hubSender, _ := w.keys.Sender(w.suite.ID())
	other := mls.ExternalSender{SignatureKey: alice.signer.PublicKey(), Credential: mls.BasicCredential([]byte("mimi://x.example"))}
	defaultPolicy := proto.DefaultPolicy()
	policy := defaultPolicy.Extension()
	for name, ext := range map[string]mls.Extensions{
		"no external_senders":  {policy},
		"another sender":       {policy, mls.ExternalSendersExtension(mls.ExternalSenders{other})},
		"the hub and another":  {policy, mls.ExternalSendersExtension(mls.ExternalSenders{hubSender, other})},
		"another hub's sender": {policy, mls.ExternalSendersExtension(mls.ExternalSenders{{SignatureKey: hubSender.SignatureKey, Credential: HubCredential("b.example")}})},
	} {
		g, err := mls.CreateGroup(w.suite, alice.signer, mls.CreateOptions{GroupOptions: w.groupOptions(), GroupID: []byte(roomURI), Extensions: ext,
			Credential: mls.BasicCredential([]byte(alice.uri)), Capabilities: roomCaps, Lifetime: w.lifetime()})
		if err != nil {
			t.Fatal(err)
		}
		gi, err := g.GroupInfo(mls.GroupInfoOptions{ExternalPub: true})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Create(w.cfg(), CreateRequest{Room: roomURI, Creator: alice.user, GroupInfo: gi.GroupInfo, Tree: wire.MustMarshal(g.Tree())}, w.now); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: created (%v)", name, err)
		}
	}

	// A member may not send a proposal as the hub, even with a valid
	// signature: external proposals come only from the hub itself.
	w.create(alice, proto.DefaultPolicy())
	m, err := mls.NewExternalProposal([]byte(roomURI), w.room.Epoch(), 0, w.keys.keys[w.suite.ID()], mls.RemoveProposal(0))
	if err != nil {
		t.Fatal(err)
	}
	before := w.state()
	w.refused(before, w.apply(&UpdateRoom{From: hub, Body: &proto.UpdateRoomRequest{Message: m}}), proto.UpdateNotAllowed, "an external proposal through updateRoom")
}

func TestRequiredCapabilities(t *testing.T) {
	w := newSeedWorld(t)
	rc := w.room.RequiredCapabilities()
	if !slices.Contains(rc.Proposals, proto.ProposalParticipantListPatch) || !slices.Contains(rc.Proposals, mls.ProposalSelfRemove) || !slices.Contains(rc.Extensions, proto.ExtBasePolicy) {
		t.Fatalf("required capabilities %+v", rc)
	}
	// A KeyPackage without them cannot be added, nor join.
	erin := w.newClient("b.example", "erin", "phone")
	kp, err := mls.NewKeyPackage(w.suite, erin.signer, mls.KeyPackageOptions{Credential: mls.BasicCredential([]byte(erin.uri)),
		Capabilities: mls.Capabilities{Extensions: []mls.ExtensionType{proto.ExtBasePolicy}}, Lifetime: w.lifetime()})
	if err != nil {
		t.Fatal(err)
	}
	before := w.state()
	list := plp([]proto.UserRoles{{User: erin.user, Roles: roles(proto.RoleRegularUser)}}, nil)
	w.refused(before, w.commit(w.alice1, mls.CommitOptions{Proposals: []*mls.Proposal{list, mls.AddProposal(kp.KeyPackage)}}), proto.UpdateInvalidProposal, "adding a client without SelfRemove and ParticipantListPatch")
}

func TestNoEchoToSender(t *testing.T) {
	w := newSeedWorld(t)
	check := func(out Outcome, sender *client, what string) {
		t.Helper()
		if len(out.Effects) == 0 || addressed(out.Effects[0], sender) {
			t.Fatalf("%s goes back to its sender", what)
		}
		other := w.bob1
		if sender == w.bob1 {
			other = w.bob2
		}
		if !addressed(out.Effects[0], other) {
			t.Fatalf("%s does not reach the sender's provider's other clients", what)
		}
	}
	check(w.must(w.say(w.bob1, "hi"), "Bob1 speaks"), w.bob1, "a message")
	check(w.must(w.propose(w.bob2, mls.SelfRemoveProposal()), "Bob2 leaves"), w.bob2, "a proposal")
	check(w.must(w.commit(w.bob1, mls.CommitOptions{ForcePath: true, References: w.honestRefs(w.bob1)}), "Bob1 commits"), w.bob1, "a commit")
}
