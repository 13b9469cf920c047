package mls

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/mimihub/mimi-hub/mimi/wire"
)

// receiveLate has member leaf process m and checks that it decrypts to text,
// sent by leaf from (whose leaf node in the message's epoch is fromNode) in
// epoch.
func receiveLate(t *testing.T, g *Group, m *Message, text string, epoch uint64, from LeafIndex, fromNode *LeafNode) {
	t.Helper()
	got, err := g.Process(m)
	if err != nil {
		t.Fatalf("leaf %d at epoch %d: a message of epoch %d: %v", g.MyLeaf(), g.Epoch(), epoch, err)
	}
	switch {
	case got.ContentType != ContentApplication || string(got.ApplicationData) != text:
		t.Fatalf("decrypted a %s %q, want the application message %q", got.ContentType, got.ApplicationData, text)
	case got.Epoch != epoch:
		t.Fatalf("Received.Epoch %d, want %d", got.Epoch, epoch)
	case got.Sender != MemberSender(from):
		t.Fatalf("sender %+v, want leaf %d", got.Sender, from)
	case got.SenderLeaf == nil || !bytes.Equal(got.SenderLeaf.SignatureKey, fromNode.SignatureKey) ||
		!bytes.Equal(got.SenderLeaf.Credential.Identity, fromNode.Credential.Identity):
		t.Fatalf("the sender's leaf node is not the one leaf %d had in epoch %d", from, epoch)
	case got.ContentKey == nil || got.ContentNonce == nil:
		t.Fatal("no content key and nonce for an abuse report")
	}
}

// leafOf returns g's leaf node at l, failing if it is blank.
func leafOf(t *testing.T, g *Group, l LeafIndex) *LeafNode {
	t.Helper()
	leaf, ok := g.Tree().Leaf(l)
	if !ok {
		t.Fatalf("leaf %d is blank", l)
	}
	return leaf
}

// forceUpdate has member leaf commit an empty commit with a path: a new
// epoch that changes the committer's leaf.
func (r *testRoom) forceUpdate(leaf int) {
	r.t.Helper()
	r.commit(leaf, CommitOptions{ForcePath: true})
}

// TestLateApplicationMessages sends application messages in one epoch and
// delivers them after one or more commits: within the kept past epochs they
// decrypt, attributed to the sender's leaf in their own epoch; beyond, or
// with retention off, they are refused with ErrEpochNotRetained (an
// ErrWrongEpoch).
func TestLateApplicationMessages(t *testing.T) {
	cases := []struct {
		name string
		// pastEpochs is every member's GroupOptions.PastEpochs.
		pastEpochs int
		// between runs after the message is sent and before it is
		// delivered; it returns how many epochs it moved the group.
		between func(r *testRoom) int
		// receiver processes the late message.
		receiver int
		// wantErr is nil when the message must decrypt.
		wantErr error
	}{
		{
			name:     "one commit by another member",
			between:  func(r *testRoom) int { r.forceUpdate(1); return 1 },
			receiver: 2,
		},
		{
			// The committer merges its commit when the hub accepts it,
			// before it reads the messages the hub accepted earlier.
			name:     "the receiver's own commit",
			between:  func(r *testRoom) int { r.forceUpdate(2); return 1 },
			receiver: 2,
		},
		{
			name:     "a commit by the sender",
			between:  func(r *testRoom) int { r.forceUpdate(0); return 1 },
			receiver: 1,
		},
		{
			name: "two commits, the default retention",
			between: func(r *testRoom) int {
				r.forceUpdate(1)
				r.forceUpdate(2)
				return 2
			},
			receiver: 2,
		},
		{
			name:       "five commits, five epochs kept",
			pastEpochs: 5,
			between: func(r *testRoom) int {
				for i := range 5 {
					r.forceUpdate(1 + i%2)
				}
				return 5
			},
			receiver: 1,
		},
		{
			name: "three commits, older than the default retention",
			between: func(r *testRoom) int {
				r.forceUpdate(1)
				r.forceUpdate(2)
				r.forceUpdate(1)
				return 3
			},
			receiver: 2,
			wantErr:  ErrEpochNotRetained,
		},
		{
			name:       "two commits, one epoch kept",
			pastEpochs: 1,
			between: func(r *testRoom) int {
				r.forceUpdate(1)
				r.forceUpdate(2)
				return 2
			},
			receiver: 1,
			wantErr:  ErrEpochNotRetained,
		},
		{
			name:       "retention off",
			pastEpochs: NoPastEpochs,
			between:    func(r *testRoom) int { r.forceUpdate(1); return 1 },
			receiver:   2,
			wantErr:    ErrEpochNotRetained,
		},
		{
			// The member joins after the message's epoch: it never had
			// its keys.
			name: "a member added after the message",
			between: func(r *testRoom) int {
				r.add(1, newTestClient(r.t, r.suite, "late-joiner"))
				return 1
			},
			receiver: 3,
			wantErr:  ErrEpochNotRetained,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRoom(t, 3)
			for _, g := range r.members {
				g.opts.PastEpochs = tc.pastEpochs
			}
			r.chat("before")
			epoch := r.members[0].Epoch()
			sender := leafOf(t, r.members[0], 0)
			m := r.send(0, "late")
			r.deliver(m, "late", 1, 2) // a copy the others read in time
			m = r.send(0, "crossing")
			moved := tc.between(r)
			for _, g := range r.members {
				g.opts.PastEpochs = tc.pastEpochs
			}
			g := r.members[tc.receiver]
			if g.Epoch() != epoch+uint64(moved) {
				t.Fatalf("the receiver is at epoch %d, want %d", g.Epoch(), epoch+uint64(moved))
			}
			if tc.wantErr != nil {
				_, err := g.Process(m)
				if !errors.Is(err, tc.wantErr) || !errors.Is(err, ErrWrongEpoch) {
					t.Fatalf("a message of epoch %d at epoch %d: %v, want %v (an ErrWrongEpoch)", epoch, g.Epoch(), err, tc.wantErr)
				}
				return
			}
			receiveLate(t, g, m, "crossing", epoch, 0, sender)
			// Each key decrypts once: the replay is refused, and so is a
			// copy after a restart.
			if _, err := g.Process(transmit(t, m)); err == nil {
				t.Fatal("a late message decrypted twice")
			}
			g = restoreGroup(t, saveGroup(t, g), g.opts)
			r.members[tc.receiver] = g
			if _, err := g.Process(transmit(t, m)); err == nil {
				t.Fatal("a late message decrypted twice across a restore")
			}
			r.chat("after")
		})
	}
}

// TestLateMessagesOutOfOrder delivers late messages of two past epochs in
// any order, interleaved with the current epoch's: skipped keys of a past
// epoch work as in the current one.
func TestLateMessagesOutOfOrder(t *testing.T) {
	r := newTestRoom(t, 3)
	e1 := r.members[0].Epoch()
	leaves1 := []*LeafNode{leafOf(t, r.members[0], 0), leafOf(t, r.members[0], 1)}
	a1 := r.send(0, "a1")
	a2 := r.send(0, "a2")
	b1 := r.send(1, "b1")
	r.forceUpdate(1) // leaf 1 changes: b1 verifies against its old leaf
	c1 := r.send(2, "c1")
	leaf2 := leafOf(t, r.members[0], 2)
	r.forceUpdate(0)
	now := r.send(1, "now")

	g := r.members[2]
	receiveLate(t, g, now, "now", e1+2, 1, leafOf(t, g, 1))
	receiveLate(t, g, a2, "a2", e1, 0, leaves1[0])
	receiveLate(t, g, b1, "b1", e1, 1, leaves1[1])
	receiveLate(t, g, a1, "a1", e1, 0, leaves1[0])
	if _, err := g.Process(transmit(t, a1)); err == nil {
		t.Fatal("a skipped key of a past epoch decrypted twice")
	}
	// A member's own message is the one it cannot decrypt (its sending
	// keys are spent), in a past epoch as in the current one.
	if _, err := g.Process(c1); err == nil {
		t.Fatal("a member decrypted its own message")
	}
	receiveLate(t, r.members[0], c1, "c1", e1+1, 2, leaf2)
}

// TestLateMessageOfDepartedSender has a member send, then be removed and
// its leaf taken by a new member, before its message arrives: the message
// is still its own, verified against its leaf of the message's epoch.
func TestLateMessageOfDepartedSender(t *testing.T) {
	r := newTestRoom(t, 3)
	r.chat("before")
	epoch := r.members[0].Epoch()
	leaving := leafOf(t, r.members[0], 2)
	m := r.send(2, "goodbye")
	r.commit(0, CommitOptions{Proposals: []*Proposal{RemoveProposal(2)}})
	r.add(1, newTestClient(t, r.suite, "newcomer")) // takes leaf 2
	newcomer := leafOf(t, r.members[1], 2)
	if bytes.Equal(newcomer.SignatureKey, leaving.SignatureKey) {
		t.Fatal("the newcomer has the leaver's key")
	}
	for _, l := range []int{0, 1} {
		receiveLate(t, r.members[l], transmit(t, m), "goodbye", epoch, 2, leaving)
	}
	// The newcomer was not in the group then.
	if _, err := r.members[2].Process(transmit(t, m)); !errors.Is(err, ErrEpochNotRetained) {
		t.Fatalf("the newcomer processing a message from before it joined: %v", err)
	}
}

// TestPastEpochRefusesHandshakes checks that proposals and commits of a
// past epoch are refused as ErrWrongEpoch (never ErrEpochNotRetained: no
// retention would make them acceptable), in either wire format, without
// consuming anything; and that a message of a future epoch is refused too.
func TestPastEpochRefusesHandshakes(t *testing.T) {
	r := newTestRoom(t, 3)
	r.chat("before")
	// Leaf 1 commits too, but leaf 2's commit wins the epoch.
	lost, err := r.members[1].Commit(CommitOptions{ForcePath: true})
	if err != nil {
		t.Fatal(err)
	}
	proposal, err := r.members[1].Propose(RemoveProposal(0))
	if err == nil {
		t.Fatal("proposed with a commit pending")
	}
	r.members[1].DiscardPendingCommit()
	proposal, err = r.members[1].Propose(RemoveProposal(0))
	if err != nil {
		t.Fatal(err)
	}
	private := privateProposal(t, r.members[1], UpdateProposal(leafOf(t, r.members[1], 1)))
	future := r.send(0, "future")
	future.Private.Epoch += 5
	r.forceUpdate(2)

	g := r.members[0]
	before := saveGroup(t, g)
	cases := []struct {
		name string
		m    *Message
	}{
		{"commit of the past epoch", lost.Commit},
		{"proposal of the past epoch", proposal},
		{"proposal of the past epoch as a PrivateMessage", private},
		{"application message of a future epoch", future},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := g.Process(transmit(t, tc.m))
			if !errors.Is(err, ErrWrongEpoch) || errors.Is(err, ErrEpochNotRetained) {
				t.Fatalf("%v, want ErrWrongEpoch and not ErrEpochNotRetained", err)
			}
			if !bytes.Equal(saveGroup(t, g), before) {
				t.Fatal("a refused message changed the group")
			}
		})
	}
}

// privateProposal has g send p as a PrivateMessage, as this package never
// does but other implementations may.
func privateProposal(t *testing.T, g *Group, p *Proposal) *Message {
	t.Helper()
	ac, err := g.signedContent(WirePrivateMessage, FramedContent{ContentType: ContentProposal, Proposal: p})
	if err != nil {
		t.Fatal(err)
	}
	pm, err := g.keys.encryptPrivate(ac, g.me, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &Message{Version: MLS10, WireFormat: WirePrivateMessage, Private: pm}
}

// TestPastEpochsMemory checks what a past epoch keeps: no handshake
// ratchet, only the ratchets of the senders it heard from (plus the
// unexpanded node secrets), and only the leaves its commit changed.
func TestPastEpochsMemory(t *testing.T) {
	r := newTestRoom(t, 8)
	r.deliver(r.send(3, "hello"), "hello", 0)
	r.commit(0, CommitOptions{Proposals: []*Proposal{RemoveProposal(5)}})
	g := r.members[0]
	if len(g.past) != 2 {
		t.Fatalf("%d past epochs kept, want 2", len(g.past))
	}
	p := g.past[1]
	st := p.keys.tree
	// Leaf 0 sent nothing that epoch, so its ratchets were never derived
	// either: only leaf 3's.
	if len(st.ratchets) != 1 || st.ratchets[3] == nil || st.ratchets[3][handshakeRatchet] != nil || st.ratchets[3][applicationRatchet] == nil {
		t.Fatalf("the past epoch keeps ratchets %v, want leaf 3's application ratchet only", st.ratchets)
	}
	if _, err := st.ratchet(4, handshakeRatchet); err == nil {
		t.Fatal("a past epoch derived a handshake ratchet")
	}
	// Expanding the path to leaf 3 of 8 leaves a sibling on each of the 3
	// levels.
	if len(st.nodes) != 3 {
		t.Fatalf("the past epoch keeps %d node secrets, want 3", len(st.nodes))
	}
	// The commit removed leaf 5 and updated the committer's leaf 0.
	if len(p.leaves) != 2 || p.leaves[5] == nil || p.leaves[0] == nil {
		t.Fatalf("the past epoch keeps leaves %v, want 0 and 5", keysOf(p.leaves))
	}
	if p.keys.membership != nil {
		t.Fatal("a past epoch keeps its membership key")
	}
}

func keysOf[K comparable, V any](m map[K]V) []K {
	var out []K
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestPastEpochsPersist saves and restores members with past epochs: the
// restored member decrypts late messages it had not read, refuses those it
// had, and a restore with a smaller PastEpochs drops the oldest epochs.
func TestPastEpochsPersist(t *testing.T) {
	r := newTestRoom(t, 3)
	e := r.members[0].Epoch()
	sender := leafOf(t, r.members[0], 0)
	read := r.send(0, "read before the save")
	unread := r.send(0, "unread before the save")
	older := r.send(1, "two epochs old")
	r.forceUpdate(2)
	r.forceUpdate(2)
	receiveLate(t, r.members[2], read, "read before the save", e, 0, sender)

	state := saveGroup(t, r.members[2])
	g := restoreGroup(t, state, testOptions())
	if len(g.past) != 2 || g.past[0].epoch != e || g.past[1].epoch != e+1 {
		t.Fatalf("the restored group keeps %d past epochs", len(g.past))
	}
	if _, err := g.Process(transmit(t, read)); err == nil {
		t.Fatal("a message read before the save decrypted again after the restore")
	}
	receiveLate(t, g, transmit(t, unread), "unread before the save", e, 0, sender)

	// Keeping one epoch only: the oldest goes at the restore.
	opts := testOptions()
	opts.PastEpochs = 1
	g, err := RestoreGroup(state, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(g.past) != 1 || g.past[0].epoch != e+1 {
		t.Fatalf("restored with one past epoch, the group keeps %d", len(g.past))
	}
	if _, err := g.Process(transmit(t, older)); !errors.Is(err, ErrEpochNotRetained) {
		t.Fatalf("a message of a dropped epoch: %v", err)
	}
	if re := saveGroup(t, g); bytes.Equal(re, state) || len(re) >= len(state) {
		t.Fatal("dropping a past epoch did not shrink the state")
	}
	opts.PastEpochs = NoPastEpochs
	if g, err = RestoreGroup(state, opts); err != nil || len(g.past) != 0 {
		t.Fatalf("restored with retention off: %d past epochs, %v", len(g.past), err)
	}
}

// TestRestoreGroupEarlierFormats restores states saved in the formats
// before held epochs (testdata/fuzz/FuzzRestoreGroup/v2-*) and before past
// epochs (v1-*): each restores holding no epoch (a version 1 state keeping
// no past epoch either), saves in the current format, and works, holding
// epochs included.
func TestRestoreGroupEarlierFormats(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzRestoreGroup", "v[12]-*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no version 1 or 2 states (%v)", err)
	}
	seen := map[byte]bool{}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			state := readCorpusBytes(t, file)
			version := state[0]
			if want := filepath.Base(file)[1] - '0'; version != want {
				t.Fatalf("format %d, want %d", version, want)
			}
			seen[version] = true
			g, err := RestoreGroup(state, testOptions())
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case len(g.held) != 0:
				t.Fatalf("a version %d state restored holding %v", version, g.held)
			case version == memberStateV1 && len(g.past) != 0:
				t.Fatalf("a version 1 state restored with %d past epochs", len(g.past))
			case version == memberStateV2 && len(g.past) == 0:
				t.Fatal("the version 2 seeds keep past epochs, this one restored with none")
			}
			if re := saveGroup(t, g); !bytes.Equal(re, upgrade(state)) {
				t.Fatalf("a version %d state does not save as the same state in version %d", version, memberStateVersion)
			}
			if g.Removed() {
				if _, err := g.Encrypt([]byte("x"), nil); !errors.Is(err, ErrRemoved) {
					t.Fatalf("a removed member encrypts: %v", err)
				}
				return
			}
			if _, err := g.Encrypt([]byte("after the upgrade"), nil); err != nil {
				t.Fatal(err)
			}
			kept, ended := len(g.past), g.Epoch()
			if _, err := g.Commit(CommitOptions{ForcePath: true}); err != nil {
				t.Fatal(err)
			}
			g.MergePendingCommit()
			if want := min(kept+1, DefaultPastEpochs); len(g.past) != want {
				t.Fatalf("after a commit the upgraded group keeps %d past epochs, want %d", len(g.past), want)
			}
			if !g.HoldEpoch(ended) {
				t.Fatal("the upgraded group cannot hold the epoch its commit ended")
			}
			if got := restoreGroup(t, saveGroup(t, g), testOptions()); !slices.Equal(got.HeldEpochs(), []uint64{ended}) {
				t.Fatalf("restored holding %v, want [%d]", got.HeldEpochs(), ended)
			}
		})
	}
	if !seen[memberStateV1] || !seen[memberStateV2] {
		t.Fatalf("seeds of formats %v; want 1 and 2", keysOf(seen))
	}
}

// upgrade returns the current encoding of a state of an earlier format:
// the same fields, then an empty vector for each field added since
// (past_epochs in version 2, held_epochs in version 3).
func upgrade(state []byte) []byte {
	out := append([]byte{memberStateVersion}, state[1:]...)
	for range memberStateVersion - state[0] {
		out = append(out, 0)
	}
	return out
}

// readCorpusBytes reads a fuzz corpus file holding one []byte.
func readCorpusBytes(t *testing.T, file string) []byte {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2 || lines[0] != "go test fuzz v1" || !strings.HasPrefix(lines[1], "[]byte(") || !strings.HasSuffix(lines[1], ")") {
		t.Fatalf("%s is not a corpus file of one []byte", file)
	}
	s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return []byte(s)
}

// TestRestoreGroupRejectsPastEpochs corrupts the past epochs of a saved
// state; each corruption must be refused.
func TestRestoreGroupRejectsPastEpochs(t *testing.T) {
	r := newTestRoom(t, 3)
	r.deliver(r.send(0, "in epoch 2"), "in epoch 2", 1)
	r.commit(0, CommitOptions{Proposals: []*Proposal{RemoveProposal(2)}})
	r.deliver(r.send(0, "in epoch 3"), "in epoch 3", 1)
	state := saveGroup(t, r.members[1])
	other := newTestRoom(t, 2)
	flip := func(b []byte) []byte { b = bytes.Clone(b); b[0] ^= 1; return b }

	cases := []struct {
		name   string
		mutate func(g *Group)
	}{
		{"past epochs out of order", func(g *Group) { g.past[0], g.past[1] = g.past[1], g.past[0] }},
		{"a past epoch twice", func(g *Group) { g.past[0] = g.past[1] }},
		{"a gap before the current epoch", func(g *Group) { g.past = g.past[:1] }},
		{"more past epochs than epochs", func(g *Group) {
			for len(g.past) <= int(g.ctx.Epoch) {
				g.past = append([]*pastEpoch{g.past[0]}, g.past...)
			}
		}},
		{"past epoch of another group", func(g *Group) {
			ctx := other.members[0].GroupContext()
			ctx.Epoch = g.past[0].epoch
			g.past[0].ctxEnc = wire.MustMarshal(&ctx)
		}},
		{"short sender data secret", func(g *Group) { g.past[0].keys.senderData = g.past[0].keys.senderData[1:] }},
		{"past secret tree node missing", func(g *Group) {
			st := g.past[1].keys.tree
			for x := range st.nodes {
				delete(st.nodes, x)
				break
			}
		}},
		{"past secret tree leaf held twice", func(g *Group) {
			st := g.past[1].keys.tree
			st.nodes[root(st.nLeaves)] = g.secrets.encryption
		}},
		{"past secret tree width", func(g *Group) { g.past[1].keys.tree.nLeaves = 3 }},
		{"changed leaf outside the epoch's tree", func(g *Group) {
			g.past[1].leaves[LeafIndex(g.past[1].keys.tree.nLeaves)] = nil
		}},
		{"changed leaf that did not change", func(g *Group) { g.past[1].leaves[1] = g.tree.nodes.get(leafNode(1)) }},
		{"blank leaf listed as changed", func(g *Group) { g.past[1].leaves[3] = nil }},
		{"changed leaf that does not decode", func(g *Group) { g.past[1].leaves[2] = flip(g.past[1].leaves[2])[:10] }},
		{"past epochs of a removed member", func(g *Group) { g.removed = true }},
		{"the current epoch held", func(g *Group) { g.held = []uint64{g.Epoch()} }},
		{"an epoch held but not kept", func(g *Group) { g.held = []uint64{g.past[0].epoch - 1} }},
		{"an epoch held but no past epoch kept", func(g *Group) { g.past, g.held = nil, []uint64{g.Epoch() - 1} }},
		{"held epochs out of order", func(g *Group) { g.held = []uint64{g.past[1].epoch, g.past[0].epoch} }},
		{"an epoch held twice", func(g *Group) { g.held = []uint64{g.past[0].epoch, g.past[0].epoch} }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := restoreGroup(t, state, testOptions())
			if len(g.past) != 2 || g.past[1].leaves[2] == nil {
				t.Fatalf("the state keeps %d past epochs, want 2 with leaf 2's removal", len(g.past))
			}
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
}

// TestLeafChanges checks the tree's record of the leaves a transaction
// changed: a leaf changed back is not a change, and rollback forgets.
func TestLeafChanges(t *testing.T) {
	r := newTestRoom(t, 3)
	tree := r.members[0].tree
	leaf1 := tree.nodes.get(leafNode(1))
	tree.begin()
	for _, step := range []struct {
		l   LeafIndex
		enc []byte
	}{{1, nil}, {2, nil}, {1, leaf1}} {
		if err := tree.setRaw(leafNode(step.l), step.enc); err != nil {
			t.Fatal(err)
		}
	}
	got := tree.leafChanges()
	if len(got) != 1 || got[2] == nil {
		t.Fatalf("changes %v, want leaf 2 only", keysOf(got))
	}
	tree.rollback()
	if len(tree.leafChanges()) != 0 {
		t.Fatal("changes outlive the rollback")
	}
	if !bytes.Equal(tree.Hash(), r.hub.Tree().Hash()) {
		t.Fatal("the rollback did not restore the tree")
	}
}
