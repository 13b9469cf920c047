package mls

import (
	"fmt"
	"testing"

	"github.com/mimihub/mimi-hub/mimi/wire"
)

// testNow is the clock of tests: inside every lifetime testLifetime makes.
const testNow = 1_700_000_000

var testLifetime = Lifetime{NotBefore: testNow - 3600, NotAfter: testNow + 90*86400}

func testSuite(t testing.TB) *Suite {
	t.Helper()
	s, err := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519.Suite()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func testOptions() GroupOptions {
	return GroupOptions{Now: func() uint64 { return testNow }}
}

// testClient is a would-be member: a signature key and a KeyPackage.
type testClient struct {
	name   string
	signer *SigningKey
	kp     *KeyPackageBundle
}

func newTestClient(t testing.TB, s *Suite, name string) *testClient {
	t.Helper()
	signer, err := s.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	kp, err := NewKeyPackage(s, signer, KeyPackageOptions{
		Credential:   BasicCredential([]byte("mimi://a.example/u/" + name)),
		Capabilities: Capabilities{Proposals: []ProposalType{ProposalSelfRemove}},
		Lifetime:     testLifetime,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &testClient{name: name, signer: signer, kp: kp}
}

// transmit sends m through its wire encoding, as a network would.
func transmit(t testing.TB, m *Message) *Message {
	t.Helper()
	out, err := DecodeMessage(wire.MustMarshal(m))
	if err != nil {
		t.Fatalf("re-decode %s: %v", m.WireFormat, err)
	}
	return out
}

// testRoom is a group of real members with a hub following it.
type testRoom struct {
	t       testing.TB
	suite   *Suite
	members []*Group // by leaf index; nil for free leaves
	hub     *Follower
}

// newTestRoom creates a group of n members (leaf i is member i) with a hub
// following every commit.
func newTestRoom(t testing.TB, n int) *testRoom {
	t.Helper()
	return newTestRoomSuite(t, testSuite(t), n)
}

// newTestRoomSuite is newTestRoom in suite s.
func newTestRoomSuite(t testing.TB, s *Suite, n int) *testRoom {
	t.Helper()
	creator, err := s.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	g, err := CreateGroup(s, creator, CreateOptions{
		GroupOptions: testOptions(),
		Credential:   BasicCredential([]byte("mimi://a.example/u/creator")),
		Capabilities: Capabilities{Proposals: []ProposalType{ProposalSelfRemove}},
		Lifetime:     testLifetime,
	})
	if err != nil {
		t.Fatal(err)
	}
	gi, err := g.GroupInfo(GroupInfoOptions{RatchetTree: true, ExternalPub: true})
	if err != nil {
		t.Fatal(err)
	}
	hub, err := NewFollower(transmit(t, gi).GroupInfo, nil, Config{})
	if err != nil {
		t.Fatalf("hub: %v", err)
	}
	r := &testRoom{t: t, suite: s, members: []*Group{g}, hub: hub}
	for i := 1; i < n; i++ {
		r.add(0, newTestClient(t, s, fmt.Sprintf("member%d", i)))
	}
	return r
}

// commit has member leaf commit opts, has the hub accept it, and delivers
// it (and any Welcome) to everyone.
func (r *testRoom) commit(leaf int, opts CommitOptions, joiners ...*testClient) *CommitBundle {
	r.t.Helper()
	g := r.members[leaf]
	// A hub hands GroupInfos to external joiners: they need external_pub.
	opts.GroupInfo.ExternalPub = true
	b, err := g.Commit(opts)
	if err != nil {
		r.t.Fatalf("leaf %d commit: %v", leaf, err)
	}
	r.accept(b, g, joiners...)
	return b
}

// accept has the hub accept bundle and applies it everywhere.
func (r *testRoom) accept(b *CommitBundle, committer *Group, joiners ...*testClient) {
	r.t.Helper()
	cm := transmit(r.t, b.Commit)
	res, err := r.hub.ProcessCommit(cm, transmit(r.t, b.GroupInfo).GroupInfo, testNow, nil)
	if err != nil {
		r.t.Fatalf("hub rejects a valid commit: %v", err)
	}
	for i, m := range r.members {
		if m == nil || m == committer {
			continue
		}
		if _, err := m.Process(cm); err != nil {
			r.t.Fatalf("leaf %d processing the commit: %v", i, err)
		}
	}
	if committer != nil {
		committer.MergePendingCommit()
	}
	for _, rm := range res.Removed {
		r.members[rm.Leaf] = nil
	}
	tree := wire.MustMarshal(r.hub.Tree())
	for _, j := range joiners {
		g, err := JoinFromWelcome(transmit(r.t, b.Welcome).Welcome, j.kp, tree, testOptions())
		if err != nil {
			r.t.Fatalf("%s joining: %v", j.name, err)
		}
		r.place(g)
	}
	if committer != nil && res.External {
		r.place(committer)
	}
	r.checkAgreement()
}

func (r *testRoom) place(g *Group) {
	for int(g.MyLeaf()) >= len(r.members) {
		r.members = append(r.members, nil)
	}
	r.members[g.MyLeaf()] = g
}

// add has leaf add c.
func (r *testRoom) add(leaf int, c *testClient) {
	r.t.Helper()
	r.commit(leaf, CommitOptions{Proposals: []*Proposal{AddProposal(c.kp.KeyPackage)}}, c)
}

// checkAgreement checks every member and the hub agree on the epoch.
func (r *testRoom) checkAgreement() {
	r.t.Helper()
	hc := r.hub.GroupContext()
	var auth []byte
	for i, m := range r.members {
		if m == nil {
			continue
		}
		mc := m.GroupContext()
		if !mc.Equal(&hc) {
			r.t.Fatalf("leaf %d and the hub disagree on the GroupContext (epoch %d vs %d)", i, mc.Epoch, hc.Epoch)
		}
		if auth == nil {
			auth = m.EpochAuthenticator()
		} else if string(auth) != string(m.EpochAuthenticator()) {
			r.t.Fatalf("leaf %d derives another epoch authenticator", i)
		}
	}
}
