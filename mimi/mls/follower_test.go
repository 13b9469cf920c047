package mls

import (
	"bytes"
	"errors"
	"testing"

	"github.com/mimihub/mimi-hub/mimi/wire"
)

// resign rebuilds g's pending commit with mutate applied to its content and
// signs it again with g's key, so the hub sees a well-signed but otherwise
// broken commit. The original GroupInfo goes with it.
func resign(t *testing.T, g *Group, b *CommitBundle, mutate func(c *FramedContent)) *Message {
	t.Helper()
	m := transmit(t, b.Commit)
	c := &m.Public.Content
	mutate(c)
	ac := &AuthenticatedContent{WireFormat: WirePublicMessage, Content: *c, Auth: m.Public.Auth}
	if err := ac.Sign(g.signer, g.ctxEnc); err != nil {
		t.Fatal(err)
	}
	m.Public.Auth = ac.Auth
	return m
}

// resignGroupInfo returns b's GroupInfo with mutate applied, re-signed by
// g's key.
func resignGroupInfo(t *testing.T, g *Group, b *CommitBundle, mutate func(gi *GroupInfo)) *GroupInfo {
	t.Helper()
	gi := transmit(t, b.GroupInfo).GroupInfo
	mutate(gi)
	if err := gi.Sign(g.signer); err != nil {
		t.Fatal(err)
	}
	return gi
}

func TestFollowerRejectsCorruptedCommits(t *testing.T) {
	s := testSuite(t)
	cases := []struct {
		name string
		want error
		// make returns the commit and GroupInfo to offer the hub, from a
		// room of four members at epoch 3 where leaf 1 has a valid commit
		// adding a new member pending.
		make func(t *testing.T, r *testRoom, b *CommitBundle) (*Message, *GroupInfo)
	}{
		{"flipped signature byte", ErrSignature, func(t *testing.T, r *testRoom, b *CommitBundle) (*Message, *GroupInfo) {
			m := transmit(t, b.Commit)
			m.Public.Auth.Signature[10] ^= 1
			return m, b.GroupInfo.GroupInfo
		}},
		{"flipped GroupInfo signature byte", ErrSignature, func(t *testing.T, r *testRoom, b *CommitBundle) (*Message, *GroupInfo) {
			gi := transmit(t, b.GroupInfo).GroupInfo
			gi.Signature[5] ^= 1
			return b.Commit, gi
		}},
		{"wrong epoch (stale commit)", ErrWrongEpoch, func(t *testing.T, r *testRoom, b *CommitBundle) (*Message, *GroupInfo) {
			// Another member wins the epoch first.
			r.members[1].DiscardPendingCommit()
			r.commit(2, CommitOptions{ForcePath: true})
			return b.Commit, b.GroupInfo.GroupInfo
		}},
		{"wrong group", ErrWrongGroup, func(t *testing.T, r *testRoom, b *CommitBundle) (*Message, *GroupInfo) {
			return resign(t, r.members[1], b, func(c *FramedContent) { c.GroupID = []byte("another group") }), b.GroupInfo.GroupInfo
		}},
		{"duplicate Add", ErrInvalidProposal, func(t *testing.T, r *testRoom, b *CommitBundle) (*Message, *GroupInfo) {
			return resign(t, r.members[1], b, func(c *FramedContent) {
				c.Commit.Proposals = append(c.Commit.Proposals, c.Commit.Proposals[0])
			}), b.GroupInfo.GroupInfo
		}},
		{"Add of a current member", ErrInvalidProposal, func(t *testing.T, r *testRoom, b *CommitBundle) (*Message, *GroupInfo) {
			return resign(t, r.members[1], b, func(c *FramedContent) {
				kp := *c.Commit.Proposals[0].Proposal.KeyPackage
				kp.LeafNode.SignatureKey = r.members[2].signer.PublicKey()
				c.Commit.Proposals = append(c.Commit.Proposals, ProposalOrRef{Proposal: AddProposal(&kp)})
			}), b.GroupInfo.GroupInfo
		}},
		{"Remove of an empty leaf", ErrInvalidProposal, func(t *testing.T, r *testRoom, b *CommitBundle) (*Message, *GroupInfo) {
			return resign(t, r.members[1], b, func(c *FramedContent) {
				c.Commit.Proposals = append(c.Commit.Proposals, ProposalOrRef{Proposal: RemoveProposal(40)})
			}), b.GroupInfo.GroupInfo
		}},
		{"Remove of the committer", ErrInvalidProposal, func(t *testing.T, r *testRoom, b *CommitBundle) (*Message, *GroupInfo) {
			return resign(t, r.members[1], b, func(c *FramedContent) {
				c.Commit.Proposals = append(c.Commit.Proposals, ProposalOrRef{Proposal: RemoveProposal(1)})
			}), b.GroupInfo.GroupInfo
		}},
		{"unknown proposal reference", ErrInvalidProposal, func(t *testing.T, r *testRoom, b *CommitBundle) (*Message, *GroupInfo) {
			return resign(t, r.members[1], b, func(c *FramedContent) {
				c.Commit.Proposals = append(c.Commit.Proposals, ProposalOrRef{Reference: bytes.Repeat([]byte{7}, 32)})
			}), b.GroupInfo.GroupInfo
		}},
		{"inline Update", ErrInvalidProposal, func(t *testing.T, r *testRoom, b *CommitBundle) (*Message, *GroupInfo) {
			return resign(t, r.members[1], b, func(c *FramedContent) {
				c.Commit.Proposals = append(c.Commit.Proposals, ProposalOrRef{Proposal: UpdateProposal(&c.Commit.Path.LeafNode)})
			}), b.GroupInfo.GroupInfo
		}},
		{"Remove without a path", ErrInvalidPath, func(t *testing.T, r *testRoom, b *CommitBundle) (*Message, *GroupInfo) {
			return resign(t, r.members[1], b, func(c *FramedContent) {
				c.Commit.Proposals = []ProposalOrRef{{Proposal: RemoveProposal(2)}}
				c.Commit.Path = nil
			}), b.GroupInfo.GroupInfo
		}},
		{"path leaf with a wrong parent hash", ErrInvalidPath, func(t *testing.T, r *testRoom, b *CommitBundle) (*Message, *GroupInfo) {
			g := r.members[1]
			return resign(t, g, b, func(c *FramedContent) {
				leaf := &c.Commit.Path.LeafNode
				leaf.ParentHash = bytes.Repeat([]byte{1}, len(leaf.ParentHash))
				if err := leaf.Sign(g.signer, g.ctx.GroupID, 1); err != nil {
					t.Fatal(err)
				}
			}), b.GroupInfo.GroupInfo
		}},
		{"path with a missing ciphertext", ErrInvalidPath, func(t *testing.T, r *testRoom, b *CommitBundle) (*Message, *GroupInfo) {
			return resign(t, r.members[1], b, func(c *FramedContent) {
				for i := range c.Commit.Path.Nodes {
					if n := &c.Commit.Path.Nodes[i]; len(n.EncryptedPathSecret) > 0 {
						n.EncryptedPathSecret = n.EncryptedPathSecret[1:]
						return
					}
				}
				t.Fatal("the path has no ciphertext to drop")
			}), b.GroupInfo.GroupInfo
		}},
		{"path reusing a tree key", ErrInvalidPath, func(t *testing.T, r *testRoom, b *CommitBundle) (*Message, *GroupInfo) {
			return resign(t, r.members[1], b, func(c *FramedContent) {
				c.Commit.Path.Nodes[0].EncryptionKey = r.hub.tree.encryptionKey(leafNode(3))
			}), b.GroupInfo.GroupInfo
		}},
		{"GroupInfo with a wrong tree hash", ErrGroupInfoMismatch, func(t *testing.T, r *testRoom, b *CommitBundle) (*Message, *GroupInfo) {
			return b.Commit, resignGroupInfo(t, r.members[1], b, func(gi *GroupInfo) { gi.GroupContext.TreeHash[0] ^= 1 })
		}},
		{"GroupInfo for the wrong epoch", ErrGroupInfoMismatch, func(t *testing.T, r *testRoom, b *CommitBundle) (*Message, *GroupInfo) {
			return b.Commit, resignGroupInfo(t, r.members[1], b, func(gi *GroupInfo) { gi.GroupContext.Epoch++ })
		}},
		{"GroupInfo with another confirmation tag", ErrGroupInfoMismatch, func(t *testing.T, r *testRoom, b *CommitBundle) (*Message, *GroupInfo) {
			return b.Commit, resignGroupInfo(t, r.members[1], b, func(gi *GroupInfo) { gi.ConfirmationTag[0] ^= 1 })
		}},
		{"GroupInfo signed by another member", ErrGroupInfoMismatch, func(t *testing.T, r *testRoom, b *CommitBundle) (*Message, *GroupInfo) {
			other := r.members[2]
			gi := transmit(t, b.GroupInfo).GroupInfo
			gi.Signer = 2
			if err := gi.Sign(other.signer); err != nil {
				t.Fatal(err)
			}
			return b.Commit, gi
		}},
		{"GroupInfo with a foreign ratchet_tree extension", ErrGroupInfoMismatch, func(t *testing.T, r *testRoom, b *CommitBundle) (*Message, *GroupInfo) {
			return b.Commit, resignGroupInfo(t, r.members[1], b, func(gi *GroupInfo) {
				gi.Extensions = append(gi.Extensions, Extension{Type: ExtRatchetTree, Data: wire.MustMarshal(r.hub.Tree())})
			})
		}},
		{"commit from a free leaf", ErrUnknownSender, func(t *testing.T, r *testRoom, b *CommitBundle) (*Message, *GroupInfo) {
			return resign(t, r.members[1], b, func(c *FramedContent) { c.Sender.Index = 40 }), b.GroupInfo.GroupInfo
		}},
		{"commit sent as PrivateMessage", ErrUnsupported, func(t *testing.T, r *testRoom, b *CommitBundle) (*Message, *GroupInfo) {
			pm := &PrivateMessage{GroupID: r.hub.GroupID(), Epoch: r.hub.Epoch(), ContentType: ContentCommit, EncryptedSenderData: []byte{1}, Ciphertext: []byte{2}}
			return &Message{Version: MLS10, WireFormat: WirePrivateMessage, Private: pm}, b.GroupInfo.GroupInfo
		}},
		{"external commit without ExternalInit", ErrInvalidProposal, func(t *testing.T, r *testRoom, b *CommitBundle) (*Message, *GroupInfo) {
			return resign(t, r.members[1], b, func(c *FramedContent) {
				c.Sender = Sender{Type: SenderNewMemberCommit}
				c.Commit.Proposals = nil
			}), b.GroupInfo.GroupInfo
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newTestRoom(t, 4)
			joiner := newTestClient(t, s, "joiner")
			b, err := r.members[1].Commit(CommitOptions{Proposals: []*Proposal{AddProposal(joiner.kp.KeyPackage)}, ForcePath: true})
			if err != nil {
				t.Fatal(err)
			}
			m, gi := c.make(t, r, b)
			before := wire.MustMarshal(r.hub)
			_, err = r.hub.ProcessCommit(transmit(t, m), gi, testNow, nil)
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			if after := wire.MustMarshal(r.hub); !bytes.Equal(before, after) {
				t.Fatalf("a rejected commit changed the hub's state")
			}
			// The hub still accepts a valid commit afterwards.
			if r.members[1].staged != nil {
				r.accept(b, r.members[1], joiner)
			} else {
				r.commit(3, CommitOptions{ForcePath: true})
			}
		})
	}
}

func TestFollowerPolicyCheckRefusal(t *testing.T) {
	r := newTestRoom(t, 3)
	b, err := r.members[0].Commit(CommitOptions{Proposals: []*Proposal{RemoveProposal(2)}})
	if err != nil {
		t.Fatal(err)
	}
	before := wire.MustMarshal(r.hub)
	refuse := errors.New("the room's policy forbids removing leaf 2")
	_, err = r.hub.ProcessCommit(transmit(t, b.Commit), b.GroupInfo.GroupInfo, testNow, func(res *CommitResult) error {
		if len(res.Removed) != 1 || res.Removed[0].Leaf != 2 || string(res.Removed[0].Node.Credential.Identity) != "mimi://a.example/u/member2" {
			t.Errorf("result names removed %+v", res.Removed)
		}
		return refuse
	})
	if !errors.Is(err, ErrRejectedByPolicy) || !errors.Is(err, refuse) {
		t.Fatalf("got %v", err)
	}
	if !bytes.Equal(before, wire.MustMarshal(r.hub)) {
		t.Fatal("a refused commit changed the hub's state")
	}
}

func TestFollowerProposalsByReference(t *testing.T) {
	r := newTestRoom(t, 4)
	// Leaf 2 proposes an Update and leaf 3 a SelfRemove; leaf 0 commits both.
	up, err := r.members[2].ProposeUpdate()
	if err != nil {
		t.Fatal(err)
	}
	sr, err := r.members[3].Propose(SelfRemoveProposal())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []*Message{up, sr} {
		if _, err := r.hub.ProcessProposal(transmit(t, m), testNow, nil); err != nil {
			t.Fatalf("hub: %v", err)
		}
		for i, g := range r.members {
			if g.MyLeaf() != m.Public.Content.Sender.leaf() {
				if _, err := g.Process(transmit(t, m)); err != nil {
					t.Fatalf("leaf %d: %v", i, err)
				}
			}
		}
	}
	if _, err := r.hub.ProcessProposal(transmit(t, up), testNow, nil); !errors.Is(err, ErrInvalidProposal) {
		t.Fatalf("a replayed proposal: got %v, want ErrInvalidProposal", err)
	}
	if got := len(r.hub.PendingProposals()); got != 2 {
		t.Fatalf("hub holds %d pending proposals, want 2", got)
	}
	b := r.commit(0, CommitOptions{IncludePending: true})
	res := b.Result
	if len(res.Removed) != 1 || res.Removed[0].Leaf != 3 || !res.Removed[0].SelfRemove {
		t.Fatalf("removed %+v, want leaf 3 by SelfRemove", res.Removed)
	}
	if len(res.Updated) != 2 {
		t.Fatalf("updated %d leaves, want the Update and the committer's path", len(res.Updated))
	}
	if len(r.hub.PendingProposals()) != 0 {
		t.Fatal("pending proposals survive the epoch")
	}
	// The updated member can still decrypt: it adopted its new leaf key.
	ct, err := r.members[0].Encrypt([]byte("after the update"), nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.members[2].Process(transmit(t, ct))
	if err != nil || string(got.ApplicationData) != "after the update" {
		t.Fatalf("leaf 2 reads %q, %v", got.ApplicationData, err)
	}
}

func (s Sender) leaf() LeafIndex { return LeafIndex(s.Index) }

func TestFollowerExternalJoinAndResync(t *testing.T) {
	r := newTestRoom(t, 3)
	s := r.suite
	joinerKey, err := s.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	// The hub hands out the GroupInfo of the last commit, which carries the
	// tree and external_pub.
	var gi GroupInfo
	if err := wire.Unmarshal(r.hub.GroupInfo(), &gi); err != nil {
		t.Fatal(err)
	}
	selfRemove := Capabilities{Proposals: []ProposalType{ProposalSelfRemove}}
	opts := ExternalJoinOptions{GroupOptions: testOptions(), Credential: BasicCredential([]byte("mimi://b.example/u/ext")),
		Capabilities: selfRemove, Commit: CommitOptions{GroupInfo: GroupInfoOptions{ExternalPub: true}}}
	g, b, err := JoinExternal(&gi, wire.MustMarshal(r.hub.Tree()), joinerKey, opts)
	if err != nil {
		t.Fatal(err)
	}
	r.accept(b, g)
	if !b.Result.External || b.Result.Committer != 3 {
		t.Fatalf("result %+v: want an external commit at leaf 3", b.Result)
	}
	// Now the same client, having lost its group state but not its identity
	// key, resyncs: it joins again and removes its old leaf in one commit.
	gi2, err := r.members[0].GroupInfo(GroupInfoOptions{RatchetTree: true, ExternalPub: true})
	if err != nil {
		t.Fatal(err)
	}
	old := g.MyLeaf()
	opts.Resync = &old
	g2, b2, err := JoinExternal(transmit(t, gi2).GroupInfo, nil, joinerKey, opts)
	if err != nil {
		t.Fatal(err)
	}
	r.members[old] = nil
	r.accept(b2, g2)
	if len(b2.Result.Removed) != 1 || b2.Result.Removed[0].Leaf != old {
		t.Fatalf("resync removed %+v", b2.Result.Removed)
	}

	// Leaf 1 leaves with a SelfRemove; the next external joiner commits it,
	// taking the pending proposal from the hub with the GroupInfo.
	leaving := r.members[1]
	sr, err := leaving.Propose(SelfRemoveProposal())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.hub.ProcessProposal(transmit(t, sr), testNow, nil); err != nil {
		t.Fatal(err)
	}
	for i, m := range r.members {
		if m != nil && m != leaving {
			if _, err := m.Process(transmit(t, sr)); err != nil {
				t.Fatalf("leaf %d: %v", i, err)
			}
		}
	}
	var pending []*Message
	for _, enc := range r.hub.PendingMessages() {
		pending = append(pending, must(DecodeMessage(enc)))
	}
	var gi3 GroupInfo
	if err := wire.Unmarshal(r.hub.GroupInfo(), &gi3); err != nil {
		t.Fatal(err)
	}
	thirdKey, _ := s.GenerateSigningKey()
	g3, b3, err := JoinExternal(&gi3, wire.MustMarshal(r.hub.Tree()), thirdKey, ExternalJoinOptions{
		GroupOptions: testOptions(), Credential: BasicCredential([]byte("mimi://c.example/u/third")), Capabilities: selfRemove, PendingSelfRemoves: pending,
	})
	if err != nil {
		t.Fatal(err)
	}
	r.members[1] = nil
	r.accept(b3, g3)
	if len(b3.Result.Removed) != 1 || b3.Result.Removed[0].Leaf != 1 || !b3.Result.Removed[0].SelfRemove {
		t.Fatalf("external commit removed %+v, want leaf 1 by SelfRemove", b3.Result.Removed)
	}
	if _, err := leaving.Process(transmit(t, b3.Commit)); err != nil || !leaving.Removed() {
		t.Fatalf("the leaving member: removed=%v, %v", leaving.Removed(), err)
	}
}

func TestFollowerStateRoundTrip(t *testing.T) {
	r := newTestRoom(t, 5)
	if _, err := r.hub.ProcessProposal(transmit(t, must(r.members[3].Propose(RemoveProposal(4)))), testNow, nil); err != nil {
		t.Fatal(err)
	}
	state := wire.MustMarshal(r.hub)
	restored, err := RestoreFollower(state, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(wire.MustMarshal(restored), state) {
		t.Fatal("restore does not reproduce the state")
	}
	// Both accept the same next commit identically.
	b, err := r.members[0].Commit(CommitOptions{IncludePending: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []*Follower{r.hub, restored} {
		if _, err := f.ProcessCommit(transmit(t, b.Commit), transmit(t, b.GroupInfo).GroupInfo, testNow, nil); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(wire.MustMarshal(restored), wire.MustMarshal(r.hub)) {
		t.Fatal("the restored follower diverged")
	}
	if _, err := RestoreFollower(state[:len(state)-1], Config{}); err == nil {
		t.Fatal("a truncated state restored")
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
