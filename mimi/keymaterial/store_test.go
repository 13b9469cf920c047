package keymaterial

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
)

func TestNewStoreRejectsBadDomain(t *testing.T) {
	for _, d := range []string{"", "A.example", "a..example", "-a.example", "a.example/x"} {
		if _, err := NewStore(d); !errors.Is(err, ErrInvalidIdentifier) {
			t.Errorf("NewStore(%q): %v, want ErrInvalidIdentifier", d, err)
		}
	}
}

func TestSetLimits(t *testing.T) {
	s := newTestStore(t)
	for _, l := range []Limits{{}, {0, 1, 1}, {1, 1, maxLimit + 1}, {1, -1, 1}} {
		if err := s.SetLimits(l); err == nil {
			t.Errorf("SetLimits(%+v) accepted", l)
		}
	}
	if s.Limits() != DefaultLimits() {
		t.Fatalf("refused limits changed the store")
	}
	must(t, s.SetLimits(Limits{1, 2, 3}))
	if s.Limits() != (Limits{1, 2, 3}) {
		t.Fatalf("limits %+v", s.Limits())
	}
}

func TestRegistry(t *testing.T) {
	tests := []struct {
		name string
		op   func(s *Store) error
		want error
	}{
		{"add user", func(s *Store) error { return s.AddUser(proto.UserURI(dom, "dave")) }, nil},
		{"add user twice", func(s *Store) error { return s.AddUser(alice) }, ErrUserExists},
		{"add remote user", func(s *Store) error { return s.AddUser(carol) }, ErrNotLocal},
		{"add client as user", func(s *Store) error { return s.AddUser(alicePhone) }, ErrInvalidIdentifier},
		{"add malformed user", func(s *Store) error { return s.AddUser("mimi://a.example/u/") }, ErrInvalidIdentifier},
		{"add room as user", func(s *Store) error { return s.AddUser(room1) }, ErrInvalidIdentifier},
		{"add client", func(s *Store) error { return s.AddClient(proto.ClientURI(dom, "bob", "tablet")) }, nil},
		{"add client twice", func(s *Store) error { return s.AddClient(alicePhone) }, ErrClientExists},
		{"add client of unknown user", func(s *Store) error { return s.AddClient(proto.ClientURI(dom, "dave", "x")) }, ErrUnknownUser},
		{"add remote client", func(s *Store) error { return s.AddClient(proto.ClientURI("b.example", "carol", "x")) }, ErrNotLocal},
		{"add user as client", func(s *Store) error { return s.AddClient(alice) }, ErrInvalidIdentifier},
		{"remove client", func(s *Store) error { return s.RemoveClient(alicePhone) }, nil},
		{"remove unknown client", func(s *Store) error { return s.RemoveClient(proto.ClientURI(dom, "bob", "tablet")) }, ErrUnknownClient},
		{"remove client of unknown user", func(s *Store) error { return s.RemoveClient(proto.ClientURI(dom, "dave", "x")) }, ErrUnknownUser},
		{"delete user", func(s *Store) error { return s.DeleteUser(bob) }, nil},
		{"delete unknown user", func(s *Store) error { return s.DeleteUser(proto.UserURI(dom, "dave")) }, ErrUnknownUser},
		{"delete remote user", func(s *Store) error { return s.DeleteUser(carol) }, ErrNotLocal},
		{"delete user twice", func(s *Store) error { must(t, s.DeleteUser(bob)); return s.DeleteUser(bob) }, ErrUserDeleted},
		{"re-add deleted user", func(s *Store) error { must(t, s.DeleteUser(bob)); return s.AddUser(bob) }, ErrUserDeleted},
		{"add client of deleted user", func(s *Store) error {
			must(t, s.DeleteUser(bob))
			return s.AddClient(proto.ClientURI(dom, "bob", "tablet"))
		}, ErrUserDeleted},
		{"remove client of deleted user", func(s *Store) error { must(t, s.DeleteUser(bob)); return s.RemoveClient(bobPhone) }, ErrUserDeleted},
		{"too many clients", func(s *Store) error {
			must(t, s.SetLimits(Limits{MaxKeyPackagesPerClient: 10, MaxClientsPerUser: 2, MaxTargetsPerClaim: 10}))
			return s.AddClient(proto.ClientURI(dom, "alice", "tablet"))
		}, ErrLimit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestStore(t)
			err := tt.op(s)
			if tt.want == nil {
				must(t, err)
				return
			}
			wantErr(t, err, tt.want)
		})
	}
}

func TestUserStatusAndClients(t *testing.T) {
	s := newTestStore(t)
	if got := s.UserStatus(alice); got != UserActive {
		t.Errorf("alice: %d", got)
	}
	if got := s.UserStatus(proto.UserURI(dom, "dave")); got != UserAbsent {
		t.Errorf("dave: %d", got)
	}
	clients, err := s.Clients(alice)
	must(t, err)
	if !slices.Equal(clients, []proto.URI{aliceLaptop, alicePhone}) {
		t.Errorf("clients %v", clients)
	}
	must(t, s.DeleteUser(alice))
	if got := s.UserStatus(alice); got != UserDeleted {
		t.Errorf("deleted alice: %d", got)
	}
	_, err = s.Clients(alice)
	wantErr(t, err, ErrUserDeleted)
	if got := s.Counts(); len(got) != 1 || got[0].Client != bobPhone {
		t.Errorf("counts after deletion: %+v", got)
	}
}

func TestUploadRejects(t *testing.T) {
	tampered := newKP(t, alicePhone)
	tampered.Signature = bytes.Clone(tampered.Signature)
	tampered.Signature[0] ^= 1
	dup := newKP(t, alicePhone)
	lr1, lr2 := newKP(t, alicePhone, withLastResort()), newKP(t, alicePhone, withLastResort())
	x509 := newKP(t, alicePhone)
	x509.LeafNode.Credential = mls.Credential{Type: mls.CredentialX509, Certificates: [][]byte{{1}}}

	tests := []struct {
		name   string
		client proto.URI
		kps    []*mls.KeyPackage
		now    uint64
		want   error
		index  int // of the refused KeyPackage, for UploadErrors
	}{
		{"nil", alicePhone, []*mls.KeyPackage{nil}, testNow, ErrInvalidKeyPackage, 0},
		{"expired", alicePhone, []*mls.KeyPackage{newKP(t, alicePhone, withLifetime(testNow-100, testNow-1))}, testNow, ErrInvalidKeyPackage, 0},
		{"not yet valid", alicePhone, []*mls.KeyPackage{newKP(t, alicePhone, withLifetime(testNow+1, testNow+100))}, testNow, ErrInvalidKeyPackage, 0},
		{"bad signature", alicePhone, []*mls.KeyPackage{newKP(t, alicePhone), tampered}, testNow, ErrInvalidKeyPackage, 1},
		{"another client's", alicePhone, []*mls.KeyPackage{newKP(t, aliceLaptop)}, testNow, ErrWrongIdentity, 0},
		{"the user's URI", alicePhone, []*mls.KeyPackage{newKP(t, alice)}, testNow, ErrWrongIdentity, 0},
		{"identity differs in case", alicePhone, []*mls.KeyPackage{newKP(t, alicePhone, withIdentity("mimi://a.example/u/Alice/d/phone"))}, testNow, ErrWrongIdentity, 0},
		{"x509 credential", alicePhone, []*mls.KeyPackage{x509}, testNow, ErrWrongIdentity, 0},
		{"twice in one upload", alicePhone, []*mls.KeyPackage{dup, newKP(t, alicePhone), dup}, testNow, ErrDuplicateKeyPackage, 2},
		{"two last resort of a suite", alicePhone, []*mls.KeyPackage{lr1, lr2}, testNow, ErrInvalidKeyPackage, 1},
		{"unknown client", proto.ClientURI(dom, "alice", "tablet"), []*mls.KeyPackage{newKP(t, proto.ClientURI(dom, "alice", "tablet"))}, testNow, ErrUnknownClient, -1},
		{"remote client", proto.ClientURI("b.example", "carol", "x"), nil, testNow, ErrNotLocal, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestStore(t)
			before := snapshot(t, s)
			err := s.Upload(tt.client, tt.kps, tt.now)
			wantErr(t, err, tt.want)
			var ue *UploadError
			if got := errors.As(err, &ue); got != (tt.index >= 0) || got && ue.Index != tt.index {
				t.Errorf("UploadError %v, want index %d", ue, tt.index)
			}
			if !bytes.Equal(snapshot(t, s), before) {
				t.Errorf("a refused upload changed the store")
			}
		})
	}
}

func TestUploadDuplicates(t *testing.T) {
	s := newTestStore(t)
	kp, lr := newKP(t, alicePhone), newKP(t, alicePhone, withLastResort())
	upload(t, s, alicePhone, kp, lr)
	for _, again := range []*mls.KeyPackage{kp, lr} {
		err := s.Upload(alicePhone, []*mls.KeyPackage{again}, testNow)
		wantErr(t, err, ErrDuplicateKeyPackage)
	}
	// Handed out, then forgotten by the router: still never stored again.
	_, claimed := claim(t, s, request(alice), testNow)
	if len(claimed) != 1 {
		t.Fatalf("claimed %d KeyPackages, want 1 (alice's laptop has none)", len(claimed))
	}
	s.ForgetRoute(claimed[0].Ref)
	wantErr(t, s.Upload(alicePhone, []*mls.KeyPackage{kp}, testNow), ErrDuplicateKeyPackage)
}

func TestUploadLimit(t *testing.T) {
	s := newTestStore(t)
	must(t, s.SetLimits(Limits{MaxKeyPackagesPerClient: 3, MaxClientsPerUser: 10, MaxTargetsPerClaim: 10}))
	short := newKP(t, alicePhone, withLifetime(testNow-10, testNow+10))
	upload(t, s, alicePhone, short, newKP(t, alicePhone))
	// Last-resort KeyPackages do not count.
	upload(t, s, alicePhone, newKP(t, alicePhone), newKP(t, alicePhone, withLastResort()))
	err := s.Upload(alicePhone, []*mls.KeyPackage{newKP(t, alicePhone)}, testNow)
	wantErr(t, err, ErrLimit)
	if c, _ := s.Count(alicePhone); c.KeyPackages != 3 {
		t.Fatalf("count %d after a refused upload", c.KeyPackages)
	}
	// Once one has expired there is room again: expired ones do not count
	// and are dropped.
	later := testNow + 11
	kp := newKP(t, alicePhone, withLifetime(testNow, testNow+86400))
	must(t, s.Upload(alicePhone, []*mls.KeyPackage{kp}, later))
	if c, _ := s.Count(alicePhone); c.KeyPackages != 3 {
		t.Fatalf("count %d, want 3", c.KeyPackages)
	}
	// Other clients have their own pools.
	upload(t, s, aliceLaptop, newKP(t, aliceLaptop), newKP(t, aliceLaptop), newKP(t, aliceLaptop))
}

func TestLastResortReplaced(t *testing.T) {
	s := newTestStore(t)
	old, repl, other := newKP(t, alicePhone, withLastResort()), newKP(t, alicePhone, withLastResort()), newKP(t, alicePhone, withLastResort(), withSuite(suiteB))
	upload(t, s, alicePhone, old, other)
	upload(t, s, alicePhone, repl)
	c, err := s.Count(alicePhone)
	must(t, err)
	if c.KeyPackages != 0 || !slices.Equal(c.LastResort, []mls.CipherSuite{suiteA, suiteB}) {
		t.Fatalf("count %+v", c)
	}
	req := request(alice)
	req.LastResortAllowed = true
	req.AcceptableSuites = []mls.CipherSuite{suiteA}
	resp, _ := claim(t, s, req, testNow)
	sameKP(t, handedOut(t, resp.Users[0].Clients[1]), repl)
	// The replaced one left the index: it may come back (and replace again).
	upload(t, s, alicePhone, old)
}

func TestCounts(t *testing.T) {
	s := newTestStore(t)
	upload(t, s, alicePhone, newKP(t, alicePhone), newKP(t, alicePhone), newKP(t, alicePhone, withLastResort(), withSuite(suiteB)))
	upload(t, s, bobPhone, newKP(t, bobPhone, withLastResort()))
	want := []ClientCount{
		{Client: aliceLaptop},
		{Client: alicePhone, KeyPackages: 2, LastResort: []mls.CipherSuite{suiteB}},
		{Client: bobPhone, LastResort: []mls.CipherSuite{suiteA}},
	}
	got := s.Counts()
	if len(got) != len(want) {
		t.Fatalf("counts %+v", got)
	}
	for i := range want {
		if got[i].Client != want[i].Client || got[i].KeyPackages != want[i].KeyPackages || !slices.Equal(got[i].LastResort, want[i].LastResort) {
			t.Errorf("count %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	_, err := s.Count(proto.ClientURI(dom, "bob", "tablet"))
	wantErr(t, err, ErrUnknownClient)
}

func TestRoutes(t *testing.T) {
	s := newTestStore(t)
	kp := newKP(t, alicePhone, withLifetime(testNow-10, testNow+100))
	upload(t, s, alicePhone, kp)
	upload(t, s, bobPhone, newKP(t, bobPhone))
	req := request(alice, bob)
	req.Room = room1
	_, claimed := claim(t, s, req, testNow)
	if len(claimed) != 2 {
		t.Fatalf("claimed %+v", claimed)
	}
	c := claimed[0]
	if !bytes.Equal(c.Ref, refOf(t, kp)) || c.Client != alicePhone || c.Requester != carol || c.Room != room1 || c.ExpiresAt != testNow+100 {
		t.Fatalf("claimed %+v", c)
	}
	if got, ok := s.RouteWelcome(c.Ref, room1); !ok || got != alicePhone {
		t.Fatalf("route %q %v", got, ok)
	}
	// Claimed for room1: another room's Welcome may not name it.
	if got, ok := s.RouteWelcome(c.Ref, room2); ok {
		t.Fatalf("a KeyPackage claimed for %s routes a Welcome into %s to %s", room1, room2, got)
	}
	if _, ok := s.RouteWelcome([]byte("nope"), room1); ok {
		t.Fatalf("route for an unknown ref")
	}
	s.ForgetRoute(c.Ref)
	if _, ok := s.RouteWelcome(c.Ref, room1); ok {
		t.Fatalf("route survived ForgetRoute")
	}
	s.ForgetRoute(c.Ref) // idempotent

	// Removing the client or deleting the user drops its routes.
	if _, ok := s.RouteWelcome(claimed[1].Ref, room1); !ok {
		t.Fatalf("bob's route missing")
	}
	must(t, s.DeleteUser(bob))
	if _, ok := s.RouteWelcome(claimed[1].Ref, room1); ok {
		t.Fatalf("route to a deleted user's client")
	}
	upload(t, s, alicePhone, newKP(t, alicePhone))
	_, claimed = claim(t, s, request(alice), testNow)
	must(t, s.RemoveClient(alicePhone))
	if _, ok := s.RouteWelcome(claimed[0].Ref, ""); ok {
		t.Fatalf("route to a removed client")
	}
}

func TestPrune(t *testing.T) {
	s := newTestStore(t)
	short := newKP(t, alicePhone, withLifetime(testNow-10, testNow+100))
	shortLR := newKP(t, alicePhone, withLifetime(testNow-10, testNow+100), withLastResort())
	long := newKP(t, alicePhone, withLifetime(testNow-10, testNow+1000))
	routed := newKP(t, bobPhone, withLifetime(testNow-10, testNow+100))
	upload(t, s, alicePhone, short, shortLR, long)
	upload(t, s, bobPhone, routed)
	_, claimed := claim(t, s, request(bob), testNow)

	if st := s.Prune(testNow + 100); st != (PruneStats{}) {
		t.Fatalf("pruned %+v at not_after itself: lifetimes are inclusive", st)
	}
	if st := s.Prune(testNow + 101); st != (PruneStats{KeyPackages: 2, Routes: 1}) {
		t.Fatalf("pruned %+v", st)
	}
	if _, ok := s.RouteWelcome(claimed[0].Ref, ""); ok {
		t.Fatalf("route past not_after survived")
	}
	if c, _ := s.Count(alicePhone); c.KeyPackages != 1 || len(c.LastResort) != 0 {
		t.Fatalf("count %+v", c)
	}
	// Records of handed-out KeyPackages went too.
	if len(s.spent) != 0 || len(s.index) != 1 {
		t.Fatalf("spent %d, index %d", len(s.spent), len(s.index))
	}
}

func TestLastResortRoutes(t *testing.T) {
	s := newTestStore(t)
	lr := newKP(t, bobPhone, withLastResort())
	upload(t, s, bobPhone, lr)
	req := request(bob)
	req.LastResortAllowed = true
	req.Room = room1 // handed out to every claim, it routes Welcomes of any room
	_, first := claim(t, s, req, testNow)
	_, second := claim(t, s, req, testNow)
	if len(first) != 1 || len(second) != 1 || !bytes.Equal(first[0].Ref, second[0].Ref) {
		t.Fatalf("claimed %+v then %+v", first, second)
	}
	// The first Welcome is delivered; the second must still find its way.
	s.ForgetRoute(first[0].Ref)
	if got, ok := s.RouteWelcome(second[0].Ref, room2); !ok || got != bobPhone {
		t.Fatalf("route to a pooled last-resort KeyPackage forgotten")
	}
	// Once replaced it is handed out no more, and forgetting drops it.
	upload(t, s, bobPhone, newKP(t, bobPhone, withLastResort()))
	s.ForgetRoute(first[0].Ref)
	if _, ok := s.RouteWelcome(first[0].Ref, room1); ok {
		t.Fatalf("route to a replaced last-resort KeyPackage survived ForgetRoute")
	}
}
