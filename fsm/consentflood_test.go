package fsm

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// TestConsentFloodKeepsWelcome: consent notices are the one inbox item
// another user (or a peer) can make without a KeyPackage or a room, so a
// flood of them must not push out what the inbox held before. Bob has an
// unread Welcome; Mallory (local) and a hostile peer's user then send
// random consent operations at him (requests and cancels on many room
// scopes, repeats, grants and revokes with Bob as requester), three times
// the inbox's bound. Bob's Welcome must still be there, with no gap, and
// consent notices must hold at most half of his inbox.
func TestConsentFloodKeepsWelcome(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			n := newNode(t, "a.example")
			n.fast = true
			alice := newMember(t, proto.ClientURI("a.example", "alice", "phone"))
			bob := newMember(t, proto.ClientURI("a.example", "bob", "laptop"))
			mallory := proto.ClientURI("a.example", "mallory", "x")
			for _, c := range []proto.URI{alice.uri, bob.uri, mallory} {
				n.register(c, string(c))
			}
			bobUser, malloryUser, eve := proto.UserURI("a.example", "bob"), proto.UserURI("a.example", "mallory"), proto.UserURI("c.example", "eve")
			roomID := proto.RoomURI("a.example", "clubhouse")
			n.createRoom(alice, roomID)
			kp := bob.keyPackage(t, n.now)
			n.ok(n.apply(CmdUploadKeyPackages, nil, "", &UploadBody{Client: bob.uri, KeyPackages: []*mls.Message{mls.NewKeyPackageMessage(kp.KeyPackage)}}), "upload")
			claim := &ClaimBody{Request: proto.KeyMaterialRequest{Protocol: proto.MLS10, RequestingUser: proto.UserURI("a.example", "alice"),
				TargetUsers: []proto.URI{bobUser}, Room: roomID}}
			var km proto.KeyMaterialResponse
			if err := wire.Unmarshal(n.ok(n.apply(CmdClaimKeyMaterial, nil, "", claim), "claim").Body, &km); err != nil || km.Users[0].Status != proto.UserSuccess {
				t.Fatalf("claim: %+v, %v", km, err)
			}
			patch := &proto.ParticipantListPatch{AddUsers: []proto.UserRoles{{User: bobUser, Roles: []proto.Role{proto.RoleRegularUser}}}}
			if _, resp := n.commit(alice, roomID, "", mls.CommitOptions{Proposals: []*mls.Proposal{patch.Proposal(), mls.AddProposal(km.Users[0].Clients[0].KeyPackage.KeyPackage)}}); resp.Code != proto.UpdateSuccess {
				t.Fatalf("add Bob: %s %s", resp.Code, resp.Description)
			}
			welcome := uint64(0)
			for _, it := range n.stream(bob.uri, 0) {
				if it.Kind == ItemWelcome {
					welcome = it.Seq
				}
			}
			if welcome == 0 {
				t.Fatal("Bob got no Welcome")
			}

			rng := rand.New(rand.NewPCG(seed, 17))
			ops := []proto.ConsentOperation{proto.ConsentRequest, proto.ConsentCancel, proto.ConsentGrant, proto.ConsentRevoke}
			for range 3 * n.cfg.Bounds.InboxLimit {
				e := proto.ConsentEntry{Operation: ops[rng.IntN(len(ops))], Requester: malloryUser, Target: bobUser}
				if rng.IntN(3) > 0 {
					scope := proto.RoomURI("a.example", fmt.Sprint("fake", rng.IntN(5)))
					e.Room = &scope
				}
				peer := ""
				switch {
				case e.Operation == proto.ConsentGrant || e.Operation == proto.ConsentRevoke:
					e.Requester, e.Target = bobUser, malloryUser // Mallory decides about Bob
				case rng.IntN(2) == 0:
					e.Requester, peer = eve, "c.example" // a hostile peer's user
				}
				if r := n.apply(CmdConsent, nil, peer, &ConsentBody{Entry: e}); r.Kind != OK && r.Kind != Limit {
					t.Fatalf("%s %+v: %s", e.Operation, e, r.Err())
				}
			}
			_ = n.f.Read(func(s *State) error {
				items, gap, _, _ := s.Stream(bob.uri, 0, 1000)
				if gap {
					t.Error("consent notices pushed Bob's older items out (gap)")
				}
				if len(items) == 0 || items[0].Seq != welcome || items[0].Kind != ItemWelcome {
					t.Errorf("Bob's Welcome (seq %d) is gone: the stream starts %+v", welcome, items[:min(len(items), 1)])
				}
				notices := 0
				for _, it := range items {
					if it.Kind == ItemConsent {
						notices++
					}
				}
				if notices > n.cfg.Bounds.InboxLimit/2 {
					t.Errorf("%d consent notices in Bob's inbox, want at most %d (half of it)", notices, n.cfg.Bounds.InboxLimit/2)
				}
				return nil
			})
		})
	}
}
