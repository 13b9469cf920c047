package mls

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/mimihub/mimi-hub/internal/mlsvectors"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

func TestVectorsWelcome(t *testing.T) {
	var vs []struct {
		CipherSuite uint16 `json:"cipher_suite"`
		InitPriv    hexb   `json:"init_priv"`
		SignerPub   hexb   `json:"signer_pub"`
		KeyPackage  hexb   `json:"key_package"`
		Welcome     hexb   `json:"welcome"`
	}
	mlsvectors.Load(t, "welcome.json", &vs)
	for _, v := range vs {
		s := suiteFor(t, "welcome.json", v.CipherSuite)
		kpm, err := DecodeMessage(v.KeyPackage)
		if err != nil {
			t.Fatal(err)
		}
		wm, err := DecodeMessage(v.Welcome)
		if err != nil {
			t.Fatal(err)
		}
		gs, gi, _, err := openWelcome(wm.Welcome, kpm.KeyPackage, v.InitPriv, nil)
		if err != nil {
			t.Fatalf("%s: %v", s.id, err)
		}
		if err := gi.VerifySignature(s, v.SignerPub); err != nil {
			t.Errorf("%s: GroupInfo signature: %v", s.id, err)
		}
		ctx := wire.MustMarshal(&gi.GroupContext)
		es, err := s.epochSecretsFromJoiner(gs.JoinerSecret, nil, ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !s.VerifyMAC(es.confirmationKey, gi.GroupContext.ConfirmedTranscriptHash, gi.ConfirmationTag) {
			t.Errorf("%s: confirmation tag does not verify", s.id)
		}
	}
}

func TestVectorsTreeKEMPrivate(t *testing.T) {
	type pathSecret struct {
		Node       uint32 `json:"node"`
		PathSecret hexb   `json:"path_secret"`
	}
	var vs []struct {
		CipherSuite             uint16 `json:"cipher_suite"`
		GroupID                 hexb   `json:"group_id"`
		Epoch                   uint64 `json:"epoch"`
		ConfirmedTranscriptHash hexb   `json:"confirmed_transcript_hash"`
		RatchetTree             hexb   `json:"ratchet_tree"`
		LeavesPrivate           []struct {
			Index          uint32       `json:"index"`
			EncryptionPriv hexb         `json:"encryption_priv"`
			SignaturePriv  hexb         `json:"signature_priv"`
			PathSecrets    []pathSecret `json:"path_secrets"`
		} `json:"leaves_private"`
		UpdatePaths []struct {
			Sender       uint32 `json:"sender"`
			UpdatePath   hexb   `json:"update_path"`
			PathSecrets  []hexb `json:"path_secrets"`
			CommitSecret hexb   `json:"commit_secret"`
		} `json:"update_paths"`
	}
	mlsvectors.Load(t, "treekem.json", &vs)
	for i, v := range vs {
		s := suiteFor(t, "treekem.json (private)", v.CipherSuite)
		// member builds the private view of one leaf before a path arrives.
		member := func(k int) *Group {
			tree, err := DecodeTree(s, v.RatchetTree, wire.DefaultMaxVector)
			if err != nil {
				t.Fatal(err)
			}
			lp := v.LeavesPrivate[k]
			leafPub, err := s.HPKEPublicKey(lp.EncryptionPriv)
			if err != nil {
				t.Fatal(err)
			}
			g := &Group{groupState: groupState{suite: s, tree: tree}, me: LeafIndex(lp.Index), nodeKeys: keyRing{leafNode(LeafIndex(lp.Index)): {lp.EncryptionPriv, leafPub}}}
			for _, ps := range lp.PathSecrets {
				priv, pub, err := s.DeriveKeyPair(s.DeriveSecret(ps.PathSecret, "node"))
				if err != nil {
					t.Fatal(err)
				}
				g.nodeKeys[nodeIndex(ps.Node)] = hpkeKey{priv, pub}
			}
			// The provisional context of the path is the vector's epoch.
			g.setContext(&GroupContext{Version: MLS10, CipherSuite: s.id, GroupID: v.GroupID, Epoch: v.Epoch - 1, ConfirmedTranscriptHash: v.ConfirmedTranscriptHash})
			return g
		}
		for j, up := range v.UpdatePaths {
			var path UpdatePath
			if err := wire.Unmarshal(up.UpdatePath, &path); err != nil {
				t.Fatal(err)
			}
			for k, lp := range v.LeavesPrivate {
				if lp.Index == up.Sender {
					continue
				}
				g := member(k)
				res := &CommitResult{Committer: LeafIndex(up.Sender)}
				g.tree.begin()
				if err := g.applyPath(&path, Sender{Type: SenderMember, Index: up.Sender}, res, nil); err != nil {
					t.Fatalf("%d/%d: merge: %v", i, j, err)
				}
				keys := keyRing{}
				commitSecret, err := g.decryptPath(&path, LeafIndex(up.Sender), nil, nil, keys)
				if err != nil {
					t.Fatalf("%d/%d leaf %d: decrypt: %v", i, j, lp.Index, err)
				}
				if !bytes.Equal(commitSecret, up.CommitSecret) {
					t.Errorf("%d/%d leaf %d: commit secret %x, want %x", i, j, lp.Index, commitSecret, []byte(up.CommitSecret))
				}
				lca := commonAncestor(leafNode(LeafIndex(lp.Index)), leafNode(LeafIndex(up.Sender)))
				want := up.PathSecrets[lp.Index]
				derived, _, _ := s.DeriveKeyPair(s.DeriveSecret(want, "node"))
				if !bytes.Equal(keys[lca].priv, derived) {
					t.Errorf("%d/%d leaf %d: key at the common ancestor %d does not come from the vector's path secret", i, j, lp.Index, lca)
				}
			}
		}
	}
}

// passiveVector is the format of the passive-client and scenario files.
type passiveVector struct {
	CipherSuite               uint16 `json:"cipher_suite"`
	KeyPackage                hexb   `json:"key_package"`
	InitPriv                  hexb   `json:"init_priv"`
	EncryptionPriv            hexb   `json:"encryption_priv"`
	SignaturePriv             hexb   `json:"signature_priv"`
	Welcome                   hexb   `json:"welcome"`
	RatchetTree               hexb   `json:"ratchet_tree"`
	InitialEpochAuthenticator hexb   `json:"initial_epoch_authenticator"`
	ExternalPSKs              []struct {
		ID  hexb `json:"psk_id"`
		PSK hexb `json:"psk"`
	} `json:"external_psks"`
	Epochs []struct {
		Proposals          []hexb `json:"proposals"`
		Commit             hexb   `json:"commit"`
		EpochAuthenticator hexb   `json:"epoch_authenticator"`
	} `json:"epochs"`
}

// vectorPSKs serves a vector's external PSKs.
type vectorPSKs map[string][]byte

func (p vectorPSKs) PSK(id *PreSharedKeyID) ([]byte, bool) {
	if id.Type != PSKExternal {
		return nil, false
	}
	s, ok := p[string(id.ID)]
	return s, ok
}

// followerTally counts commits the public-state follower followed alongside
// the passive clients, and those it could not (sent as PrivateMessage or
// covering a proposal sent as PrivateMessage).
type followerTally struct {
	followed, privateCommits, privateProposals int
}

func runPassiveFile(t *testing.T, file string) {
	var vs []passiveVector
	mlsvectors.Load(t, file, &vs)
	var ft followerTally
	for i, v := range vs {
		s := suiteFor(t, file, v.CipherSuite)
		t.Run(fmt.Sprintf("%d", i), func(t *testing.T) { runPassive(t, s, &v, &ft) })
	}
	t.Logf("%s: the follower followed %d commits; %d commits and %d proposals were PrivateMessages a hub cannot read", file, ft.followed, ft.privateCommits, ft.privateProposals)
}

func runPassive(t *testing.T, s *Suite, v *passiveVector, ft *followerTally) {
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
	// Vector KeyPackages may have expired; judge lifetimes at their start.
	now := func() uint64 { return kpm.KeyPackage.LeafNode.Lifetime.NotBefore }
	g, err := JoinFromWelcome(wm.Welcome, bundle, tree, GroupOptions{PSKs: psks, Now: now})
	if err != nil {
		t.Fatalf("join: %v", err)
	}
	if !bytes.Equal(g.EpochAuthenticator(), v.InitialEpochAuthenticator) {
		t.Fatalf("initial epoch authenticator %x, want %x", g.EpochAuthenticator(), []byte(v.InitialEpochAuthenticator))
	}
	// The follower starts from a GroupInfo the passive client signs.
	gim, err := g.GroupInfo(GroupInfoOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f, err := NewFollower(gim.GroupInfo, wire.MustMarshal(g.Tree()), Config{})
	if err != nil {
		t.Fatalf("follower: %v", err)
	}
	for e, ep := range v.Epochs {
		for pi, pb := range ep.Proposals {
			pm, err := DecodeMessage(pb)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := g.Process(pm); err != nil {
				t.Fatalf("epoch %d proposal %d: %v", e, pi, err)
			}
			if f != nil {
				if pm.WireFormat != WirePublicMessage {
					ft.privateProposals++
					f = nil
				} else if _, err := f.ProcessProposal(pm, now(), nil); err != nil {
					t.Fatalf("epoch %d proposal %d: follower: %v", e, pi, err)
				}
			}
		}
		cm, err := DecodeMessage(ep.Commit)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := g.Process(cm); err != nil {
			t.Fatalf("epoch %d commit: %v", e, err)
		}
		if !bytes.Equal(g.EpochAuthenticator(), ep.EpochAuthenticator) {
			t.Fatalf("epoch %d: epoch authenticator %x, want %x", e, g.EpochAuthenticator(), []byte(ep.EpochAuthenticator))
		}
		if f == nil {
			continue
		}
		if cm.WireFormat != WirePublicMessage {
			ft.privateCommits++
			f = nil
			continue
		}
		if _, err := f.ProcessCommit(cm, nil, now(), nil); err != nil {
			t.Fatalf("epoch %d commit: follower rejects what the client accepted: %v", e, err)
		}
		ft.followed++
		fc, gc := f.GroupContext(), g.GroupContext()
		if !fc.Equal(&gc) {
			t.Fatalf("epoch %d: follower and client GroupContexts differ", e)
		}
		if !bytes.Equal(wire.MustMarshal(f.Tree()), wire.MustMarshal(g.Tree())) {
			t.Fatalf("epoch %d: follower and client trees differ", e)
		}
	}
}

func TestVectorsPassiveClients(t *testing.T) {
	for _, file := range []string{
		"passive-client-welcome.json", "passive-client-handling-commit.json", "passive-client-random.json",
		"application.json", "branch.json", "commit.json", "external_join.json", "external_proposals.json", "reinit.json", "welcome_join.json",
	} {
		t.Run(file, func(t *testing.T) { runPassiveFile(t, file) })
	}
}
