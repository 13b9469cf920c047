package fsm

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
)

// welcomeBob has hub claim one of bob's KeyPackages for room and fan out a
// Welcome naming it, so that bob's inbox holds a Welcome he has not read.
func welcomeBob(t *testing.T, n *node, bob *member, hub string, room proto.URI) {
	t.Helper()
	kp := bob.keyPackage(t, n.now)
	n.ok(n.apply(CmdUploadKeyPackages, nil, "", &UploadBody{Client: bob.uri, KeyPackages: []*mls.Message{mls.NewKeyPackageMessage(kp.KeyPackage)}}), "upload")
	bobUser, _ := bob.uri.UserOf()
	claim := &ClaimBody{Request: proto.KeyMaterialRequest{Protocol: proto.MLS10, RequestingUser: proto.UserURI(hub, "alice"),
		TargetUsers: []proto.URI{bobUser}, Room: room}}
	n.ok(n.apply(CmdClaimKeyMaterial, nil, hub, claim), "claim")
	ref, _ := kp.KeyPackage.Ref()
	wl := &mls.Welcome{CipherSuite: kp.KeyPackage.CipherSuite,
		Secrets:            []mls.EncryptedGroupSecrets{{NewMember: ref, EncryptedGroupSecrets: mls.HPKECiphertext{KEMOutput: []byte{1}, Ciphertext: []byte{2}}}},
		EncryptedGroupInfo: []byte{3}}
	n.ok(n.apply(CmdFanout, nil, hub, &FanoutBody{Room: room, FirstSeq: 1, Batch: proto.FanoutBatch{{Message: mls.NewWelcomeMessage(wl), Timestamp: 1}}}), "Welcome")
}

// TestHostilePeerConsentFlood: a hostile peer (x.example) sends our user
// Bob consent requests, cancels and unsolicited grants, repeated and from
// ever new users of its own, many times the inbox's size. Each is a valid
// MIMI request, but none may push out the Welcome another hub sent Bob
// before (he would never join that room), and an operation that changes
// nothing (a request already pending, a grant already given) notifies
// nobody.
func TestHostilePeerConsentFlood(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			n := newNode(t, "b.example")
			bob := newMember(t, proto.ClientURI("b.example", "bob", "laptop"))
			n.register(bob.uri, "t")
			bobUser, _ := bob.uri.UserOf()
			club := proto.RoomURI("a.example", "club")
			welcomeBob(t, n, bob, "a.example", club)
			rooms := []*proto.URI{nil, new(proto.URI(proto.RoomURI("x.example", "r1"))), new(proto.URI(proto.RoomURI("x.example", "r2")))}
			limit := n.cfg.Bounds.InboxLimit
			for i := range 6 * limit {
				name := fmt.Sprint("u", rng.IntN(3))
				if rng.IntN(4) == 0 {
					name = fmt.Sprint("new", i)
				}
				requester := proto.UserURI("x.example", name)
				e := proto.ConsentEntry{Requester: requester, Target: bobUser, Room: rooms[rng.IntN(len(rooms))]}
				switch op := rng.IntN(4); op {
				case 0, 1:
					e.Operation = proto.ConsentRequest
				case 2:
					e.Operation = proto.ConsentCancel
				default:
					// An unsolicited grant from x's user to Bob as requester.
					e.Operation, e.Requester, e.Target = proto.ConsentGrant, bobUser, requester
					if rng.IntN(2) == 0 {
						e.KeyPackages = []*mls.Message{mls.NewKeyPackageMessage(newMember(t, proto.ClientURI("x.example", name, "d")).keyPackage(t, n.now).KeyPackage)}
					}
				}
				n.ok(n.apply(CmdConsent, nil, "x.example", &ConsentBody{Entry: e}), "consent "+e.Operation.String())
				items := n.stream(bob.uri, 0)
				if len(items) == 0 || items[0].Kind != ItemWelcome || items[0].Room != club {
					t.Fatalf("after %d hostile consent operations Bob's Welcome to %s is gone: %d items", i+1, club, len(items))
				}
				// A repeat: the same entry again changes nothing.
				n.ok(n.apply(CmdConsent, nil, "x.example", &ConsentBody{Entry: e}), "repeat")
				if again := n.stream(bob.uri, 0); again[len(again)-1].Seq != items[len(items)-1].Seq {
					t.Fatalf("a repeated %s notified Bob again", e.Operation)
				}
			}
			replay(t, n)
		})
	}
}
