package keymaterial

import (
	"bytes"
	"slices"
	"testing"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// script applies a fixed sequence of operations, with the given
// KeyPackages, and returns the encoded claim responses.
func script(t *testing.T, s *Store, kps map[string]*mls.KeyPackage) [][]byte {
	t.Helper()
	must(t, s.AddUser(proto.UserURI(dom, "dave")))
	must(t, s.AddClient(proto.ClientURI(dom, "dave", "d1")))
	upload(t, s, alicePhone, kps["ap1"], kps["ap2"], kps["apLR"])
	upload(t, s, aliceLaptop, kps["al1"], kps["alB"])
	upload(t, s, bobPhone, kps["bp1"], kps["bpShort"])
	upload(t, s, proto.ClientURI(dom, "dave", "d1"), kps["d1"])
	var out [][]byte
	for _, req := range []*proto.KeyMaterialRequest{
		request(alice, bob),
		{Protocol: proto.MLS10, RequestingUser: carol, TargetUsers: []proto.URI{alice}, Room: room1, LastResortAllowed: true},
		{Protocol: proto.MLS10, RequestingUser: carol, TargetUsers: []proto.URI{alice, bob}, AcceptableSuites: []mls.CipherSuite{suiteB}},
	} {
		resp, claimed := claim(t, s, req, testNow)
		out = append(out, wire.MustMarshal(resp))
		for _, c := range claimed {
			out = append(out, c.Ref)
		}
	}
	resp, _ := claim(t, s, request(proto.UserURI(dom, "dave")), testNow)
	out = append(out, wire.MustMarshal(resp))
	must(t, s.DeleteUser(proto.UserURI(dom, "dave")))
	s.Prune(testNow + 200)
	return out
}

func scriptKPs(t *testing.T) map[string]*mls.KeyPackage {
	return map[string]*mls.KeyPackage{
		"ap1":     newKP(t, alicePhone),
		"ap2":     newKP(t, alicePhone),
		"apLR":    newKP(t, alicePhone, withLastResort()),
		"al1":     newKP(t, aliceLaptop, withLifetime(testNow-10, testNow+100)),
		"alB":     newKP(t, aliceLaptop, withSuite(suiteB)),
		"bp1":     newKP(t, bobPhone, withLifetime(testNow-10, testNow+100)),
		"bpShort": newKP(t, bobPhone, withLifetime(testNow-10, testNow+100)),
		"d1":      newKP(t, proto.ClientURI(dom, "dave", "d1")),
	}
}

func TestDeterminism(t *testing.T) {
	kps := scriptKPs(t)
	a, b := newTestStore(t), newTestStore(t)
	outA, outB := script(t, a, kps), script(t, b, kps)
	if !slices.EqualFunc(outA, outB, bytes.Equal) {
		t.Fatalf("the same operations gave different answers")
	}
	if !bytes.Equal(snapshot(t, a), snapshot(t, b)) {
		t.Fatalf("the same operations gave different snapshots")
	}
	// Registration order that commutes does not show either.
	c, err := NewStore(dom)
	must(t, err)
	must(t, c.AddUser(bob))
	must(t, c.AddUser(alice))
	must(t, c.AddClient(bobPhone))
	must(t, c.AddClient(alicePhone))
	must(t, c.AddClient(aliceLaptop))
	script(t, c, kps)
	if !bytes.Equal(snapshot(t, a), snapshot(t, c)) {
		t.Fatalf("registration order changed the snapshot")
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	kps := scriptKPs(t)
	s := newTestStore(t)
	must(t, s.SetLimits(Limits{MaxKeyPackagesPerClient: 7, MaxClientsPerUser: 5, MaxTargetsPerClaim: 9}))
	script(t, s, kps)
	fresh := newKP(t, bobPhone)
	upload(t, s, bobPhone, fresh)
	claim(t, s, request(bob), testNow) // a live route and a handed-out record
	upload(t, s, bobPhone, newKP(t, bobPhone))
	forRoom := request(bob)
	forRoom.Room = room1
	_, bound := claim(t, s, forRoom, testNow) // a route bound to its room
	enc := snapshot(t, s)

	var back Store
	must(t, wire.Unmarshal(enc, &back))
	if !bytes.Equal(snapshot(t, &back), enc) {
		t.Fatalf("snapshot does not re-encode byte for byte")
	}
	if back.Domain() != dom || back.Limits() != s.Limits() {
		t.Fatalf("domain %q limits %+v", back.Domain(), back.Limits())
	}
	if !slices.EqualFunc(back.Counts(), s.Counts(), func(a, b ClientCount) bool {
		return a.Client == b.Client && a.KeyPackages == b.KeyPackages && slices.Equal(a.LastResort, b.LastResort)
	}) {
		t.Fatalf("counts differ after restore")
	}
	// The restored store behaves as the original.
	req := request(alice, bob)
	req.LastResortAllowed = true
	r1, c1 := claim(t, s, req, testNow+1)
	r2, c2 := claim(t, &back, req, testNow+1)
	if !bytes.Equal(wire.MustMarshal(r1), wire.MustMarshal(r2)) || len(c1) != len(c2) {
		t.Fatalf("restored store answers differently")
	}
	if !bytes.Equal(snapshot(t, s), snapshot(t, &back)) {
		t.Fatalf("restored store diverged")
	}
	for _, c := range c1 {
		if got, ok := back.RouteWelcome(c.Ref, c.Room); !ok || got != c.Client {
			t.Fatalf("restored route %s %v", got, ok)
		}
	}
	if got, ok := back.RouteWelcome(bound[0].Ref, room1); !ok || got != bobPhone {
		t.Fatalf("restored route for %s: %s %v", room1, got, ok)
	}
	if _, ok := back.RouteWelcome(bound[0].Ref, room2); ok {
		t.Fatalf("a restored route claimed for %s routes a Welcome into %s", room1, room2)
	}
	// Handed-out records survive a restore.
	wantErr(t, back.Upload(bobPhone, []*mls.KeyPackage{fresh}, testNow), ErrDuplicateKeyPackage)
}

// Raw snapshot parts, written independently of the store, to build
// snapshots the store could never produce.
type rawClient struct {
	uri                 proto.URI
	regular, lastResort []*mls.KeyPackage
}

type rawUser struct {
	uri     proto.URI
	deleted bool
	clients []rawClient
}

type rawRoute struct {
	ref      []byte
	client   proto.URI // empty for a handed-out record
	notAfter uint64
}

type rawSnapshot struct {
	domain        string
	limits        [3]uint32
	users         []rawUser
	routes, spent []rawRoute
}

func (s *rawSnapshot) EncodeTLS(w *wire.Writer) {
	w.Opaque([]byte(s.domain))
	for _, l := range s.limits {
		w.Uint32(l)
	}
	w.Vector(func(w *wire.Writer) {
		for _, u := range s.users {
			u.uri.EncodeTLS(w)
			w.Bool(u.deleted)
			w.Vector(func(w *wire.Writer) {
				for _, c := range u.clients {
					c.uri.EncodeTLS(w)
					for _, list := range [][]*mls.KeyPackage{c.regular, c.lastResort} {
						w.Vector(func(w *wire.Writer) {
							for _, kp := range list {
								w.Encode(kp)
							}
						})
					}
				}
			})
		}
	})
	for i, list := range [][]rawRoute{s.routes, s.spent} {
		w.Vector(func(w *wire.Writer) {
			for _, r := range list {
				w.Opaque(r.ref)
				if i == 0 {
					r.client.EncodeTLS(w)
				}
				w.Uint64(r.notAfter)
			}
		})
	}
}

func TestSnapshotRejects(t *testing.T) {
	ap1, ap2 := newKP(t, alicePhone), newKP(t, alicePhone)
	apLR, apLRB := newKP(t, alicePhone, withLastResort()), newKP(t, alicePhone, withLastResort(), withSuite(suiteB))
	bp := newKP(t, bobPhone)
	spentRef := bytes.Repeat([]byte{9}, 32)
	valid := func() *rawSnapshot {
		return &rawSnapshot{
			domain: dom,
			limits: [3]uint32{1000, 100, 100},
			users: []rawUser{
				{uri: alice, clients: []rawClient{
					{uri: aliceLaptop},
					{uri: alicePhone, regular: []*mls.KeyPackage{ap1, ap2}, lastResort: []*mls.KeyPackage{apLR, apLRB}},
				}},
				{uri: bob, clients: []rawClient{{uri: bobPhone, regular: []*mls.KeyPackage{bp}}}},
				{uri: proto.UserURI(dom, "dave"), deleted: true},
			},
			routes: []rawRoute{{ref: spentRef, client: bobPhone, notAfter: testNow}},
			spent:  []rawRoute{{ref: spentRef, notAfter: testNow}},
		}
	}
	// The valid snapshot decodes and re-encodes as written.
	enc := wire.MustMarshal(valid())
	var s Store
	must(t, wire.Unmarshal(enc, &s))
	if !bytes.Equal(snapshot(t, &s), enc) {
		t.Fatalf("valid raw snapshot does not round-trip")
	}

	tests := []struct {
		name   string
		change func(*rawSnapshot)
	}{
		{"invalid domain", func(s *rawSnapshot) { s.domain = "A.example" }},
		{"zero limit", func(s *rawSnapshot) { s.limits[1] = 0 }},
		{"limit too large", func(s *rawSnapshot) { s.limits[0] = maxLimit + 1 }},
		{"users out of order", func(s *rawSnapshot) { s.users[0], s.users[1] = s.users[1], s.users[0] }},
		{"user repeated", func(s *rawSnapshot) { s.users[2].uri = bob }},
		{"remote user", func(s *rawSnapshot) { s.users[2].uri = carol }},
		{"client as user", func(s *rawSnapshot) { s.users[2].uri = proto.ClientURI(dom, "zz", "x") }},
		{"deleted user with clients", func(s *rawSnapshot) { s.users[1].deleted = true }},
		{"client under another user", func(s *rawSnapshot) { s.users[1].clients[0].uri = proto.ClientURI(dom, "carl", "x") }},
		{"clients out of order", func(s *rawSnapshot) {
			c := s.users[0].clients
			c[0], c[1] = c[1], c[0]
		}},
		{"client repeated", func(s *rawSnapshot) { s.users[0].clients[0].uri = alicePhone }},
		{"KeyPackage of another client", func(s *rawSnapshot) {
			s.users[0].clients[0].regular = []*mls.KeyPackage{bp}
			s.users[1].clients[0].regular = nil
		}},
		{"last resort among regular", func(s *rawSnapshot) { s.users[0].clients[1].regular = append(s.users[0].clients[1].regular, apLR) }},
		{"regular among last resort", func(s *rawSnapshot) { s.users[0].clients[1].lastResort = []*mls.KeyPackage{ap2} }},
		{"last resort out of order", func(s *rawSnapshot) { s.users[0].clients[1].lastResort = []*mls.KeyPackage{apLRB, apLR} }},
		{"last resort suite repeated", func(s *rawSnapshot) {
			s.users[0].clients[1].lastResort = []*mls.KeyPackage{apLR, newKP(t, alicePhone, withLastResort())}
		}},
		{"KeyPackage stored twice", func(s *rawSnapshot) { s.users[0].clients[1].regular = []*mls.KeyPackage{ap1, ap1} }},
		{"route to unknown client", func(s *rawSnapshot) { s.routes[0].client = proto.ClientURI(dom, "bob", "tablet") }},
		{"route to deleted user", func(s *rawSnapshot) { s.routes[0].client = proto.ClientURI(dom, "dave", "x") }},
		{"routes out of order", func(s *rawSnapshot) {
			s.routes = append(s.routes, rawRoute{ref: []byte{1}, client: bobPhone})
		}},
		{"empty route ref", func(s *rawSnapshot) { s.routes[0].ref = nil }},
		{"route ref too long", func(s *rawSnapshot) { s.routes[0].ref = make([]byte, maxRefLen+1) }},
		{"handed-out records repeated", func(s *rawSnapshot) { s.spent = append(s.spent, s.spent[0]) }},
		{"handed out yet stored", func(s *rawSnapshot) { s.spent[0].ref = refOf(t, ap1) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := valid()
			tt.change(raw)
			data, err := wire.Marshal(raw)
			must(t, err)
			st := newTestStore(t)
			before := snapshot(t, st)
			err = wire.Unmarshal(data, st)
			if err == nil {
				t.Fatalf("snapshot accepted")
			}
			t.Log(err)
			if !bytes.Equal(snapshot(t, st), before) {
				t.Fatalf("a refused snapshot changed the store")
			}
		})
	}
	t.Run("trailing byte", func(t *testing.T) {
		var st Store
		if err := wire.Unmarshal(append(bytes.Clone(enc), 0), &st); err == nil {
			t.Fatalf("snapshot with a trailing byte accepted")
		}
	})
}
