package keymaterial_test

import (
	"fmt"
	"log"

	"github.com/mimihub/mimi-hub/mimi/consent"
	"github.com/mimihub/mimi-hub/mimi/keymaterial"
	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
)

// Example follows a claim at provider a.example: Bob's phone uploads
// KeyPackages, Carol (at b.example) claims them for a room, and Bob's
// consent decides. The provider passes its consent book's Check to Claim.
func Example() {
	const now = 1_700_000_000
	bob, bobPhone := proto.UserURI("a.example", "bob"), proto.ClientURI("a.example", "bob", "phone")
	carol := proto.UserURI("b.example", "carol")
	room := proto.RoomURI("hub.example", "clubhouse")

	store, err := keymaterial.NewStore("a.example")
	check(err)
	book, err := consent.NewBook("a.example", true)
	check(err)
	check(store.AddUser(bob))
	check(store.AddClient(bobPhone))

	suite, err := mls.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519.Suite()
	check(err)
	key, err := suite.GenerateSigningKey()
	check(err)
	var kps []*mls.KeyPackage
	for _, lastResort := range []bool{false, true} {
		b, err := mls.NewKeyPackage(suite, key, mls.KeyPackageOptions{
			Credential: mls.BasicCredential([]byte(bobPhone)),
			Lifetime:   mls.Lifetime{NotBefore: now - 60, NotAfter: now + 86400},
			LastResort: lastResort,
		})
		check(err)
		kps = append(kps, b.KeyPackage)
	}
	check(store.Upload(bobPhone, kps, now))

	req := &proto.KeyMaterialRequest{
		Protocol:         proto.MLS10,
		RequestingUser:   carol,
		TargetUsers:      []proto.URI{bob},
		Room:             room,
		AcceptableSuites: []mls.CipherSuite{suite.ID()},
	}
	claim := func() {
		resp, claimed, err := store.Claim(req, book.Check, now)
		check(err)
		u := resp.Users[0]
		fmt.Print(u.Status)
		for _, c := range u.Clients {
			fmt.Print(" ", c.Status)
		}
		for _, c := range claimed {
			to, _ := store.RouteWelcome(c.Ref, c.Room)
			fmt.Print(", Welcome goes to ", to)
		}
		fmt.Println()
	}

	claim() // no consent yet
	_, err = book.ApplyLocal(proto.ConsentEntry{Operation: proto.ConsentGrant, Requester: carol, Target: bob, Room: &room})
	check(err)
	claim() // the regular KeyPackage
	claim() // only the last-resort one is left
	req.LastResortAllowed = true
	claim()
	// Output:
	// noConsent
	// success success, Welcome goes to mimi://a.example/u/bob/d/phone
	// noCompatibleMaterial onlyLastResort
	// success success, Welcome goes to mimi://a.example/u/bob/d/phone
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
