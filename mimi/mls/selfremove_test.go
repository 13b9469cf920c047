package mls

import (
	"bytes"
	"errors"
	"testing"

	"github.com/mimihub/mimi-hub/mimi/wire"
)

// deliverProposal has the hub and every member but the sender take m.
func (r *testRoom) deliverProposal(m *Message) {
	r.t.Helper()
	if _, err := r.hub.ProcessProposal(transmit(r.t, m), testNow, nil); err != nil {
		r.t.Fatalf("hub refuses a proposal: %v", err)
	}
	for i, g := range r.members {
		if g != nil && g.MyLeaf() != m.Public.Content.Sender.leaf() {
			if _, err := g.Process(transmit(r.t, m)); err != nil {
				r.t.Fatalf("leaf %d: %v", i, err)
			}
		}
	}
}

// TestExternalCommitSelfRemoveByValue is attack A at the MLS layer: a joiner
// carries a SelfRemove by value in its external commit. Its sender is the
// joiner (new_member_commit, index 0), so taking the target from the
// sender's index evicted leaf 0. The draft allows SelfRemove only by
// reference; hub and members refuse the commit.
func TestExternalCommitSelfRemoveByValue(t *testing.T) {
	r := newTestRoom(t, 3)
	var gi GroupInfo
	if err := wire.Unmarshal(r.hub.GroupInfo(), &gi); err != nil {
		t.Fatal(err)
	}
	key, err := r.suite.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	_, b, err := JoinExternal(&gi, wire.MustMarshal(r.hub.Tree()), key, ExternalJoinOptions{
		GroupOptions: testOptions(), Credential: BasicCredential([]byte("mimi://e.example/u/eve")),
		Capabilities: Capabilities{Proposals: []ProposalType{ProposalSelfRemove}},
		ByValue:      []*Proposal{SelfRemoveProposal()},
		Commit:       CommitOptions{SkipListChecks: true, GroupInfo: GroupInfoOptions{ExternalPub: true}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Result.Removed) != 1 || b.Result.Removed[0].Leaf != 0 {
		t.Fatalf("the forged commit removes %+v; the test needs it to evict leaf 0", b.Result.Removed)
	}
	before := wire.MustMarshal(r.hub)
	if _, err := r.hub.ProcessCommit(transmit(t, b.Commit), transmit(t, b.GroupInfo).GroupInfo, testNow, nil); !errors.Is(err, ErrInvalidProposal) {
		t.Fatalf("hub: got %v, want ErrInvalidProposal", err)
	}
	if !bytes.Equal(before, wire.MustMarshal(r.hub)) {
		t.Fatal("the refused commit changed the hub")
	}
	if _, err := r.members[0].Process(transmit(t, b.Commit)); !errors.Is(err, ErrInvalidProposal) || r.members[0].Removed() {
		t.Fatalf("leaf 0: got %v (removed %v), want ErrInvalidProposal", err, r.members[0].Removed())
	}
	// The honest library does not make such a commit.
	if _, _, err := JoinExternal(&gi, wire.MustMarshal(r.hub.Tree()), key, ExternalJoinOptions{
		GroupOptions: testOptions(), Credential: BasicCredential([]byte("mimi://e.example/u/eve")),
		ByValue: []*Proposal{SelfRemoveProposal()},
	}); !errors.Is(err, ErrInvalidProposal) {
		t.Fatalf("JoinExternal made a by-value SelfRemove: %v", err)
	}
}

// TestSelfRemoveConflicts checks draft-ietf-mls-extensions' rules: a Remove
// of a leaf with a pending SelfRemove is invalid, a member sends one
// SelfRemove per epoch, and IncludePending prefers the SelfRemove.
func TestSelfRemoveConflicts(t *testing.T) {
	r := newTestRoom(t, 4)
	// Leaf 1's Remove of leaf 3 is pending; then leaf 3 removes itself.
	rm := must(r.members[1].Propose(RemoveProposal(3)))
	r.deliverProposal(rm)
	stale := groupCopy(t, r.members[0]) // leaf 0 as it was before the SelfRemove
	sr := must(r.members[3].Propose(SelfRemoveProposal()))
	r.deliverProposal(sr)

	// A Remove of leaf 3 now is invalid, at the hub and at members.
	if _, err := r.members[0].Propose(RemoveProposal(3)); !errors.Is(err, ErrInvalidProposal) {
		t.Fatalf("a member proposes a Remove of a leaf that removes itself: %v", err)
	}
	// A hostile leaf 0 that ignored the SelfRemove still cannot get such a
	// Remove past the hub or another member.
	forged := must(stale.Propose(RemoveProposal(3)))
	if _, err := r.hub.ProcessProposal(transmit(t, forged), testNow, nil); !errors.Is(err, ErrInvalidProposal) {
		t.Fatalf("hub takes a Remove of a self-removing leaf: %v", err)
	}
	if _, err := r.members[2].Process(transmit(t, forged)); !errors.Is(err, ErrInvalidProposal) {
		t.Fatalf("leaf 2 takes a Remove of a self-removing leaf: %v", err)
	}
	// A second SelfRemove of leaf 3 this epoch is refused.
	if _, err := r.members[3].Propose(SelfRemoveProposal()); !errors.Is(err, ErrInvalidProposal) {
		t.Fatalf("a second SelfRemove: %v", err)
	}

	// Leaf 2 commits what is pending: the SelfRemove wins, leaf 1's earlier
	// Remove of the same leaf is left out, and the hub accepts.
	b := r.commit(2, CommitOptions{IncludePending: true})
	if len(b.Result.Removed) != 1 || b.Result.Removed[0].Leaf != 3 || !b.Result.Removed[0].SelfRemove {
		t.Fatalf("removed %+v, want leaf 3 by its SelfRemove", b.Result.Removed)
	}
	if len(b.Result.Proposals) != 1 || b.Result.Proposals[0].Proposal.Type != ProposalSelfRemove {
		t.Fatalf("the commit covers %+v, want only the SelfRemove", b.Result.Proposals)
	}
}

// groupCopy copies a member's group as it is now, so a test can play that
// member later from this state (a hostile or lagging client).
func groupCopy(t *testing.T, g *Group) *Group {
	t.Helper()
	c, err := RestoreGroup(wire.MustMarshal(g), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	return c
}
