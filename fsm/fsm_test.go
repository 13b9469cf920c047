package fsm

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/room"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

const t0 = 1_700_000_000_000

// node is one provider's FSM fed a log the test records, so it can be
// replayed into another FSM.
type node struct {
	t   testing.TB
	cfg Config
	// fast skips apply's check of the snapshot caches (benchmarks).
	fast bool
	f    *FSM
	log  [][]byte
	now  uint64
}

func newNode(t testing.TB, domain string) *node {
	t.Helper()
	return newNodeWith(t, Config{Domain: domain, Bounds: Bounds{InboxLimit: 50}})
}

// apply proposes a command as the leader would: stamped, logged, applied.
func (n *node) apply(typ CommandType, reqID []byte, peer string, b wire.Encoder) *Result {
	n.t.Helper()
	return n.applyProposal(&Proposal{Type: typ, RequestID: reqID, Peer: peer, Body: b}, nil)
}

// applyProposal proposes p (with the pre-verification v) as the leader
// would: stamped, logged, applied.
func (n *node) applyProposal(p *Proposal, v *mls.Verified) *Result {
	n.t.Helper()
	typ := p.Type
	cmd, err := p.Command(v)
	if err != nil {
		n.t.Fatal(err)
	}
	n.now += 1000
	if cmd, err = Stamp(cmd, n.now); err != nil {
		n.t.Fatal(err)
	}
	n.log = append(n.log, cmd)
	if n.fast {
		return n.f.Apply(&raft.Log{Type: raft.LogCommand, Data: cmd}).(*Result)
	}
	// A snapshot captured before the command keeps frozen copies of the
	// rooms and the encodings of the key material and consent; one
	// captured after it must not reuse what the command changed.
	n.state()
	res := n.f.Apply(&raft.Log{Type: raft.LogCommand, Data: cmd}).(*Result)
	cached := n.state()
	_ = n.f.Read(func(s *State) error {
		clear(s.frozen)
		s.keysEnc, s.consentEnc = nil, nil
		return nil
	})
	if !bytes.Equal(cached, n.state()) {
		n.t.Fatalf("%s changed a room, the key material or consent without forgetting the encoding a snapshot keeps (applyRoom, keysUnchanged)", typ)
	}
	return res
}

func (n *node) ok(r *Result, what string) *Result {
	n.t.Helper()
	if r.Kind != OK {
		n.t.Fatalf("%s: %s", what, r.Err())
	}
	return r
}

func (n *node) state() []byte {
	b, err := n.f.Encode()
	if err != nil {
		n.t.Fatal(err)
	}
	return b
}

// refused checks r is a refusal of kind and that state did not change.
func (n *node) refused(before []byte, r *Result, kind ErrorKind, what string) {
	n.t.Helper()
	if r.Kind != kind {
		n.t.Fatalf("%s: got %s (%s), want %s", what, r.Kind, r.Message, kind)
	}
	if !bytes.Equal(before, n.state()) {
		n.t.Fatalf("%s: a refused command changed the state", what)
	}
}

func tokenHash(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

var caps = mls.Capabilities{
	Proposals:  []mls.ProposalType{proto.ProposalParticipantListPatch, mls.ProposalSelfRemove},
	Extensions: []mls.ExtensionType{proto.ExtBasePolicy},
}

// member is a client with a real MLS client.
type member struct {
	uri    proto.URI
	signer *mls.SigningKey
	group  *mls.Group
}

func newMember(t testing.TB, uri proto.URI) *member {
	t.Helper()
	s, _ := mls.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519.Suite()
	signer, err := s.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	return &member{uri: uri, signer: signer}
}

func (m *member) keyPackage(t testing.TB, now uint64) *mls.KeyPackageBundle {
	t.Helper()
	s, _ := mls.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519.Suite()
	kp, err := mls.NewKeyPackage(s, m.signer, mls.KeyPackageOptions{Credential: mls.BasicCredential([]byte(m.uri)), Capabilities: caps,
		Lifetime: mls.Lifetime{NotBefore: now/1000 - 60, NotAfter: now/1000 + 86400}})
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

func options(now *uint64) mls.GroupOptions {
	return mls.GroupOptions{Config: room.MLSConfig(0), Now: func() uint64 { return *now / 1000 }}
}

// createRoom has m create room id hosted on n, with the base policy and
// the extensions more.
func (n *node) createRoom(m *member, id proto.URI, more ...mls.Extension) {
	n.t.Helper()
	s, _ := mls.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519.Suite()
	pol := proto.DefaultPolicy()
	g, err := mls.CreateGroup(s, m.signer, mls.CreateOptions{GroupOptions: options(&n.now), GroupID: []byte(id), Extensions: append(mls.Extensions{pol.Extension()}, more...),
		Credential: mls.BasicCredential([]byte(m.uri)), Capabilities: caps, Lifetime: mls.Lifetime{NotBefore: n.now/1000 - 60, NotAfter: n.now/1000 + 86400}})
	if err != nil {
		n.t.Fatal(err)
	}
	m.group = g
	gi, err := g.GroupInfo(mls.GroupInfoOptions{ExternalPub: true})
	if err != nil {
		n.t.Fatal(err)
	}
	n.ok(n.apply(CmdCreateRoom, nil, "", &CreateRoomBody{Room: id, Client: m.uri, GroupInfo: gi, Tree: wire.MustMarshal(g.Tree())}), "create room")
}

// commit has m commit opts to room id on n (from peer, "" for local).
func (n *node) commit(m *member, id proto.URI, peer string, opts mls.CommitOptions) (*mls.CommitBundle, *proto.UpdateRoomResponse) {
	n.t.Helper()
	opts.GroupInfo.ExternalPub = true
	b, err := m.group.Commit(opts)
	if err != nil {
		n.t.Fatal(err)
	}
	body := &proto.UpdateRoomRequest{Message: b.Commit, Welcome: b.Welcome, GroupInfo: b.GroupInfo, RatchetTree: proto.RatchetTreeOption{Representation: proto.TreeByReference}}
	r := n.ok(n.apply(CmdUpdateRoom, nil, peer, &RoomBody{Room: id, Request: wire.MustMarshal(body)}), "updateRoom")
	var resp proto.UpdateRoomResponse
	if err := wire.Unmarshal(r.Body, &resp); err != nil {
		n.t.Fatal(err)
	}
	if resp.Code == proto.UpdateSuccess {
		m.group.MergePendingCommit()
	} else {
		m.group.DiscardPendingCommit()
	}
	return b, &resp
}

func (n *node) register(uri proto.URI, token string) {
	n.t.Helper()
	n.ok(n.apply(CmdRegister, nil, "", &RegisterBody{Client: uri, TokenHash: tokenHash(token)}), fmt.Sprint("register ", uri))
}

func (n *node) stream(c proto.URI, after uint64) []Item {
	n.t.Helper()
	var items []Item
	_ = n.f.Read(func(s *State) error {
		var ok bool
		items, _, _, ok = s.Stream(c, after, 1000)
		if !ok {
			n.t.Fatalf("no client %s", c)
		}
		return nil
	})
	return items
}

// TestProvidersEndToEnd runs a hub (a.example) and a follower provider
// (b.example) as two FSMs, moving the hub's outbox to b by hand: Alice
// creates a room, claims Bob's KeyPackage from b, adds him; Bob's client
// gets the Welcome and every later message, in order, once.
func TestProvidersEndToEnd(t *testing.T) {
	hub, prov := newNode(t, "a.example"), newNode(t, "b.example")
	alice := newMember(t, proto.ClientURI("a.example", "alice", "phone"))
	bob := newMember(t, proto.ClientURI("b.example", "bob", "laptop"))
	hub.register(alice.uri, "alice-token")
	prov.register(bob.uri, "bob-token")
	roomID := proto.RoomURI("a.example", "clubhouse")
	hub.createRoom(alice, roomID)

	// Bob uploads a KeyPackage; Alice's hub claims it from b.example.
	kp := bob.keyPackage(t, prov.now)
	prov.ok(prov.apply(CmdUploadKeyPackages, nil, "", &UploadBody{Client: bob.uri, KeyPackages: []*mls.Message{mls.NewKeyPackageMessage(kp.KeyPackage)}}), "upload")
	claim := &ClaimBody{Request: proto.KeyMaterialRequest{Protocol: proto.MLS10, RequestingUser: proto.UserURI("a.example", "alice"),
		TargetUsers: []proto.URI{proto.UserURI("b.example", "bob")}, Room: roomID}}
	r := prov.ok(prov.apply(CmdClaimKeyMaterial, []byte("claim-1"), "a.example", claim), "claim")
	var km proto.KeyMaterialResponse
	if err := wire.Unmarshal(r.Body, &km); err != nil || km.Users[0].Status != proto.UserSuccess {
		t.Fatalf("claim: %+v, %v", km, err)
	}
	// A retried claim returns the same KeyPackage, not a second one.
	again := prov.apply(CmdClaimKeyMaterial, []byte("claim-1"), "a.example", claim)
	if !bytes.Equal(again.Body, r.Body) {
		t.Fatal("a retried claim was applied twice")
	}
	ref, _ := kp.KeyPackage.Ref()
	hub.ok(hub.apply(CmdRouteKeyPackages, nil, "", &RouteBody{Room: roomID, Routes: []room.Route{{Ref: ref, Domain: "b.example"}}}), "route")

	// Alice adds Bob.
	patch := &proto.ParticipantListPatch{AddUsers: []proto.UserRoles{{User: proto.UserURI("b.example", "bob"), Roles: []proto.Role{proto.RoleRegularUser}}}}
	if _, resp := hub.commit(alice, roomID, "", mls.CommitOptions{Proposals: []*mls.Proposal{patch.Proposal(), mls.AddProposal(km.Users[0].Clients[0].KeyPackage.KeyPackage)}}); resp.Code != proto.UpdateSuccess {
		t.Fatalf("add Bob: %s %s", resp.Code, resp.Description)
	}
	hello, err := alice.group.Encrypt([]byte("hi Bob"), room.SenderHint(alice.uri))
	if err != nil {
		t.Fatal(err)
	}
	var resp proto.UpdateRoomResponse
	hr := hub.ok(hub.apply(CmdProvisional, nil, "", &RoomBody{Room: roomID, Request: wire.MustMarshal(hello)}), "message")
	if err := wire.Unmarshal(hr.Body, &resp); err != nil || resp.Code != proto.UpdateSuccess {
		t.Fatalf("message: %+v %v", resp, err)
	}

	// Move b.example's outbox items as the delivery worker would: the
	// commit went to a.example's clients only; b gets the Welcome, then
	// the message. Deliver everything twice: duplicates must vanish.
	var queues []PeerQueue
	_ = hub.f.Read(func(s *State) error { queues = s.Outbox(100); return nil })
	if len(queues) != 1 || queues[0].Domain != "b.example" || len(queues[0].Items) != 2 {
		t.Fatalf("outbox %+v", queues)
	}
	for range 2 {
		for _, it := range queues[0].Items {
			var fm proto.FanoutMessage
			if err := wire.Unmarshal(it.Data, &fm); err != nil {
				t.Fatal(err)
			}
			prov.ok(prov.apply(CmdFanout, nil, "a.example", &FanoutBody{Room: it.Room, FirstSeq: it.Seq, Batch: proto.FanoutBatch{fm}, Exclude: it.Exclude}), "fanout")
		}
	}
	hub.ok(hub.apply(CmdDelivered, nil, "", &DeliveredBody{Domain: "b.example", UpTo: queues[0].Items[1].ID}), "delivered")
	_ = hub.f.Read(func(s *State) error {
		if q := s.Outbox(100); len(q) != 0 {
			t.Fatalf("outbox after delivery: %+v", q)
		}
		return nil
	})

	items := prov.stream(bob.uri, 0)
	if len(items) != 2 || items[0].Kind != ItemWelcome || items[1].Kind != ItemMessage {
		t.Fatalf("Bob's stream: %+v", items)
	}
	wm, _ := mls.DecodeMessage(items[0].Data)
	bob.group, err = mls.JoinFromWelcome(wm.Welcome, kp, nil, options(&prov.now))
	if err == nil {
		t.Fatal("joined without the tree")
	}
	var tree []byte
	_ = hub.f.Read(func(s *State) error {
		resp, _ := s.GroupInfo(roomID, "b.example", &proto.GroupInfoRequest{Credential: mls.BasicCredential([]byte(bob.uri))})
		tree = resp.RatchetTree.Bytes()
		return nil
	})
	if bob.group, err = mls.JoinFromWelcome(wm.Welcome, kp, tree, options(&prov.now)); err != nil {
		t.Fatal(err)
	}
	mm, _ := mls.DecodeMessage(items[1].Data)
	got, err := bob.group.Process(mm)
	if err != nil || string(got.ApplicationData) != "hi Bob" {
		t.Fatalf("Bob reads %q, %v", got.ApplicationData, err)
	}

	// Acknowledging trims the stream.
	prov.ok(prov.apply(CmdAck, nil, "", &AckBody{Client: bob.uri, UpTo: items[1].Seq}), "ack")
	if left := prov.stream(bob.uri, 0); len(left) != 0 {
		t.Fatalf("%d items after ack", len(left))
	}

	// Both FSMs replay identically from their logs.
	for _, n := range []*node{hub, prov} {
		replay(t, n)
	}
}

// replay feeds n's log to a fresh FSM and restores n's snapshot into
// another, checking both end in n's state.
func replay(t *testing.T, n *node) {
	t.Helper()
	domain := n.cfg.Domain
	want := n.state()
	fresh, _ := New(n.cfg)
	for _, cmd := range n.log {
		fresh.Apply(&raft.Log{Type: raft.LogCommand, Data: cmd})
	}
	got, _ := fresh.Encode()
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: replaying the log gives another state", domain)
	}
	snap, err := n.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// Apply goes on after the capture: the snapshot keeps the state as
	// captured.
	n.apply(CmdPrune, nil, "", nil)
	n.log = n.log[:len(n.log)-1]
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	restored, _ := New(n.cfg)
	if err := restored.Restore(sink); err != nil {
		t.Fatal(err)
	}
	got, _ = restored.Encode()
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: restoring the snapshot gives another state", domain)
	}
	other, _ := New(Config{Domain: "z.example"})
	sink.Reset()
	_ = snap.Persist(sink)
	if err := other.Restore(sink); err == nil {
		t.Fatal("a snapshot restored into another provider")
	}
}

type memSink struct{ bytes.Buffer }

func (m *memSink) ID() string    { return "mem" }
func (m *memSink) Cancel() error { return nil }
func (m *memSink) Close() error  { return nil }
func (m *memSink) Read(p []byte) (int, error) {
	return m.Buffer.Read(p)
}

func (m *memSink) Reset() { m.Buffer.Reset() }

func TestRefusalsChangeNothing(t *testing.T) {
	n := newNode(t, "a.example")
	alice := newMember(t, proto.ClientURI("a.example", "alice", "phone"))
	n.register(alice.uri, "t")
	roomID := proto.RoomURI("a.example", "r1")
	n.createRoom(alice, roomID)
	other := proto.ClientURI("b.example", "bob", "x")
	batch := proto.FanoutBatch{{Message: must(alice.group.Encrypt([]byte("x"), nil)), Timestamp: 1}}
	cases := []struct {
		name string
		typ  CommandType
		peer string
		body wire.Encoder
		want ErrorKind
	}{
		{"register a client twice", CmdRegister, "", &RegisterBody{Client: alice.uri, TokenHash: tokenHash("x")}, Conflict},
		{"register another provider's client", CmdRegister, "", &RegisterBody{Client: other, TokenHash: tokenHash("x")}, NotAllowed},
		{"register from a peer", CmdRegister, "b.example", &RegisterBody{Client: proto.ClientURI("a.example", "eve", "x"), TokenHash: tokenHash("x")}, NotAllowed},
		{"register with a short token hash", CmdRegister, "", &RegisterBody{Client: proto.ClientURI("a.example", "eve", "x"), TokenHash: []byte{1}}, Invalid},
		{"upload for an unknown client", CmdUploadKeyPackages, "", &UploadBody{Client: proto.ClientURI("a.example", "eve", "x")}, NotFound},
		{"create an existing room", CmdCreateRoom, "", &CreateRoomBody{Room: roomID, Client: alice.uri, GroupInfo: must(alice.group.GroupInfo(mls.GroupInfoOptions{ExternalPub: true}))}, Conflict},
		{"update a room not hosted here", CmdUpdateRoom, "b.example", &RoomBody{Room: proto.RoomURI("a.example", "nope")}, NotFound},
		{"a garbage updateRoom body", CmdUpdateRoom, "b.example", &RoomBody{Room: roomID, Request: []byte{1, 2, 3}}, Invalid},
		{"fanout from a peer that is not the hub", CmdFanout, "c.example", &FanoutBody{Room: proto.RoomURI("b.example", "x"), FirstSeq: 1, Batch: batch}, NotAllowed},
		{"fanout for a room hosted here", CmdFanout, "a.example", &FanoutBody{Room: roomID, FirstSeq: 1, Batch: batch}, NotAllowed},
		{"a claim on behalf of another provider's user", CmdClaimKeyMaterial, "b.example", &ClaimBody{Request: proto.KeyMaterialRequest{Protocol: proto.MLS10, RequestingUser: proto.UserURI("c.example", "x")}}, NotAllowed},
		{"subscribe a non-member to a hosted room", CmdSubscribe, "", &SubscribeBody{Client: alice.uri, Room: proto.RoomURI("a.example", "r2"), Subscribe: true}, OK},
		{"a consent grant from a peer for someone else", CmdConsent, "c.example", &ConsentBody{Entry: proto.ConsentEntry{Operation: proto.ConsentGrant, Requester: proto.UserURI("a.example", "alice"), Target: proto.UserURI("b.example", "bob")}}, NotAllowed},
		{"an unknown command", CommandType(99), "", nil, Invalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := n.state()
			// With a request id: a refusal leaves no dedup entry either.
			r := n.apply(c.typ, []byte("id "+c.name), c.peer, c.body)
			if c.want == OK {
				return // subscribing to a room not hosted here is allowed
			}
			n.refused(before, r, c.want, c.name)
		})
	}
}

// TestFanoutForUnfollowedRooms checks that a peer cannot grow this
// provider's state with fanout for rooms no local client follows: such
// batches are accepted and dropped, and keep nothing. A room a local
// client follows gets its messages.
func TestFanoutForUnfollowedRooms(t *testing.T) {
	hub, prov := newNode(t, "a.example"), newNode(t, "b.example")
	alice := newMember(t, proto.ClientURI("a.example", "alice", "phone"))
	bob := proto.ClientURI("b.example", "bob", "laptop")
	hub.register(alice.uri, "t")
	prov.register(bob, "t")
	followed := proto.RoomURI("a.example", "followed")
	hub.createRoom(alice, followed)
	batch := proto.FanoutBatch{{Message: must(alice.group.Encrypt([]byte("x"), nil)), Timestamp: 1}}
	streams := func() int {
		var n int
		_ = prov.f.Read(func(s *State) error { n = s.Counts().Streams; return nil })
		return n
	}
	for i := range 20 {
		room := proto.RoomURI("a.example", fmt.Sprintf("r%d", i))
		prov.ok(prov.apply(CmdFanout, nil, "a.example", &FanoutBody{Room: room, FirstSeq: 1, Batch: batch}), "fanout for an unfollowed room")
	}
	if n := streams(); n != 0 {
		t.Fatalf("fanout for rooms nobody follows left %d streams", n)
	}
	if items := prov.stream(bob, 0); len(items) != 0 {
		t.Fatalf("Bob got %d items of rooms he does not follow", len(items))
	}
	prov.ok(prov.apply(CmdSubscribe, nil, "", &SubscribeBody{Client: bob, Room: followed, Subscribe: true}), "subscribe")
	prov.ok(prov.apply(CmdFanout, nil, "a.example", &FanoutBody{Room: followed, FirstSeq: 1, Batch: batch}), "fanout for a followed room")
	if items := prov.stream(bob, 0); streams() != 1 || len(items) != 1 || items[0].Room != followed || items[0].HubSeq != 1 {
		t.Fatalf("%d streams, Bob's items %+v", streams(), items)
	}
	replay(t, prov)
}

func TestInboxCapsAndGap(t *testing.T) {
	cases := []struct {
		name     string
		items    int
		maxBytes int64
		size     int
	}{
		{"by count", 50, 1 << 20, 1},
		{"by bytes", 1000, 50 * (100 + itemOverhead), 100},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var b inbox
			for i := range 60 {
				b.push(Item{Seq: uint64(i + 1), Kind: ItemWelcome, Data: make([]byte, c.size)}, c.items, c.maxBytes)
			}
			cs := clientStream{s: &State{streams: map[proto.URI]*roomStream{}}, rec: &clientRecord{inbox: b}}
			items, gap, last := cs.read(0, 100)
			if len(items) != 50 || items[0].Seq != 11 || !gap || last != 60 {
				t.Fatalf("%d items from %d, gap %v, last %d", len(items), items[0].Seq, gap, last)
			}
			if _, gap, _ := cs.read(10, 100); gap {
				t.Fatal("a reader that saw item 10 was told of a gap")
			}
			b.ack(55)
			if len(b.q.items) != 5 || b.q.items[0].Seq != 56 || b.bytes != 5*(int64(c.size)+itemOverhead) {
				t.Fatalf("after ack: %d items from %d, %d bytes", len(b.q.items), b.q.items[0].Seq, b.bytes)
			}
		})
	}
}

// TestEmptyStreamLast: a client whose stream never held an item is at 0.
func TestEmptyStreamLast(t *testing.T) {
	n := newNode(t, "a.example")
	c := proto.ClientURI("a.example", "u", "d")
	n.register(c, "t")
	var last uint64
	var ok bool
	_ = n.f.Read(func(s *State) error {
		_, _, last, ok = s.Stream(c, 0, 10)
		return nil
	})
	if !ok || last != 0 {
		t.Fatalf("empty stream: last %d, ok %v; want 0, true", last, ok)
	}
}

func TestDuplicateRequestsAndWindow(t *testing.T) {
	n := newNode(t, "a.example")
	id := []byte("req-1")
	n.ok(n.apply(CmdRegister, id, "", &RegisterBody{Client: proto.ClientURI("a.example", "u", "d"), TokenHash: tokenHash("t")}), "first")
	if r := n.apply(CmdRegister, id, "", &RegisterBody{Client: proto.ClientURI("a.example", "u", "d"), TokenHash: tokenHash("t")}); r.Kind != OK {
		t.Fatalf("a duplicate was applied again: %s", r.Err())
	}
	n.now += defaultDedupWindow + 1
	n.apply(CmdPrune, []byte("later"), "", nil)
	if r := n.apply(CmdRegister, id, "", &RegisterBody{Client: proto.ClientURI("a.example", "u", "d"), TokenHash: tokenHash("t")}); r.Kind != Conflict {
		t.Fatalf("an id past the window was still remembered: %v", r.Err())
	}
}

func TestIdentifierQuery(t *testing.T) {
	n := newNode(t, "a.example")
	vc := func(name, v string) proto.ProfileField {
		return proto.ProfileField{Source: proto.FieldVCardField, Name: name, Value: []byte(v)}
	}
	n.ok(n.apply(CmdRegister, nil, "", &RegisterBody{Client: proto.ClientURI("a.example", "alice", "p"), TokenHash: tokenHash("a"),
		Profile: []proto.ProfileField{vc("FN", "Alice Liddell"), vc("EMAIL", "alice@a.example"), vc("TEL", "+1 555-0100")}}), "alice")
	n.ok(n.apply(CmdRegister, nil, "", &RegisterBody{Client: proto.ClientURI("a.example", "alicia", "p"), TokenHash: tokenHash("b"),
		Profile: []proto.ProfileField{vc("FN", "Alicia Keys"), vc("EMAIL", "alice@a.example")}}), "alicia")
	cases := []struct {
		req  proto.IdentifierRequest
		code proto.IdentifierQueryCode
		n    int
	}{
		{proto.IdentifierRequest{Type: proto.SearchHandle, Value: "alice"}, proto.QuerySuccess, 1},
		{proto.IdentifierRequest{Type: proto.SearchPhone, Value: "+15550100"}, proto.QuerySuccess, 1},
		{proto.IdentifierRequest{Type: proto.SearchEmail, Value: "ALICE@a.example"}, proto.QueryAmbiguous, 0},
		{proto.IdentifierRequest{Type: proto.SearchPartialName, Value: "ali"}, proto.QuerySuccess, 2},
		{proto.IdentifierRequest{Type: proto.SearchVCardField, Field: "FN", Value: "Alicia Keys"}, proto.QuerySuccess, 1},
		{proto.IdentifierRequest{Type: proto.SearchVCardField, Value: "x"}, proto.QueryUnsupportedField, 0},
		{proto.IdentifierRequest{Type: proto.SearchHandle, Value: "bob"}, proto.QueryNotFound, 0},
	}
	for _, c := range cases {
		_ = n.f.Read(func(s *State) error {
			resp := s.IdentifierQuery(&c.req)
			if resp.Code != c.code || len(resp.URIs) != c.n {
				t.Errorf("%+v: %s with %d results", c.req, resp.Code, len(resp.URIs))
			}
			return nil
		})
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
