package mls

import (
	"bytes"
	"errors"
	"testing"

	"github.com/mimihub/mimi-hub/mimi/wire"
)

// TestExternalProposalDeterministic checks, for every supported suite, that a
// derived external-sender key and its proposals are the same bytes every
// time (a replicated hub signs inside its state machine), and that hub and
// members accept and commit them.
func TestExternalProposalDeterministic(t *testing.T) {
	secret := bytes.Repeat([]byte{7}, 32)
	for _, cs := range SupportedCipherSuites() {
		t.Run(cs.String(), func(t *testing.T) {
			s := must(cs.Suite())
			k1 := must(s.DeriveSigningKey(secret, "test hub"))
			k2 := must(s.DeriveSigningKey(secret, "test hub"))
			if !bytes.Equal(k1.Bytes(), k2.Bytes()) || !bytes.Equal(k1.PublicKey(), k2.PublicKey()) {
				t.Fatal("the derived key differs between two derivations")
			}
			if other := must(s.DeriveSigningKey(secret, "another label")); bytes.Equal(other.PublicKey(), k1.PublicKey()) {
				t.Fatal("the label does not separate keys")
			}
			hubSender := ExternalSender{SignatureKey: k1.PublicKey(), Credential: BasicCredential([]byte("mimi://a.example"))}

			creator := must(s.GenerateSigningKey())
			g := must(CreateGroup(s, creator, CreateOptions{GroupOptions: testOptions(), Extensions: Extensions{ExternalSendersExtension(ExternalSenders{hubSender})},
				Credential: BasicCredential([]byte("mimi://a.example/u/creator")), Lifetime: testLifetime}))
			joinerKey := must(s.GenerateSigningKey())
			kp := must(NewKeyPackage(s, joinerKey, KeyPackageOptions{Credential: BasicCredential([]byte("mimi://a.example/u/joiner")), Lifetime: testLifetime}))
			b := must(g.Commit(CommitOptions{Proposals: []*Proposal{AddProposal(kp.KeyPackage)}, WelcomeRatchetTree: true, GroupInfo: GroupInfoOptions{RatchetTree: true, ExternalPub: true}}))
			g.MergePendingCommit()
			joiner := must(JoinFromWelcome(transmit(t, b.Welcome).Welcome, kp, nil, testOptions()))
			hub := must(NewFollower(transmit(t, b.GroupInfo).GroupInfo, nil, Config{}))

			m1 := must(NewExternalProposal(g.GroupID(), g.Epoch(), 0, k1, RemoveProposal(1)))
			m2 := must(NewExternalProposal(g.GroupID(), g.Epoch(), 0, k2, RemoveProposal(1)))
			if !bytes.Equal(wire.MustMarshal(m1), wire.MustMarshal(m2)) {
				t.Fatal("the same external proposal signed twice differs")
			}
			if _, err := hub.ProcessProposal(transmit(t, m1), testNow, nil); err != nil {
				t.Fatalf("hub: %v", err)
			}
			for _, m := range []*Group{g, joiner} {
				if _, err := m.Process(transmit(t, m1)); err != nil {
					t.Fatalf("member: %v", err)
				}
			}
			// An external proposal signed by another key is refused.
			forged := must(NewExternalProposal(g.GroupID(), g.Epoch(), 0, must(s.GenerateSigningKey()), RemoveProposal(0)))
			if _, err := hub.ProcessProposal(transmit(t, forged), testNow, nil); !errors.Is(err, ErrSignature) {
				t.Fatalf("hub takes a forged external proposal: %v", err)
			}
			c := must(g.Commit(CommitOptions{IncludePending: true, GroupInfo: GroupInfoOptions{ExternalPub: true}}))
			res, err := hub.ProcessCommit(transmit(t, c.Commit), transmit(t, c.GroupInfo).GroupInfo, testNow, nil)
			if err != nil {
				t.Fatalf("hub refuses the commit of the external Remove: %v", err)
			}
			if len(res.Removed) != 1 || res.Removed[0].Leaf != 1 || res.Removed[0].Proposer.Type != SenderExternal {
				t.Fatalf("removed %+v", res.Removed)
			}
			if _, err := joiner.Process(transmit(t, c.Commit)); err != nil || !joiner.Removed() {
				t.Fatalf("the removed member: %v, removed %v", err, joiner.Removed())
			}
		})
	}
}
