package client

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/room"
)

// newTestMember registers user/device at the fake, with KeyPackages.
func newTestMember(t *testing.T, f *fakeAPI, user, device string) *Member {
	t.Helper()
	return newTestMemberWith(t, f, user, device, MemberConfig{})
}

// newTestMemberWith is newTestMember with a configuration.
func newTestMemberWith(t *testing.T, f *fakeAPI, user, device string, cfg MemberConfig) *Member {
	t.Helper()
	api := f.user(t, func(c *UserConfig) { c.Tries = 1 })
	m, err := RegisterMember(context.Background(), api, user, device, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.UploadKeyPackages(context.Background(), 2, true); err != nil {
		t.Fatal(err)
	}
	return m
}

// syncOK runs Sync and fails on errors and error events.
func syncOK(t *testing.T, m *Member) []Event {
	t.Helper()
	events, err := m.Sync(context.Background())
	if err != nil {
		t.Fatalf("%s sync: %v", m.Client(), err)
	}
	for _, e := range events {
		if e.Kind == EventError {
			t.Fatalf("%s sync: item %d: %v", m.Client(), e.Seq, e.Err)
		}
	}
	return events
}

func kinds(events []Event) string {
	var s []string
	for _, e := range events {
		s = append(s, e.Kind.String())
	}
	return strings.Join(s, ",")
}

// expectMessage checks events hold exactly one application message.
func expectMessage(t *testing.T, events []Event, from *Member, text string) Event {
	t.Helper()
	if len(events) != 1 || events[0].Kind != EventMessage || events[0].Sender != from.Client() || string(events[0].Text) != text {
		t.Fatalf("events [%s] %+v, want %q from %s", kinds(events), events, text, from.Client())
	}
	return events[0]
}

func must(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// TestMemberScenario plays the seed's section 6 with Members against the
// fake client API (one provider, the real room engine).
func TestMemberScenario(t *testing.T) {
	f := newFakeAPI(t)
	ctx := context.Background()
	alice := newTestMember(t, f, "alice", "phone")
	bob1 := newTestMember(t, f, "bob", "laptop")
	bob2 := newTestMember(t, f, "bob", "phone")
	cathy1 := newTestMember(t, f, "cathy", "laptop")

	r, err := alice.CreateRoom(ctx, "clubhouse", proto.DefaultPolicy())
	if err != nil || r != proto.RoomURI("a.example", "clubhouse") {
		t.Fatalf("create: %s, %v", r, err)
	}
	if _, err := alice.CreateRoom(ctx, "clubhouse", proto.DefaultPolicy()); err == nil {
		t.Fatal("created the room twice")
	}

	// Alice adds Bob (both his clients join from the Welcome, which
	// carries no tree: each fetches the tree by reference).
	must(t, alice.AddUsers(ctx, r, []proto.UserRoles{{User: bob1.User(), Roles: []proto.Role{proto.RoleRegularUser}}}), "add Bob")
	if ev := syncOK(t, alice); len(ev) != 0 {
		t.Fatalf("alice sees her own commit: [%s]", kinds(ev))
	}
	fetched := f.fetchedTrees()
	for _, b := range []*Member{bob1, bob2} {
		ev := syncOK(t, b)
		if len(ev) != 1 || ev[0].Kind != EventJoined || ev[0].Room != r || ev[0].Epoch != 1 {
			t.Fatalf("%s: [%s] %+v", b.Client(), kinds(ev), ev)
		}
		if b.KeyPackages() != 2 {
			t.Fatalf("%s kept %d KeyPackages, want the unused and the last-resort one", b.Client(), b.KeyPackages())
		}
	}
	if n := f.fetchedTrees() - fetched; n != 2 {
		t.Fatalf("%d Welcome trees fetched, want one per client of Bob", n)
	}
	members, _ := alice.Members(r)
	if len(members) != 3 {
		t.Fatalf("members %v", members)
	}

	// Messages.
	must(t, alice.Send(ctx, r, []byte("hi Bob")), "alice sends")
	expectMessage(t, syncOK(t, bob1), alice, "hi Bob")
	expectMessage(t, syncOK(t, bob2), alice, "hi Bob")
	must(t, bob2.Send(ctx, r, []byte("hi Alice")), "bob2 sends")
	expectMessage(t, syncOK(t, alice), bob2, "hi Alice")
	expectMessage(t, syncOK(t, bob1), bob2, "hi Alice")
	if ev := syncOK(t, bob2); len(ev) != 0 {
		t.Fatalf("bob2 sees his own message: [%s]", kinds(ev))
	}

	// Alice makes Bob an administrator.
	must(t, alice.SetRoles(ctx, r, bob1.User(), []proto.Role{proto.RoleRegularUser, proto.RoleAdmin}), "promote Bob")
	ev := syncOK(t, bob1)
	if len(ev) != 1 || ev[0].Kind != EventCommit || ev[0].Sender != alice.Client() || len(ev[0].Patches) != 1 ||
		ev[0].Patches[0].UpdateUsers[0].User != bob1.User() || ev[0].Epoch != 2 {
		t.Fatalf("bob1 after the promotion: [%s] %+v", kinds(ev), ev)
	}
	syncOK(t, bob2)
	info, err := alice.API().Room(ctx, r)
	if err != nil || info.Epoch != 2 || info.Members != 3 {
		t.Fatalf("room info: %+v, %v", info, err)
	}
	if i := slices.IndexFunc(info.Participants, func(p proto.UserRoles) bool { return p.User == bob1.User() }); i < 0 ||
		!slices.Equal(info.Participants[i].Roles, []proto.Role{proto.RoleRegularUser, proto.RoleAdmin}) {
		t.Fatalf("participants %+v", info.Participants)
	}
	if local, err := alice.API().LocalRoom(ctx, r); err != nil || !reflect.DeepEqual(local, info) {
		t.Fatalf("the node's own copy (?consistency=stale) differs: %+v, %v; linearizable read %+v", local, err, info)
	}

	// Alice is saved and restored (onto a fresh API client) and goes on.
	state, err := alice.Save()
	must(t, err, "save alice")
	alice, err = LoadMember(f.user(t, func(c *UserConfig) { c.Tries = 1 }), state, MemberConfig{})
	must(t, err, "load alice")
	if again, err := alice.Save(); err != nil || string(again) != string(state) {
		t.Fatalf("a restored member saves differently (%v)", err)
	}
	must(t, alice.Send(ctx, r, []byte("still here")), "restored alice sends")
	expectMessage(t, syncOK(t, bob1), alice, "still here")
	syncOK(t, bob2)

	// Bob (admin) adds Cathy.
	must(t, bob1.AddUsers(ctx, r, []proto.UserRoles{{User: cathy1.User(), Roles: []proto.Role{proto.RoleRegularUser}}}), "bob adds cathy")
	if ev := syncOK(t, cathy1); len(ev) != 1 || ev[0].Kind != EventJoined {
		t.Fatalf("cathy: [%s]", kinds(ev))
	}
	ev = syncOK(t, alice)
	if len(ev) != 1 || ev[0].Kind != EventCommit || len(ev[0].Added) != 1 || ev[0].Added[0] != cathy1.Client() {
		t.Fatalf("alice sees cathy added: [%s] %+v", kinds(ev), ev)
	}
	syncOK(t, bob2)

	// Two commits race for an epoch: the loser is refused, discards its
	// commit, catches up and commits again.
	must(t, alice.CommitPending(ctx, r), "alice commits")
	epoch, _ := bob1.Epoch(r)
	err = bob1.CommitPending(ctx, r)
	var refused *RefusedError
	if !errors.As(err, &refused) || refused.Code != proto.UpdateWrongEpoch {
		t.Fatalf("the second commit of the epoch: %v", err)
	}
	if e, _ := bob1.Epoch(r); e != epoch {
		t.Fatalf("a refused commit moved bob1 to epoch %d", e)
	}
	syncOK(t, bob1)
	must(t, bob1.CommitPending(ctx, r), "bob1 commits after catching up")
	for _, m := range []*Member{alice, bob2, cathy1} {
		syncOK(t, m)
	}

	// Cathy gets a new client, which joins by external commit.
	cathy2 := newTestMember(t, f, "cathy", "tablet")
	must(t, cathy2.JoinExternal(ctx, r), "cathy2 joins")
	ev = syncOK(t, alice)
	if len(ev) != 1 || ev[0].Kind != EventCommit || ev[0].Sender != cathy2.Client() || len(ev[0].Added) != 0 || !ev[0].Commit.External {
		t.Fatalf("alice sees cathy2 join: [%s] %+v", kinds(ev), ev)
	}
	must(t, cathy2.Send(ctx, r, []byte("tablet here")), "cathy2 sends")
	msg := expectMessage(t, syncOK(t, alice), cathy2, "tablet here")
	for _, m := range []*Member{bob1, bob2, cathy1} {
		syncOK(t, m)
	}
	if ev := syncOK(t, cathy2); len(ev) != 0 {
		t.Fatalf("cathy2 sees [%s]", kinds(ev))
	}

	// Alice reports cathy2's message; the hub verifies it.
	must(t, alice.ReportAbuse(ctx, &msg, proto.AbuseSpam, "test"), "report")
	f.mu.Lock()
	if len(f.reports) != 1 || f.reports[0].Verified != 1 || f.reports[0].Body.AllegedAbuser != cathy2.User() {
		t.Fatalf("reports %+v", f.reports)
	}
	f.mu.Unlock()

	// Someone not in a members-only room cannot join.
	dave := newTestMember(t, f, "dave", "phone")
	var gie *GroupInfoError
	if err := dave.JoinExternal(ctx, r); !errors.As(err, &gie) || gie.Status != proto.GroupInfoNotAuthorized {
		t.Fatalf("dave joins: %v", err)
	}
	if err := dave.Send(ctx, r, []byte("x")); !errors.Is(err, ErrNotMember) {
		t.Fatalf("dave sends: %v", err)
	}

	// A client that names someone else in authenticated_data is caught by
	// the receivers (the hub cannot tell within one provider).
	forged, err := cathy1.rooms[r].group.Encrypt([]byte("I am Alice"), room.SenderHint(alice.Client()))
	must(t, err, "forge")
	resp, err := cathy1.API().SendMessage(ctx, r, forged)
	if err != nil || resp.Code != proto.UpdateSuccess {
		t.Fatalf("the forged message: %+v, %v", resp, err)
	}
	events, err := bob1.Sync(ctx)
	if err != nil || len(events) != 1 || events[0].Kind != EventError || !errors.Is(events[0].Err, ErrSenderMismatch) {
		t.Fatalf("bob1 reads the forged message: [%s] %v", kinds(events), err)
	}
	// The forger reads its own message as one it cannot decrypt (it never
	// recorded sending it).
	for _, m := range []*Member{alice, bob2, cathy2, cathy1} {
		m.Sync(ctx)
	}

	// Bob leaves from his laptop: the patch, a SelfRemove and the Remove
	// of his phone are queued until Alice commits them.
	must(t, bob1.Leave(ctx, r), "bob leaves")
	ev = syncOK(t, alice)
	if kinds(ev) != "proposal,proposal,proposal" {
		t.Fatalf("alice sees [%s]", kinds(ev))
	}
	must(t, alice.CommitPending(ctx, r), "alice commits Bob's departure")
	for _, b := range []*Member{bob1, bob2} {
		ev := syncOK(t, b)
		if len(ev) < 2 || ev[len(ev)-1].Kind != EventRemoved || len(b.Rooms()) != 0 {
			t.Fatalf("%s: [%s], rooms %v", b.Client(), kinds(ev), b.Rooms())
		}
		// The removed members learn who removed them.
		if c, gone := ev[len(ev)-2], ev[len(ev)-1]; c.Kind != EventCommit || c.Sender != alice.Client() || gone.Sender != alice.Client() {
			t.Fatalf("%s: the removing commit is from %q, the removal event names %q; want %s", b.Client(), c.Sender, gone.Sender, alice.Client())
		}
	}
	info, err = alice.API().Room(ctx, r)
	if err != nil || info.Members != 3 || slices.ContainsFunc(info.Participants, func(p proto.UserRoles) bool { return p.User == bob1.User() }) {
		t.Fatalf("room after Bob left: %+v, %v", info, err)
	}
	// A removed member cannot send.
	if err := bob1.Send(ctx, r, []byte("x")); !errors.Is(err, ErrNotMember) {
		t.Fatalf("bob1 sends after leaving: %v", err)
	}

	// Alice removes Cathy (both clients).
	syncOK(t, cathy1)
	syncOK(t, cathy2)
	must(t, alice.RemoveUser(ctx, r, cathy1.User()), "remove cathy")
	for _, c := range []*Member{cathy1, cathy2} {
		if ev := syncOK(t, c); kinds(ev) != "commit,removed" {
			t.Fatalf("%s: [%s]", c.Client(), kinds(ev))
		}
	}
	if err := alice.RemoveUser(ctx, r, alice.User()); err == nil {
		t.Fatal("alice removed herself with RemoveUser")
	}
}

// TestMemberUnresolved checks writes whose answer is lost: the member keeps
// them pending, refuses to save, and settles them by sending them again
// with the same Idempotency-Key.
func TestMemberUnresolved(t *testing.T) {
	f := newFakeAPI(t)
	ctx := context.Background()
	alice := newTestMember(t, f, "alice", "phone")
	bob := newTestMember(t, f, "bob", "phone")
	r, err := alice.CreateRoom(ctx, "r1", proto.DefaultPolicy())
	must(t, err, "create")
	must(t, alice.AddUsers(ctx, r, []proto.UserRoles{{User: bob.User(), Roles: []proto.Role{proto.RoleRegularUser}}}), "add")
	syncOK(t, bob)

	// The hub applies alice's commit but the answer is lost.
	f.addFault(fault{suffix: "/commit", status: 503, afterApply: true})
	err = alice.CommitPending(ctx, r)
	if !errors.Is(err, ErrUnresolved) {
		t.Fatalf("commit with a lost answer: %v", err)
	}
	if _, err := alice.Save(); !errors.Is(err, ErrUnresolved) {
		t.Fatalf("save while unresolved: %v", err)
	}
	// Sync settles it first: the replay gets the first answer.
	ev := syncOK(t, alice)
	if len(ev) != 1 || ev[0].Kind != EventResolved || ev[0].Err != nil || ev[0].Op != "commit" {
		t.Fatalf("alice's sync: [%s] %+v", kinds(ev), ev)
	}
	if e, _ := alice.Epoch(r); e != 2 {
		t.Fatalf("alice at epoch %d, want 2", e)
	}
	if _, err := alice.Save(); err != nil {
		t.Fatal(err)
	}
	if ev := syncOK(t, bob); len(ev) != 1 || ev[0].Kind != EventCommit {
		t.Fatalf("bob: [%s]", kinds(ev))
	}

	// A message the hub never saw is sent on the next use of the room.
	f.addFault(fault{suffix: "/messages", status: 503})
	if err := bob.Send(ctx, r, []byte("one")); !errors.Is(err, ErrUnresolved) {
		t.Fatalf("send with a 503: %v", err)
	}
	must(t, bob.Send(ctx, r, []byte("two")), "bob's next send")
	ev = syncOK(t, alice)
	if len(ev) != 2 || string(ev[0].Text) != "one" || string(ev[1].Text) != "two" {
		t.Fatalf("alice reads [%s] %+v", kinds(ev), ev)
	}

	// Proposals whose answer is lost, overtaken by another commit: the
	// replay is refused, and the group is restored without them.
	f.addFault(fault{suffix: "/proposals", status: 503})
	if err := bob.Leave(ctx, r); !errors.Is(err, ErrUnresolved) {
		t.Fatalf("leave with a 503: %v", err)
	}
	must(t, alice.CommitPending(ctx, r), "alice commits")
	ev = syncOK(t, bob)
	if len(ev) != 2 || ev[0].Kind != EventResolved || ev[0].Op != "leave" || ev[1].Kind != EventCommit {
		t.Fatalf("bob's sync: [%s] %+v", kinds(ev), ev)
	}
	if !errors.As(ev[0].Err, new(*RefusedError)) {
		t.Fatalf("the stale proposals: %v", ev[0].Err)
	}
	if _, err := bob.Save(); err != nil {
		t.Fatal(err)
	}
	must(t, bob.CommitPending(ctx, r), "bob commits (no stale proposals pending)")
	syncOK(t, alice)

	// An external join whose answer is lost completes (and subscribes)
	// when it is settled.
	bob2 := newTestMember(t, f, "bob", "laptop")
	f.addFault(fault{suffix: "/commit", status: 503, afterApply: true})
	if err := bob2.JoinExternal(ctx, r); !errors.Is(err, ErrUnresolved) {
		t.Fatalf("external join with a lost answer: %v", err)
	}
	ev = syncOK(t, bob2)
	if len(ev) != 1 || ev[0].Kind != EventResolved || ev[0].Err != nil {
		t.Fatalf("bob2: [%s] %+v", kinds(ev), ev)
	}
	syncOK(t, alice)
	syncOK(t, bob)
	must(t, alice.Send(ctx, r, []byte("welcome, laptop")), "alice sends")
	expectMessage(t, syncOK(t, bob2), alice, "welcome, laptop")

	// A refused creation leaves no room behind.
	if _, err := alice.CreateRoom(ctx, "r1", proto.DefaultPolicy()); err == nil {
		t.Fatal("the room was created twice")
	}
	carol := newTestMember(t, f, "carol", "phone")
	if _, err := carol.CreateRoom(ctx, "r1", proto.DefaultPolicy()); !IsKind(err, KindConflict) || len(carol.Rooms()) != 0 {
		t.Fatalf("carol creates an existing room: %v (rooms %v)", err, carol.Rooms())
	}
}

// TestMemberAck checks what Sync acknowledges: everything for a member that
// is never saved, only what the last Save covers otherwise.
func TestMemberAck(t *testing.T) {
	f := newFakeAPI(t)
	ctx := context.Background()
	alice := newTestMember(t, f, "alice", "phone")
	bob := newTestMember(t, f, "bob", "phone")
	r, err := alice.CreateRoom(ctx, "r", proto.DefaultPolicy())
	must(t, err, "create")
	must(t, alice.AddUsers(ctx, r, []proto.UserRoles{{User: bob.User(), Roles: []proto.Role{proto.RoleRegularUser}}}), "add")
	streamLen := func(m *Member) int {
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.clients[m.Client()].stream)
	}
	syncOK(t, bob)
	if n := streamLen(bob); n != 0 {
		t.Fatalf("an unsaved member left %d items unacknowledged", n)
	}
	state, err := bob.Save()
	must(t, err, "save")
	must(t, alice.Send(ctx, r, []byte("1")), "send")
	syncOK(t, bob)
	if n := streamLen(bob); n != 1 {
		t.Fatalf("%d items unacknowledged, want the one read after the save", n)
	}
	// A crash now: the saved state reads the message again.
	bob2, err := LoadMember(f.user(t, nil), state, MemberConfig{})
	must(t, err, "load")
	expectMessage(t, syncOK(t, bob2), alice, "1")
	must(t, bob2.Ack(ctx), "ack")
	if n := streamLen(bob); n != 0 {
		t.Fatalf("%d items after Ack", n)
	}
	// A long poll wakes up for a new message.
	done := make(chan []Event, 1)
	go func() {
		ev, err := bob2.SyncWait(ctx, 20*time.Second)
		if err != nil {
			t.Error(err)
		}
		done <- ev
	}()
	time.Sleep(50 * time.Millisecond)
	must(t, alice.Send(ctx, r, []byte("2")), "send")
	select {
	case ev := <-done:
		expectMessage(t, ev, alice, "2")
	case <-time.After(10 * time.Second):
		t.Fatal("SyncWait did not return")
	}
}

func TestLoadMemberChecks(t *testing.T) {
	f := newFakeAPI(t)
	alice := newTestMember(t, f, "alice", "phone")
	bob := newTestMember(t, f, "bob", "phone")
	_, err := alice.CreateRoom(context.Background(), "r", proto.DefaultPolicy())
	must(t, err, "create")
	state, err := alice.Save()
	must(t, err, "save")
	if _, err := LoadMember(bob.API(), state, MemberConfig{}); err == nil {
		t.Error("alice's state loaded onto bob's token")
	}
	for i := range 40 {
		cut := len(state) * i / 40
		if _, err := LoadMember(f.user(t, nil), state[:cut], MemberConfig{}); err == nil {
			t.Fatalf("a state cut at %d bytes loaded", cut)
		}
	}
	bad := append([]byte{9}, state[1:]...)
	if _, err := LoadMember(f.user(t, nil), bad, MemberConfig{}); err == nil || !strings.Contains(err.Error(), "version") {
		t.Errorf("a state of another version: %v", err)
	}
	if _, err := LoadMember(f.user(t, nil), append(state, 0), MemberConfig{}); err == nil {
		t.Error("a state with trailing bytes loaded")
	}
}

// TestMemberWelcomeWithoutTree joins from a Welcome that lacks the ratchet
// tree (as other clients may send): the member fetches it with the
// GroupInfo. It also checks a claim without KeyPackages commits nothing.
func TestMemberWelcomeWithoutTree(t *testing.T) {
	f := newFakeAPI(t)
	ctx := context.Background()
	alice := newTestMember(t, f, "alice", "phone")
	bob := newTestMember(t, f, "bob", "phone")
	r, err := alice.CreateRoom(ctx, "r", proto.DefaultPolicy())
	must(t, err, "create")

	// Nobody by that name: nothing is committed.
	var kme *KeyMaterialError
	err = alice.AddUsers(ctx, r, []proto.UserRoles{{User: proto.UserURI("a.example", "nobody"), Roles: []proto.Role{proto.RoleRegularUser}}})
	if !errors.As(err, &kme) || len(kme.Users) != 1 || kme.Users[0].Status != proto.UserUnknown {
		t.Fatalf("adding an unknown user: %v", err)
	}
	if e, _ := alice.Epoch(r); e != 0 {
		t.Fatalf("epoch %d after a failed add", e)
	}

	// Alice adds Bob by hand, without the tree in the Welcome.
	claim, err := alice.API().ClaimKeyMaterial(ctx, ClaimRequest{Users: []proto.URI{bob.User()}, Room: r})
	must(t, err, "claim")
	g := alice.rooms[r].group
	patch := &proto.ParticipantListPatch{AddUsers: []proto.UserRoles{{User: bob.User(), Roles: []proto.Role{proto.RoleRegularUser}}}}
	b, err := g.Commit(mlsCommitOptions(patch, claim))
	must(t, err, "commit")
	resp, err := alice.API().Commit(ctx, r, &CommitBundle{Commit: b.Commit, Welcome: b.Welcome, GroupInfo: b.GroupInfo})
	if err != nil || resp.Code != proto.UpdateSuccess {
		t.Fatalf("commit: %+v, %v", resp, err)
	}
	g.MergePendingCommit()
	ev := syncOK(t, bob)
	if len(ev) != 1 || ev[0].Kind != EventJoined {
		t.Fatalf("bob: [%s]", kinds(ev))
	}
	must(t, bob.Send(ctx, r, []byte("in")), "bob sends")
	// The hub does not echo Alice's own commit to her; Bob's message reads
	// fine.
	events, err := alice.Sync(ctx)
	if err != nil || len(events) != 1 || events[0].Kind != EventMessage {
		t.Fatalf("alice: [%s] %v", kinds(events), err)
	}
}

// TestMemberLateMessages sends a message that the hub accepts just before
// a commit the receiver processes first (its own, made without reading its
// stream): the receiver still delivers it, as a message of its epoch from
// the member that sent it then, as long as its groups keep that epoch (its
// own commits hold theirs, up to mls.MaxPastEpochs back).
func TestMemberLateMessages(t *testing.T) {
	ctx := context.Background()
	regular := []proto.Role{proto.RoleRegularUser}
	cases := []struct {
		name string
		// cfg is Alice's configuration.
		cfg MemberConfig
		// between runs after Bob's or Cathy's message and before Alice
		// syncs; it returns Alice (restored, possibly) and how many epochs
		// it moved the room.
		between func(t *testing.T, w *lateWorld) (*Member, int)
		// fromCathy: Cathy sends the message instead of Bob.
		fromCathy bool
		// wantErr is nil when Alice must deliver the message.
		wantErr error
	}{
		{
			name: "Alice's own commit",
			between: func(t *testing.T, w *lateWorld) (*Member, int) {
				must(t, w.alice.CommitPending(ctx, w.room), "alice commits")
				return w.alice, 1
			},
		},
		{
			name: "Alice's two commits and a restart",
			between: func(t *testing.T, w *lateWorld) (*Member, int) {
				must(t, w.alice.CommitPending(ctx, w.room), "alice commits")
				must(t, w.alice.SetRoles(ctx, w.room, w.bob.User(), []proto.Role{proto.RoleRegularUser, proto.RoleAdmin}), "alice promotes bob")
				state, err := w.alice.Save()
				must(t, err, "save alice")
				alice, err := LoadMember(w.f.user(t, func(c *UserConfig) { c.Tries = 1 }), state, MemberConfig{})
				must(t, err, "load alice")
				return alice, 2
			},
		},
		{
			// Cathy is removed and Dave takes her leaf before Alice reads
			// Cathy's message: it is Cathy's, checked against her leaf of
			// the message's epoch.
			name:      "the sender removed and its leaf reused",
			fromCathy: true,
			between: func(t *testing.T, w *lateWorld) (*Member, int) {
				must(t, w.alice.RemoveUser(ctx, w.room, w.cathy.User()), "alice removes cathy")
				dave := newTestMember(t, w.f, "dave", "phone")
				must(t, w.alice.AddUsers(ctx, w.room, []proto.UserRoles{{User: dave.User(), Roles: regular}}), "alice adds dave")
				members, err := w.alice.Members(w.room)
				must(t, err, "members")
				if len(members) != 3 || members[2] != dave.Client() {
					t.Fatalf("members %v: dave did not take cathy's leaf", members)
				}
				return w.alice, 2
			},
		},
		{
			// Her own commits hold their epochs beyond the default two.
			name: "Alice's three commits",
			between: func(t *testing.T, w *lateWorld) (*Member, int) {
				for i := range 3 {
					must(t, w.alice.CommitPending(ctx, w.room), fmt.Sprintf("alice commits %d", i))
				}
				return w.alice, 3
			},
		},
		{
			name: "older than the held epochs",
			between: func(t *testing.T, w *lateWorld) (*Member, int) {
				for i := range mls.MaxPastEpochs + 1 {
					must(t, w.alice.CommitPending(ctx, w.room), fmt.Sprintf("alice commits %d", i))
				}
				return w.alice, mls.MaxPastEpochs + 1
			},
			wantErr: mls.ErrEpochNotRetained,
		},
		{
			name: "no epoch kept",
			cfg:  MemberConfig{PastEpochs: mls.NoPastEpochs},
			between: func(t *testing.T, w *lateWorld) (*Member, int) {
				must(t, w.alice.CommitPending(ctx, w.room), "alice commits")
				return w.alice, 1
			},
			wantErr: mls.ErrEpochNotRetained,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeAPI(t)
			w := &lateWorld{
				f:     f,
				alice: newTestMemberWith(t, f, "alice", "phone", tc.cfg),
				bob:   newTestMember(t, f, "bob", "laptop"),
				cathy: newTestMember(t, f, "cathy", "laptop"),
			}
			var err error
			w.room, err = w.alice.CreateRoom(ctx, "late", proto.DefaultPolicy())
			must(t, err, "create")
			must(t, w.alice.AddUsers(ctx, w.room, []proto.UserRoles{{User: w.bob.User(), Roles: regular}, {User: w.cathy.User(), Roles: regular}}), "add bob and cathy")
			syncOK(t, w.bob)
			syncOK(t, w.cathy)
			epoch, _ := w.alice.Epoch(w.room)

			sender, other := w.bob, w.cathy
			if tc.fromCathy {
				sender, other = w.cathy, w.bob
			}
			must(t, sender.Send(ctx, w.room, []byte("crossing")), "send")
			alice, moved := tc.between(t, w)
			if now, _ := alice.Epoch(w.room); now != epoch+uint64(moved) {
				t.Fatalf("alice is at epoch %d, want %d", now, epoch+uint64(moved))
			}

			events, err := alice.Sync(ctx)
			must(t, err, "alice syncs")
			if tc.wantErr != nil {
				if len(events) != 1 || events[0].Kind != EventError || !errors.Is(events[0].Err, tc.wantErr) || !errors.Is(events[0].Err, mls.ErrWrongEpoch) {
					t.Fatalf("alice: [%s] %+v, want an error event wrapping %v", kinds(events), events, tc.wantErr)
				}
				return
			}
			ev := expectMessage(t, events, sender, "crossing")
			if ev.Epoch != epoch {
				t.Fatalf("the late message has epoch %d, want %d", ev.Epoch, epoch)
			}
			// Members that read the stream in order see the message
			// before the commits, in the same epoch.
			if tc.fromCathy {
				return // cathy was removed; bob reads in order below
			}
			got := syncOK(t, other)
			if len(got) != moved+1 || got[0].Kind != EventMessage || got[0].Epoch != epoch || got[0].Sender != sender.Client() {
				t.Fatalf("%s: [%s] %+v", other.Client(), kinds(got), got)
			}
		})
	}
}

// lateWorld is a room of Alice, Bob and Cathy at the fake.
type lateWorld struct {
	f                 *fakeAPI
	room              proto.URI
	alice, bob, cathy *Member
}

// TestCommitFallsBackToTheQueue: a commit the hub refuses while it covers
// an optional pending proposal (another member's Update, which this hub
// will not see committed) is made again with only what the hub queued and
// goes through; a refusal that no optional proposal can explain is not
// retried.
func TestCommitFallsBackToTheQueue(t *testing.T) {
	f := newFakeAPI(t)
	ctx := context.Background()
	alice := newTestMember(t, f, "alice", "phone")
	bob := newTestMember(t, f, "bob", "phone")
	carol := newTestMember(t, f, "carol", "phone")
	r, err := alice.CreateRoom(ctx, "r1", proto.DefaultPolicy())
	must(t, err, "create")
	must(t, alice.AddUsers(ctx, r, []proto.UserRoles{{User: bob.User(), Roles: []proto.Role{proto.RoleRegularUser}}}), "add bob")
	syncOK(t, bob)

	// Bob proposes an Update of his leaf by reference: optional.
	bob.mu.Lock()
	update, err := bob.rooms[r].group.ProposeUpdate()
	bob.mu.Unlock()
	must(t, err, "bob's update")
	resp, err := bob.API().Propose(ctx, r, []*mls.Message{update})
	if err != nil || resp.Code != proto.UpdateSuccess {
		t.Fatalf("bob's proposal: %v %+v", err, resp)
	}
	syncOK(t, alice)
	pending := alice.rooms[r].group.PendingProposals()
	if len(pending) != 1 || len(room.QueuedReferences(alice.rooms[r].group, 0)) != 0 {
		t.Fatalf("alice has %d pending proposals, want bob's optional one alone", len(pending))
	}
	f.mu.Lock()
	f.refuseCovering = [][]byte{pending[0].Ref}
	f.mu.Unlock()

	// Alice adds Carol: covering Bob's Update is refused, the commit of
	// her own proposals and the (empty) queue goes through.
	must(t, alice.AddUsers(ctx, r, []proto.UserRoles{{User: carol.User(), Roles: []proto.Role{proto.RoleRegularUser}}}), "add carol")
	if e, _ := alice.Epoch(r); e != 2 || f.refusedCommits != 1 {
		t.Fatalf("alice at epoch %d after %d refused commits, want epoch 2 after 1", e, f.refusedCommits)
	}
	syncOK(t, carol)

	// A refusal no optional proposal can explain (nothing optional is
	// pending now) is answered as it is, without a second commit.
	f.mu.Lock()
	f.refuseCovering, f.refuseNext = nil, 1
	f.mu.Unlock()
	var refused *RefusedError
	if err := alice.CommitPending(ctx, r); !errors.As(err, &refused) || refused.Code != proto.UpdateInvalidProposal {
		t.Fatalf("a commit the hub refuses: %v", err)
	}
	if f.refusedCommits != 2 {
		t.Fatalf("%d commits refused in all, want 2 (no second attempt)", f.refusedCommits)
	}
	must(t, alice.CommitPending(ctx, r), "the next commit")
}
