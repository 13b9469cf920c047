package hub_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/mimihub/mimi-hub/fsm"
	"github.com/mimihub/mimi-hub/internal/testutil"
	"github.com/mimihub/mimi-hub/mimi/client"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// TestRevokeDeviceAcrossProviders revokes a device the way the accounts
// code does (CmdRemoveClients from its own provider) while it is in two
// rooms: one hosted by its own provider (b.example), one hosted by
// a.example. b's hub queues its own Remove of the device in the first; b
// asks a.example through POST /removeClients/{roomId}, and a's hub queues
// its own Remove in the second. The next commit in each room, by a member
// that knows nothing of the revocation, takes the device out.
func TestRevokeDeviceAcrossProviders(t *testing.T) {
	net := testutil.StartNetwork(t, testutil.Options{}, domainA, domainB)
	a, b := net.Provider(domainA), net.Provider(domainB)
	alice := newParty(t, a, "alice", "phone", nil)
	bob1 := newParty(t, b, "bob", "laptop", nil)
	bob2 := newParty(t, b, "bob", "phone", nil)
	ctx := opCtx(t)
	regular := []proto.Role{proto.RoleRegularUser}

	// room1 on a.example: Alice adds Bob (both clients). room2 on
	// b.example: Bob1 adds Alice, Bob2 joins by external commit.
	room1, err := alice.m.CreateRoom(ctx, "room1", proto.DefaultPolicy())
	must(t, err, "create room1")
	must(t, alice.m.AddUsers(ctx, room1, []proto.UserRoles{{User: bob1.m.User(), Roles: regular}}), "Alice adds Bob")
	bob1.see(t, "joined e1")
	bob2.see(t, "joined e1")
	room2, err := bob1.m.CreateRoom(ctx, "room2", proto.DefaultPolicy())
	must(t, err, "create room2")
	must(t, bob1.m.AddUsers(ctx, room2, []proto.UserRoles{{User: alice.m.User(), Roles: regular}}), "Bob adds Alice")
	alice.see(t, "joined e1")
	must(t, bob2.m.JoinExternal(ctx, room2), "Bob2 joins room2")

	// b.example revokes Bob2.
	var seq1 uint64
	a.Read(t, func(s *fsm.State) { info, _ := s.Room(room1); seq1 = info.Sequence })
	res, err := b.Hub(t).Store().Apply(ctx, fsm.CmdRemoveClients, nil, "", &fsm.RemoveClientsBody{Clients: []proto.URI{bob2.m.Client()}})
	must(t, err, "revoke")
	if res.Kind != fsm.OK {
		t.Fatalf("revoke: %s", res.Err())
	}
	var out fsm.RemoveClientsResult
	must(t, wire.Unmarshal(res.Body, &out), "result")
	if !slices.Equal(out.Proposed, []proto.URI{room2}) || !slices.Equal(out.Asked, []proto.URI{room1}) {
		t.Fatalf("revocation result %+v", out)
	}
	// a.example's hub gets b's request (the delivery worker) and proposes.
	a.WaitState(ctx, t, "a.example's hub proposed removing Bob2", func(s *fsm.State) bool {
		info, _ := s.Room(room1)
		return info.Sequence > seq1 // the hub's Remove
	})

	// The others commit what is pending: their library covers the hub's
	// proposals (room.CommitReferences).
	waitProposal(t, alice, room1)
	must(t, alice.m.CommitPending(ctx, room1), "Alice commits in room1")
	waitProposal(t, bob1, room2)
	must(t, bob1.m.CommitPending(ctx, room2), "Bob1 commits in room2")
	for _, c := range []struct {
		p    *testutil.Provider
		room proto.URI
	}{{a, room1}, {b, room2}} {
		c.p.WaitState(ctx, t, "Bob2 out of "+string(c.room), func(s *fsm.State) bool {
			info, _ := s.Room(c.room)
			return info.Members == 2
		})
	}
	// Bob2's streams stopped at once: it saw neither the hub's Removes nor
	// the commits.
	events, err := bob2.m.Sync(ctx)
	must(t, err, "Bob2 syncs")
	for _, e := range events {
		if e.Kind == client.EventProposal || e.Kind == client.EventCommit {
			t.Fatalf("the revoked device received %s in %s", e.Kind, e.Room)
		}
	}
}

// waitProposal reads p's stream until it holds a proposal of the hub (no
// sender) for room.
func waitProposal(t *testing.T, p *party, room proto.URI) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testutil.Wait)
	defer cancel()
	for {
		p.syncOnce(t, ctx, time.Second)
		p.mu.Lock()
		found := slices.ContainsFunc(p.events, func(e client.Event) bool {
			return e.Kind == client.EventProposal && e.Room == room && e.Sender == ""
		})
		p.mu.Unlock()
		if found {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("%s: no proposal of the hub in %s", p, room)
		}
	}
}
