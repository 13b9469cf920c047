package fsm

import (
	"bytes"
	"os"
	"testing"
	"unsafe"

	"github.com/hashicorp/raft"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/room"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// TestCommandFormats: a command without credential or pre-verification
// is written in format 1, as earlier releases wrote every command; one
// with either in format 2; both decode to what was encoded, and a format
// 2 command with neither is refused. Stamp copies.
func TestCommandFormats(t *testing.T) {
	body := &AckBody{Client: proto.ClientURI("a.example", "alice", "phone"), UpTo: 3}
	v1, err := (&Proposal{Type: CmdAck, RequestID: []byte("id"), Body: body}).Command(nil)
	if err != nil || v1[0] != commandVersion1 {
		t.Fatalf("plain command: format %d, %v", v1[0], err)
	}
	auth := &ClientToken{Client: body.Client, TokenHash: tokenHash("t")}
	verified := &mls.Verified{Epoch: 4, TranscriptHash: bytes.Repeat([]byte{1}, 32), Signatures: [][]byte{bytes.Repeat([]byte{2}, 32)}}
	v2, err := (&Proposal{Type: CmdAck, RequestID: []byte("id"), Body: body, Auth: auth}).Command(verified)
	if err != nil || v2[0] != commandVersion2 {
		t.Fatalf("command with a credential: format %d, %v", v2[0], err)
	}
	for _, enc := range [][]byte{v1, v2} {
		var c Command
		if err := wire.Unmarshal(enc, &c); err != nil || !bytes.Equal(wire.MustMarshal(&c), enc) {
			t.Fatalf("format %d does not re-encode: %v", enc[0], err)
		}
	}
	var c Command
	_ = wire.Unmarshal(v2, &c)
	if c.Auth == nil || c.Auth.Client != auth.Client || c.Verified == nil || c.Verified.Epoch != 4 {
		t.Fatalf("decoded %+v", c)
	}
	bare := append([]byte{commandVersion2}, v1[1:]...)
	bare = append(bare, 0, 0)
	if err := wire.Unmarshal(bare, new(Command)); err == nil {
		t.Fatal("a format 2 command with neither credential nor verification decoded")
	}
	stamped, err := Stamp(v2, 42)
	if err != nil {
		t.Fatal(err)
	}
	_ = wire.Unmarshal(stamped, &c)
	if c.AcceptedAt != 42 || c.Verified == nil || bytes.Equal(stamped, v2) {
		t.Fatalf("stamped %d, verified %v", c.AcceptedAt, c.Verified)
	}
	if _ = wire.Unmarshal(v2, &c); c.AcceptedAt != 0 {
		t.Fatal("Stamp modified the command it was given")
	}
}

// TestBatchIsItsCommandsInOrder: a CmdBatch applies its commands in order
// with the batch's time, as if each were an entry of its own: the same
// results and the same state as applying them one by one.
func TestBatchIsItsCommandsInOrder(t *testing.T) {
	batched := newNode(t, "a.example")
	alice := newMember(t, proto.ClientURI("a.example", "alice", "phone"))
	batched.register(alice.uri, "alice-token")
	batched.register(proto.ClientURI("a.example", "bob", "laptop"), "bob-token")
	id := proto.RoomURI("a.example", "r")
	batched.createRoom(alice, id)
	single := newNode(t, "a.example") // the same log so far
	for _, cmd := range batched.log {
		single.f.Apply(&raft.Log{Type: raft.LogCommand, Data: cmd})
	}
	var props []*Proposal
	for i := range 4 {
		m, err := alice.group.Encrypt([]byte{byte(i)}, room.SenderHint(alice.uri))
		if err != nil {
			t.Fatal(err)
		}
		props = append(props, &Proposal{Type: CmdProvisional, RequestID: []byte{'m', byte(i)}, Body: &RoomBody{Room: id, Request: wire.MustMarshal(m)}})
	}
	props = append(props,
		&Proposal{Type: CmdProvisional, RequestID: []byte{'m', 1}, Body: props[1].Body},                                                       // a retry: its first result
		&Proposal{Type: CmdSubscribe, Body: &SubscribeBody{Client: proto.ClientURI("a.example", "bob", "laptop"), Room: id, Subscribe: true}}, // refused: not a member
		&Proposal{Type: CmdAck, Body: &AckBody{Client: alice.uri, UpTo: 2}},
		&Proposal{Type: CmdProvisional, Body: &RoomBody{Room: proto.RoomURI("a.example", "nope"), Request: []byte{1}}}, // refused: no such room
	)
	var cmds [][]byte
	for _, p := range props {
		cmd, err := p.Command(nil)
		if err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	at := batched.now + 5000
	entry, err := NewBatch(cmds, at)
	if err != nil {
		t.Fatal(err)
	}
	out, ok := batched.f.Apply(&raft.Log{Type: raft.LogCommand, Data: entry}).(*BatchResult)
	if !ok || len(out.Results) != len(cmds) {
		t.Fatalf("batch answered %T", batched.f.Apply(&raft.Log{Type: raft.LogCommand, Data: entry}))
	}
	for i, cmd := range cmds {
		stamped, _ := Stamp(cmd, at)
		r := single.f.Apply(&raft.Log{Type: raft.LogCommand, Data: stamped}).(*Result)
		if b := out.Results[i]; b.Kind != r.Kind || b.Message != r.Message || !bytes.Equal(b.Body, r.Body) {
			t.Fatalf("command %d: batched %s %q, alone %s %q", i, b.Kind, b.Message, r.Kind, r.Message)
		}
	}
	if out.Results[5].Kind != NotAllowed || out.Results[7].Kind != NotFound {
		t.Fatalf("refusals in a batch: %s, %s", out.Results[5].Kind, out.Results[7].Kind)
	}
	if !bytes.Equal(batched.state(), single.state()) {
		t.Fatal("a batch left another state than its commands applied one by one")
	}

	// A batch carries nothing but commands, and no batch.
	for _, bad := range []*Command{
		{Type: CmdBatch, Peer: "b.example", Body: wire.MustMarshal(&BatchBody{Commands: cmds[:1]})},
		{Type: CmdBatch, RequestID: []byte("x"), Body: wire.MustMarshal(&BatchBody{Commands: cmds[:1]})},
	} {
		before := batched.state()
		if r, ok := batched.f.Apply(&raft.Log{Type: raft.LogCommand, Data: wire.MustMarshal(bad)}).(*Result); !ok || r.Kind != Invalid {
			t.Fatalf("a batch with a peer or request id was taken")
		}
		if !bytes.Equal(before, batched.state()) {
			t.Fatal("a refused batch changed the state")
		}
	}
	inner, _ := NewBatch(cmds[:1], at)
	nested, _ := NewBatch([][]byte{inner}, at)
	if r := batched.f.Apply(&raft.Log{Type: raft.LogCommand, Data: nested}).(*BatchResult); r.Results[0].Kind != Invalid {
		t.Fatalf("a batch in a batch: %s", r.Results[0].Kind)
	}
}

// TestCredentialCheckedInLogOrder: a command that carries its client's
// token is refused (Unauthenticated), and changes nothing, once the token
// is no longer the client's or its user is suspended; Admit answers the
// same.
func TestCredentialCheckedInLogOrder(t *testing.T) {
	n := newNode(t, "a.example")
	alice := proto.ClientURI("a.example", "alice", "phone")
	n.register(alice, "alice-token")
	prop := func(token string) *Proposal {
		return &Proposal{Type: CmdSubscribe, Body: &SubscribeBody{Client: alice, Room: proto.RoomURI("b.example", "r"), Subscribe: true},
			Auth: &ClientToken{Client: alice, TokenHash: tokenHash(token)}}
	}
	n.ok(n.applyProposal(prop("alice-token"), nil), "with a valid token")
	before := n.state()
	admit := func(p *Proposal) (r *Result) {
		_ = n.f.Read(func(s *State) error { r = s.AdmitProposal(p); return nil })
		return r
	}
	if r := admit(prop("stolen")); r == nil || r.Kind != Unauthenticated {
		t.Fatalf("Admit with another token: %v", r)
	}
	n.refused(before, n.applyProposal(prop("stolen"), nil), Unauthenticated, "another token")
	n.ok(n.apply(CmdSuspendUser, nil, "", &SuspendUserBody{User: proto.UserURI("a.example", "alice"), Suspend: true}), "suspend")
	before = n.state()
	if r := admit(prop("alice-token")); r == nil || r.Kind != Unauthenticated {
		t.Fatalf("Admit for a suspended user: %v", r)
	}
	n.refused(before, n.applyProposal(prop("alice-token"), nil), Unauthenticated, "a suspended user's token")
	// A revoked device has no record at all.
	n.ok(n.apply(CmdSuspendUser, nil, "", &SuspendUserBody{User: proto.UserURI("a.example", "alice"), Suspend: false}), "reinstate")
	ghost := &Proposal{Type: CmdAck, Body: &AckBody{Client: proto.ClientURI("a.example", "alice", "gone"), UpTo: 1},
		Auth: &ClientToken{Client: proto.ClientURI("a.example", "alice", "gone"), TokenHash: tokenHash("x")}}
	before = n.state()
	n.refused(before, n.applyProposal(ghost, nil), Unauthenticated, "an unknown device")
}

// TestDeliveredMany: one entry records progress for several peers; once
// the outbox is numbered state-wide (CmdOutboxIDs: local only, once, and
// a repeat is answered before the log) a queue it empties is forgotten;
// one that moves nothing (behind what is queued, or for a peer with no
// queue) changes nothing and says so.
func TestDeliveredMany(t *testing.T) {
	n := fanoutState(t)
	before := n.state()
	if r := n.apply(CmdOutboxIDs, nil, "b.example", nil); r.Kind != NotAllowed || !bytes.Equal(before, n.state()) {
		t.Fatalf("CmdOutboxIDs from a peer: %+v", r)
	}
	n.ok(n.apply(CmdOutboxIDs, nil, "", nil), "number the outbox state-wide")
	before = n.state()
	if r := n.apply(CmdOutboxIDs, nil, "", nil); r.Kind != OK || !r.unchanged || !bytes.Equal(before, n.state()) {
		t.Fatalf("a second CmdOutboxIDs: %+v", r)
	}
	_ = n.f.Read(func(s *State) error {
		if r := s.Admit(CmdOutboxIDs, nil, "", nil); r == nil || !r.unchanged {
			t.Errorf("Admit of a second CmdOutboxIDs: %+v", r)
		}
		return nil
	})
	var d map[string]PeerDepth
	ids := map[string][]uint64{}
	read := func() {
		_ = n.f.Read(func(s *State) error {
			d = s.OutboxDepth()
			clear(ids)
			for _, p := range s.OutboxDomains() {
				items, _ := s.OutboxAfter(p, 0, 10)
				for _, it := range items {
					ids[p] = append(ids[p], it.ID)
				}
			}
			return nil
		})
	}
	read()
	if d["b.example"].Items != 4 || d["c.example"].Items != 4 || len(ids["d.example"]) != 4 {
		t.Fatalf("outbox %+v", d)
	}
	b, c, dd := ids["b.example"], ids["c.example"], ids["d.example"]
	n.ok(n.apply(CmdDeliveredMany, nil, "", &DeliveredManyBody{Marks: []DeliveredBody{{Domain: "b.example", UpTo: b[2]}, {Domain: "c.example", UpTo: c[3]}, {Domain: "x.example", UpTo: 9}}}), "delivered")
	read()
	if _, kept := d["c.example"]; kept || d["b.example"].Items != 1 || d["d.example"].Items != 4 {
		t.Fatalf("after the record: %+v", d)
	}
	for _, mark := range []DeliveredBody{{Domain: "b.example", UpTo: b[1]}, {Domain: "c.example", UpTo: c[3]}, {Domain: "x.example", UpTo: 1 << 40}} {
		before := n.state()
		if r := n.apply(CmdDeliveredMany, nil, "", &DeliveredManyBody{Marks: []DeliveredBody{mark}}); r.Kind != OK || !r.unchanged || !bytes.Equal(before, n.state()) {
			t.Fatalf("a record that moves nothing (%+v): %+v, state changed %v", mark, r, !bytes.Equal(before, n.state()))
		}
		if r := n.apply(CmdDelivered, nil, "", &mark); r.Kind != OK || !r.unchanged || !bytes.Equal(before, n.state()) {
			t.Fatalf("a single record that moves nothing (%+v): %+v, state changed %v", mark, r, !bytes.Equal(before, n.state()))
		}
	}
	var items []OutItem
	var waiting bool
	_ = n.f.Read(func(s *State) error { items, waiting = s.OutboxAfter("d.example", dd[1], 10); return nil })
	if !waiting || len(items) != 2 || items[0].ID != dd[2] {
		t.Fatalf("OutboxAfter: %d items from %v, waiting %v", len(items), items, waiting)
	}
}

// fanoutState is a hub whose room has a member at b, c and d.example and
// whose three messages (after the commit that added them) wait for all
// three peers.
func fanoutState(t testing.TB) *node {
	t.Helper()
	n := newNode(t, "a.example")
	alice := newMember(t, proto.ClientURI("a.example", "alice", "phone"))
	n.register(alice.uri, "alice-token")
	id := proto.RoomURI("a.example", "fan")
	n.createRoom(alice, id)
	var users []proto.UserRoles
	var adds []*mls.Proposal
	for _, d := range []string{"b.example", "c.example", "d.example"} {
		m := newMember(t, proto.ClientURI(d, "u", "x"))
		users = append(users, proto.UserRoles{User: proto.UserURI(d, "u"), Roles: []proto.Role{proto.RoleRegularUser}})
		adds = append(adds, mls.AddProposal(m.keyPackage(t, n.now).KeyPackage))
	}
	patch := &proto.ParticipantListPatch{AddUsers: users}
	if _, resp := n.commit(alice, id, "", mls.CommitOptions{Proposals: append([]*mls.Proposal{patch.Proposal()}, adds...)}); resp.Code != proto.UpdateSuccess {
		t.Fatalf("adds: %s %s", resp.Code, resp.Description)
	}
	for i := range 3 {
		m, err := alice.group.Encrypt([]byte{byte(i)}, room.SenderHint(alice.uri))
		if err != nil {
			t.Fatal(err)
		}
		n.ok(n.apply(CmdProvisional, nil, "", &RoomBody{Room: id, Request: wire.MustMarshal(m)}), "message")
	}
	return n
}

// TestSnapshotSharesFanoutPayloads: a message for several peers is stored
// once, in memory and in the snapshot (format 4), and restores shared; a
// format 3 snapshot still restores and encodes stably
// (testdata/snapshot-v3-fanout.bin: the state fanoutState builds, the same
// steps run by the previous release, commit 491a6ba, and f.Encode written
// to the file).
func TestSnapshotSharesFanoutPayloads(t *testing.T) {
	n := fanoutState(t)
	var items map[string][]OutItem
	read := func(f *FSM) {
		items = map[string][]OutItem{}
		_ = f.Read(func(s *State) error {
			for _, d := range s.OutboxDomains() {
				items[d], _ = s.OutboxAfter(d, 0, 10)
			}
			return nil
		})
	}
	shared := func(what string) {
		t.Helper()
		for i := 1; i < 4; i++ { // the messages, after the commit
			a, b, c := items["b.example"][i].Data, items["c.example"][i].Data, items["d.example"][i].Data
			if unsafe.SliceData(a) != unsafe.SliceData(b) || unsafe.SliceData(a) != unsafe.SliceData(c) {
				t.Fatalf("%s: message %d has a copy per peer", what, i)
			}
		}
	}
	// Numbered per queue, the state encodes as format 4; numbered
	// state-wide (CmdOutboxIDs), as format 5: both share payloads.
	for _, format := range []byte{stateVersionV4, stateVersion} {
		if format == stateVersion {
			n.ok(n.apply(CmdOutboxIDs, nil, "", nil), "number the outbox state-wide")
		}
		read(n.f)
		shared("in memory")
		enc := n.state()
		if enc[0] != format {
			t.Fatalf("format %d, want %d", enc[0], format)
		}
		if got := bytes.Count(enc, items["b.example"][1].Data); got != 1 {
			t.Fatalf("the snapshot holds a shared message %d times", got)
		}
		restored, _ := New(n.cfg)
		if err := restored.Restore(&memSink{*bytes.NewBuffer(enc)}); err != nil {
			t.Fatal(err)
		}
		read(restored)
		shared("restored")
		if again, _ := restored.Encode(); !bytes.Equal(again, enc) {
			t.Fatalf("a restored format %d snapshot encodes otherwise", format)
		}
	}

	old, err := os.ReadFile("testdata/snapshot-v3-fanout.bin")
	if err != nil {
		t.Fatal(err)
	}
	if old[0] != stateVersionV3 {
		t.Fatalf("the fixture is format %d", old[0])
	}
	fromV3, _ := New(n.cfg)
	if err := fromV3.Restore(&memSink{*bytes.NewBuffer(old)}); err != nil {
		t.Fatal(err)
	}
	read(fromV3)
	if len(items["b.example"]) != 4 || len(items["d.example"]) != 4 {
		t.Fatalf("format 3 outbox %d/%d items", len(items["b.example"]), len(items["d.example"]))
	}
	// Each item has its own copy after a format 3 restore, so the new
	// encoding stores them inline; every other byte is the state's.
	reenc, _ := fromV3.Encode()
	if reenc[0] != stateVersionV4 || !bytes.Equal(restoreEncode(t, n.cfg, reenc), reenc) {
		t.Fatal("a format 3 restore does not encode stably")
	}
}

// restoreEncode restores enc and encodes the state again.
func restoreEncode(t *testing.T, cfg Config, enc []byte) []byte {
	t.Helper()
	f, _ := New(cfg)
	if err := f.Restore(&memSink{*bytes.NewBuffer(enc)}); err != nil {
		t.Fatal(err)
	}
	out, _ := f.Encode()
	return out
}

// TestPrecheckedCommits: a commit's signatures checked before it is
// proposed. The record changes no outcome; a record made against an
// older room state, for other bytes, or a bare claim of verification
// skips nothing (the commit is checked in full and refused when invalid):
// a follower node, or anything else that forwards such a record, cannot
// make Apply skip a check it does not match. A commit whose own signature
// fails is refused by the checks as Apply refuses it.
func TestPrecheckedCommits(t *testing.T) {
	hub := newNode(t, "a.example")
	twin := newNode(t, "a.example") // the same log, without records
	alice := newMember(t, proto.ClientURI("a.example", "alice", "phone"))
	id := proto.RoomURI("a.example", "r")
	hub.register(alice.uri, "alice-token")
	hub.createRoom(alice, id)
	// The twin replays the hub's log from here on: the same commands,
	// without records.
	for _, cmd := range hub.log {
		twin.f.Apply(&raft.Log{Type: raft.LogCommand, Data: cmd})
	}
	twin.now = hub.now

	newCommit := func() *mls.CommitBundle {
		b, err := alice.group.Commit(mls.CommitOptions{ForcePath: true, GroupInfo: mls.GroupInfoOptions{ExternalPub: true}})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	propose := func(b *mls.CommitBundle, mutate func(*proto.UpdateRoomRequest)) *Proposal {
		req := &proto.UpdateRoomRequest{Message: b.Commit, GroupInfo: b.GroupInfo, RatchetTree: proto.RatchetTreeOption{Representation: proto.TreeByReference}}
		enc := wire.MustMarshal(req) // a copy the mutation cannot reach
		if mutate != nil {
			var c proto.UpdateRoomRequest
			_ = wire.Unmarshal(enc, &c)
			mutate(&c)
			enc = wire.MustMarshal(&c)
		}
		return &Proposal{Type: CmdUpdateRoom, Body: &RoomBody{Room: id, Request: enc}}
	}
	check := func(p *Proposal) (*mls.Verified, *Result) {
		t.Helper()
		var pre *Precheck
		_ = hub.f.Read(func(s *State) error { pre = s.Precheck(p); return nil })
		if pre == nil {
			t.Fatal("no checks for a member's commit")
		}
		return pre.Run()
	}
	both := func(p *Proposal, v *mls.Verified) (*Result, *Result) {
		t.Helper()
		return hub.applyProposal(p, v), twin.applyProposal(p, nil)
	}
	code := func(r *Result) proto.UpdateResponseCode {
		var resp proto.UpdateRoomResponse
		if r.Kind != OK || wire.Unmarshal(r.Body, &resp) != nil {
			t.Fatalf("result %s %q", r.Kind, r.Message)
		}
		return resp.Code
	}

	// A valid commit with its record: accepted, as without.
	p1 := propose(newCommit(), nil)
	v1, refusal := check(p1)
	if refusal != nil || len(v1.Signatures) != 3 {
		t.Fatalf("checks of a valid commit: %v, %d signatures", refusal, len(v1.Signatures))
	}
	if a, b := both(p1, v1); code(a) != proto.UpdateSuccess || code(b) != proto.UpdateSuccess {
		t.Fatalf("a valid commit: %s with the record, %s without", code(a), code(b))
	}
	alice.group.MergePendingCommit()

	// The next commit's GroupInfo signature is broken. Records that do not
	// match it skip nothing: it is refused, as without a record.
	b2 := newCommit()
	p2 := propose(b2, func(c *proto.UpdateRoomRequest) { c.GroupInfo.GroupInfo.Signature[0] ^= 1 })
	honest := propose(b2, nil) // the same commit, intact: its record is for other bytes
	alice.group.DiscardPendingCommit()
	vHonest, _ := check(honest)
	vBad, refusal := check(p2)
	if refusal != nil || len(vBad.Signatures) != 2 {
		t.Fatalf("checks of a commit with a bad GroupInfo signature: %v, %d recorded", refusal, len(vBad.Signatures))
	}
	for _, tc := range []struct {
		name string
		v    *mls.Verified
	}{
		{"the record of the previous epoch's commit", v1},
		{"a record made for other bytes", vHonest},
		{"a bare claim at the current state", &mls.Verified{Epoch: vBad.Epoch, TranscriptHash: vBad.TranscriptHash}},
		{"its own record", vBad},
	} {
		before := hub.state()
		a, b := both(p2, tc.v)
		if code(a) != proto.UpdateInvalidProposal || code(b) != proto.UpdateInvalidProposal || a.Message != b.Message || !bytes.Equal(a.Body, b.Body) {
			t.Fatalf("%s: %s with the record, %s without", tc.name, code(a), code(b))
		}
		if !bytes.Equal(before, hub.state()) {
			t.Fatalf("%s: a refused commit changed the state", tc.name)
		}
	}

	// The commit's own signature broken: the checks refuse it as Apply
	// does at the same state.
	p3 := propose(newCommit(), func(c *proto.UpdateRoomRequest) { c.Message.Public.Auth.Signature[0] ^= 1 })
	alice.group.DiscardPendingCommit()
	if _, refusal := check(p3); refusal == nil {
		t.Fatal("the checks took a forged commit signature")
	} else if a := hub.applyProposal(p3, nil); a.Kind != refusal.Kind || !bytes.Equal(a.Body, refusal.Body) {
		t.Fatalf("the checks answer %q, Apply %q", refusal.Body, a.Body)
	}
	twin.applyProposal(p3, nil)

	// A valid commit checked before the room moved on: the record names
	// the older epoch, so Apply checks everything and decides (here, the
	// commit is for the old epoch: wrongEpoch).
	stale := propose(newCommit(), nil)
	vStale, _ := check(stale)
	alice.group.DiscardPendingCommit()
	p4 := propose(newCommit(), nil)
	v4, _ := check(p4)
	if a, b := both(p4, v4); code(a) != proto.UpdateSuccess || code(b) != proto.UpdateSuccess {
		t.Fatal("a valid commit was refused")
	}
	alice.group.MergePendingCommit()
	if a, b := both(stale, vStale); code(a) != proto.UpdateWrongEpoch || code(b) != proto.UpdateWrongEpoch {
		t.Fatalf("a commit checked at an older epoch: %s, %s", code(a), code(b))
	}
	if !bytes.Equal(hub.state(), twin.state()) {
		t.Fatal("the hub with records and its twin without ended in different states")
	}
}
