package fsm

import (
	"bytes"
	"os"
	"slices"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/room"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

func secret(b byte) []byte { return bytes.Repeat([]byte{b}, room.HubSecretSize) }

// hubSender returns the hub's external sender for suite 1.
func (n *node) hubSender() mls.ExternalSender {
	n.t.Helper()
	var out mls.ExternalSender
	_ = n.f.Read(func(s *State) error {
		senders, ok := s.HubSenders()
		if !ok {
			n.t.Fatal("the hub has no keys")
		}
		out = senders[0].Sender
		return nil
	})
	return out
}

// createHubRoom has m create room id on n, listing the hub as external
// sender (what the client library does).
func (n *node) createHubRoom(m *member, id proto.URI) {
	n.t.Helper()
	n.createRoom(m, id, mls.ExternalSendersExtension(mls.ExternalSenders{n.hubSender()}))
}

func TestHubKeySetOnce(t *testing.T) {
	n := newNode(t, "a.example")
	before := n.state()
	n.refused(before, n.apply(CmdHubKey, nil, "b.example", &HubKeyBody{Secret: secret(1)}), NotAllowed, "a peer sets the hub's key")
	n.refused(before, n.apply(CmdHubKey, nil, "", &HubKeyBody{Secret: secret(1)[:5]}), Invalid, "a short secret")
	n.ok(n.apply(CmdHubKey, nil, "", &HubKeyBody{Secret: secret(1)}), "set the key")
	first := n.hubSender()
	n.ok(n.apply(CmdHubKey, nil, "", &HubKeyBody{Secret: secret(2)}), "a second key")
	if got := n.hubSender(); !bytes.Equal(got.SignatureKey, first.SignatureKey) {
		t.Fatal("a second CmdHubKey replaced the first key")
	}
	if string(first.Credential.Identity) != "mimi://a.example" {
		t.Fatalf("the hub's credential names %q", first.Credential.Identity)
	}
	// A room must list the hub once the hub has keys.
	alice := newMember(t, proto.ClientURI("a.example", "alice", "phone"))
	n.register(alice.uri, "alice-token")
	before = n.state()
	s, _ := mls.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519.Suite()
	pol := proto.DefaultPolicy()
	g, _ := mls.CreateGroup(s, alice.signer, mls.CreateOptions{GroupOptions: options(&n.now), GroupID: []byte(proto.RoomURI("a.example", "r")), Extensions: mls.Extensions{pol.Extension()},
		Credential: mls.BasicCredential([]byte(alice.uri)), Capabilities: caps, Lifetime: mls.Lifetime{NotBefore: n.now/1000 - 60, NotAfter: n.now/1000 + 86400}})
	gi, _ := g.GroupInfo(mls.GroupInfoOptions{ExternalPub: true})
	n.refused(before, n.apply(CmdCreateRoom, nil, "", &CreateRoomBody{Room: proto.RoomURI("a.example", "r"), Client: alice.uri, GroupInfo: gi, Tree: wire.MustMarshal(g.Tree())}), Invalid, "a room without the hub as external sender")
	n.createHubRoom(alice, proto.RoomURI("a.example", "r"))
	replay(t, n)
}

// TestRemoveClients revokes a local client from every room: the hosted
// room gets the hub's Remove, the room hosted elsewhere gets a request to
// its hub, the client's streams stop. Then a peer's request for a hosted
// room: only for its own clients.
func TestRemoveClients(t *testing.T) {
	n := newNode(t, "a.example")
	n.ok(n.apply(CmdHubKey, nil, "", &HubKeyBody{Secret: secret(1)}), "hub key")
	alice1 := newMember(t, proto.ClientURI("a.example", "alice", "phone"))
	alice2 := newMember(t, proto.ClientURI("a.example", "alice", "laptop"))
	n.register(alice1.uri, "t1")
	n.register(alice2.uri, "t2")
	hosted, remote := proto.RoomURI("a.example", "club"), proto.RoomURI("b.example", "elsewhere")
	n.createHubRoom(alice1, hosted)
	// Alice1 adds Alice2 and Bob (b.example).
	bob := newMember(t, proto.ClientURI("b.example", "bob", "laptop"))
	kp2, kpb := alice2.keyPackage(t, n.now), bob.keyPackage(t, n.now)
	patch := &proto.ParticipantListPatch{AddUsers: []proto.UserRoles{{User: proto.UserURI("b.example", "bob"), Roles: []proto.Role{proto.RoleRegularUser}}}}
	if _, resp := n.commit(alice1, hosted, "", mls.CommitOptions{Proposals: []*mls.Proposal{patch.Proposal(), mls.AddProposal(kp2.KeyPackage), mls.AddProposal(kpb.KeyPackage)}}); resp.Code != proto.UpdateSuccess {
		t.Fatal(resp.Description)
	}
	n.ok(n.apply(CmdSubscribe, nil, "", &SubscribeBody{Client: alice2.uri, Room: hosted, Subscribe: true}), "subscribe hosted")
	n.ok(n.apply(CmdSubscribe, nil, "", &SubscribeBody{Client: alice2.uri, Room: remote, Subscribe: true}), "subscribe remote")

	before := n.state()
	n.refused(before, n.apply(CmdRemoveClients, nil, "", &RemoveClientsBody{Clients: []proto.URI{bob.uri}}), NotAllowed, "revoking another provider's client")
	n.refused(before, n.apply(CmdRemoveClients, nil, "", &RemoveClientsBody{}), Invalid, "revoking nobody")
	r := n.ok(n.apply(CmdRemoveClients, nil, "", &RemoveClientsBody{Clients: []proto.URI{alice2.uri}}), "revoke Alice2")
	var res RemoveClientsResult
	if err := wire.Unmarshal(r.Body, &res); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Proposed, []proto.URI{hosted}) || !slices.Equal(res.Asked, []proto.URI{remote}) || len(res.Unable) != 0 {
		t.Fatalf("result %+v", res)
	}
	var queues []PeerQueue
	_ = n.f.Read(func(s *State) error { queues = s.Outbox(100); return nil })
	kinds := map[string][]OutKind{}
	for _, q := range queues {
		for _, it := range q.Items {
			kinds[q.Domain] = append(kinds[q.Domain], it.Kind)
			if it.Kind == OutRemoveClients {
				var req proto.RemoveClientsRequest
				if err := wire.Unmarshal(it.Data, &req); err != nil || !slices.Equal(req.Clients, []proto.URI{alice2.uri}) || it.Room != remote {
					t.Fatalf("removeClients item %+v: %+v %v", it, req, err)
				}
			}
		}
	}
	if !slices.Contains(kinds["b.example"], OutRemoveClients) || !slices.Contains(kinds["b.example"], OutFanout) {
		t.Fatalf("b.example's outbox: %v (want the hub's Remove fanned out and the request for %s)", kinds["b.example"], remote)
	}
	before = n.state()
	for _, it := range n.stream(alice2.uri, 0) {
		if m, err := mls.DecodeMessage(it.Data); err == nil && m.Public != nil && m.Public.Content.Sender.Type == mls.SenderExternal {
			t.Fatal("the revoked client received the hub's Remove")
		}
	}
	if len(n.stream(alice1.uri, 0)) == 0 {
		t.Fatal("Alice1 did not receive the hub's Remove")
	}

	// b.example asks the hub to remove Bob (its own client): queued; for
	// Alice1 (not its client): refused.
	n.refused(before, n.apply(CmdRemoveClients, nil, "b.example", &RemoveClientsBody{Room: hosted, Clients: []proto.URI{alice1.uri}}), NotAllowed, "b.example removes a.example's client")
	n.refused(before, n.apply(CmdRemoveClients, nil, "b.example", &RemoveClientsBody{Room: proto.RoomURI("a.example", "none"), Clients: []proto.URI{bob.uri}}), NotFound, "a room not hosted here")
	n.ok(n.apply(CmdRemoveClients, nil, "b.example", &RemoveClientsBody{Room: hosted, Clients: []proto.URI{bob.uri}}), "b.example removes Bob")
	r = n.apply(CmdRemoveClients, nil, "b.example", &RemoveClientsBody{Room: hosted, Clients: []proto.URI{bob.uri}})
	if r.Kind != OK || !r.unchanged {
		t.Fatalf("asking again: %s, unchanged %v", r.Kind, r.unchanged)
	}
	// Alice1 commits what the hub queued: Alice2 and Bob are out.
	if _, resp := n.commit(alice1, hosted, "", mls.CommitOptions{ForcePath: true, References: room.QueuedReferences(alice1.group, 0)}); resp.Code == proto.UpdateSuccess {
		t.Fatal("Alice1's group had not received the hub's proposals, yet the commit passed")
	}
	for _, it := range n.stream(alice1.uri, 0) {
		if m, err := mls.DecodeMessage(it.Data); err == nil && m.Public != nil && m.Public.Content.ContentType == mls.ContentProposal {
			if _, err := alice1.group.Process(m); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, resp := n.commit(alice1, hosted, "", mls.CommitOptions{ForcePath: true, References: room.QueuedReferences(alice1.group, 0)}); resp.Code != proto.UpdateSuccess {
		t.Fatalf("committing the hub's Removes: %s", resp.Description)
	}
	_ = n.f.Read(func(s *State) error {
		info, _ := s.Room(hosted)
		if info.Members != 1 {
			t.Fatalf("%d members left, want Alice1 alone", info.Members)
		}
		return nil
	})
	replay(t, n)
}

// TestUnnumberedFanout takes fanout from a hub that implements only the
// seed: no Mimi-Sequence, messages in arrival order, a resent request
// recognized by its messages' digests.
func TestUnnumberedFanout(t *testing.T) {
	id := proto.RoomURI("seed.example", "r")
	prov, bob, g := followRemote(t, id, proto.ClientURI("seed.example", "s", "1"))
	msg := func(text string) proto.FanoutMessage {
		m, err := g.Encrypt([]byte(text), nil)
		if err != nil {
			t.Fatal(err)
		}
		return proto.FanoutMessage{Message: m, Timestamp: prov.now}
	}
	one, two, three := msg("one"), msg("two"), msg("three")
	prov.ok(prov.apply(CmdFanout, nil, "seed.example", &FanoutBody{Room: id, Batch: proto.FanoutBatch{one, two}}), "first batch")
	before := prov.state()
	r := prov.apply(CmdFanout, nil, "seed.example", &FanoutBody{Room: id, Batch: proto.FanoutBatch{one, two}})
	if r.Kind != OK {
		t.Fatalf("a resent batch: %s", r.Err())
	}
	if !bytes.Equal(before, prov.state()) {
		t.Fatal("a resent batch changed the state")
	}
	prov.ok(prov.apply(CmdFanout, nil, "seed.example", &FanoutBody{Room: id, Batch: proto.FanoutBatch{two, three}}), "an overlapping batch")
	items := prov.stream(bob, 0)
	var got []uint64
	for _, it := range items {
		got = append(got, it.HubSeq)
	}
	if len(items) != 3 || !slices.Equal(got, []uint64{1, 2, 3}) || !bytes.Equal(items[2].Data, wire.MustMarshal(three.Message)) {
		t.Fatalf("stream %v", got)
	}
	replay(t, prov)
}

// TestSnapshotVersion1Restores restores a snapshot the previous release
// wrote (testdata/snapshot-v1.bin: a hub with a room and a queued
// SelfRemove, before hub keys). It decodes, re-encodes as version 2, and
// its room works on, without hub proposals until it lists the hub.
func TestSnapshotVersion1Restores(t *testing.T) {
	data, err := os.ReadFile("testdata/snapshot-v1.bin")
	if err != nil {
		t.Fatal(err)
	}
	if data[0] != 1 {
		t.Fatalf("the fixture is format %d", data[0])
	}
	f, _ := New(Config{Domain: "a.example", Bounds: Bounds{InboxLimit: 50}})
	if err := f.Restore(&memSink{*bytes.NewBuffer(data)}); err != nil {
		t.Fatal(err)
	}
	enc, _ := f.Encode()
	if enc[0] != stateVersionV4 { // its outbox numbered per queue until CmdOutboxIDs
		t.Fatalf("saved as format %d", enc[0])
	}
	_ = f.Read(func(s *State) error {
		info, ok := s.Room(proto.RoomURI("a.example", "clubhouse"))
		if !ok || info.Members != 3 || len(info.Participants) != 2 {
			t.Fatalf("room %+v", info)
		}
		if s.rooms[info.ID].HubProposals() {
			t.Fatal("a room of the previous release takes hub proposals")
		}
		return nil
	})
	// The hub gets keys later; the old room is unaffected.
	cmd, _ := NewCommand(CmdHubKey, nil, "", &HubKeyBody{Secret: secret(3)})
	cmd, _ = Stamp(cmd, t0+60_000)
	if r := f.Apply(&raft.Log{Type: raft.LogCommand, Data: cmd}).(*Result); r.Kind != OK {
		t.Fatal(r.Err())
	}
	again, _ := f.Encode()
	restored, _ := New(Config{Domain: "a.example", Bounds: Bounds{InboxLimit: 50}})
	if err := restored.Restore(&memSink{*bytes.NewBuffer(again)}); err != nil {
		t.Fatal(err)
	}
	if got, _ := restored.Encode(); !bytes.Equal(got, again) {
		t.Fatal("a version 2 snapshot does not restore to itself")
	}
}
