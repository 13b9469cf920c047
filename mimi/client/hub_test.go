package client

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
)

// TestCreateRoomListsHub: a room the member creates lists the hub as its
// only external sender and requires MIMI's proposals of every member.
func TestCreateRoomListsHub(t *testing.T) {
	f := newFakeAPI(t)
	alice := newTestMember(t, f, "alice", "phone")
	r, err := alice.CreateRoom(context.Background(), "r", proto.DefaultPolicy())
	must(t, err, "create")
	ext := alice.rooms[r].group.GroupContext().Extensions
	es, err := mls.ExternalSendersOf(ext)
	if err != nil || len(es) != 1 || string(es[0].Credential.Identity) != "mimi://a.example" {
		t.Fatalf("external senders %+v, %v", es, err)
	}
	if !ext.Has(mls.ExtRequiredCapabilities) {
		t.Fatal("no required_capabilities")
	}
}

// TestAddUsersRefusesIncapableKeyPackage: a KeyPackage that lacks what the
// room requires is not added (the hub would refuse the commit).
func TestAddUsersRefusesIncapableKeyPackage(t *testing.T) {
	f := newFakeAPI(t)
	ctx := context.Background()
	alice := newTestMember(t, f, "alice", "phone")
	r, err := alice.CreateRoom(ctx, "r", proto.DefaultPolicy())
	must(t, err, "create")
	api := f.user(t, nil)
	if _, err := api.Register(ctx, "bob", "old", nil); err != nil {
		t.Fatal(err)
	}
	s, _ := DefaultSuite.Suite()
	signer, _ := s.GenerateSigningKey()
	now := uint64(time.Now().Unix())
	kp, err := mls.NewKeyPackage(s, signer, mls.KeyPackageOptions{Credential: mls.BasicCredential([]byte(proto.ClientURI(fakeDomain, "bob", "old"))),
		Lifetime: mls.Lifetime{NotBefore: now - 60, NotAfter: now + 3600}})
	if err != nil {
		t.Fatal(err)
	}
	must(t, api.UploadKeyPackages(ctx, []*mls.KeyPackage{kp.KeyPackage}), "upload")
	err = alice.AddUsers(ctx, r, []proto.UserRoles{{User: proto.UserURI(fakeDomain, "bob"), Roles: []proto.Role{proto.RoleRegularUser}}})
	if err == nil || !strings.Contains(err.Error(), "cannot join the room") {
		t.Fatalf("adding a client without MIMI's capabilities: %v", err)
	}
}

// TestLeaveTwice: a second Leave proposes nothing that is already on its
// way out (the hub would refuse it), and the first leave is committed.
func TestLeaveTwice(t *testing.T) {
	f := newFakeAPI(t)
	ctx := context.Background()
	alice := newTestMember(t, f, "alice", "phone")
	bob := newTestMember(t, f, "bob", "phone")
	r, err := alice.CreateRoom(ctx, "r", proto.DefaultPolicy())
	must(t, err, "create")
	must(t, alice.AddUsers(ctx, r, []proto.UserRoles{{User: bob.User(), Roles: []proto.Role{proto.RoleRegularUser}}}), "add Bob")
	syncOK(t, bob)
	must(t, bob.Leave(ctx, r), "Bob leaves")
	must(t, bob.Leave(ctx, r), "Bob leaves again: nothing to propose")
	syncOK(t, alice)
	must(t, alice.CommitPending(ctx, r), "Alice commits Bob's departure")
	ev := syncOK(t, bob)
	if len(ev) == 0 || ev[len(ev)-1].Kind != EventRemoved {
		t.Fatalf("bob: [%s]", kinds(ev))
	}
}
