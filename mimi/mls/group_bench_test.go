package mls

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/mimihub/mimi-hub/mimi/wire"
)

// members returns real Groups for the given leaves of a steady group built
// with real keys: each knows the private keys of its leaf and direct path,
// and all share one set of epoch secrets.
func (g *steadyGroup) members(tb testing.TB, leaves ...LeafIndex) []*Group {
	tb.Helper()
	tree := wire.MustMarshal(g.tree)
	gc := GroupContext{Version: MLS10, CipherSuite: g.suite.id, GroupID: g.groupID, Epoch: 1, TreeHash: g.tree.Hash(), ConfirmedTranscriptHash: randomKey(tb, 32)}
	joiner := randomKey(tb, 32)
	tag := randomKey(tb, 32)
	var out []*Group
	for _, l := range leaves {
		t, err := DecodeTree(g.suite, tree, wire.DefaultMaxVector)
		if err != nil {
			tb.Fatal(err)
		}
		m := &Group{groupState: groupState{suite: g.suite, tree: t}, opts: testOptions(), me: l, signer: g.signers[l], nodeKeys: keyRing{}}
		m.setContext(&gc)
		m.interim = interimTranscriptHash(g.suite, gc.ConfirmedTranscriptHash, tag)
		x := leafNode(l)
		m.nodeKeys[x] = hpkeKey{g.privs[x], t.encryptionKey(x)}
		for _, p := range directPath(x, t.nLeaves) {
			m.nodeKeys[p] = hpkeKey{g.privs[p], t.encryptionKey(p)}
		}
		es, err := g.suite.epochSecretsFromJoiner(joiner, nil, m.ctxEnc)
		if err != nil {
			tb.Fatal(err)
		}
		m.installEpoch(es, tag)
		out = append(out, m)
	}
	return out
}

// BenchmarkGroupCommit measures a member creating a commit with a full
// UpdatePath (create) and another member processing it, decrypting its path
// secret (process), in steady-state groups.
//
//	go test ./mimi/mls -run '^$' -bench GroupCommit -benchtime 100x
func BenchmarkGroupCommit(b *testing.B) {
	for _, n := range []int{1000, 10_000} {
		g := newSteadyGroup(b, n, true)
		for _, phase := range []string{"create", "process"} {
			b.Run(fmt.Sprintf("%s/members=%d", phase, n), func(b *testing.B) {
				ms := g.members(b, LeafIndex(n/3), LeafIndex(2*n/3))
				committer, receiver := ms[0], ms[1]
				b.ResetTimer()
				for range b.N {
					if phase == "process" {
						b.StopTimer()
					}
					bundle, err := committer.Commit(CommitOptions{ForcePath: true})
					if err != nil {
						b.Fatal(err)
					}
					committer.MergePendingCommit()
					if phase == "create" {
						b.StopTimer()
					}
					cm := transmit(b, bundle.Commit)
					if phase == "process" {
						b.StartTimer()
					}
					if _, err := receiver.Process(cm); err != nil {
						b.Fatal(err)
					}
					if phase == "create" {
						b.StartTimer()
					}
				}
				b.StopTimer()
				if !bytes.Equal(committer.EpochAuthenticator(), receiver.EpochAuthenticator()) {
					b.Fatal("committer and receiver disagree")
				}
			})
		}
	}
}

// BenchmarkMessage measures application message protection of 1 KiB
// payloads in a two-member group.
//
//	go test ./mimi/mls -run '^$' -bench Message
func BenchmarkMessage(b *testing.B) {
	payload := bytes.Repeat([]byte("m"), 1024)
	b.Run("encrypt", func(b *testing.B) {
		r := newTestRoom(b, 2)
		b.SetBytes(int64(len(payload)))
		b.ResetTimer()
		for range b.N {
			if _, err := r.members[0].Encrypt(payload, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decrypt", func(b *testing.B) {
		r := newTestRoom(b, 2)
		msgs := make([]*Message, b.N)
		for i := range msgs {
			m, err := r.members[0].Encrypt(payload, nil)
			if err != nil {
				b.Fatal(err)
			}
			msgs[i] = transmit(b, m)
		}
		b.SetBytes(int64(len(payload)))
		b.ResetTimer()
		for _, m := range msgs {
			if _, err := r.members[1].Process(m); err != nil {
				b.Fatal(err)
			}
		}
	})
}
