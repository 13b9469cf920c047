package proto

import (
	"bytes"
	"strings"
	"testing"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// value is any struct of this package.
type value interface {
	wire.Encoder
	wire.Decoder
}

// samples returns one populated value of every message type, built from a
// real MLS group so that nested MLS objects are genuine.
func samples(t testing.TB) map[string]func() (value, value) {
	t.Helper()
	s, err := mls.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519.Suite()
	if err != nil {
		t.Fatal(err)
	}
	signer, err := s.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	life := mls.Lifetime{NotBefore: 1, NotAfter: 1 << 40}
	plp := mls.Capabilities{Proposals: []mls.ProposalType{ProposalParticipantListPatch}}
	g, err := mls.CreateGroup(s, signer, mls.CreateOptions{Credential: mls.BasicCredential([]byte(ClientURI("a.example", "alice", "phone"))), Capabilities: plp, Lifetime: life})
	if err != nil {
		t.Fatal(err)
	}
	bobKey, _ := s.GenerateSigningKey()
	bob, err := mls.NewKeyPackage(s, bobKey, mls.KeyPackageOptions{Credential: mls.BasicCredential([]byte(ClientURI("b.example", "bob", "laptop"))), Capabilities: plp, Lifetime: life})
	if err != nil {
		t.Fatal(err)
	}
	patch := &ParticipantListPatch{AddUsers: []UserRoles{{User: UserURI("b.example", "bob"), Roles: []Role{RoleRegularUser, RoleAdmin}}}}
	commit, err := g.Commit(mls.CommitOptions{Proposals: []*mls.Proposal{patch.Proposal(), mls.AddProposal(bob.KeyPackage)}})
	if err != nil {
		t.Fatal(err)
	}
	g.MergePendingCommit()
	proposal, err := g.Propose(mls.RemoveProposal(1))
	if err != nil {
		t.Fatal(err)
	}
	app, err := g.Encrypt([]byte("hello"), nil)
	if err != nil {
		t.Fatal(err)
	}
	kpMsg := mls.NewKeyPackageMessage(bob.KeyPackage)
	room := RoomURI("a.example", "clubhouse")
	policy := DefaultPolicy()
	caps := bob.KeyPackage.LeafNode.Capabilities
	pair := func(v, zero value) func() (value, value) { return func() (value, value) { return v, zero } }
	return map[string]func() (value, value){
		"Directory":            pair(&Directory{Entries: []DirectoryEntry{{UpdateRoom, MethodPost, "https://a.example/mimi/updateRoom/{roomId}"}}}, new(Directory)),
		"ConsentEntry/request": pair(&ConsentEntry{Operation: ConsentRequest, Requester: UserURI("a.example", "alice"), Target: UserURI("b.example", "bob"), Room: &room}, new(ConsentEntry)),
		"ConsentEntry/grant":   pair(&ConsentEntry{Operation: ConsentGrant, Requester: UserURI("a.example", "alice"), Target: UserURI("b.example", "bob"), KeyPackages: []*mls.Message{kpMsg}}, new(ConsentEntry)),
		"KeyMaterialRequest": pair(&KeyMaterialRequest{Protocol: MLS10, RequestingUser: UserURI("a.example", "alice"), TargetUsers: []URI{UserURI("b.example", "bob")}, Room: room,
			AcceptableSuites: []mls.CipherSuite{1, 3}, RequiredCapabilities: mls.RequiredCapabilities{Proposals: []mls.ProposalType{ProposalParticipantListPatch}}}, new(KeyMaterialRequest)),
		"KeyMaterialResponse": pair(&KeyMaterialResponse{Protocol: MLS10, Users: []UserKeyMaterial{
			{Status: UserPartialSuccess, User: UserURI("b.example", "bob"), Clients: []ClientKeyMaterial{
				{Status: ClientSuccess, Client: ClientURI("b.example", "bob", "laptop"), KeyPackage: kpMsg},
				{Status: ClientNothingCompatible, Client: ClientURI("b.example", "bob", "phone"), Capabilities: &caps},
				{Status: ClientKeyMaterialExhausted, Client: ClientURI("b.example", "bob", "tablet")}}},
			{Status: UserNoConsent, User: UserURI("b.example", "carl")}}}, new(KeyMaterialResponse)),
		"ParticipantListPatch": pair(patch, new(ParticipantListPatch)),
		"BasePolicy":           pair(&policy, new(BasePolicy)),
		"UpdateRoomRequest/commit": pair(&UpdateRoomRequest{Message: commit.Commit, Welcome: commit.Welcome, GroupInfo: commit.GroupInfo,
			RatchetTree: RatchetTreeOption{Representation: TreeFull, Tree: wire.MustMarshal(g.Tree())}}, new(UpdateRoomRequest)),
		"UpdateRoomRequest/proposals": pair(&UpdateRoomRequest{Message: proposal, MoreProposals: []*mls.Message{proposal}}, new(UpdateRoomRequest)),
		"UpdateRoomResponse":          pair(&UpdateRoomResponse{Code: UpdateWrongEpoch, Description: "epoch 3 was taken"}, new(UpdateRoomResponse)),
		"FanoutBatch":                 pair(&FanoutBatch{{Message: app, Timestamp: 1700000000123}, {Message: commit.Commit, Timestamp: 1700000000456}}, new(FanoutBatch)),
		"GroupInfoRequest":            pair(&GroupInfoRequest{SignatureKey: signer.PublicKey(), Credential: mls.BasicCredential([]byte("x"))}, new(GroupInfoRequest)),
		"GroupInfoResponse/success": pair(&GroupInfoResponse{Status: GroupInfoSuccess, GroupInfo: commit.GroupInfo,
			RatchetTree: RatchetTreeOption{Representation: TreeByReference}, PendingProposals: []*mls.Message{proposal}}, new(GroupInfoResponse)),
		"GroupInfoResponse/failure": pair(&GroupInfoResponse{Status: GroupInfoNotAuthorized}, new(GroupInfoResponse)),
		"AbuseReport": pair(&AbuseReport{ReportingUser: UserURI("b.example", "bob"), AllegedAbuser: UserURI("a.example", "alice"), GroupID: g.GroupID(), Epoch: 4,
			AllegedAbuserAt: 0, Messages: []AbusiveMessage{{Message: app, Key: make([]byte, 16), Nonce: make([]byte, 12)}}, Reason: AbuseSpam, Note: "ads"}, new(AbuseReport)),
		"IdentifierRequest":    pair(&IdentifierRequest{Type: SearchVCardField, Value: "+1 555", Field: "TEL"}, new(IdentifierRequest)),
		"WelcomeTreeRequest":   pair(&WelcomeTreeRequest{Client: ClientURI("b.example", "bob", "laptop"), KeyPackageRef: []byte("0123456789abcdef0123456789abcdef")}, new(WelcomeTreeRequest)),
		"RemoveClientsRequest": pair(&RemoveClientsRequest{Clients: []URI{ClientURI("b.example", "bob", "laptop"), ClientURI("b.example", "bob", "phone")}}, new(RemoveClientsRequest)),
		"IdentifierResponse":   pair(&IdentifierResponse{Code: QuerySuccess, URIs: []URI{UserURI("a.example", "alice")}, Profiles: []UserProfile{{URI: UserURI("a.example", "alice"), Fields: []ProfileField{{FieldVCardField, "FN", []byte("Alice")}}}}}, new(IdentifierResponse)),
	}
}

func TestRoundTrip(t *testing.T) {
	for name, mk := range samples(t) {
		t.Run(name, func(t *testing.T) {
			v, zero := mk()
			enc, err := wire.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			if err := Decode(enc, zero, 1<<20); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if re := wire.MustMarshal(zero); !bytes.Equal(re, enc) {
				t.Fatal("re-encoding differs")
			}
			if len(enc) > 1 {
				if err := Decode(enc[:len(enc)-1], zero, 1<<20); err == nil {
					t.Fatal("a truncated encoding decodes")
				}
			}
			if err := Decode(append(bytes.Clone(enc), 0), zero, 1<<20); err == nil {
				t.Fatal("an encoding with a trailing byte decodes")
			}
		})
	}
}

func TestRejects(t *testing.T) {
	sm := samples(t)
	enc := func(name string) []byte {
		v, _ := sm[name]()
		return wire.MustMarshal(v)
	}
	cases := []struct {
		name   string
		data   []byte
		into   value
		reason string
	}{
		{"unknown consent operation", append([]byte{9}, enc("ConsentEntry/request")[1:]...), new(ConsentEntry), "unknown consent operation"},
		{"unknown role", wire.MustMarshal(&ParticipantListPatch{AddUsers: []UserRoles{{User: "mimi://a.example/u/x", Roles: []Role{7}}}}), new(ParticipantListPatch), "unknown role 7"},
		{"protocol other than mls10", append([]byte{2}, enc("KeyMaterialRequest")[1:]...), new(KeyMaterialRequest), "unknown protocol"},
		{"failure code listing clients", wire.MustMarshal(&UserKeyMaterial{Status: UserUnknown, User: "mimi://b.example/u/bob", Clients: []ClientKeyMaterial{{Status: ClientKeyMaterialExhausted, Client: "mimi://b.example/u/bob/d/x"}}}), new(UserKeyMaterial), "must not list clients"},
		{"updateRoom carrying an application message", enc("FanoutBatch"), new(UpdateRoomRequest), "want mls_public_message"},
		{"empty fanout batch", []byte{}, new(FanoutBatch), "truncated"},
		{"undefined group info code", []byte{0}, new(GroupInfoResponse), "unknown group info code"},
		{"vector over the limit", enc("UpdateRoomRequest/commit"), new(UpdateRoomRequest), "exceeds the limit"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			limit := 1 << 20
			if strings.Contains(c.reason, "limit") {
				limit = 64
			}
			err := Decode(c.data, c.into, limit)
			if err == nil || !strings.Contains(err.Error(), c.reason) {
				t.Fatalf("got %v, want an error containing %q", err, c.reason)
			}
		})
	}
}

func TestURIs(t *testing.T) {
	valid := []struct {
		uri  URI
		want Identifier
	}{
		{"mimi://a.example/u/alice", Identifier{Kind: KindUser, Domain: "a.example", User: "alice"}},
		{"mimi://a.example/u/alice/d/phone-1", Identifier{Kind: KindClient, Domain: "a.example", User: "alice", Device: "phone-1"}},
		{"mimi://hub.example/r/Rl33FWLCY_WOw", Identifier{Kind: KindRoom, Domain: "hub.example", Room: "Rl33FWLCY_WOw"}},
		{"mimi://localhost/u/bob", Identifier{Kind: KindUser, Domain: "localhost", User: "bob"}},
	}
	for _, v := range valid {
		got, err := v.uri.Parse()
		if err != nil || got != v.want {
			t.Errorf("%s: %+v, %v", v.uri, got, err)
		}
		if got.URI() != v.uri {
			t.Errorf("%s formats back as %s", v.uri, got.URI())
		}
	}
	for _, bad := range []URI{"", "https://a.example/u/alice", "mimi://A.example/u/alice", "mimi://a.example/u/", "mimi://a.example/u/al ice",
		"mimi://a.example/x/alice", "mimi://a..example/u/alice", "mimi://a.example/u/alice/d", "mimi://-a.example/u/alice", "mimi://a.example/u/alice/d/phone/x"} {
		if _, err := bad.Parse(); err == nil {
			t.Errorf("%q parses", bad)
		}
	}
	if u, err := URI("mimi://a.example/u/alice/d/phone").UserOf(); err != nil || u != "mimi://a.example/u/alice" {
		t.Errorf("UserOf = %s, %v", u, err)
	}
	if _, err := URI("mimi://a.example/r/x").UserOf(); err == nil {
		t.Error("a room has a user")
	}
}

func TestPolicy(t *testing.T) {
	p := DefaultPolicy()
	ext := mls.Extensions{p.Extension()}
	got, err := PolicyOf(ext)
	if err != nil || !bytes.Equal(wire.MustMarshal(got), wire.MustMarshal(&p)) {
		t.Fatalf("PolicyOf = %+v, %v", got, err)
	}
	if _, err := PolicyOf(nil); err == nil {
		t.Fatal("a context without the extension has a policy")
	}
	for _, c := range []struct {
		allowed, roles []Role
		want           bool
	}{
		{p.AddUsers, []Role{RoleRegularUser, RoleAdmin}, true},
		{p.AddUsers, []Role{RoleRegularUser}, false},
		{p.Send, []Role{RoleAdmin, RoleBanned}, false},
		{p.Send, nil, false},
	} {
		if got := Allows(c.allowed, c.roles); got != c.want {
			t.Errorf("Allows(%v, %v) = %v", c.allowed, c.roles, got)
		}
	}
}
