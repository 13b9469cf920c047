package httpapi

import (
	"fmt"
	"net/http"
	"slices"
	"testing"

	"github.com/mimihub/mimi-hub/fsm"
	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/room"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// claimOut is the JSON of /v1/keymaterial.
type claimOut struct {
	Users []struct {
		User    string `json:"user"`
		Status  string `json:"status"`
		Clients []struct {
			Client     string `json:"client"`
			Status     string `json:"status"`
			KeyPackage []byte `json:"key_package"`
		} `json:"clients"`
	} `json:"users"`
}

func keyPackageOf(t *testing.T, b []byte) *mls.KeyPackage {
	t.Helper()
	m, err := mls.DecodeMessage(b)
	if err != nil || m.WireFormat != mls.WireKeyPackage {
		t.Fatalf("KeyPackage: %v (%v)", err, m)
	}
	return m.KeyPackage
}

// TestRoomFlow runs a room hosted here with real MLS clients: Alice
// (local) creates it, claims KeyPackages of Carol (local) and Bob
// (b.example, through the fake peers), adds both; Carol reads the Welcome
// and messages from her stream; Bob speaks and commits over federation; the
// hub relays Bob's provider's claims and serves its GroupInfo claims.
func TestRoomFlow(t *testing.T) {
	e := newEnv(t, "a.example", nil)
	alice := e.register("alice", "phone")
	carol := e.register("carol", "laptop")
	carolKP := e.upload(carol)
	bob := newMember(t, proto.ClientURI("b.example", "bob", "tablet"))
	bobKP := bob.keyPackage(t)
	e.peers.claim = successClaim(map[proto.URI]*member{bob.user: bob}, map[proto.URI]*mls.KeyPackageBundle{bob.uri: bobKP})
	id := e.createRoom(alice, "clubhouse")

	// Alice claims Bob's and Carol's KeyPackages for the room: Carol's
	// here, Bob's from b.example, whose route the room records.
	rec := e.apiDo(http.MethodPost, "/v1/keymaterial", alice.token, map[string]any{"users": []proto.URI{bob.user, carol.user}, "room": id})
	want(t, rec, http.StatusOK, "claim")
	claim := decodeJSON[claimOut](t, rec)
	if len(claim.Users) != 2 || claim.Users[0].User != string(bob.user) || claim.Users[0].Status != "success" || claim.Users[1].Status != "success" {
		t.Fatalf("claim answer %+v", claim)
	}
	calls := e.peers.taken()
	if len(calls) != 1 || calls[0].method != "ClaimKeyMaterial" || calls[0].via != "b.example" || calls[0].target != "b.example" || calls[0].room != id {
		t.Fatalf("peer calls %+v", calls)
	}
	if req := calls[0].body.(*proto.KeyMaterialRequest); req.RequestingUser != alice.user || !slices.Equal(req.TargetUsers, []proto.URI{bob.user}) || req.Protocol != proto.MLS10 {
		t.Fatalf("relayed claim %+v", req)
	}
	if n := e.b.count(fsm.CmdRouteKeyPackages); n != 1 {
		t.Fatalf("%d route commands, want 1", n)
	}
	kpBob, kpCarol := keyPackageOf(t, claim.Users[0].Clients[0].KeyPackage), keyPackageOf(t, claim.Users[1].Clients[0].KeyPackage)

	// Alice adds both.
	patch := &proto.ParticipantListPatch{AddUsers: []proto.UserRoles{{User: bob.user, Roles: []proto.Role{proto.RoleRegularUser}}, {User: carol.user, Roles: []proto.Role{proto.RoleRegularUser}}}}
	added, res := e.commit(alice, id, mls.CommitOptions{Proposals: []*mls.Proposal{patch.Proposal(), mls.AddProposal(kpBob), mls.AddProposal(kpCarol)}})
	if res.Code != 0 || res.CodeName != "success" {
		t.Fatalf("add: %+v", res)
	}
	tree := wire.MustMarshal(alice.group.Tree())

	// The Welcome goes to b.example through the outbox, and to Carol's
	// stream.
	e.b.read(func(s *fsm.State) {
		q := s.Outbox(10)
		if len(q) != 1 || q[0].Domain != "b.example" || len(q[0].Items) != 1 {
			t.Fatalf("outbox %+v", q)
		}
	})
	st := e.stream(carol, 0)
	if !slices.Equal(kindsOf(st.Items), []string{"welcome"}) || st.Items[0].Room != string(id) {
		t.Fatalf("Carol's stream %+v", st)
	}
	wm, err := mls.DecodeMessage(st.Items[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	if carol.group, err = mls.JoinFromWelcome(wm.Welcome, carolKP, tree, groupOptions()); err != nil {
		t.Fatalf("Carol joins: %v", err)
	}

	// Alice speaks, retrying with the same Idempotency-Key: the hub
	// accepts the message once.
	seq := e.roomSequence(id)
	msg, err := alice.group.Encrypt([]byte("hello"), room.SenderHint(alice.uri))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		rec := e.apiDo(http.MethodPost, roomPath(id, "messages"), alice.token, map[string]any{"message": wire.MustMarshal(msg)}, "Idempotency-Key", "hello-1")
		want(t, rec, http.StatusOK, "message")
		if r := decodeJSON[updateResult](t, rec); r.Code != 0 {
			t.Fatalf("message: %+v", r)
		}
	}
	if got := e.roomSequence(id); got != seq+1 {
		t.Fatalf("room sequence %d after a retried message, want %d", got, seq+1)
	}
	st = e.stream(carol, st.Items[0].Seq)
	if !slices.Equal(kindsOf(st.Items), []string{"message"}) {
		t.Fatalf("Carol's stream after the message: %+v", st)
	}
	mm, _ := mls.DecodeMessage(st.Items[0].Data)
	if got, err := carol.group.Process(mm); err != nil || string(got.ApplicationData) != "hello" {
		t.Fatalf("Carol reads %q, %v", got.ApplicationData, err)
	}
	// Acknowledging trims Carol's stream.
	acked := st.Items[0].Seq
	want(t, e.apiDo(http.MethodPost, "/v1/stream/ack", carol.token, map[string]any{"seq": acked}), http.StatusNoContent, "ack")
	if st := e.stream(carol, 0); len(st.Items) != 0 || st.Last != acked {
		t.Fatalf("stream after ack %+v", st)
	}

	// The room as participants see it.
	rec = e.apiDo(http.MethodGet, roomPath(id, ""), carol.token, nil)
	want(t, rec, http.StatusOK, "room")
	info := decodeJSON[struct {
		Room         string   `json:"room"`
		Epoch        uint64   `json:"epoch"`
		Members      int      `json:"members"`
		Providers    []string `json:"providers"`
		Participants []struct {
			User  string   `json:"user"`
			Roles []string `json:"roles"`
		} `json:"participants"`
	}](t, rec)
	if info.Room != string(id) || info.Epoch != 1 || info.Members != 3 || !slices.Equal(info.Providers, []string{"a.example", "b.example"}) || len(info.Participants) != 3 {
		t.Fatalf("room %+v", info)
	}

	// Bob joins at b.example and speaks over federation.
	if bob.group, err = mls.JoinFromWelcome(added.Welcome.Welcome, bobKP, tree, groupOptions()); err != nil {
		t.Fatalf("Bob joins: %v", err)
	}
	hi, err := bob.group.Encrypt([]byte("hi from b"), room.SenderHint(bob.uri))
	if err != nil {
		t.Fatal(err)
	}
	rec = e.fedDo(http.MethodPost, "/provisionalMessage/clubhouse", "b.example", wire.MustMarshal(hi))
	want(t, rec, http.StatusOK, "provisional message")
	var ur proto.UpdateRoomResponse
	if decodeMIMI(t, rec, &ur); ur.Code != proto.UpdateSuccess {
		t.Fatalf("provisional message: %+v", ur)
	}
	// Another provider cannot send as Bob.
	rec = e.fedDo(http.MethodPost, "/provisionalMessage/clubhouse", "c.example", wire.MustMarshal(hi))
	want(t, rec, http.StatusOK, "message from another provider")
	if decodeMIMI(t, rec, &ur); ur.Code != proto.UpdateNotAllowed {
		t.Fatalf("a message from another provider: %+v", ur)
	}

	// The hub relays b.example's claims for the room.
	dave := newMember(t, proto.ClientURI("c.example", "dave", "pc"))
	daveKP := dave.keyPackage(t)
	e.peers.claim = successClaim(map[proto.URI]*member{dave.user: dave}, map[proto.URI]*mls.KeyPackageBundle{dave.uri: daveKP})
	kmr := func(requester proto.URI, rm proto.URI, targets ...proto.URI) []byte {
		return wire.MustMarshal(&proto.KeyMaterialRequest{Protocol: proto.MLS10, RequestingUser: requester, TargetUsers: targets, Room: rm})
	}
	routes := e.b.count(fsm.CmdRouteKeyPackages)
	rec = e.fedDo(http.MethodPost, "/claimKeymaterial/c.example", "b.example", kmr(bob.user, id, dave.user))
	want(t, rec, http.StatusOK, "relayed claim")
	var km proto.KeyMaterialResponse
	if decodeMIMI(t, rec, &km); len(km.Users) != 1 || km.Users[0].Status != proto.UserSuccess {
		t.Fatalf("relayed claim answer %+v", km)
	}
	calls = e.peers.taken()
	if len(calls) != 1 || calls[0].via != "c.example" || calls[0].target != "c.example" {
		t.Fatalf("relay calls %+v", calls)
	}
	// The relayed claim asks c.example for what the room requires.
	if rc := calls[0].body.(*proto.KeyMaterialRequest).RequiredCapabilities; !slices.Contains(rc.Proposals, proto.ProposalParticipantListPatch) || !slices.Contains(rc.Extensions, proto.ExtBasePolicy) {
		t.Fatalf("the relayed claim asks for %+v", rc)
	}
	if e.b.count(fsm.CmdRouteKeyPackages) != routes+1 {
		t.Fatal("the relayed claim's KeyPackage was not routed")
	}
	for _, c := range []struct {
		name, peer, domain string
		body               []byte
		status             int
	}{
		{"a provider without members", "c.example", "d.example", kmr("mimi://c.example/u/x", id, "mimi://d.example/u/y"), http.StatusForbidden},
		{"a user who is not a participant", "b.example", "c.example", kmr("mimi://b.example/u/zed", id, dave.user), http.StatusForbidden},
		{"another provider's user", "b.example", "c.example", kmr("mimi://d.example/u/x", id, dave.user), http.StatusForbidden},
		{"a room not hosted here", "b.example", "c.example", kmr(bob.user, proto.RoomURI("a.example", "nope"), dave.user), http.StatusNotFound},
		{"a room hosted elsewhere", "b.example", "c.example", kmr(bob.user, proto.RoomURI("b.example", "x"), dave.user), http.StatusNotFound},
		{"no room", "b.example", "c.example", kmr(bob.user, "", dave.user), http.StatusNotFound},
		{"targets elsewhere than the path", "b.example", "c.example", kmr(bob.user, id, "mimi://d.example/u/y"), http.StatusBadRequest},
	} {
		t.Run("relay refused/"+c.name, func(t *testing.T) {
			rec := e.fedDo(http.MethodPost, "/claimKeymaterial/"+c.domain, c.peer, c.body)
			want(t, rec, c.status, c.name)
			if calls := e.peers.taken(); len(calls) != 0 {
				t.Fatalf("relayed anyway: %+v", calls)
			}
		})
	}
	// The relayed provider answers (c.example here; b.example may ask the
	// hub to relay to a domain of its own) with more than was claimed: the
	// hub records a route per KeyPackage in the room's replicated state, so
	// an answer naming other users, other users' clients, a client twice
	// or more clients than a user may have is refused (502), and nothing is
	// routed.
	daveMsg := mls.NewKeyPackageMessage(daveKP.KeyPackage)
	ckm := func(c proto.URI) proto.ClientKeyMaterial {
		return proto.ClientKeyMaterial{Status: proto.ClientSuccess, Client: c, KeyPackage: daveMsg}
	}
	many := make([]proto.ClientKeyMaterial, maxClaimedClients+1)
	for i := range many {
		many[i] = ckm(proto.ClientURI("c.example", "dave", fmt.Sprint("d", i)))
	}
	for _, c := range []struct {
		name  string
		users []proto.UserKeyMaterial
	}{
		{"a user not claimed", []proto.UserKeyMaterial{{Status: proto.UserSuccess, User: "mimi://c.example/u/eve", Clients: []proto.ClientKeyMaterial{ckm("mimi://c.example/u/eve/d/1")}}}},
		{"a user twice", []proto.UserKeyMaterial{{Status: proto.UserSuccess, User: dave.user}, {Status: proto.UserSuccess, User: dave.user}}},
		{"another user's client", []proto.UserKeyMaterial{{Status: proto.UserSuccess, User: dave.user, Clients: []proto.ClientKeyMaterial{ckm("mimi://c.example/u/eve/d/1")}}}},
		{"a client twice", []proto.UserKeyMaterial{{Status: proto.UserSuccess, User: dave.user, Clients: []proto.ClientKeyMaterial{ckm(dave.uri), ckm(dave.uri)}}}},
		{"too many clients", []proto.UserKeyMaterial{{Status: proto.UserSuccess, User: dave.user, Clients: many}}},
	} {
		t.Run("relayed answer refused/"+c.name, func(t *testing.T) {
			e.peers.claim = func(string, string, *proto.KeyMaterialRequest) *proto.KeyMaterialResponse {
				return &proto.KeyMaterialResponse{Protocol: proto.MLS10, Users: c.users}
			}
			routes := e.b.count(fsm.CmdRouteKeyPackages)
			rec := e.fedDo(http.MethodPost, "/claimKeymaterial/c.example", "b.example", kmr(bob.user, id, dave.user))
			want(t, rec, http.StatusBadGateway, c.name)
			if e.b.count(fsm.CmdRouteKeyPackages) != routes {
				t.Fatal("routes recorded for a refused answer")
			}
			e.peers.taken()
		})
	}
	e.peers.claim = nil

	// A protocol other than MLS 1.0 gets incompatibleProtocol, unrelayed.
	other := kmr(bob.user, id, dave.user)
	other[0] = 7
	rec = e.fedDo(http.MethodPost, "/claimKeymaterial/c.example", "b.example", other)
	want(t, rec, http.StatusOK, "other protocol")
	if rec.Body.Bytes()[0] != 7 {
		t.Fatalf("the answer's protocol is %d, want the request's", rec.Body.Bytes()[0])
	}
	var otherResp proto.KeyMaterialResponse
	other[0] = byte(proto.MLS10)
	if err := wire.Unmarshal(append([]byte{1}, rec.Body.Bytes()[1:]...), &otherResp); err != nil || len(otherResp.Users) != 1 || otherResp.Users[0].Status != proto.UserIncompatibleProtocol {
		t.Fatalf("other protocol answer %+v, %v", otherResp, err)
	}
	if calls := e.peers.taken(); len(calls) != 0 {
		t.Fatalf("an other-protocol claim was relayed: %+v", calls)
	}

	// GroupInfo for a new device of Bob, over federation.
	gir := wire.MustMarshal(&proto.GroupInfoRequest{SignatureKey: []byte{1}, Credential: mls.BasicCredential([]byte("mimi://b.example/u/bob/d/new"))})
	rec = e.fedDo(http.MethodPost, "/claimGroupInfo/clubhouse", "b.example", gir)
	want(t, rec, http.StatusOK, "claimGroupInfo")
	var gi proto.GroupInfoResponse
	if decodeMIMI(t, rec, &gi); gi.Status != proto.GroupInfoSuccess || gi.GroupInfo == nil {
		t.Fatalf("claimGroupInfo %+v", gi)
	}
	rec = e.fedDo(http.MethodPost, "/claimGroupInfo/nope", "b.example", gir)
	want(t, rec, http.StatusOK, "claimGroupInfo of an unknown room")
	if decodeMIMI(t, rec, &gi); gi.Status != proto.GroupInfoNoSuchRoom {
		t.Fatalf("claimGroupInfo of an unknown room: %s", gi.Status)
	}

	// Bob commits over federation; Alice's next commit is then stale.
	bb, err := bob.group.Commit(mls.CommitOptions{GroupInfo: mls.GroupInfoOptions{ExternalPub: true}})
	if err != nil {
		t.Fatal(err)
	}
	body := wire.MustMarshal(&proto.UpdateRoomRequest{Message: bb.Commit, GroupInfo: bb.GroupInfo, RatchetTree: proto.RatchetTreeOption{Representation: proto.TreeByReference}})
	rec = e.fedDo(http.MethodPost, "/updateRoom/clubhouse", "b.example", body)
	want(t, rec, http.StatusOK, "updateRoom")
	if decodeMIMI(t, rec, &ur); ur.Code != proto.UpdateSuccess {
		t.Fatalf("Bob's commit: %+v", ur)
	}
	bob.group.MergePendingCommit()
	if _, res := e.commit(alice, id, mls.CommitOptions{}); res.Code != uint8(proto.UpdateWrongEpoch) || res.CodeName != "wrongEpoch" {
		t.Fatalf("a stale commit: %+v", res)
	}
	// Alice catches up from her stream and commits with the full tree.
	st = e.stream(alice, 0)
	for _, it := range st.Items {
		m, _ := mls.DecodeMessage(it.Data)
		if m.WireFormat == mls.WirePublicMessage && m.Public.Content.Epoch == alice.group.Epoch() {
			if _, err := alice.group.Process(m); err != nil {
				t.Fatalf("Alice processes %d: %v", it.Seq, err)
			}
		}
	}
	if alice.group.Epoch() != 2 {
		t.Fatalf("Alice is at epoch %d after catching up", alice.group.Epoch())
	}
	b2, err := alice.group.Commit(mls.CommitOptions{GroupInfo: mls.GroupInfoOptions{ExternalPub: true}})
	if err != nil {
		t.Fatal(err)
	}
	rec = e.apiDo(http.MethodPost, roomPath(id, "commit"), alice.token, commitJSON(b2, wire.MustMarshal(alice.group.Tree())))
	want(t, rec, http.StatusOK, "commit with the full tree")
	if r := decodeJSON[updateResult](t, rec); r.Code != 0 {
		t.Fatalf("commit with the full tree: %+v", r)
	}
	alice.group.MergePendingCommit()

	// Carol reports Bob (a report without messages is accepted, unverified).
	report := wire.MustMarshal(&proto.AbuseReport{ReportingUser: carol.user, AllegedAbuser: bob.user, GroupID: []byte(id), Epoch: 3, Reason: proto.AbuseSpam})
	want(t, e.apiDo(http.MethodPost, roomPath(id, "abuse"), carol.token, map[string]any{"report": report}), http.StatusAccepted, "report")
	wantJSONError(t, e.apiDo(http.MethodPost, roomPath(id, "abuse"), alice.token, map[string]any{"report": report}), http.StatusForbidden, kindNotAllowed, "report as someone else")
	bobReport := wire.MustMarshal(&proto.AbuseReport{ReportingUser: bob.user, AllegedAbuser: carol.user, GroupID: []byte(id), Epoch: 3, Reason: proto.AbuseOther, Note: "x"})
	want(t, e.fedDo(http.MethodPost, "/reportAbuse/clubhouse", "b.example", bobReport), http.StatusNoContent, "federated report")
	e.b.read(func(s *fsm.State) {
		if n := len(s.Reports()); n != 2 {
			t.Fatalf("%d reports kept, want 2", n)
		}
	})
	wantTextError(t, e.fedDo(http.MethodPost, "/reportAbuse/clubhouse", "c.example", bobReport), http.StatusForbidden, "", "report for another provider's user")
}

// TestExternalJoin checks a client joins by external commit only as
// itself.
func TestExternalJoin(t *testing.T) {
	e := newEnv(t, "a.example", nil)
	alice := e.register("alice", "phone")
	id := e.createRoom(alice, "r")
	laptop := e.link(alice, "laptop")
	eve := e.register("eve", "x")

	join := func(m *member, cred proto.URI) (*mls.Group, *mls.CommitBundle) {
		t.Helper()
		rec := e.apiDo(http.MethodPost, roomPath(id, "groupinfo"), m.token, map[string]any{"signature_key": m.signer.PublicKey()})
		want(t, rec, http.StatusOK, "groupinfo")
		out := decodeJSON[struct {
			Status      string `json:"status"`
			GroupInfo   []byte `json:"group_info"`
			RatchetTree []byte `json:"ratchet_tree"`
		}](t, rec)
		if out.Status != "success" {
			t.Fatalf("groupinfo for %s: %+v", m.uri, out)
		}
		gm, err := mls.DecodeMessage(out.GroupInfo)
		if err != nil {
			t.Fatal(err)
		}
		g, b, err := mls.JoinExternal(gm.GroupInfo, out.RatchetTree, m.signer, mls.ExternalJoinOptions{GroupOptions: groupOptions(),
			Credential: mls.BasicCredential([]byte(cred)), Capabilities: caps, Commit: mls.CommitOptions{GroupInfo: mls.GroupInfoOptions{ExternalPub: true}}})
		if err != nil {
			t.Fatal(err)
		}
		return g, b
	}
	// Eve is no participant: the hub refuses her the GroupInfo.
	rec := e.apiDo(http.MethodPost, roomPath(id, "groupinfo"), eve.token, map[string]any{"signature_key": eve.signer.PublicKey()})
	want(t, rec, http.StatusOK, "Eve's groupinfo")
	if got := decodeJSON[map[string]any](t, rec)["status"]; got != "notAuthorized" {
		t.Fatalf("Eve's groupinfo status %v", got)
	}
	// Alice's laptop joins as itself, but not as another client.
	_, forged := join(laptop, "mimi://a.example/u/alice/d/tablet")
	wantJSONError(t, e.apiDo(http.MethodPost, roomPath(id, "commit"), laptop.token, commitJSON(forged, nil)), http.StatusForbidden, kindNotAllowed, "external commit naming another client")
	g, b := join(laptop, laptop.uri)
	rec = e.apiDo(http.MethodPost, roomPath(id, "commit"), laptop.token, commitJSON(b, nil))
	want(t, rec, http.StatusOK, "external commit")
	if r := decodeJSON[updateResult](t, rec); r.Code != 0 {
		t.Fatalf("external commit: %+v", r)
	}
	g.MergePendingCommit()
	laptop.group = g
	if r := e.say(laptop, id, "laptop here"); r.Code != 0 {
		t.Fatalf("laptop speaks: %+v", r)
	}
	// The creator's stream got the external commit and the message.
	if st := e.stream(alice, 0); !slices.Equal(kindsOf(st.Items), []string{"message", "message"}) {
		t.Fatalf("Alice's stream %+v", st)
	}
}
