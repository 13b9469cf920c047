package hub_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/mimihub/mimi-hub/fsm"
	"github.com/mimihub/mimi-hub/internal/testutil"
	"github.com/mimihub/mimi-hub/mimi/client"
	"github.com/mimihub/mimi-hub/mimi/proto"
)

// TestRevokeDeviceAcrossProviders revokes a device the way a user does
// (DELETE /v1/devices/{device} from another of its devices, which applies
// CmdRevokeDevice and, in the same command, the CmdRemoveClients mechanism)
// while it is in two rooms: one hosted by its own provider (b.example), one
// hosted by a.example. Its token is refused at once; b's hub queues its own
// Remove of the device in the first room; b asks a.example through POST
// /removeClients/{roomId}, and a's hub queues its own Remove in the second.
// The next commit in each room, by a member that knows nothing of the
// revocation, takes the device out.
func TestRevokeDeviceAcrossProviders(t *testing.T) {
	net := testutil.StartNetwork(t, testutil.Options{}, domainA, domainB)
	a, b := net.Provider(domainA), net.Provider(domainB)
	alice := newParty(t, a, "alice", "phone", nil)
	bob1 := newParty(t, b, "bob", "laptop", nil)
	bob2 := linkParty(t, bob1, "phone")
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

	// Bob revokes his phone from his laptop; an operator's revocation
	// (POST /v1/users/revoke) takes the same path and reports the rooms.
	var seq1 uint64
	a.Read(t, func(s *fsm.State) { info, _ := s.Room(room1); seq1 = info.Sequence })
	bob2Token := bob2.m.API().Token()
	must(t, bob1.m.API().RevokeDevice(ctx, "phone"), "Bob revokes his phone")
	rawAPI(t, b, apiCall{method: "GET", path: "/v1/whoami", token: bob2Token}).want(t, 401, "the revoked phone's token")
	var queued bool
	b.Read(t, func(s *fsm.State) {
		info, _ := s.Room(room2)
		queued = info.Members == 3 // still in the group until the next commit
	})
	if !queued {
		t.Fatal("room2's members changed before a commit")
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
	// Bob2 reads nothing more: its token and its stream are gone.
	_, err = bob2.m.Sync(ctx)
	var se *client.StatusError
	if !errors.As(err, &se) || se.Status != 401 {
		t.Fatalf("the revoked device synced: %v", err)
	}
	b.Read(t, func(s *fsm.State) {
		if s.HasClient(bob2.m.Client()) {
			t.Fatal("the revoked device still has a stream")
		}
	})
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
