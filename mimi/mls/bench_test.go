package mls

import (
	"crypto/rand"
	"fmt"
	mrand "math/rand/v2"
	"runtime"
	"testing"

	"github.com/mimihub/mimi-hub/mimi/wire"
)

// steadyGroup is a synthetic group in steady state: every member has
// committed once, so every parent node holds a key, as in a group that has
// lived for a while. Its HPKE keys are random (nobody decrypts here); its
// signatures, parent hashes and tree hashes are real.
type steadyGroup struct {
	suite   *Suite
	groupID []byte
	tree    *Tree
	signers []*SigningKey
	// privs holds the HPKE private key of every node when the group was
	// built with real keys (realKeys), so any leaf can become a member.
	privs map[nodeIndex][]byte
}

func randomKey(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// newSteadyGroup builds the group. With realKeys every HPKE key is a real
// key pair whose private half is kept (slow: n log n key generations);
// otherwise HPKE keys are random bytes.
func newSteadyGroup(tb testing.TB, n int, realKeys bool) *steadyGroup {
	tb.Helper()
	s := testSuite(tb)
	g := &steadyGroup{suite: s, groupID: randomKey(tb, 16), tree: newTree(s), privs: map[nodeIndex][]byte{}}
	hpkeKey := func(x nodeIndex) []byte {
		if !realKeys {
			return randomKey(tb, 32)
		}
		priv, pub, err := s.GenerateHPKEKey()
		if err != nil {
			tb.Fatal(err)
		}
		g.privs[x] = priv
		return pub
	}
	caps := completeCapabilities(s, Capabilities{Proposals: []ProposalType{ProposalSelfRemove}}, CredentialBasic)
	for i := range n {
		signer, err := s.GenerateSigningKey()
		if err != nil {
			tb.Fatal(err)
		}
		g.signers = append(g.signers, signer)
		leaf := &LeafNode{
			EncryptionKey: hpkeKey(leafNode(LeafIndex(i))),
			SignatureKey:  signer.PublicKey(),
			Credential:    BasicCredential(fmt.Appendf(nil, "mimi://a.example/u/user%d/c/1", i)),
			Capabilities:  caps,
			Source:        SourceKeyPackage,
			Lifetime:      testLifetime,
		}
		if err := leaf.Sign(signer, nil, 0); err != nil {
			tb.Fatal(err)
		}
		if _, err := g.tree.addLeaf(leaf); err != nil {
			tb.Fatal(err)
		}
	}
	// Every member commits once, in leaf order: each path overwrites the
	// upper part of the earlier ones, which keeps every parent hash valid.
	for i := range n {
		l := LeafIndex(i)
		steps := g.tree.filteredDirectPath(l)
		keys := make([][]byte, len(steps))
		for k := range keys {
			keys[k] = hpkeKey(steps[k].node)
		}
		ph, err := g.tree.setPath(l, steps, keys)
		if err != nil {
			tb.Fatal(err)
		}
		leaf, _ := g.tree.Leaf(l)
		leaf.EncryptionKey = hpkeKey(leafNode(l))
		leaf.Source, leaf.Lifetime, leaf.ParentHash = SourceCommit, Lifetime{}, ph
		if err := leaf.Sign(g.signers[i], g.groupID, l); err != nil {
			tb.Fatal(err)
		}
		if err := g.tree.setLeaf(l, leaf); err != nil {
			tb.Fatal(err)
		}
	}
	return g
}

// groupInfo returns a GroupInfo for the group at epoch 1, signed by leaf 0.
func (g *steadyGroup) groupInfo(tb testing.TB) *GroupInfo {
	gi := &GroupInfo{
		GroupContext: GroupContext{
			Version: MLS10, CipherSuite: g.suite.id, GroupID: g.groupID, Epoch: 1,
			TreeHash: g.tree.Hash(), ConfirmedTranscriptHash: randomKey(tb, 32),
		},
		ConfirmationTag: randomKey(tb, 32),
	}
	if err := gi.Sign(g.signers[0]); err != nil {
		tb.Fatal(err)
	}
	return gi
}

// puppet returns a Group over a copy of f's public state that can commit as
// any member; its epoch secrets are random, since the hub cannot check them.
func (g *steadyGroup) puppet(tb testing.TB, f *Follower) *Group {
	copyOf, err := RestoreFollower(wire.MustMarshal(f), Config{})
	if err != nil {
		tb.Fatal(err)
	}
	p := &Group{groupState: copyOf.groupState, opts: testOptions(), nodeKeys: keyRing{}}
	es, err := g.suite.epochSecretsFromJoiner(randomKey(tb, 32), nil, p.ctxEnc)
	if err != nil {
		tb.Fatal(err)
	}
	p.installEpoch(es, randomKey(tb, 32))
	return p
}

// BenchmarkFollowerCommit measures the hub following one commit (one Add and
// an UpdatePath from a random member) in steady-state groups. It reports
// the public state's heap cost per member too.
//
//	go test ./mimi/mls -run '^$' -bench FollowerCommit -benchtime 200x
func BenchmarkFollowerCommit(b *testing.B) {
	for _, n := range []int{2, 100, 1000, 10_000, 100_000} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			g := newSteadyGroup(b, n, false)
			gi := g.groupInfo(b)
			treeBytes := wire.MustMarshal(g.tree)
			g.tree = nil
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			hub, err := NewFollower(gi, treeBytes, Config{})
			if err != nil {
				b.Fatal(err)
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			runtime.KeepAlive(treeBytes) // live in both readings
			perMember := float64(after.HeapAlloc-before.HeapAlloc) / float64(n)

			p := g.puppet(b, hub)
			rng := mrand.New(mrand.NewPCG(1, 2))
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				p.me = LeafIndex(rng.IntN(n))
				p.signer = g.signers[p.me]
				joiner := newTestClient(b, g.suite, "joiner")
				bundle, err := p.Commit(CommitOptions{Proposals: []*Proposal{AddProposal(joiner.kp.KeyPackage)}, ForcePath: true})
				if err != nil {
					b.Fatal(err)
				}
				p.MergePendingCommit()
				g.signers = append(g.signers, joiner.signer)
				n++
				cm, gim := transmit(b, bundle.Commit), transmit(b, bundle.GroupInfo).GroupInfo
				b.StartTimer()
				if _, err := hub.ProcessCommit(cm, gim, testNow, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(perMember, "B/member")
			runtime.KeepAlive(hub)
		})
	}
}
