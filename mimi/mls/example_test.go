package mls_test

import (
	"fmt"
	"log"
	"time"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// Example_groupLifecycle follows one group from creation to a member's
// departure, the way a MIMI room lives: members make every change, and the
// hub (an mls.Follower) sees each commit before anyone else and can refuse
// it. Every message crosses the "network" in its wire encoding.
func Example_groupLifecycle() {
	suite, err := mls.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519.Suite()
	check(err)
	now := uint64(time.Now().Unix())
	lifetime := mls.Lifetime{NotBefore: now - 60, NotAfter: now + 30*86400}
	options := mls.GroupOptions{}

	// Alice creates the group. The hub starts following it from a GroupInfo
	// that carries the ratchet tree.
	aliceKey, err := suite.GenerateSigningKey()
	check(err)
	alice, err := mls.CreateGroup(suite, aliceKey, mls.CreateOptions{
		GroupOptions: options,
		Credential:   mls.BasicCredential([]byte("mimi://a.example/u/alice")),
		Lifetime:     lifetime,
	})
	check(err)
	gi, err := alice.GroupInfo(mls.GroupInfoOptions{RatchetTree: true})
	check(err)
	hub, err := mls.NewFollower(send(gi).GroupInfo, nil, mls.Config{})
	check(err)

	// Bob has published a KeyPackage; Alice adds him. The hub validates the
	// commit and the GroupInfo for the new epoch; only then does Alice move
	// on and Bob join from the Welcome.
	bobKey, err := suite.GenerateSigningKey()
	check(err)
	bobKP, err := mls.NewKeyPackage(suite, bobKey, mls.KeyPackageOptions{
		Credential: mls.BasicCredential([]byte("mimi://b.example/u/bob")),
		Lifetime:   lifetime,
	})
	check(err)
	add, err := alice.Commit(mls.CommitOptions{
		Proposals: []*mls.Proposal{mls.AddProposal(bobKP.KeyPackage)},
		GroupInfo: mls.GroupInfoOptions{ExternalPub: true},
	})
	check(err)
	res, err := hub.ProcessCommit(send(add.Commit), send(add.GroupInfo).GroupInfo, now, nil)
	check(err)
	fmt.Printf("hub: epoch %d, added %s\n", res.Epoch, res.Added[0].Node.Credential.Identity)
	alice.MergePendingCommit()
	bob, err := mls.JoinFromWelcome(send(add.Welcome).Welcome, bobKP, wire.MustMarshal(hub.Tree()), options)
	check(err)

	// They talk. Application messages are PrivateMessages the hub cannot
	// read.
	hello, err := alice.Encrypt([]byte("hi Bob"), nil)
	check(err)
	got, err := bob.Process(send(hello))
	check(err)
	fmt.Printf("bob reads: %s\n", got.ApplicationData)

	// Carol joins on her own with an external commit, from the GroupInfo
	// the hub keeps for the current epoch.
	carolKey, err := suite.GenerateSigningKey()
	check(err)
	var current mls.GroupInfo
	check(wire.Unmarshal(hub.GroupInfo(), &current))
	carol, join, err := mls.JoinExternal(&current, wire.MustMarshal(hub.Tree()), carolKey, mls.ExternalJoinOptions{
		GroupOptions: options,
		Credential:   mls.BasicCredential([]byte("mimi://c.example/u/carol")),
	})
	check(err)
	res, err = hub.ProcessCommit(send(join.Commit), send(join.GroupInfo).GroupInfo, now, nil)
	check(err)
	fmt.Printf("hub: epoch %d, external join at leaf %d\n", res.Epoch, res.Committer)
	carol.MergePendingCommit()
	for _, member := range []*mls.Group{alice, bob} {
		_, err := member.Process(send(join.Commit))
		check(err)
	}

	// Bob races Alice for the next epoch. The hub accepts Alice's commit
	// and refuses Bob's, which was made for an epoch that is gone.
	bobUpdate, err := bob.Commit(mls.CommitOptions{ForcePath: true})
	check(err)
	remove, err := alice.Commit(mls.CommitOptions{Proposals: []*mls.Proposal{mls.RemoveProposal(carol.MyLeaf())}})
	check(err)
	_, err = hub.ProcessCommit(send(remove.Commit), send(remove.GroupInfo).GroupInfo, now, nil)
	check(err)
	alice.MergePendingCommit()
	_, err = hub.ProcessCommit(send(bobUpdate.Commit), send(bobUpdate.GroupInfo).GroupInfo, now, nil)
	fmt.Println("hub refuses bob's stale commit:", err != nil)
	// Bob drops his commit when he sees Alice's; Carol learns she is out.
	_, err = bob.Process(send(remove.Commit))
	check(err)
	_, err = carol.Process(send(remove.Commit))
	check(err)
	fmt.Println("carol removed:", carol.Removed())

	// Everyone left agrees on the epoch and its secrets.
	fmt.Println("alice and bob agree:", alice.Epoch() == bob.Epoch() && string(alice.EpochAuthenticator()) == string(bob.EpochAuthenticator()))
	fmt.Println("members:", hub.Tree().NumMembers())

	// Output:
	// hub: epoch 1, added mimi://b.example/u/bob
	// bob reads: hi Bob
	// hub: epoch 2, external join at leaf 2
	// hub refuses bob's stale commit: true
	// carol removed: true
	// alice and bob agree: true
	// members: 2
}

// send passes a message through its wire encoding.
func send(m *mls.Message) *mls.Message {
	out, err := mls.DecodeMessage(wire.MustMarshal(m))
	check(err)
	return out
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
