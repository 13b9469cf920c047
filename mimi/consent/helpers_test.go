package consent

import (
	"errors"
	"testing"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

const (
	dom  = "a.example"
	domB = "b.example"
	domC = "c.example"
)

var (
	alice = proto.UserURI(dom, "alice") // local
	bob   = proto.UserURI(dom, "bob")   // local
	carol = proto.UserURI(domB, "carol")
	cindy = proto.UserURI(domB, "cindy")
	dave  = proto.UserURI(domC, "dave")
	room1 = proto.RoomURI("hub.example", "room1")
	room2 = proto.RoomURI("hub.example", "room2")
	room3 = proto.RoomURI("other.example", "room3")
)

const (
	cancel  = proto.ConsentCancel
	request = proto.ConsentRequest
	grant   = proto.ConsentGrant
	revoke  = proto.ConsentRevoke
)

func testBook(t testing.TB, requireConsent bool) *Book {
	t.Helper()
	b, err := NewBook(dom, requireConsent)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// in returns a pointer to a room, for entries and Check.
func in(room proto.URI) *proto.URI { return &room }

func entry(op proto.ConsentOperation, requester, target proto.URI, room *proto.URI, kps ...*mls.Message) proto.ConsentEntry {
	return proto.ConsentEntry{Operation: op, Requester: requester, Target: target, Room: room, KeyPackages: kps}
}

// kpMessage returns a KeyPackage of client as an MLSMessage.
func kpMessage(t testing.TB, client proto.URI) *mls.Message {
	t.Helper()
	return kpMessageWith(t, client, nil)
}

// kpMessageWith is kpMessage with the KeyPackage extensions ext.
func kpMessageWith(t testing.TB, client proto.URI, ext mls.Extensions) *mls.Message {
	t.Helper()
	s, err := mls.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519.Suite()
	if err != nil {
		t.Fatal(err)
	}
	key, err := s.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	b, err := mls.NewKeyPackage(s, key, mls.KeyPackageOptions{
		Credential: mls.BasicCredential([]byte(client)),
		Lifetime:   mls.Lifetime{NotBefore: 1_700_000_000 - 3600, NotAfter: 1_700_000_000 + 86400},
		Extensions: ext,
	})
	if err != nil {
		t.Fatal(err)
	}
	return mls.NewKeyPackageMessage(b.KeyPackage)
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantErr(t testing.TB, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error %v, want %v", err, target)
	}
}

func local(t testing.TB, b *Book, e proto.ConsentEntry) []Outgoing {
	t.Helper()
	out, err := b.ApplyLocal(e)
	must(t, err)
	return out
}

func snapshot(t testing.TB, b *Book) []byte {
	t.Helper()
	enc, err := wire.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return enc
}

// keys summarises consent entries as "operation requester target room".
func keys(list []proto.ConsentEntry) []string {
	var out []string
	for _, e := range list {
		room := "*"
		if e.Room != nil {
			room = string(*e.Room)
		}
		out = append(out, e.Operation.String()+" "+string(e.Requester)+" "+string(e.Target)+" "+room)
	}
	return out
}

func key(op proto.ConsentOperation, requester, target proto.URI, room *proto.URI) string {
	return keys([]proto.ConsentEntry{entry(op, requester, target, room)})[0]
}
