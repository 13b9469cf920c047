package fsm

import (
	"bytes"
	"fmt"
	"slices"
	"testing"

	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

func invite(id byte, by proto.URI, code string) *InviteDeviceBody {
	return &InviteDeviceBody{InviteID: bytes.Repeat([]byte{id}, 16), Inviter: by, CodeHash: tokenHash(code)}
}

func redeem(c proto.URI, code string) *RedeemInviteBody {
	return &RedeemInviteBody{Client: c, CodeHash: tokenHash(code), TokenHash: tokenHash(string(c))}
}

// admit is what the cluster answers before Raft (nil: the command is
// logged).
func (n *node) admit(t CommandType, peer string, b wire.Encoder) *Result {
	var r *Result
	_ = n.f.Read(func(s *State) error { r = s.Admit(t, nil, peer, b); return nil })
	return r
}

// TestInvitationRefusals checks each rule of device invitations refuses
// what it must, with the right kind, changing no byte of the state; and
// that every redemption matching no open invitation is refused before
// Raft with one message, whatever the reason.
func TestInvitationRefusals(t *testing.T) {
	n := newNode(t, acctDomain)
	n.createUser("alice", "phone")
	n.createUser("bob", "phone")
	n.ok(n.apply(CmdInviteDevice, nil, "", invite(1, dev("alice", "phone"), "inv1")), "invite")
	n.ok(n.apply(CmdInviteDevice, nil, "", invite(2, dev("bob", "phone"), "binv")), "bob's invite")
	n.ok(n.apply(CmdRequestLink, nil, "", &RequestLinkBody{LinkID: bytes.Repeat([]byte{3}, 16), Client: dev("alice", "tv"), CodeHash: tokenHash("lnk"), TokenHash: tokenHash("tv")}), "link request")
	tests := []accountCase{
		{"an inviter that is no device", CmdInviteDevice, "", invite(9, dev("alice", "ghost"), "x"), NotFound},
		{"an invitation id in use", CmdInviteDevice, "", invite(1, dev("alice", "phone"), "x"), Conflict},
		{"an invitation id a link request uses", CmdInviteDevice, "", invite(3, dev("alice", "phone"), "x"), Conflict},
		{"an invitation code in use", CmdInviteDevice, "", invite(9, dev("alice", "phone"), "inv1"), Conflict},
		{"a short invitation id", CmdInviteDevice, "", &InviteDeviceBody{InviteID: []byte("short"), Inviter: dev("alice", "phone"), CodeHash: tokenHash("x")}, Invalid},
		{"a code hash of the wrong size", CmdInviteDevice, "", &InviteDeviceBody{InviteID: bytes.Repeat([]byte{9}, 16), Inviter: dev("alice", "phone"), CodeHash: []byte("x")}, Invalid},
		{"a peer may not invite", CmdInviteDevice, "b.example", invite(9, dev("alice", "phone"), "x"), NotAllowed},
		{"a device that exists", CmdRedeemInvite, "", redeem(dev("alice", "phone"), "inv1"), Conflict},
		{"a token hash of the wrong size", CmdRedeemInvite, "", &RedeemInviteBody{Client: dev("alice", "tablet"), CodeHash: tokenHash("inv1"), TokenHash: []byte("x")}, Invalid},
		{"another provider's device", CmdRedeemInvite, "", redeem(proto.ClientURI("b.example", "alice", "x"), "inv1"), NotAllowed},
		{"a peer may not redeem", CmdRedeemInvite, "b.example", redeem(dev("alice", "tablet"), "inv1"), NotAllowed},
	}
	// Each of these is the one "no invitation" answer, decided before Raft.
	unmatched := []struct {
		name string
		body *RedeemInviteBody
	}{
		{"a wrong code", redeem(dev("alice", "tablet"), "inv2")},
		{"bob's code for alice", redeem(dev("alice", "tablet"), "binv")},
		{"alice's code for bob", redeem(dev("bob", "tablet"), "inv1")},
		{"a user that does not exist", redeem(dev("nobody", "x"), "inv1")},
		{"a link request's code", redeem(dev("alice", "tablet"), "lnk")},
	}
	for _, u := range unmatched {
		tests = append(tests, accountCase{u.name, CmdRedeemInvite, "", u.body, NotFound})
	}
	var msg string
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := n.state()
			res := n.apply(tc.t, nil, tc.peer, tc.body)
			n.refused(before, res, tc.kind, tc.name)
			if b, ok := tc.body.(*RedeemInviteBody); ok && res.Kind == NotFound {
				if msg == "" {
					msg = res.Message
				}
				if res.Message != msg {
					t.Fatalf("%q tells a guesser more than %q", res.Message, msg)
				}
				if a := n.admit(tc.t, tc.peer, b); a == nil || a.Kind != NotFound || a.Message != msg {
					t.Fatalf("admitted to the log: %+v", a)
				}
			}
		})
	}
	if a := n.admit(CmdRedeemInvite, "", redeem(dev("alice", "tablet"), "inv1")); a != nil {
		t.Fatalf("a matching redemption is answered before Raft: %+v", a)
	}
	replay(t, n)
}

// TestDeviceInvitations follows invitations: redeemed once, the device's
// token works and it is listed as invited; the per-user bound holds and
// is the user's alone (a full link table does not touch it); an invitation
// expires, dies with its inviter's revocation, and adds no device to a
// suspended user.
func TestDeviceInvitations(t *testing.T) {
	n := newNode(t, acctDomain)
	n.createUser("alice", "phone")
	phone, tablet := dev("alice", "phone"), dev("alice", "tablet")
	// An anonymous flood filled alice's link requests: invitations go on.
	for i := range MaxPendingLinksPerUser {
		n.ok(n.apply(CmdRequestLink, nil, "", &RequestLinkBody{LinkID: bytes.Repeat([]byte{byte(100 + i)}, 16), Client: dev("alice", fmt.Sprint("flood", i)),
			CodeHash: tokenHash(fmt.Sprint("f", i)), TokenHash: tokenHash("t")}), "flood")
	}
	n.ok(n.apply(CmdInviteDevice, nil, "", invite(1, phone, "c1")), "invite")
	n.ok(n.apply(CmdRedeemInvite, nil, "", redeem(tablet, "c1")), "redeem")
	if !n.authenticates(tablet, string(tablet)) {
		t.Fatal("the invited device does not authenticate")
	}
	var ds []Device
	_ = n.f.Read(func(s *State) error { ds, _ = s.Devices(usr("alice")); return nil })
	if len(ds) != 2 || ds[1].Client != tablet || ds[1].How != DeviceInvited {
		t.Fatalf("devices %+v", ds)
	}
	var pending []PendingLink
	_ = n.f.Read(func(s *State) error { pending = s.PendingLinks(usr("alice")); return nil })
	if len(pending) != MaxPendingLinksPerUser {
		t.Fatalf("%d pending links listed, want the %d link requests (invitations are not listed)", len(pending), MaxPendingLinksPerUser)
	}
	before := n.state()
	n.refused(before, n.apply(CmdRedeemInvite, nil, "", redeem(dev("alice", "tv"), "c1")), NotFound, "an invitation used twice")

	// The per-user bound: the sixth open invitation is refused.
	for i := range MaxDeviceInvitesPerUser {
		n.ok(n.apply(CmdInviteDevice, nil, "", invite(byte(10+i), phone, fmt.Sprint("b", i))), "invite")
	}
	before = n.state()
	n.refused(before, n.apply(CmdInviteDevice, nil, "", invite(20, tablet, "b9")), Limit, "a sixth invitation")
	// The phone made them: revoking it drops them.
	n.ok(n.apply(CmdRevokeDevice, nil, "", &RevokeDeviceBody{Client: phone, By: tablet}), "revoke the inviter")
	before = n.state()
	n.refused(before, n.apply(CmdRedeemInvite, nil, "", redeem(dev("alice", "tv"), "b0")), NotFound, "an invitation of a revoked device")
	n.ok(n.apply(CmdInviteDevice, nil, "", invite(21, tablet, "e1")), "invite after the revocation freed the slots")

	// Expiry.
	n.now += LinkTTL
	before = n.state()
	n.refused(before, n.apply(CmdRedeemInvite, nil, "", redeem(dev("alice", "tv"), "e1")), NotFound, "an expired invitation")

	// Suspension.
	n.ok(n.apply(CmdInviteDevice, nil, "", invite(22, tablet, "s1")), "invite")
	n.ok(n.apply(CmdSuspendUser, nil, "", &SuspendUserBody{User: usr("alice"), Suspend: true}), "suspend")
	before = n.state()
	n.refused(before, n.apply(CmdRedeemInvite, nil, "", redeem(dev("alice", "tv"), "s1")), NotAllowed, "a suspended user's invitation")
	n.refused(before, n.apply(CmdInviteDevice, nil, "", invite(23, tablet, "s2")), NotAllowed, "a suspended user invites")
	var links int
	_ = n.f.Read(func(s *State) error { links = len(s.acct.links); return nil })
	if links != 1 {
		t.Fatalf("%d links and invitations kept, want 1 (expired ones are pruned)", links)
	}
	replay(t, n)
}

// TestInvitationProviderBound: with every invitation of the provider
// open, a user may still invite a device while another user holds more
// invitations than it does (the oldest of the user holding the most goes),
// and is refused once nobody does. Accounts made to fill the table (2,000
// users with 5 each) therefore cannot keep an honest user from inviting:
// each of her invitations displaces one of theirs, up to her own 5.
func TestInvitationProviderBound(t *testing.T) {
	for _, tc := range []struct {
		name    string
		perUser int // fillers' invitations each
		accepts int // alice's invitations accepted before the first refusal
	}{
		{name: "one each", perUser: 1, accepts: 1},
		{name: "hostile accounts with five each", perUser: MaxDeviceInvitesPerUser, accepts: MaxDeviceInvitesPerUser},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newNode(t, acctDomain)
			n.createUser("alice", "phone")
			_ = n.f.Read(func(s *State) error {
				// Fill the table directly: MaxDeviceInvites commands would
				// make the test slow for nothing.
				for i := range MaxDeviceInvites {
					id := fmt.Sprintf("filler-%010d", i)
					s.acct.links[id] = &pendingLink{id: id, client: dev(fmt.Sprint("u", i/tc.perUser), "d"), codeHash: tokenHash(id), createdAt: n.now}
					s.acct.linkSeq = append(s.acct.linkSeq, id)
				}
				s.acctEnc = nil
				return nil
			})
			for k := range tc.accepts {
				n.ok(n.apply(CmdInviteDevice, nil, "", invite(byte(1+k), dev("alice", "phone"), fmt.Sprint("x", k))), fmt.Sprintf("alice's invitation %d on a full provider", k+1))
				_ = n.f.Read(func(s *State) error {
					// The oldest filler invitation of a user holding the
					// most went: the first user's, then the next's.
					gone := fmt.Sprintf("filler-%010d", k*tc.perUser)
					if _, ok := s.acct.links[gone]; ok || s.acct.liveLinks(true, n.now) != MaxDeviceInvites {
						t.Fatalf("after alice's invitation %d: %s still open (%v), %d open", k+1, gone, ok, s.acct.liveLinks(true, n.now))
					}
					return nil
				})
			}
			before := n.state()
			n.refused(before, n.apply(CmdInviteDevice, nil, "", invite(99, dev("alice", "phone"), "y")), Limit, "an invitation when nobody holds more than alice")
			n.ok(n.apply(CmdRequestLink, nil, "", &RequestLinkBody{LinkID: bytes.Repeat([]byte{100}, 16), Client: dev("alice", "tv"), CodeHash: tokenHash("l"), TokenHash: tokenHash("tv")}), "a link request beside full invitations")
			n.now += LinkTTL
			n.ok(n.apply(CmdInviteDevice, nil, "", invite(99, dev("alice", "phone"), "y")), "an invitation once the others expired")
		})
	}
}

// TestCancelInvitation: any device of a user lists and cancels the user's
// open invitations; a cancelled one redeems nothing. Another user, a
// peer, an unknown id and an expired invitation are refused, each leaving
// the state unchanged, and another user's invitation is not told apart
// from none.
func TestCancelInvitation(t *testing.T) {
	n := newNode(t, acctDomain)
	n.createUser("alice", "phone")
	n.createUser("bob", "phone")
	n.ok(n.apply(CmdInviteDevice, nil, "", invite(1, dev("alice", "phone"), "laptop")), "an invitation for the laptop")
	n.ok(n.apply(CmdRedeemInvite, nil, "", redeem(dev("alice", "laptop"), "laptop")), "the laptop joins")
	n.ok(n.apply(CmdInviteDevice, nil, "", invite(2, dev("alice", "phone"), "tablet")), "an invitation for a tablet")
	n.ok(n.apply(CmdInviteDevice, nil, "", invite(3, dev("alice", "phone"), "tv")), "an invitation for a tv")
	id := func(b byte) []byte { return bytes.Repeat([]byte{b}, 16) }
	list := func(u string) (ids []string) {
		_ = n.f.Read(func(s *State) error {
			for _, inv := range s.DeviceInvitations(usr(u), n.now) {
				if inv.Inviter != dev("alice", "phone") || inv.ExpiresAt <= n.now {
					t.Errorf("invitation %x: by %s, expires %d (now %d)", inv.ID, inv.Inviter, inv.ExpiresAt, n.now)
				}
				ids = append(ids, fmt.Sprintf("%x", inv.ID[:1]))
			}
			return nil
		})
		return ids
	}
	if got := list("alice"); !slices.Equal(got, []string{"02", "03"}) {
		t.Fatalf("alice's open invitations: %v, want 02 and 03", got)
	}
	if got := list("bob"); len(got) != 0 {
		t.Fatalf("bob's open invitations: %v", got)
	}
	before := n.state()
	for _, tc := range []struct {
		what string
		peer string
		body *CancelInviteBody
		kind ErrorKind
	}{
		{"another user's device", "", &CancelInviteBody{Canceller: dev("bob", "phone"), InviteID: id(2)}, NotFound},
		{"an unknown id", "", &CancelInviteBody{Canceller: dev("alice", "laptop"), InviteID: id(9)}, NotFound},
		{"a device that does not exist", "", &CancelInviteBody{Canceller: dev("alice", "ghost"), InviteID: id(2)}, NotFound},
		{"a peer", "b.example", &CancelInviteBody{Canceller: dev("alice", "laptop"), InviteID: id(2)}, NotAllowed},
	} {
		r := n.apply(CmdCancelInvite, nil, tc.peer, tc.body)
		n.refused(before, r, tc.kind, tc.what)
		if tc.what == "another user's device" && r.Message != NoSuchInvitation {
			t.Errorf("another user's invitation: %q, want the answer for none", r.Message)
		}
	}
	// The laptop cancels what the phone made.
	n.ok(n.apply(CmdCancelInvite, nil, "", &CancelInviteBody{Canceller: dev("alice", "laptop"), InviteID: id(2)}), "the laptop cancels the tablet's invitation")
	if got := list("alice"); !slices.Equal(got, []string{"03"}) {
		t.Fatalf("after the cancellation: %v, want 03", got)
	}
	before = n.state()
	n.refused(before, n.apply(CmdRedeemInvite, nil, "", redeem(dev("alice", "tablet"), "tablet")), NotFound, "a cancelled invitation")
	n.refused(before, n.apply(CmdCancelInvite, nil, "", &CancelInviteBody{Canceller: dev("alice", "phone"), InviteID: id(2)}), NotFound, "cancelled twice")
	n.now += LinkTTL
	before = n.state()
	n.refused(before, n.apply(CmdCancelInvite, nil, "", &CancelInviteBody{Canceller: dev("alice", "phone"), InviteID: id(3)}), NotFound, "an expired invitation")
	if got := list("alice"); len(got) != 0 {
		t.Fatalf("after expiry: %v", got)
	}
}
