package mls

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/mimihub/mimi-hub/internal/mlsvectors"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// saveGroup encodes g's state.
func saveGroup(t testing.TB, g *Group) []byte {
	t.Helper()
	state, err := wire.Marshal(g)
	if err != nil {
		t.Fatalf("save: %v", err)
	}
	return state
}

// restoreGroup restores a state and checks that it encodes back to the same
// bytes.
func restoreGroup(t testing.TB, state []byte, opts GroupOptions) *Group {
	t.Helper()
	g, err := RestoreGroup(state, opts)
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	if re := saveGroup(t, g); !bytes.Equal(re, state) {
		t.Fatalf("the restored group encodes differently (%d bytes, the saved state %d)", len(re), len(state))
	}
	return g
}

// cycle saves room member leaf, restores it, and puts the restored group in
// the original's place, as a client restarting between messages would.
func (r *testRoom) cycle(leaf int) *Group {
	r.t.Helper()
	g := restoreGroup(r.t, saveGroup(r.t, r.members[leaf]), testOptions())
	r.members[leaf] = g
	return g
}

// send encrypts text from member leaf, through the wire.
func (r *testRoom) send(leaf int, text string) *Message {
	r.t.Helper()
	m, err := r.members[leaf].Encrypt([]byte(text), nil)
	if err != nil {
		r.t.Fatalf("leaf %d encrypt: %v", leaf, err)
	}
	return transmit(r.t, m)
}

// deliver has each member in to decrypt m and checks the text.
func (r *testRoom) deliver(m *Message, text string, to ...int) {
	r.t.Helper()
	for _, i := range to {
		got, err := r.members[i].Process(m)
		if err != nil {
			r.t.Fatalf("leaf %d decrypting %q: %v", i, text, err)
		}
		if string(got.ApplicationData) != text {
			r.t.Fatalf("leaf %d decrypted %q, want %q", i, got.ApplicationData, text)
		}
	}
}

// chat has every member send a message that every other member decrypts.
func (r *testRoom) chat(label string) {
	r.t.Helper()
	for i, g := range r.members {
		if g == nil {
			continue
		}
		text := fmt.Sprintf("%s from %d", label, i)
		m := r.send(i, text)
		for j, h := range r.members {
			if h != nil && j != i {
				r.deliver(m, text, j)
			}
		}
	}
}

// senderGeneration opens the sender data of a PrivateMessage as receiver
// would and returns the sender's leaf and generation.
func senderGeneration(t *testing.T, receiver *Group, m *Message) (LeafIndex, uint32) {
	t.Helper()
	pm := m.Private
	s := receiver.suite
	key, nonce, err := senderDataKeys(s, receiver.keys.senderData, pm.Ciphertext)
	if err != nil {
		t.Fatal(err)
	}
	sd, err := s.open(key, nonce, senderDataAAD(pm), pm.EncryptedSenderData)
	if err != nil {
		t.Fatalf("sender data: %v", err)
	}
	var leaf, gen uint32
	r := wire.NewReader(sd)
	r.Uint32(&leaf)
	r.Uint32(&gen)
	if r.Err() != nil {
		t.Fatal(r.Err())
	}
	return LeafIndex(leaf), gen
}

// TestGroupStateMessages restores a member in the middle of a conversation:
// it decrypts messages sent before the save and after it (including one whose
// key it skipped before the save), refuses one it already decrypted, and
// sends from where its ratchet stood.
func TestGroupStateMessages(t *testing.T) {
	r := newTestRoom(t, 3)
	for i := range 3 {
		text := fmt.Sprintf("one-%d", i)
		r.deliver(r.send(1, text), text, 0, 2)
	}
	late := r.send(0, "late") // generation 0 of leaf 0, held back from leaf 1
	r.deliver(late, "late", 2)
	seen := r.send(0, "seen")
	r.deliver(seen, "seen", 1, 2)   // leaf 1 skips generation 0 of leaf 0
	pending := r.send(2, "pending") // sent before the save, delivered after
	r.deliver(pending, "pending", 0)

	g := r.cycle(1)

	// (1) Messages sent before the save, and after it.
	r.deliver(late, "late", 1)
	r.deliver(pending, "pending", 1)
	if _, err := g.Process(seen); err == nil {
		t.Fatal("the restored member decrypted a message twice")
	}
	for _, from := range []int{0, 2} {
		text := fmt.Sprintf("after-%d", from)
		r.deliver(r.send(from, text), text, 1)
	}

	// (2) The restored member continues its ratchet: generations 3 and 4,
	// never one it used before the save.
	var ciphertexts [][]byte
	for i, want := range []uint32{3, 4} {
		m := r.send(1, "same text")
		if l, gen := senderGeneration(t, r.members[0], m); l != 1 || gen != want {
			t.Fatalf("message %d after restore: leaf %d generation %d, want leaf 1 generation %d", i, l, gen, want)
		}
		r.deliver(m, "same text", 0, 2)
		ciphertexts = append(ciphertexts, m.Private.Ciphertext)
	}
	if bytes.Equal(ciphertexts[0], ciphertexts[1]) {
		t.Fatal("the same plaintext encrypted twice to the same ciphertext")
	}
	// (4) The group after all this still round-trips.
	r.cycle(1)
	r.chat("end")
}

// TestGroupStateCommits restores a member before commits of every kind, by
// others and by itself, with and without an UpdatePath, covering proposals
// pending across the save.
func TestGroupStateCommits(t *testing.T) {
	cases := []struct {
		name string
		// prepare runs before the save (proposals to carry across it).
		prepare func(r *testRoom)
		// commit runs after the restore and returns the commit's bundle.
		commit   func(r *testRoom) *CommitBundle
		wantPath bool
	}{
		{
			name:   "other adds, no path",
			commit: func(r *testRoom) *CommitBundle { return r.addBy(0) },
		},
		{
			name: "other commits with a path",
			commit: func(r *testRoom) *CommitBundle {
				return r.commit(2, CommitOptions{ForcePath: true})
			},
			wantPath: true,
		},
		{
			name:   "restored member adds, no path",
			commit: func(r *testRoom) *CommitBundle { return r.addBy(1) },
		},
		{
			name: "restored member commits with a path",
			commit: func(r *testRoom) *CommitBundle {
				return r.commit(1, CommitOptions{ForcePath: true})
			},
			wantPath: true,
		},
		{
			// The restored member needs the private key of its Update,
			// kept across the save, to follow the commit.
			name:    "other commits the restored member's pending update",
			prepare: func(r *testRoom) { r.propose(1, func(g *Group) (*Message, error) { return g.ProposeUpdate() }) },
			commit: func(r *testRoom) *CommitBundle {
				return r.commit(0, CommitOptions{IncludePending: true})
			},
			wantPath: true,
		},
		{
			// The reference the restored member computes must be the one
			// the others stored.
			name: "restored member commits a proposal received before the save",
			prepare: func(r *testRoom) {
				r.propose(2, func(g *Group) (*Message, error) { return g.Propose(RemoveProposal(0)) })
			},
			commit: func(r *testRoom) *CommitBundle {
				return r.commit(1, CommitOptions{IncludePending: true})
			},
			wantPath: true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRoom(t, 3)
			r.chat("before")
			if tc.prepare != nil {
				tc.prepare(r)
			}
			r.cycle(1)
			b := tc.commit(r)
			if b.Result.HasPath != tc.wantPath {
				t.Fatalf("the commit has a path: %v, want %v", b.Result.HasPath, tc.wantPath)
			}
			// r.commit checked that everyone agrees on the new epoch; now
			// the restored member must also talk in it, before and after
			// another restore.
			r.chat("after")
			r.cycle(1)
			r.chat("again")
		})
	}
}

// addBy has member leaf add a fresh client.
func (r *testRoom) addBy(leaf int) *CommitBundle {
	r.t.Helper()
	c := newTestClient(r.t, r.suite, fmt.Sprintf("new%d", len(r.members)))
	return r.commit(leaf, CommitOptions{Proposals: []*Proposal{AddProposal(c.kp.KeyPackage)}}, c)
}

// propose has member leaf send a proposal to the hub and every member.
func (r *testRoom) propose(leaf int, mk func(*Group) (*Message, error)) {
	r.t.Helper()
	m, err := mk(r.members[leaf])
	if err != nil {
		r.t.Fatalf("leaf %d propose: %v", leaf, err)
	}
	m = transmit(r.t, m)
	if _, err := r.hub.ProcessProposal(m, testNow, nil); err != nil {
		r.t.Fatalf("hub: %v", err)
	}
	for i, g := range r.members {
		if g != nil && i != leaf {
			if _, err := g.Process(m); err != nil {
				r.t.Fatalf("leaf %d processing the proposal: %v", i, err)
			}
		}
	}
}

// TestGroupStateRemovedAndClosed saves groups at the ends of their lives: a
// member that was removed, and a group closed by a ReInit.
func TestGroupStateRemovedAndClosed(t *testing.T) {
	t.Run("removed", func(t *testing.T) {
		r := newTestRoom(t, 3)
		r.chat("before")
		leaving := r.members[2]
		auth := leaving.EpochAuthenticator()
		r.commit(0, CommitOptions{Proposals: []*Proposal{RemoveProposal(2)}})
		if !leaving.Removed() {
			t.Fatal("leaf 2 was not removed")
		}
		g := restoreGroup(t, saveGroup(t, leaving), testOptions())
		if !g.Removed() || !bytes.Equal(g.EpochAuthenticator(), auth) {
			t.Fatal("the restored removed member lost its state")
		}
		if _, err := g.Encrypt([]byte("x"), nil); !errors.Is(err, ErrRemoved) {
			t.Fatalf("a restored removed member encrypts: %v", err)
		}
	})
	t.Run("closed", func(t *testing.T) {
		r := newTestRoom(t, 2)
		ri := &ReInit{GroupID: []byte("next"), Version: MLS10, CipherSuite: r.suite.ID()}
		r.commit(0, CommitOptions{Proposals: []*Proposal{{Type: ProposalReInit, ReInit: ri}}})
		g := r.cycle(1)
		if _, err := g.Encrypt([]byte("x"), nil); !errors.Is(err, ErrGroupClosed) {
			t.Fatalf("a restored closed group encrypts: %v", err)
		}
	})
}

// TestGroupStateRefusesPendingCommit checks that a group cannot be saved
// while its own commit is staged, and that discarding the commit gives back
// exactly the state before it.
func TestGroupStateRefusesPendingCommit(t *testing.T) {
	r := newTestRoom(t, 3)
	g := r.members[1]
	before := saveGroup(t, g)
	if _, err := g.Commit(CommitOptions{ForcePath: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := wire.Marshal(g); !errors.Is(err, ErrPendingCommit) {
		t.Fatalf("saving with a staged commit: %v, want ErrPendingCommit", err)
	}
	g.DiscardPendingCommit()
	if !bytes.Equal(saveGroup(t, g), before) {
		t.Fatal("discarding the commit did not restore the saved state")
	}

	// An external joiner has nothing to save before its commit is merged.
	gi, err := r.members[0].GroupInfo(GroupInfoOptions{RatchetTree: true, ExternalPub: true})
	if err != nil {
		t.Fatal(err)
	}
	signer, err := r.suite.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	joiner, _, err := JoinExternal(transmit(t, gi).GroupInfo, nil, signer, ExternalJoinOptions{
		GroupOptions: testOptions(), Credential: BasicCredential([]byte("mimi://a.example/u/joiner")),
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wire.Marshal(joiner); !errors.Is(err, ErrPendingCommit) {
		t.Fatalf("saving an unmerged external join: %v, want ErrPendingCommit", err)
	}
	joiner.DiscardPendingCommit()
	if _, err := wire.Marshal(joiner); err == nil {
		t.Fatal("a discarded external join was saved")
	}
}

// TestRestoreGroupRejects corrupts a saved state in targeted ways, each of
// which must be refused with an error.
func TestRestoreGroupRejects(t *testing.T) {
	r := newTestRoom(t, 3)
	r.chat("hello")
	r.propose(1, func(g *Group) (*Message, error) { return g.ProposeUpdate() })
	r.deliver(r.send(0, "skipped"), "skipped", 2)
	r.deliver(r.send(0, "seen"), "seen", 1) // leaf 1 keeps a skipped key
	state := saveGroup(t, r.members[1])
	other, err := r.suite.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	otherPriv, otherPub, err := r.suite.GenerateHPKEKey()
	if err != nil {
		t.Fatal(err)
	}
	flip := func(b []byte) []byte { b = bytes.Clone(b); b[0] ^= 1; return b }

	cases := []struct {
		name   string
		mutate func(g *Group)
	}{
		{"leaf of another member", func(g *Group) { g.me = 0 }},
		{"blank leaf", func(g *Group) { g.me = 3 }},
		{"leaf outside the tree", func(g *Group) { g.me = 1 << 20 }},
		{"another signature key", func(g *Group) { g.signer = other }},
		{"short epoch secret", func(g *Group) { g.secrets.exporter = g.secrets.exporter[:16] }},
		{"confirmation tag", func(g *Group) { g.confirmationTag = flip(g.confirmationTag) }},
		{"confirmation key", func(g *Group) { g.secrets.confirmationKey = flip(g.secrets.confirmationKey) }},
		{"interim transcript hash", func(g *Group) { g.interim = flip(g.interim) }},
		{"tree hash", func(g *Group) { g.ctx.TreeHash = flip(g.ctx.TreeHash) }},
		{"cipher suite", func(g *Group) { g.ctx.CipherSuite = MLS_128_DHKEMP256_AES128GCM_SHA256_P256 }},
		{"unsupported cipher suite", func(g *Group) { g.ctx.CipherSuite = 0x0a0a }},
		{"node key outside the tree", func(g *Group) { g.nodeKeys[1<<20] = hpkeKey{otherPriv, otherPub} }},
		{"node key for a blank node", func(g *Group) { g.nodeKeys[6] = hpkeKey{otherPriv, otherPub} }},
		{"node key pair mismatch", func(g *Group) {
			k := g.nodeKeys[leafNode(g.me)]
			g.nodeKeys[leafNode(g.me)] = hpkeKey{otherPriv, k.pub}
		}},
		{"no leaf key", func(g *Group) { delete(g.nodeKeys, leafNode(g.me)) }},
		{"update key pair mismatch", func(g *Group) {
			for pub := range g.updateKeys {
				g.updateKeys[pub] = otherPriv
			}
		}},
		{"future resumption PSK", func(g *Group) { g.resumption[g.ctx.Epoch+1] = g.secrets.resumptionPSK }},
		{"too many resumption PSKs", func(g *Group) {
			for e := range uint64(resumptionPSKsKept + 1) {
				g.resumption[e] = g.secrets.resumptionPSK
			}
		}},
		{"secret tree node missing", func(g *Group) {
			for x := range g.keys.tree.nodes {
				delete(g.keys.tree.nodes, x)
				break
			}
		}},
		{"secret tree leaf held twice", func(g *Group) { g.keys.tree.nodes[root(g.keys.tree.nLeaves)] = g.secrets.encryption }},
		{"secret tree node outside the tree", func(g *Group) { g.keys.tree.nodes[99] = g.secrets.encryption }},
		{"secret tree width", func(g *Group) { g.keys.tree.nLeaves = 3 }},
		{"secret tree of another width", func(g *Group) {
			g.keys.tree = newSecretTree(g.suite, g.secrets.encryption, 2*g.tree.nLeaves)
		}},
		{"ratchet outside the tree", func(g *Group) {
			g.keys.tree.ratchets[LeafIndex(g.keys.tree.nLeaves)] = g.keys.tree.ratchets[g.me]
		}},
		{"skipped generation not skipped", func(g *Group) {
			h := g.keys.tree.ratchets[0][applicationRatchet]
			h.skipped[h.next] = keyAndNonce{make([]byte, g.suite.nk), make([]byte, g.suite.nn)}
		}},
		{"short skipped key", func(g *Group) {
			h := g.keys.tree.ratchets[0][applicationRatchet]
			for gen, kn := range h.skipped {
				h.skipped[gen] = keyAndNonce{kn.key[1:], kn.nonce}
			}
		}},
		{"too many skipped keys", func(g *Group) {
			h := g.keys.tree.ratchets[0][applicationRatchet]
			h.next += maxSkippedKeys + 1
			for gen := range uint32(maxSkippedKeys + 1) {
				h.skipped[gen] = keyAndNonce{make([]byte, g.suite.nk), make([]byte, g.suite.nn)}
			}
		}},
		{"pending proposal of another epoch", func(g *Group) {
			m, err := DecodeMessage(g.pending[0].message)
			if err != nil {
				t.Fatal(err)
			}
			m.Public.Content.Epoch++
			g.pending[0].message = wire.MustMarshal(m)
		}},
		{"pending proposal that is not one", func(g *Group) { g.pending[0].message = []byte{0, 1, 0, 1} }},
		{"pending proposal from a non-member", func(g *Group) {
			m, err := DecodeMessage(g.pending[0].message)
			if err != nil {
				t.Fatal(err)
			}
			m.Public.Content.Sender.Index = 3
			g.pending[0].message = wire.MustMarshal(m)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := restoreGroup(t, state, testOptions())
			tc.mutate(g)
			bad, err := wire.Marshal(g)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := RestoreGroup(bad, testOptions()); err == nil {
				t.Fatal("the corrupted state restored")
			} else {
				t.Logf("%v", err)
			}
		})
	}

	t.Run("format version", func(t *testing.T) {
		bad := bytes.Clone(state)
		bad[0]++
		if _, err := RestoreGroup(bad, testOptions()); err == nil {
			t.Fatal("a state of another format restored")
		}
	})
	t.Run("trailing byte", func(t *testing.T) {
		if _, err := RestoreGroup(append(bytes.Clone(state), 0), testOptions()); err == nil {
			t.Fatal("a state with a trailing byte restored")
		}
	})
	t.Run("truncated", func(t *testing.T) {
		for n := range len(state) {
			if _, err := RestoreGroup(state[:n], testOptions()); err == nil {
				t.Fatalf("the state truncated to %d of %d bytes restored", n, len(state))
			}
		}
	})
	t.Run("every bit flipped", func(t *testing.T) {
		// Flips inside secrets that nothing can check (a ratchet secret,
		// the exporter secret) restore; whatever restores must encode to
		// exactly its input, so no two states mean the same group.
		var accepted int
		for i := range len(state) {
			for _, bit := range []byte{0x01, 0x80} {
				bad := bytes.Clone(state)
				bad[i] ^= bit
				g, err := RestoreGroup(bad, testOptions())
				if err != nil {
					continue
				}
				accepted++
				if re := saveGroup(t, g); !bytes.Equal(re, bad) {
					t.Fatalf("flipping bit %#x of byte %d restores a group that encodes differently", bit, i)
				}
			}
		}
		t.Logf("%d of %d single-bit corruptions restored (bits of unverifiable secrets)", accepted, 2*len(state))
	})
}

// TestGroupStateVectors follows the working group's passive-client vectors
// (every supported suite, PrivateMessage handshakes included) with the
// client saved and restored before every message it processes.
func TestGroupStateVectors(t *testing.T) {
	for _, file := range []string{"passive-client-handling-commit.json", "passive-client-random.json", "commit.json"} {
		t.Run(file, func(t *testing.T) {
			var vs []passiveVector
			mlsvectors.Load(t, file, &vs)
			for i, v := range vs {
				s := suiteFor(t, file, v.CipherSuite)
				if len(v.Epochs) == 0 {
					continue
				}
				t.Run(fmt.Sprint(i), func(t *testing.T) { runPassiveRestoring(t, s, &v) })
			}
		})
	}
}

func runPassiveRestoring(t *testing.T, s *Suite, v *passiveVector) {
	kpm, err := DecodeMessage(v.KeyPackage)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := s.ParseSigningKey(v.SignaturePriv)
	if err != nil {
		t.Fatal(err)
	}
	psks := vectorPSKs{}
	for _, p := range v.ExternalPSKs {
		psks[string(p.ID)] = p.PSK
	}
	wm, err := DecodeMessage(v.Welcome)
	if err != nil {
		t.Fatal(err)
	}
	bundle := &KeyPackageBundle{KeyPackage: kpm.KeyPackage, InitKey: v.InitPriv, EncryptionKey: v.EncryptionPriv, SignatureKey: signer}
	var tree []byte
	if len(v.RatchetTree) > 0 {
		tree = v.RatchetTree
	}
	now := func() uint64 { return kpm.KeyPackage.LeafNode.Lifetime.NotBefore }
	opts := GroupOptions{PSKs: psks, Now: now}
	g, err := JoinFromWelcome(wm.Welcome, bundle, tree, opts)
	if err != nil {
		t.Fatalf("join: %v", err)
	}
	process := func(raw []byte, what string) {
		t.Helper()
		g = restoreGroup(t, saveGroup(t, g), opts)
		m, err := DecodeMessage(raw)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := g.Process(m); err != nil {
			t.Fatalf("%s after a restore: %v", what, err)
		}
	}
	for e, ep := range v.Epochs {
		for pi, pb := range ep.Proposals {
			process(pb, fmt.Sprintf("epoch %d proposal %d", e, pi))
		}
		process(ep.Commit, fmt.Sprintf("epoch %d commit", e))
		if !bytes.Equal(g.EpochAuthenticator(), ep.EpochAuthenticator) {
			t.Fatalf("epoch %d: epoch authenticator %x, want %x", e, g.EpochAuthenticator(), []byte(ep.EpochAuthenticator))
		}
	}
}

// FuzzRestoreGroup feeds corrupted member states to RestoreGroup: nothing may
// panic, whatever restores must encode back to its input (an input of an
// earlier format to its current form), and a restored group must be
// usable. The seeds are kept small (a one- and a two-member group) because
// the fuzzer minimizes every new input in time quadratic in its length;
// between them they cover every part of the state: ratchets with skipped
// keys, a pending proposal, an Update's key, a removed member, past epochs
// with used ratchets and changed leaves, and a held epoch.
// testdata/fuzz/FuzzRestoreGroup adds states of versions 1 and 2.
func FuzzRestoreGroup(f *testing.F) {
	r := newTestRoom(f, 1)
	f.Add(saveGroup(f, r.members[0]))
	r.add(0, newTestClient(f, r.suite, "m1"))
	r.deliver(r.send(0, "skipped"), "skipped")
	r.deliver(r.send(0, "seen"), "seen", 1)
	r.deliver(r.send(1, "back"), "back", 0)
	r.propose(0, func(g *Group) (*Message, error) { return g.ProposeUpdate() })
	f.Add(saveGroup(f, r.members[0]))
	f.Add(saveGroup(f, r.members[1]))
	leaving := r.members[1]
	r.commit(0, CommitOptions{Proposals: []*Proposal{RemoveProposal(1)}})
	f.Add(saveGroup(f, leaving))
	f.Add(saveGroup(f, r.members[0])) // two past epochs, leaf 1 changed
	if !r.members[0].HoldEpoch(r.members[0].Epoch() - 1) {
		f.Fatal("the committer cannot hold the epoch its commit ended")
	}
	f.Add(saveGroup(f, r.members[0]))
	// No trimming: whatever restores must be the whole input.
	opts := testOptions()
	opts.PastEpochs = MaxPastEpochs
	f.Fuzz(func(t *testing.T, state []byte) {
		g, err := RestoreGroup(state, opts)
		if err != nil {
			return
		}
		want := state
		if state[0] != memberStateVersion {
			want = upgrade(state)
		}
		if re := saveGroup(t, g); !bytes.Equal(re, want) {
			t.Fatalf("a restored group encodes differently")
		}
		for _, e := range g.held {
			if len(g.past) == 0 || e < g.past[0].epoch || e >= g.Epoch() {
				t.Fatalf("epoch %d restored as held but not kept", e)
			}
		}
		// Every leaf a past epoch can name must decode (a late message's
		// sender is looked up this way).
		for i, p := range g.past {
			for l := range min(p.keys.tree.nLeaves, 64) {
				if enc, ok := g.leafIn(i, LeafIndex(l)); ok {
					_ = mustDecodeLeaf(enc)
				}
			}
		}
		_ = g.PendingProposals()
		_, _ = g.Export("fuzz", nil, 16)
		_, _ = g.Encrypt([]byte("fuzz"), nil)
		_, _ = g.Commit(CommitOptions{IncludePending: true})
	})
}
