package fsm

import (
	"testing"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// TestRelayedClaimConsent is the consent bypass of issue 12: b.example
// claims Alice's KeyPackages naming c.example's Carol (to whom Alice
// granted consent for any room) and a room of its own. Claims a hub relays
// for another provider's user use only consent for that room, so b.example
// gets nothing and Alice keeps her KeyPackage; Carol's own provider, or
// a hub relaying for a room Alice consented to, still gets it.
func TestRelayedClaimConsent(t *testing.T) {
	f, err := New(Config{Domain: "a.example", Bounds: Bounds{RequireConsent: true}})
	if err != nil {
		t.Fatal(err)
	}
	n := &node{t: t, f: f, now: t0}
	alice := newMember(t, "mimi://a.example/u/alice/d/phone")
	n.register(alice.uri, "a")
	upload := func() {
		kp := alice.keyPackage(t, n.now)
		n.ok(n.apply(CmdUploadKeyPackages, nil, "", &UploadBody{Client: alice.uri, KeyPackages: []*mls.Message{mls.NewKeyPackageMessage(kp.KeyPackage)}}), "upload")
	}
	upload()
	carol := proto.UserURI("c.example", "carol")
	grant := func(room *proto.URI) {
		n.ok(n.apply(CmdConsent, nil, "", &ConsentBody{Entry: proto.ConsentEntry{Operation: proto.ConsentGrant, Requester: carol, Target: "mimi://a.example/u/alice", Room: room}}), "grant")
	}
	grant(nil)
	claim := func(peer string, room proto.URI) proto.UserKeyMaterial {
		t.Helper()
		req := proto.KeyMaterialRequest{Protocol: proto.MLS10, RequestingUser: carol, TargetUsers: []proto.URI{"mimi://a.example/u/alice"}, Room: room,
			AcceptableSuites: []mls.CipherSuite{mls.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519}}
		res := n.ok(n.apply(CmdClaimKeyMaterial, nil, peer, &ClaimBody{Request: req}), "claim from "+peer)
		var resp proto.KeyMaterialResponse
		if err := wire.Unmarshal(res.Body, &resp); err != nil {
			t.Fatal(err)
		}
		return resp.Users[0]
	}
	count := func() int {
		var c int
		_ = n.f.Read(func(s *State) error { kc, _ := s.KeyPackages(alice.uri); c = kc.KeyPackages; return nil })
		return c
	}
	fake := proto.RoomURI("b.example", "fake")
	if u := claim("b.example", fake); u.Status != proto.UserNoConsentForThisRoom || len(u.Clients) != 0 || count() != 1 {
		t.Fatalf("b.example's relayed claim for c.example's carol: %s, %d clients, %d KeyPackages left", u.Status, len(u.Clients), count())
	}
	// A peer that is neither the requester's provider nor the named
	// room's hub is refused outright.
	before := n.state()
	req := proto.KeyMaterialRequest{Protocol: proto.MLS10, RequestingUser: carol, TargetUsers: []proto.URI{"mimi://a.example/u/alice"}, Room: proto.RoomURI("c.example", "x"),
		AcceptableSuites: []mls.CipherSuite{mls.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519}}
	n.refused(before, n.apply(CmdClaimKeyMaterial, nil, "b.example", &ClaimBody{Request: req}), NotAllowed, "a claim from a third party")
	// Carol's own provider is taken at its word.
	if u := claim("c.example", ""); u.Status != proto.UserSuccess || count() != 0 {
		t.Fatalf("c.example's claim for its own carol: %s", u.Status)
	}
	// A hub relaying for a room Alice consented to for Carol.
	upload()
	real := proto.RoomURI("b.example", "real")
	grant(&real)
	if u := claim("b.example", real); u.Status != proto.UserSuccess || count() != 0 {
		t.Fatalf("b.example's relayed claim for the room alice consented to: %s", u.Status)
	}
}
