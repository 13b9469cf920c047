package keymaterial

import (
	"bytes"
	"maps"
	"slices"
	"testing"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
)

func TestClaimRejectsMalformedRequests(t *testing.T) {
	many := make([]proto.URI, 11)
	for i := range many {
		many[i] = proto.UserURI(dom, string(rune('a'+i)))
	}
	tests := []struct {
		name    string
		req     *proto.KeyMaterialRequest
		consent ConsentFunc
	}{
		{"nil request", nil, allow},
		{"nil consent", request(alice), nil},
		{"requesting user is a client", &proto.KeyMaterialRequest{Protocol: proto.MLS10, RequestingUser: alicePhone, TargetUsers: []proto.URI{bob}}, allow},
		{"requesting user malformed", &proto.KeyMaterialRequest{Protocol: proto.MLS10, RequestingUser: "carol", TargetUsers: []proto.URI{bob}}, allow},
		{"room is a user", &proto.KeyMaterialRequest{Protocol: proto.MLS10, RequestingUser: carol, TargetUsers: []proto.URI{bob}, Room: carol}, allow},
		{"no targets", request(), allow},
		{"too many targets", request(many...), allow},
		{"repeated target", request(alice, bob, alice), allow},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestStore(t)
			must(t, s.SetLimits(Limits{MaxKeyPackagesPerClient: 10, MaxClientsPerUser: 10, MaxTargetsPerClaim: 10}))
			upload(t, s, alicePhone, newKP(t, alicePhone))
			before := snapshot(t, s)
			resp, claimed, err := s.Claim(tt.req, tt.consent, testNow)
			wantErr(t, err, ErrInvalidRequest)
			if resp != nil || claimed != nil {
				t.Errorf("a refused claim answered")
			}
			if !bytes.Equal(snapshot(t, s), before) {
				t.Errorf("a refused claim changed the store")
			}
		})
	}
}

// TestClaimUserCodes covers every user code and which of them list clients.
func TestClaimUserCodes(t *testing.T) {
	deleted := proto.UserURI(dom, "dave")
	noClients := proto.UserURI(dom, "erin")
	setup := func(t *testing.T) *Store {
		s := newTestStore(t)
		must(t, s.AddUser(deleted))
		must(t, s.DeleteUser(deleted))
		must(t, s.AddUser(noClients))
		return s
	}
	tests := []struct {
		name    string
		upload  map[proto.URI]int // regular KeyPackages per client
		target  proto.URI
		consent ConsentFunc
		want    proto.KeyMaterialUserCode
		clients []proto.KeyMaterialClientCode // nil: must list none
	}{
		{"success", map[proto.URI]int{alicePhone: 1, aliceLaptop: 1}, alice, allow, proto.UserSuccess,
			[]proto.KeyMaterialClientCode{proto.ClientSuccess, proto.ClientSuccess}},
		{"partial success", map[proto.URI]int{alicePhone: 1}, alice, allow, proto.UserPartialSuccess,
			[]proto.KeyMaterialClientCode{proto.ClientKeyMaterialExhausted, proto.ClientSuccess}},
		{"no compatible material", nil, alice, allow, proto.UserNoCompatibleMaterial,
			[]proto.KeyMaterialClientCode{proto.ClientKeyMaterialExhausted, proto.ClientKeyMaterialExhausted}},
		{"no clients", nil, noClients, allow, proto.UserNoCompatibleMaterial, nil},
		{"unknown local user", nil, proto.UserURI(dom, "zed"), allow, proto.UserUnknown, nil},
		{"remote user", nil, carol, allow, proto.UserUnknown, nil},
		{"client URI", map[proto.URI]int{alicePhone: 1}, alicePhone, allow, proto.UserUnknown, nil},
		{"malformed URI", nil, "mimi://a.example/x", allow, proto.UserUnknown, nil},
		{"deleted", nil, deleted, allow, proto.UserDeleted, nil},
		{"no consent", map[proto.URI]int{alicePhone: 1}, alice, func(proto.URI, proto.URI, *proto.URI) proto.KeyMaterialUserCode {
			return proto.UserNoConsent
		}, proto.UserNoConsent, nil},
		{"no consent for this room", map[proto.URI]int{alicePhone: 1}, alice, func(proto.URI, proto.URI, *proto.URI) proto.KeyMaterialUserCode {
			return proto.UserNoConsentForThisRoom
		}, proto.UserNoConsentForThisRoom, nil},
		{"odd consent code fails closed", map[proto.URI]int{alicePhone: 1}, alice, func(proto.URI, proto.URI, *proto.URI) proto.KeyMaterialUserCode {
			return proto.UserPartialSuccess
		}, proto.UserNoConsent, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := setup(t)
			for _, c := range slices.Sorted(maps.Keys(tt.upload)) {
				for range tt.upload[c] {
					upload(t, s, c, newKP(t, c))
				}
			}
			resp, claimed, err := s.Claim(request(tt.target), tt.consent, testNow)
			must(t, err)
			if resp.Protocol != proto.MLS10 || len(resp.Users) != 1 || resp.Users[0].User != tt.target {
				t.Fatalf("response %+v", resp)
			}
			u := resp.Users[0]
			if u.Status != tt.want {
				t.Fatalf("user code %s, want %s", u.Status, tt.want)
			}
			var got []proto.KeyMaterialClientCode
			for _, c := range u.Clients {
				got = append(got, c.Status)
			}
			if !slices.Equal(got, tt.clients) {
				t.Fatalf("client codes %v, want %v", got, tt.clients)
			}
			succeeded := 0
			for _, c := range u.Clients {
				if c.Status == proto.ClientSuccess {
					succeeded++
				}
			}
			if len(claimed) != succeeded {
				t.Fatalf("claimed %d, %d clients succeeded", len(claimed), succeeded)
			}
		})
	}
}

func TestClaimIncompatibleProtocol(t *testing.T) {
	s := newTestStore(t)
	upload(t, s, alicePhone, newKP(t, alicePhone))
	before := snapshot(t, s)
	req := request(alice, carol, proto.UserURI(dom, "zed"))
	req.Protocol = 2
	resp, claimed := claim(t, s, req, testNow)
	if resp.Protocol != 2 || len(resp.Users) != 3 || len(claimed) != 0 {
		t.Fatalf("response %+v, claimed %v", resp, claimed)
	}
	for _, u := range resp.Users {
		if u.Status != proto.UserIncompatibleProtocol || u.Clients != nil {
			t.Errorf("user %s: %s with %d clients", u.User, u.Status, len(u.Clients))
		}
	}
	if !bytes.Equal(snapshot(t, s), before) {
		t.Errorf("an incompatible claim changed the store")
	}
}

func TestClaimOrderAndMixedUsers(t *testing.T) {
	s := newTestStore(t)
	upload(t, s, alicePhone, newKP(t, alicePhone))
	upload(t, s, bobPhone, newKP(t, bobPhone))
	targets := []proto.URI{bob, carol, alice}
	resp, claimed := claim(t, s, request(targets...), testNow)
	var users []proto.URI
	var codes []proto.KeyMaterialUserCode
	for _, u := range resp.Users {
		users, codes = append(users, u.User), append(codes, u.Status)
	}
	if !slices.Equal(users, targets) || !slices.Equal(codes, []proto.KeyMaterialUserCode{proto.UserSuccess, proto.UserUnknown, proto.UserPartialSuccess}) {
		t.Fatalf("users %v codes %v", users, codes)
	}
	// Clients in URI order: laptop before phone.
	if c := resp.Users[2].Clients; c[0].Client != aliceLaptop || c[1].Client != alicePhone {
		t.Fatalf("clients out of order: %s, %s", c[0].Client, c[1].Client)
	}
	if len(claimed) != 2 || claimed[0].Client != bobPhone || claimed[1].Client != alicePhone {
		t.Fatalf("claimed %+v", claimed)
	}
}

func TestClaimConsentArguments(t *testing.T) {
	s := newTestStore(t)
	var gotRoom *proto.URI
	var gotTarget, gotRequester proto.URI
	spy := func(target, requester proto.URI, room *proto.URI) proto.KeyMaterialUserCode {
		gotTarget, gotRequester, gotRoom = target, requester, room
		return proto.UserNoConsent
	}
	_, _, err := s.Claim(request(alice), spy, testNow)
	must(t, err)
	if gotTarget != alice || gotRequester != carol || gotRoom != nil {
		t.Fatalf("consent(%s, %s, %v), want room nil", gotTarget, gotRequester, gotRoom)
	}
	req := request(alice)
	req.Room = room1
	_, _, err = s.Claim(req, spy, testNow)
	must(t, err)
	if gotRoom == nil || *gotRoom != room1 {
		t.Fatalf("consent room %v, want %s", gotRoom, room1)
	}
}

func TestClaimNeverReuses(t *testing.T) {
	s := newTestStore(t)
	first, second := newKP(t, alicePhone), newKP(t, alicePhone)
	upload(t, s, alicePhone, first)
	upload(t, s, alicePhone, second)
	var got []*mls.KeyPackage
	for range 3 {
		resp, _ := claim(t, s, request(alice), testNow)
		for _, c := range resp.Users[0].Clients {
			if c.Client == alicePhone && c.Status == proto.ClientSuccess {
				got = append(got, c.KeyPackage.KeyPackage)
			} else if c.Client == alicePhone && c.Status != proto.ClientKeyMaterialExhausted {
				t.Fatalf("phone: %s", c.Status)
			}
		}
	}
	if len(got) != 2 {
		t.Fatalf("handed out %d KeyPackages, want 2", len(got))
	}
	sameKP(t, got[0], first) // oldest first
	sameKP(t, got[1], second)
}

func TestClaimClientCodes(t *testing.T) {
	requireProposal := mls.RequiredCapabilities{Proposals: []mls.ProposalType{proto.ProposalParticipantListPatch}}
	tests := []struct {
		name       string
		kps        []kpSpec
		suites     []mls.CipherSuite
		required   mls.RequiredCapabilities
		lastResort bool
		now        uint64
		want       proto.KeyMaterialClientCode
		handedOut  int  // index into kps of the KeyPackage handed out
		kept       bool // the KeyPackage handed out stays in the pool
		caps       bool // capabilities accompany nothingCompatible
	}{
		{name: "exhausted", want: proto.ClientKeyMaterialExhausted},
		{name: "oldest regular", kps: []kpSpec{{}, {}}, want: proto.ClientSuccess, handedOut: 0},
		{name: "regular before last resort", kps: []kpSpec{{lastResort: true}, {}}, lastResort: true, want: proto.ClientSuccess, handedOut: 1},
		{name: "only last resort, not allowed", kps: []kpSpec{{lastResort: true}}, want: proto.ClientOnlyLastResort},
		{name: "only last resort, allowed", kps: []kpSpec{{lastResort: true}}, lastResort: true, want: proto.ClientSuccess, handedOut: 0, kept: true},
		{name: "suite filter", kps: []kpSpec{{}, {suite: suiteB}}, suites: []mls.CipherSuite{suiteB}, want: proto.ClientSuccess, handedOut: 1},
		{name: "empty suite list accepts any", kps: []kpSpec{{suite: suiteB}, {}}, want: proto.ClientSuccess, handedOut: 0},
		{name: "no acceptable suite", kps: []kpSpec{{}}, suites: []mls.CipherSuite{suiteB}, want: proto.ClientNothingCompatible, caps: true},
		{name: "capability filter", kps: []kpSpec{{}, {proposal: true}}, required: requireProposal, want: proto.ClientSuccess, handedOut: 1},
		{name: "missing capability", kps: []kpSpec{{}}, required: requireProposal, want: proto.ClientNothingCompatible, caps: true},
		{name: "incompatible regular, compatible last resort not allowed", kps: []kpSpec{{}, {lastResort: true, suite: suiteB}}, suites: []mls.CipherSuite{suiteB}, want: proto.ClientOnlyLastResort},
		{name: "incompatible last resort", kps: []kpSpec{{lastResort: true}}, suites: []mls.CipherSuite{suiteB}, lastResort: true, want: proto.ClientNothingCompatible, caps: true},
		{name: "last resort in the request's suite order", kps: []kpSpec{{lastResort: true}, {lastResort: true, suite: suiteB}},
			suites: []mls.CipherSuite{suiteB, suiteA}, lastResort: true, want: proto.ClientSuccess, handedOut: 1, kept: true},
		{name: "last resort of the lowest suite when any is acceptable", kps: []kpSpec{{lastResort: true, suite: suiteB}, {lastResort: true}},
			lastResort: true, want: proto.ClientSuccess, handedOut: 1, kept: true},
		{name: "expired is never handed out", kps: []kpSpec{{expires: testNow + 10}, {}}, now: testNow + 11, want: proto.ClientSuccess, handedOut: 1},
		{name: "all expired", kps: []kpSpec{{expires: testNow + 10}, {expires: testNow + 10, lastResort: true}}, now: testNow + 11, lastResort: true, want: proto.ClientKeyMaterialExhausted},
		{name: "not yet valid after the clock went back", kps: []kpSpec{{}}, now: testNow - 3601, want: proto.ClientKeyMaterialExhausted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestStore(t)
			var kps []*mls.KeyPackage
			for _, spec := range tt.kps {
				kp := spec.make(t, bobPhone)
				kps = append(kps, kp)
				upload(t, s, bobPhone, kp)
			}
			now := tt.now
			if now == 0 {
				now = testNow
			}
			req := request(bob)
			req.AcceptableSuites, req.RequiredCapabilities, req.LastResortAllowed = tt.suites, tt.required, tt.lastResort
			resp, claimed := claim(t, s, req, now)
			u := resp.Users[0]
			if len(u.Clients) != 1 {
				t.Fatalf("user %s with %d clients", u.Status, len(u.Clients))
			}
			c := u.Clients[0]
			if c.Status != tt.want {
				t.Fatalf("client code %s, want %s", c.Status, tt.want)
			}
			wantUser := map[bool]proto.KeyMaterialUserCode{true: proto.UserSuccess, false: proto.UserNoCompatibleMaterial}[tt.want == proto.ClientSuccess]
			if u.Status != wantUser {
				t.Fatalf("user code %s, want %s", u.Status, wantUser)
			}
			if (c.Capabilities != nil) != tt.caps {
				t.Fatalf("capabilities %v, want present %t", c.Capabilities, tt.caps)
			}
			if tt.want != proto.ClientSuccess {
				if c.KeyPackage != nil || len(claimed) != 0 {
					t.Fatalf("a KeyPackage came with %s", c.Status)
				}
				return
			}
			want := kps[tt.handedOut]
			sameKP(t, handedOut(t, c), want)
			if len(claimed) != 1 || !bytes.Equal(claimed[0].Ref, refOf(t, want)) || claimed[0].Client != bobPhone {
				t.Fatalf("claimed %+v", claimed)
			}
			// Handed out again only if it is a kept last resort.
			resp, _ = claim(t, s, req, now)
			again := resp.Users[0].Clients[0]
			reused := again.Status == proto.ClientSuccess && bytes.Equal(refOf(t, again.KeyPackage.KeyPackage), refOf(t, want))
			if reused != tt.kept {
				t.Fatalf("second claim: %s, reused %t, want %t", again.Status, reused, tt.kept)
			}
		})
	}
}

// kpSpec describes a test KeyPackage.
type kpSpec struct {
	suite      mls.CipherSuite
	lastResort bool
	proposal   bool   // lists the ParticipantListPatch proposal
	expires    uint64 // not_after, when set
}

func (k kpSpec) make(t *testing.T, client proto.URI) *mls.KeyPackage {
	var opts []kpOption
	if k.suite != 0 {
		opts = append(opts, withSuite(k.suite))
	}
	if k.lastResort {
		opts = append(opts, withLastResort())
	}
	if k.proposal {
		opts = append(opts, withProposals(proto.ProposalParticipantListPatch))
	}
	if k.expires != 0 {
		opts = append(opts, withLifetime(testNow-3600, k.expires))
	}
	return newKP(t, client, opts...)
}

func TestNothingCompatibleReportsNewestCapabilities(t *testing.T) {
	s := newTestStore(t)
	upload(t, s, bobPhone, newKP(t, bobPhone))
	upload(t, s, bobPhone, newKP(t, bobPhone, withProposals(proto.ProposalParticipantListPatch)))
	req := request(bob)
	req.AcceptableSuites = []mls.CipherSuite{suiteB}
	resp, _ := claim(t, s, req, testNow)
	c := resp.Users[0].Clients[0]
	if c.Status != proto.ClientNothingCompatible || c.Capabilities == nil ||
		!slices.Contains(c.Capabilities.Proposals, proto.ProposalParticipantListPatch) {
		t.Fatalf("client %s with capabilities %+v", c.Status, c.Capabilities)
	}
}

func TestClaimedKeyPackageIsACopy(t *testing.T) {
	s := newTestStore(t)
	upload(t, s, bobPhone, newKP(t, bobPhone, withLastResort()))
	req := request(bob)
	req.LastResortAllowed = true
	resp, _ := claim(t, s, req, testNow)
	handedOut(t, resp.Users[0].Clients[0]).InitKey[0] ^= 1
	resp, _ = claim(t, s, req, testNow)
	if err := handedOut(t, resp.Users[0].Clients[0]).Validate(testNow); err != nil {
		t.Fatalf("changing a handed-out KeyPackage changed the pool: %v", err)
	}
}

func TestExpiredPrunedByClaim(t *testing.T) {
	s := newTestStore(t)
	upload(t, s, bobPhone, newKP(t, bobPhone, withLifetime(testNow-10, testNow+10)), newKP(t, bobPhone))
	claim(t, s, request(alice), testNow+11) // other users' pools are not touched
	if c, _ := s.Count(bobPhone); c.KeyPackages != 2 {
		t.Fatalf("count %d", c.KeyPackages)
	}
	req := request(bob)
	req.AcceptableSuites = []mls.CipherSuite{suiteB}
	claim(t, s, req, testNow+11)
	if c, _ := s.Count(bobPhone); c.KeyPackages != 1 {
		t.Fatalf("count %d, want the expired KeyPackage dropped", c.KeyPackages)
	}
}
