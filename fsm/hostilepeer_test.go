package fsm

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
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

// TestHostilePeerWelcomeForAnotherRoom: a.example's hub claimed Bob's
// KeyPackage for its room club. x.example, whose users are members of
// club too, sees the KeyPackage in the commit that adds Bob and, before
// a.example's Welcome reaches us, fans out a Welcome of its own naming
// that KeyPackage for its room trap. A KeyPackage claimed for a room is
// for that room's Welcome only: x's Welcome reaches nobody, Bob follows
// no room of x's, and the Welcome of club still reaches him.
func TestHostilePeerWelcomeForAnotherRoom(t *testing.T) {
	n := newNode(t, "b.example")
	bob := newMember(t, proto.ClientURI("b.example", "bob", "laptop"))
	n.register(bob.uri, "t")
	bobUser, _ := bob.uri.UserOf()
	club, trap := proto.RoomURI("a.example", "club"), proto.RoomURI("x.example", "trap")
	kp := bob.keyPackage(t, n.now)
	n.ok(n.apply(CmdUploadKeyPackages, nil, "", &UploadBody{Client: bob.uri, KeyPackages: []*mls.Message{mls.NewKeyPackageMessage(kp.KeyPackage)}}), "upload")
	n.ok(n.apply(CmdClaimKeyMaterial, nil, "a.example", &ClaimBody{Request: proto.KeyMaterialRequest{Protocol: proto.MLS10,
		RequestingUser: proto.UserURI("a.example", "alice"), TargetUsers: []proto.URI{bobUser}, Room: club}}), "claim")
	ref, _ := kp.KeyPackage.Ref()
	welcome := func(tag byte) proto.FanoutBatch {
		wl := &mls.Welcome{CipherSuite: kp.KeyPackage.CipherSuite,
			Secrets:            []mls.EncryptedGroupSecrets{{NewMember: ref, EncryptedGroupSecrets: mls.HPKECiphertext{KEMOutput: []byte{tag}, Ciphertext: []byte{tag}}}},
			EncryptedGroupInfo: []byte{tag}}
		return proto.FanoutBatch{{Message: mls.NewWelcomeMessage(wl), Timestamp: 1}}
	}
	before := n.state()
	r := n.apply(CmdFanout, nil, "x.example", &FanoutBody{Room: trap, FirstSeq: 1, Batch: welcome(1)})
	if r.Kind != OK || !bytes.Equal(before, n.state()) {
		t.Fatalf("x.example's Welcome for %s with a KeyPackage claimed for %s: %s, state changed %v", trap, club, r.Kind, !bytes.Equal(before, n.state()))
	}
	n.ok(n.apply(CmdFanout, nil, "a.example", &FanoutBody{Room: club, FirstSeq: 1, Batch: welcome(2)}), "a.example's Welcome")
	items := n.stream(bob.uri, 0)
	if len(items) != 1 || items[0].Kind != ItemWelcome || items[0].Room != club {
		t.Fatalf("Bob's stream: %+v", items)
	}
	if subs := n.subscribers(trap); len(subs) != 0 {
		t.Fatalf("Bob follows x.example's %s: %v", trap, subs)
	}
	replay(t, n)
}

func (n *node) subscribers(room proto.URI) []proto.URI {
	var subs []proto.URI
	_ = n.f.Read(func(s *State) error { subs = s.Subscribers(room); return nil })
	return subs
}

// hostileExclude is a Mimi-Exclude as long as a 64 KiB header allows:
// client URIs of other providers, of nobody, and repeats.
func hostileExclude() []proto.URI {
	var ex []proto.URI
	for i := 0; len(ex) < 2500; i++ {
		ex = append(ex, proto.ClientURI("x.example", fmt.Sprint("u", i), "d"), proto.ClientURI("b.example", fmt.Sprint("nobody", i%50), "d"))
	}
	return ex
}

// followRemote returns a follower provider (b.example) whose client Bob
// follows the room id hosted elsewhere, and the MLS group of the room's
// creator hubClient there, to make the room's messages with.
func followRemote(t testing.TB, id, hubClient proto.URI) (*node, proto.URI, *mls.Group) {
	t.Helper()
	prov := newNode(t, "b.example")
	bob := proto.ClientURI("b.example", "bob", "laptop")
	prov.register(bob, "t")
	prov.ok(prov.apply(CmdSubscribe, nil, "", &SubscribeBody{Client: bob, Room: id, Subscribe: true}), "subscribe")
	m := newMember(t, hubClient)
	suite, _ := mls.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519.Suite()
	g, err := mls.CreateGroup(suite, m.signer, mls.CreateOptions{GroupOptions: options(&prov.now), GroupID: []byte(id),
		Credential: mls.BasicCredential([]byte(m.uri)), Capabilities: caps, Lifetime: mls.Lifetime{NotBefore: prov.now/1000 - 60, NotAfter: prov.now/1000 + 86400}})
	if err != nil {
		t.Fatal(err)
	}
	return prov, bob, g
}

// followedRoom returns a follower provider (b.example) whose client Bob
// follows x.example's room trap, and a batch of n of x's messages.
func followedRoom(t testing.TB, n int) (*node, proto.URI, proto.URI, proto.FanoutBatch) {
	trap := proto.RoomURI("x.example", "trap")
	prov, bob, g := followRemote(t, trap, proto.ClientURI("x.example", "mallory", "d"))
	msg, err := g.Encrypt([]byte("x"), nil)
	if err != nil {
		t.Fatal(err)
	}
	batch := make(proto.FanoutBatch, n)
	for i := range batch {
		batch[i] = proto.FanoutMessage{Message: msg, Timestamp: uint64(i)}
	}
	return prov, bob, trap, batch
}

// TestHostilePeerExcludeList: x.example fans out to Bob's provider with a
// Mimi-Exclude as long as a header may be. It names clients of other
// providers, clients that do not exist and repeats: only this provider's
// clients that follow the room can be withheld anything, so only they
// are kept with each message (the list is checked once per batch, not
// once per message), and what is stored stays bounded by the room's
// followers, not by what the peer sends.
func TestHostilePeerExcludeList(t *testing.T) {
	prov, bob, trap, batch := followedRoom(t, 20)
	carol := proto.ClientURI("b.example", "carol", "phone")
	prov.register(carol, "t")
	prov.ok(prov.apply(CmdSubscribe, nil, "", &SubscribeBody{Client: carol, Room: trap, Subscribe: true}), "subscribe")
	ex := append(hostileExclude(), carol, carol)
	prov.ok(prov.apply(CmdFanout, nil, "x.example", &FanoutBody{Room: trap, FirstSeq: 1, Batch: batch, Exclude: ex}), "fanout")
	_ = prov.f.Read(func(s *State) error {
		st := s.streams[trap]
		if len(st.log.q.items) != len(batch) {
			t.Fatalf("%d log entries, want %d", len(st.log.q.items), len(batch))
		}
		for _, e := range st.log.q.items {
			if !slices.Equal(e.exclude, []proto.URI{carol}) {
				t.Fatalf("a log entry keeps %d excluded clients, want only %s", len(e.exclude), carol)
			}
		}
		return nil
	})
	if got := len(prov.stream(bob, 0)); got != len(batch) {
		t.Fatalf("Bob got %d messages, want %d", got, len(batch))
	}
	if got := len(prov.stream(carol, 0)); got != 0 {
		t.Fatalf("excluded Carol got %d messages", got)
	}
	replay(t, prov)
}

// BenchmarkHostileExclude applies one fanout batch of 1,000 messages with
// a 64 KiB Mimi-Exclude, beside the same batch without one.
func BenchmarkHostileExclude(b *testing.B) {
	for _, c := range []struct {
		name string
		ex   []proto.URI
	}{{"none", nil}, {"hostile", hostileExclude()}} {
		b.Run(c.name, func(b *testing.B) {
			prov, _, trap, batch := followedRoom(b, 1000)
			prov.fast = true
			seq := uint64(1)
			for b.Loop() {
				prov.ok(prov.apply(CmdFanout, nil, "x.example", &FanoutBody{Room: trap, FirstSeq: seq, Batch: batch, Exclude: c.ex}), "fanout")
				seq += uint64(len(batch))
			}
		})
	}
}

// TestHostileHubLogShare: x.example hosts rooms that Bob follows (public
// rooms he joined, or rooms he was welcomed into) and floods them, far past
// the provider-wide cap on room logs. The cap trims the hub whose rooms
// hold the most first, so the messages a.example and c.example sent Bob
// while he is offline stay, however much x sends; only a hub holding the
// most loses its oldest, and the cap holds.
func TestHostileHubLogShare(t *testing.T) {
	const total = 64 << 10
	for seed := range uint64(4) {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 11))
			cfg := Config{Domain: "b.example", Bounds: Bounds{InboxLimit: 50, Retention: Retention{MaxAge: 1 << 40, RoomEntries: 1 << 20, RoomBytes: total, TotalBytes: total}}}
			f, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			n := &node{t: t, cfg: cfg, f: f, now: t0}
			n.raiseLevel()
			bob := proto.ClientURI("b.example", "bob", "laptop")
			n.register(bob, "t")
			rooms := map[string][]proto.URI{}
			for _, hub := range []string{"a.example", "c.example", "x.example"} {
				for i := range 4 {
					r := proto.RoomURI(hub, fmt.Sprint("r", i))
					rooms[hub] = append(rooms[hub], r)
					n.ok(n.apply(CmdSubscribe, nil, "", &SubscribeBody{Client: bob, Room: r, Subscribe: true}), "subscribe")
				}
			}
			_, _, _, batch := followedRoom(t, 1)
			seqs := map[proto.URI]uint64{}
			sent := map[string]int{} // messages each honest hub sent
			for step := range 600 {
				hub := "x.example"
				if rng.IntN(30) == 0 { // honest hubs send far less than a third of the cap
					hub = []string{"a.example", "c.example"}[rng.IntN(2)]
				}
				r := rooms[hub][rng.IntN(4)]
				k := 1 + rng.IntN(8)
				b := make(proto.FanoutBatch, k)
				for i := range b {
					b[i] = batch[0]
				}
				n.ok(n.apply(CmdFanout, nil, hub, &FanoutBody{Room: r, FirstSeq: seqs[r] + 1, Batch: b}), "fanout")
				seqs[r] += uint64(k)
				if hub != "x.example" {
					sent[hub] += k
				}
				got := map[string]int{}
				for _, it := range n.stream(bob, 0) {
					d, _ := it.Room.Domain()
					got[d]++
				}
				for _, h := range []string{"a.example", "c.example"} {
					if got[h] != sent[h] {
						t.Fatalf("step %d: Bob holds %d of the %d messages %s sent (x.example holds %d)", step, got[h], sent[h], h, got["x.example"])
					}
				}
				if err := n.f.Read(checkLogBounds); err != nil {
					t.Fatalf("step %d: %v", step, err)
				}
			}
			replay(t, n)
		})
	}
}

// TestHostilePeerReportFlood: x.example, whose user Mallory is a
// participant of a room hosted here, files abuse reports at its budget,
// each as large as a request may be. The reports kept stay within their
// bounds (ReportLimit, maxReportBytes), and the provider whose reports
// weigh the most loses its oldest: the reports of Carol (c.example) and
// of Alice (local) stay, where x.example used to push out everyone's.
func TestHostilePeerReportFlood(t *testing.T) {
	cfg := Config{Domain: "a.example", ReportLimit: 20}
	n := newNodeWith(t, cfg)
	n.fast = true
	alice, id := n.aliceRoom()
	mallory, carol := proto.UserURI("x.example", "mallory"), proto.UserURI("c.example", "carol")
	patch := &proto.ParticipantListPatch{AddUsers: []proto.UserRoles{{User: mallory, Roles: []proto.Role{proto.RoleRegularUser}}, {User: carol, Roles: []proto.Role{proto.RoleRegularUser}}}}
	if _, resp := n.commit(alice, id, "", mls.CommitOptions{Proposals: []*mls.Proposal{patch.Proposal()}}); resp.Code != proto.UpdateSuccess {
		t.Fatalf("patch: %s %s", resp.Code, resp.Description)
	}
	aliceUser, _ := alice.uri.UserOf()
	report := func(peer string, by proto.URI, note int) {
		t.Helper()
		rep := &proto.AbuseReport{ReportingUser: by, AllegedAbuser: aliceUser, GroupID: []byte(id), Reason: proto.AbuseSpam, Note: string(make([]byte, note))}
		n.ok(n.apply(CmdReportAbuse, nil, peer, &RoomBody{Room: id, Request: wire.MustMarshal(rep)}), "report by "+string(by))
	}
	report("c.example", carol, 10)
	report("", aliceUser, 10)
	for range 100 {
		report("x.example", mallory, 900<<10)
	}
	report("c.example", carol, 10)
	_ = n.f.Read(func(s *State) error {
		by := map[string]int{}
		for i := range s.reports.items {
			by[reporterOf(&s.reports.items[i])]++
		}
		if by["c.example"] != 2 || by["a.example"] != 1 {
			t.Fatalf("kept reports by provider: %v; Carol's 2 and Alice's 1 must stay", by)
		}
		if len(s.reports.items) > cfg.ReportLimit || s.reportBytes() > maxReportBytes {
			t.Fatalf("%d reports, %d bytes kept: over the bounds", len(s.reports.items), s.reportBytes())
		}
		return nil
	})
	replay(t, n)
}

// TestRestoredAbuseReport: an abuse report restored from a snapshot is
// the report that was kept. Its byte fields used to alias the decoder's
// buffer, which the next record overwrote, so a node that installed a
// snapshot held other reports than the others.
func TestRestoredAbuseReport(t *testing.T) {
	n := newNode(t, "a.example")
	alice, id := n.aliceRoom()
	aliceUser, _ := alice.uri.UserOf()
	for _, abuser := range []proto.URI{aliceUser, proto.UserURI("a.example", "someone-with-a-longer-name")} {
		rep := &proto.AbuseReport{ReportingUser: aliceUser, AllegedAbuser: abuser, GroupID: []byte(id), Reason: proto.AbuseSpam, Note: "note"}
		n.ok(n.apply(CmdReportAbuse, nil, "", &RoomBody{Room: id, Request: wire.MustMarshal(rep)}), "report")
	}
	replay(t, n)
}

// aliceRoom has Alice (a.example) register and create the room club on n.
func (n *node) aliceRoom() (*member, proto.URI) {
	n.t.Helper()
	alice := newMember(n.t, proto.ClientURI("a.example", "alice", "phone"))
	n.register(alice.uri, "t")
	id := proto.RoomURI("a.example", "club")
	n.createRoom(alice, id)
	return alice, id
}
