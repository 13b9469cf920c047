package room

import (
	"testing"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
)

// The attacks of issue 11, each played by a hostile member against the seed
// world and refused with the seed's response code, changing nothing.

// claimAndJoin has c claim the GroupInfo and build an external commit with
// opts (the caller may make it hostile); it returns the bundle and the
// joiner's pending group.
func (w *world) claimAndJoin(c *client, opts mls.ExternalJoinOptions) *mls.CommitBundle {
	w.t.Helper()
	out := w.apply(&ClaimGroupInfo{From: c.domain, Body: &proto.GroupInfoRequest{SignatureKey: c.signer.PublicKey(), Credential: mls.BasicCredential([]byte(c.uri))}})
	if out.GroupInfo == nil || out.GroupInfo.Status != proto.GroupInfoSuccess {
		w.t.Fatalf("%s claims the GroupInfo: %+v", c, out.GroupInfo)
	}
	resp := transmit(w.t, out.GroupInfo)
	opts.GroupOptions = w.groupOptions()
	opts.Credential = mls.BasicCredential([]byte(c.uri))
	opts.Capabilities = roomCaps
	opts.PendingSelfRemoves = resp.PendingProposals
	opts.Commit.GroupInfo.ExternalPub = true
	g, b, err := mls.JoinExternal(resp.GroupInfo.GroupInfo, resp.RatchetTree.Bytes(), c.signer, opts)
	if err != nil {
		w.t.Fatalf("%s external join: %v", c, err)
	}
	c.group = g
	return b
}

// TestAttackAExternalCommitEvictsLeafZero: Eve joins an open room with a
// SelfRemove carried by value in her external commit; its sender index is
// 0, so the hub used to evict Alice1 (leaf 0). Refused as invalidProposal.
func TestAttackAExternalCommitEvictsLeafZero(t *testing.T) {
	w := newSeedWorld(t)
	open := proto.DefaultPolicy()
	open.JoinRule = proto.Open
	w.must(w.commit(w.alice1, mls.CommitOptions{Proposals: []*mls.Proposal{mls.GroupContextExtensionsProposal(w.roomExtensions(open))}}), "Alice opens the room")
	eve := w.newClient("e.example", "eve", "phone")
	b := w.claimAndJoin(eve, mls.ExternalJoinOptions{ByValue: []*mls.Proposal{mls.SelfRemoveProposal()}, Commit: mls.CommitOptions{SkipListChecks: true}})
	before := w.state()
	w.refused(before, w.apply(&UpdateRoom{From: eve.domain, Body: w.bundle(eve, b)}), proto.UpdateInvalidProposal, "an external commit with a by-value SelfRemove")
	if w.leafOf(w.alice1) != 0 {
		t.Fatal("Alice1 moved")
	}
	w.must(w.say(w.alice1, "still here"), "Alice speaks")
}

// TestAttackBConflictingDepartures: Bob2's SelfRemove and Bob1's Remove of
// Bob2 used to both be queued, and MLS forbids removing a leaf twice, so
// every commit was refused from then on. The second is refused when
// proposed, in either order, and the room keeps committing.
func TestAttackBConflictingDepartures(t *testing.T) {
	for _, selfRemoveFirst := range []bool{true, false} {
		w := newSeedWorld(t)
		// Each of Bob's clients proposes from its state before the other's
		// proposal arrived (a race, or a hostile client ignoring it).
		bob1, bob2 := w.groupCopy(w.bob1), w.groupCopy(w.bob2)
		selfRemove := func() Outcome { return w.proposeFrom(w.bob2, bob2, mls.SelfRemoveProposal()) }
		remove := func() Outcome { return w.proposeFrom(w.bob1, bob1, mls.RemoveProposal(w.leafOf(w.bob2))) }
		first, second := selfRemove, remove
		if !selfRemoveFirst {
			first, second = remove, selfRemove
		}
		w.must(first(), "the first departure")
		before := w.state()
		w.refused(before, second(), proto.UpdateInvalidProposal, "a second departure of Bob2")
		w.must(w.commit(w.cathy1, mls.CommitOptions{ForcePath: true, References: w.honestRefs(w.cathy1)}), "Cathy commits")
		if _, in := w.room.members.byClient[w.bob2.uri]; in {
			t.Fatal("Bob2 is still in the room")
		}
	}

	// Both of Bob's clients run the seed's leave (6.5) at once.
	w := newSeedWorld(t)
	bob1, bob2 := w.groupCopy(w.bob1), w.groupCopy(w.bob2)
	leave := func(c, other *client, g *mls.Group) Outcome {
		return w.proposeFrom(c, g, plp(nil, nil, c.user), mls.SelfRemoveProposal(), mls.RemoveProposal(w.leafOf(other)))
	}
	w.must(leave(w.bob1, w.bob2, bob1), "Bob1 leaves")
	before := w.state()
	w.refused(before, leave(w.bob2, w.bob1, bob2), proto.UpdateInvalidProposal, "Bob2 leaves at the same time")
	w.must(w.commit(w.cathy1, mls.CommitOptions{ForcePath: true, References: w.honestRefs(w.cathy1)}), "Cathy commits Bob's departure")
	if w.participant(w.bob1.user) != "absent" || len(w.room.Clients(w.bob1.user)) != 0 {
		t.Fatalf("Bob: %s with %d clients", w.participant(w.bob1.user), len(w.room.Clients(w.bob1.user)))
	}
}

// TestAttackCLingeringClientRemovesOthers: Doug, removed from the
// participant list, keeps a client; it used to queue Removes of other
// users' clients. A lingering client may remove only its own user's
// clients (draft-ietf-mimi-protocol-06, "Update Room State").
func TestAttackCLingeringClientRemovesOthers(t *testing.T) {
	w := newSeedWorld(t)
	w.must(w.commit(w.alice1, mls.CommitOptions{Proposals: []*mls.Proposal{plp(nil, nil, w.doug1.user)}}), "Alice removes Doug from the list only")
	before := w.state()
	w.refused(before, w.propose(w.doug1, mls.RemoveProposal(w.leafOf(w.cathy1))), proto.UpdateNotAllowed, "lingering Doug1 removes Cathy1")
	w.must(w.commit(w.cathy1, mls.CommitOptions{ForcePath: true, References: w.honestRefs(w.cathy1)}), "Cathy commits")
	if _, in := w.room.members.byClient[w.cathy1.uri]; !in {
		t.Fatal("Cathy1 was removed")
	}
}

// TestAttackDAddByValue: Doug, a regular user, may not add clients of other
// users by reference; the same Add by value in his own commit used to pass.
func TestAttackDAddByValue(t *testing.T) {
	w := newSeedWorld(t)
	cathy3 := w.newClient("c.example", "cathy", "tablet")
	before := w.state()
	w.refused(before, w.propose(w.doug1, mls.AddProposal(cathy3.kp.KeyPackage)), proto.UpdateNotAllowed, "Doug proposes Cathy3")
	w.refused(before, w.commit(w.doug1, mls.CommitOptions{Proposals: adds(cathy3)}), proto.UpdateNotAllowed, "Doug commits Cathy3 by value")
	// Doug may add his own new client.
	doug2 := w.newClient("d.example", "doug", "laptop")
	w.must(w.commit(w.doug1, mls.CommitOptions{Proposals: adds(doug2)}, doug2), "Doug adds his own client")
}

// TestAttackEExternalJoinWhileDepartureQueued: Bob's leave (a patch, his
// SelfRemove and the Remove of his other client) is queued; an external
// joiner can cover only the SelfRemove, and used to be refused. It joins;
// the hub proposes the rest of the departure again in the new epoch.
func TestAttackEExternalJoinWhileDepartureQueued(t *testing.T) {
	w := newSeedWorld(t)
	w.must(w.propose(w.bob2, plp(nil, nil, w.bob1.user), mls.SelfRemoveProposal(), mls.RemoveProposal(w.leafOf(w.bob1))), "Bob leaves")
	cathy3 := w.newClient("c.example", "cathy", "tablet")
	w.externalJoin(cathy3)
	if _, in := w.room.members.byClient[w.bob2.uri]; in {
		t.Fatal("the joiner did not cover Bob2's SelfRemove")
	}
	w.must(w.commit(w.alice1, mls.CommitOptions{ForcePath: true, References: w.honestRefs(w.alice1)}), "Alice commits what is queued")
	if w.participant(w.bob1.user) != "absent" || len(w.room.Clients(w.bob1.user)) != 0 {
		t.Fatalf("Bob's departure was lost: %s with %d clients", w.participant(w.bob1.user), len(w.room.Clients(w.bob1.user)))
	}
}

// TestAttackFUnbanByRemoval: with Ban=[owner], an admin may not lift a ban
// by updating the banned user's roles, and used to lift it by removing the
// user from the list (after which anyone could add them back).
func TestAttackFUnbanByRemoval(t *testing.T) {
	w := newSeedWorld(t)
	policy := proto.DefaultPolicy()
	policy.Ban = []proto.Role{proto.RoleOwner}
	w.must(w.commit(w.alice1, mls.CommitOptions{Proposals: []*mls.Proposal{mls.GroupContextExtensionsProposal(w.roomExtensions(policy))}}), "Alice restricts bans to owners")
	ban := plp(nil, []proto.UserRoles{{User: w.doug1.user, Roles: roles(proto.RoleBanned)}})
	w.must(w.commit(w.alice1, mls.CommitOptions{Proposals: []*mls.Proposal{ban, mls.RemoveProposal(w.leafOf(w.doug1))}, References: w.honestRefs(w.alice1)}), "Alice bans Doug")
	before := w.state()
	unban := plp(nil, []proto.UserRoles{{User: w.doug1.user, Roles: roles(proto.RoleRegularUser)}})
	w.refused(before, w.commit(w.cathy1, mls.CommitOptions{Proposals: []*mls.Proposal{unban}, References: w.honestRefs(w.cathy1)}), proto.UpdateNotAllowed, "admin Cathy unbans Doug")
	w.refused(before, w.commit(w.cathy1, mls.CommitOptions{Proposals: []*mls.Proposal{plp(nil, nil, w.doug1.user)}, References: w.honestRefs(w.cathy1)}), proto.UpdateNotAllowed, "admin Cathy removes banned Doug from the list")
	w.refused(before, w.propose(w.cathy1, plp(nil, nil, w.doug1.user)), proto.UpdateNotAllowed, "admin Cathy proposes removing banned Doug")
	if w.participant(w.doug1.user) != "[banned]" {
		t.Fatalf("Doug: %s", w.participant(w.doug1.user))
	}
}

// roomExtensions returns the room's GroupContext extensions with the base
// policy replaced by policy (what a policy change proposes).
func (w *world) roomExtensions(policy proto.BasePolicy) mls.Extensions {
	var out mls.Extensions
	for _, e := range w.room.Group().GroupContext().Extensions {
		if e.Type != proto.ExtBasePolicy {
			out = append(out, e)
		}
	}
	return append(out, policy.Extension())
}
