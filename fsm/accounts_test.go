package fsm

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

const acctDomain = "a.example"

func dev(user, device string) proto.URI { return proto.ClientURI(acctDomain, user, device) }
func usr(user string) proto.URI         { return proto.UserURI(acctDomain, user) }

func (n *node) createUser(user, device string) {
	n.t.Helper()
	n.ok(n.apply(CmdCreateUser, nil, "", &CreateUserBody{Client: dev(user, device), TokenHash: tokenHash(user + device)}), "create "+user)
}

func (n *node) authenticates(c proto.URI, token string) bool {
	var ok bool
	_ = n.f.Read(func(s *State) error { ok = s.Authenticate(c, tokenHash(token)); return nil })
	return ok
}

// accountCase is a command and the refusal it must meet.
type accountCase struct {
	name string
	t    CommandType
	peer string
	body wire.Encoder
	kind ErrorKind
}

// TestAccountRefusals checks each account rule refuses what it must, with
// the right kind, and that a refusal changes no byte of the state.
func TestAccountRefusals(t *testing.T) {
	n := newNode(t, acctDomain)
	n.createUser("alice", "phone")
	n.ok(n.apply(CmdSetPassword, nil, "", &SetPasswordBody{User: usr("alice"), PasswordHash: []byte("$argon2id$hash"), CredentialGen: 0}), "password")
	n.createUser("bob", "phone")
	n.ok(n.apply(CmdRequestLink, nil, "", &RequestLinkBody{LinkID: bytes.Repeat([]byte{1}, 16), Client: dev("alice", "laptop"), CodeHash: tokenHash("code1"), TokenHash: tokenHash("laptop")}), "link request")
	n.ok(n.apply(CmdMintInvite, nil, "", &MintInviteBody{CodeHash: tokenHash("invite"), ExpiresAt: n.now + 60_000}), "invite")
	n.ok(n.apply(CmdRegister, nil, "", &RegisterBody{Client: proto.ClientURI(acctDomain, "Legacy", "x"), TokenHash: tokenHash("legacy")}), "legacy register")
	link := func(id byte, c proto.URI, code string) *RequestLinkBody {
		return &RequestLinkBody{LinkID: bytes.Repeat([]byte{id}, 16), Client: c, CodeHash: tokenHash(code), TokenHash: tokenHash(string(c))}
	}
	tests := []accountCase{
		{"an existing user is not created again", CmdCreateUser, "", &CreateUserBody{Client: dev("alice", "evil"), TokenHash: tokenHash("x")}, Conflict},
		{"a name in capitals is not canonical", CmdCreateUser, "", &CreateUserBody{Client: dev("Alice", "x"), TokenHash: tokenHash("x")}, Invalid},
		{"a look-alike of alice (al1ce)", CmdCreateUser, "", &CreateUserBody{Client: dev("al1ce", "x"), TokenHash: tokenHash("x")}, Conflict},
		{"a look-alike of bob (b0b)", CmdCreateUser, "", &CreateUserBody{Client: dev("b0b", "x"), TokenHash: tokenHash("x")}, Conflict},
		{"a look-alike of a legacy user (legacy)", CmdCreateUser, "", &CreateUserBody{Client: dev("legacy", "x"), TokenHash: tokenHash("x")}, Conflict},
		{"a name starting with a dot", CmdCreateUser, "", &CreateUserBody{Client: dev(".x", "x"), TokenHash: tokenHash("x")}, Invalid},
		{"an unknown invite", CmdCreateUser, "", &CreateUserBody{Client: dev("carol", "x"), TokenHash: tokenHash("x"), InviteHash: tokenHash("nope")}, NotAllowed},
		{"another provider's user", CmdCreateUser, "", &CreateUserBody{Client: proto.ClientURI("b.example", "carol", "x"), TokenHash: tokenHash("x")}, NotAllowed},
		{"a token hash of the wrong size", CmdCreateUser, "", &CreateUserBody{Client: dev("carol", "x"), TokenHash: []byte("short")}, Invalid},
		{"a peer may not create users", CmdCreateUser, "b.example", &CreateUserBody{Client: dev("carol", "x"), TokenHash: tokenHash("x")}, NotAllowed},
		{"a password device with a stale generation", CmdAddDevice, "", &AddDeviceBody{Client: dev("alice", "tablet"), TokenHash: tokenHash("t"), CredentialGen: 0}, NotAllowed},
		{"a password device of a user without password", CmdAddDevice, "", &AddDeviceBody{Client: dev("bob", "tablet"), TokenHash: tokenHash("t"), CredentialGen: 0}, NotAllowed},
		{"a device that exists", CmdAddDevice, "", &AddDeviceBody{Client: dev("alice", "phone"), TokenHash: tokenHash("t"), CredentialGen: 1}, Conflict},
		{"a device of nobody", CmdAddDevice, "", &AddDeviceBody{Client: dev("nobody", "x"), TokenHash: tokenHash("t"), CredentialGen: 1}, NotFound},
		{"a link for a device that waits already", CmdRequestLink, "", link(2, dev("alice", "laptop"), "code2"), Conflict},
		{"a link with a code in use", CmdRequestLink, "", link(2, dev("alice", "tv"), "code1"), Conflict},
		{"a link for nobody", CmdRequestLink, "", link(2, dev("nobody", "tv"), "code2"), NotFound},
		{"bob cannot approve alice's device", CmdApproveLink, "", &ApproveLinkBody{Approver: dev("bob", "phone"), CodeHash: tokenHash("code1")}, NotFound},
		{"a wrong code", CmdApproveLink, "", &ApproveLinkBody{Approver: dev("alice", "phone"), CodeHash: tokenHash("code9")}, NotFound},
		{"an approver that is no device", CmdApproveLink, "", &ApproveLinkBody{Approver: dev("alice", "ghost"), CodeHash: tokenHash("code1")}, NotFound},
		{"a peer may not approve", CmdApproveLink, "b.example", &ApproveLinkBody{Approver: dev("alice", "phone"), CodeHash: tokenHash("code1")}, NotAllowed},
		{"a password change on a stale generation", CmdSetPassword, "", &SetPasswordBody{User: usr("alice"), PasswordHash: []byte("h"), CredentialGen: 0}, NotAllowed},
		{"bob cannot revoke alice's phone", CmdRevokeDevice, "", &RevokeDeviceBody{Client: dev("alice", "phone"), By: dev("bob", "phone")}, NotAllowed},
		{"bob's last device without a password", CmdRevokeDevice, "", &RevokeDeviceBody{Client: dev("bob", "phone"), By: dev("bob", "phone")}, Conflict},
		{"an unknown device", CmdRevokeDevice, "", &RevokeDeviceBody{Client: dev("bob", "ghost")}, NotFound},
		{"suspending nobody", CmdSuspendUser, "", &SuspendUserBody{User: usr("nobody"), Suspend: true}, NotFound},
		{"an invite that expired before it was minted", CmdMintInvite, "", &MintInviteBody{CodeHash: tokenHash("i2"), ExpiresAt: 1}, Invalid},
		{"an invite living too long", CmdMintInvite, "", &MintInviteBody{CodeHash: tokenHash("i2"), ExpiresAt: n.now + MaxInviteTTL + 100_000}, Invalid},
		{"an invite minted twice", CmdMintInvite, "", &MintInviteBody{CodeHash: tokenHash("invite"), ExpiresAt: n.now + 60_000}, Conflict},
		{"a body that does not decode", CmdSuspendUser, "", &DeliveredBody{Domain: "x"}, Invalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := n.state()
			n.refused(before, n.apply(tc.t, nil, tc.peer, tc.body), tc.kind, tc.name)
		})
	}
	if n.authenticates(dev("alice", "laptop"), string(dev("alice", "laptop"))) {
		t.Fatal("a device waiting for approval authenticates")
	}
	replay(t, n)
}

// TestDeviceLifecycle follows a user's devices: linked, added with the
// password, listed, revoked, suspended; a link request expires.
func TestDeviceLifecycle(t *testing.T) {
	n := newNode(t, acctDomain)
	n.createUser("alice", "phone")
	laptop := dev("alice", "laptop")
	n.ok(n.apply(CmdRequestLink, nil, "", &RequestLinkBody{LinkID: bytes.Repeat([]byte{1}, 16), Client: laptop, CodeHash: tokenHash("c1"), TokenHash: tokenHash("laptop")}), "link")
	var pending []PendingLink
	_ = n.f.Read(func(s *State) error { pending = s.PendingLinks(usr("alice")); return nil })
	if len(pending) != 1 || pending[0].Client != laptop {
		t.Fatalf("pending %+v", pending)
	}
	res := n.ok(n.apply(CmdApproveLink, nil, "", &ApproveLinkBody{Approver: dev("alice", "phone"), CodeHash: tokenHash("c1")}), "approve")
	var added proto.URI
	if err := wire.Unmarshal(res.Body, &added); err != nil || added != laptop {
		t.Fatalf("approval answered %q, %v", added, err)
	}
	if !n.authenticates(laptop, "laptop") {
		t.Fatal("the approved device does not authenticate")
	}
	// A link request nobody approves expires.
	n.ok(n.apply(CmdRequestLink, nil, "", &RequestLinkBody{LinkID: bytes.Repeat([]byte{2}, 16), Client: dev("alice", "tv"), CodeHash: tokenHash("c2"), TokenHash: tokenHash("tv")}), "link tv")
	n.now += LinkTTL
	before := n.state()
	n.refused(before, n.apply(CmdApproveLink, nil, "", &ApproveLinkBody{Approver: dev("alice", "phone"), CodeHash: tokenHash("c2")}), NotFound, "approve an expired code")

	n.ok(n.apply(CmdSetPassword, nil, "", &SetPasswordBody{User: usr("alice"), PasswordHash: []byte("h1")}), "set password")
	n.ok(n.apply(CmdSetPassword, nil, "", &SetPasswordBody{User: usr("alice"), PasswordHash: []byte("h2"), CredentialGen: 1}), "change password")
	n.ok(n.apply(CmdAddDevice, nil, "", &AddDeviceBody{Client: dev("alice", "tablet"), TokenHash: tokenHash("tablet"), CredentialGen: 2}), "password device")
	var ds []Device
	_ = n.f.Read(func(s *State) error { ds, _ = s.Devices(usr("alice")); return nil })
	var got []string
	for _, d := range ds {
		got = append(got, fmt.Sprintf("%s:%d", d.Client, d.How))
	}
	want := []string{string(laptop) + ":2", string(dev("alice", "phone")) + ":1", string(dev("alice", "tablet")) + ":3"}
	if !slices.Equal(got, want) {
		t.Fatalf("devices %v, want %v", got, want)
	}

	n.ok(n.apply(CmdRevokeDevice, nil, "", &RevokeDeviceBody{Client: laptop, By: dev("alice", "phone")}), "revoke laptop")
	if n.authenticates(laptop, "laptop") {
		t.Fatal("a revoked device authenticates")
	}
	n.ok(n.apply(CmdSuspendUser, nil, "", &SuspendUserBody{User: usr("alice"), Suspend: true}), "suspend")
	if n.authenticates(dev("alice", "phone"), "alicephone") {
		t.Fatal("a suspended user's device authenticates")
	}
	before = n.state()
	n.refused(before, n.apply(CmdRequestLink, nil, "", &RequestLinkBody{LinkID: bytes.Repeat([]byte{3}, 16), Client: dev("alice", "x"), CodeHash: tokenHash("c3"), TokenHash: tokenHash("x")}), NotAllowed, "link for a suspended user")
	n.ok(n.apply(CmdSuspendUser, nil, "", &SuspendUserBody{User: usr("alice"), Suspend: false}), "reinstate")
	if !n.authenticates(dev("alice", "phone"), "alicephone") {
		t.Fatal("a reinstated user's device does not authenticate")
	}
	// With a password, the last device may go: the account is not lost.
	n.ok(n.apply(CmdRevokeDevice, nil, "", &RevokeDeviceBody{Client: dev("alice", "tablet"), By: dev("alice", "phone")}), "revoke tablet")
	n.ok(n.apply(CmdRevokeDevice, nil, "", &RevokeDeviceBody{Client: dev("alice", "phone"), By: dev("alice", "phone")}), "revoke the last device")
	replay(t, n)
}

// TestLinkBounds checks the link table's bounds: per user and, through
// expiry, overall.
func TestLinkBounds(t *testing.T) {
	n := newNode(t, acctDomain)
	n.createUser("alice", "phone")
	for i := range MaxPendingLinksPerUser {
		n.ok(n.apply(CmdRequestLink, nil, "", &RequestLinkBody{LinkID: bytes.Repeat([]byte{byte(i + 1)}, 16), Client: dev("alice", fmt.Sprint("d", i)),
			CodeHash: tokenHash(fmt.Sprint("c", i)), TokenHash: tokenHash("t")}), "link")
	}
	flood := &RequestLinkBody{LinkID: bytes.Repeat([]byte{99}, 16), Client: dev("alice", "flood"), CodeHash: tokenHash("cf"), TokenHash: tokenHash("t")}
	before := n.state()
	n.refused(before, n.apply(CmdRequestLink, nil, "", flood), Limit, "one link request too many")
	n.now += LinkTTL // all expire
	n.ok(n.apply(CmdRequestLink, nil, "", flood), "a link request after the others expired")
	var links int
	_ = n.f.Read(func(s *State) error { links = len(s.acct.links); return nil })
	if links != 1 {
		t.Fatalf("%d link requests kept, want 1 (expired ones are pruned)", links)
	}
}

// TestInviteSpentOnce checks an invite code registers one user.
func TestInviteSpentOnce(t *testing.T) {
	n := newNode(t, acctDomain)
	n.ok(n.apply(CmdMintInvite, nil, "", &MintInviteBody{CodeHash: tokenHash("inv"), ExpiresAt: n.now + 10_000}), "mint")
	n.ok(n.apply(CmdCreateUser, nil, "", &CreateUserBody{Client: dev("carol", "x"), TokenHash: tokenHash("x"), InviteHash: tokenHash("inv")}), "register with the invite")
	before := n.state()
	n.refused(before, n.apply(CmdCreateUser, nil, "", &CreateUserBody{Client: dev("dave", "x"), TokenHash: tokenHash("x"), InviteHash: tokenHash("inv")}), NotAllowed, "the invite again")
	n.ok(n.apply(CmdMintInvite, nil, "", &MintInviteBody{CodeHash: tokenHash("inv2"), ExpiresAt: n.now + 5000}), "mint a short one")
	n.now += 10_000
	before = n.state()
	n.refused(before, n.apply(CmdCreateUser, nil, "", &CreateUserBody{Client: dev("dave", "x"), TokenHash: tokenHash("x"), InviteHash: tokenHash("inv2")}), NotAllowed, "an expired invite")
}

func TestLookAlike(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		same bool
	}{
		{"alice", "Alice", true}, {"alice", "al1ce", true}, {"alice", "ALICE", true}, {"bob", "b0b", true},
		{"modern", "rnodern", true}, {"will", "wiII", true}, {"john.smith", "john_smith", true}, {"vvade", "wade", true},
		{"alice", "alicia", false}, {"bob", "rob", false}, {"anna", "ana", false},
	} {
		if got := lookAlike(tc.a) == lookAlike(tc.b); got != tc.same {
			t.Errorf("%q and %q look alike: %v, want %v", tc.a, tc.b, got, tc.same)
		}
	}
	for name, want := range map[string]bool{"alice": true, "a.b-c_d9": true, "Alice": false, "": false, ".a": false, "a~b": false,
		strings.Repeat("a", MaxUserName): true, strings.Repeat("a", MaxUserName+1): false} {
		if got := CanonicalUserName(name); got != want {
			t.Errorf("CanonicalUserName(%q) = %v, want %v", name, got, want)
		}
	}
}

// TestAccountsModel applies random account commands (device invitations
// and their redemptions included) to the FSM and to a model of who has
// which devices, checking after every step that both agree, that only a
// user's own proof adds a device to it, that refusals change nothing, that
// what Admit answers before the log Apply answers too, and at the end that
// replay and snapshot give the same state. The seed is printed on failure.
func TestAccountsModel(t *testing.T) {
	for seed := range uint64(20) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { accountsModel(t, seed, 300) })
	}
}

func accountsModel(t *testing.T, seed uint64, steps int) {
	rng := rand.New(rand.NewPCG(seed, 7))
	n := newNode(t, acctDomain)
	users := []string{"alice", "bob", "carol"}
	devices := []string{"d1", "d2", "d3", "d4"}
	model := map[proto.URI]map[proto.URI]bool{} // user -> devices
	gen := map[proto.URI]uint64{}
	type link struct {
		client proto.URI
		code   string
		at     uint64
	}
	var links []link
	type invitation struct {
		by   proto.URI
		code string
		at   uint64
	}
	var invs []invitation
	liveInvs := func(user proto.URI) []invitation {
		var out []invitation
		for _, i := range invs {
			if iu, _ := i.by.UserOf(); iu == user && i.at+LinkTTL > n.now+1000 {
				out = append(out, i)
			}
		}
		return out
	}
	pick := func(xs []string) string { return xs[rng.IntN(len(xs))] }
	var trace []string
	for step := range steps {
		u, d := pick(users), pick(devices)
		c, user := dev(u, d), usr(u)
		var (
			typ     CommandType
			body    wire.Encoder
			wantOK  bool
			addDev  proto.URI
			drop    proto.URI
			newUser bool
		)
		if rng.IntN(10) == 0 {
			n.now += LinkTTL / 3
		}
		has := func(c proto.URI) bool { return model[user] != nil && model[user][c] }
		switch op := rng.IntN(8); op {
		case 0:
			typ, body = CmdCreateUser, &CreateUserBody{Client: c, TokenHash: tokenHash(string(c))}
			wantOK, addDev, newUser = model[user] == nil, c, true
		case 1:
			code := fmt.Sprint(rng.IntN(4))
			typ, body = CmdRequestLink, &RequestLinkBody{LinkID: fmt.Appendf(nil, "link-%016d", step), Client: c, CodeHash: tokenHash(code), TokenHash: tokenHash(string(c))}
			live := slices.DeleteFunc(slices.Clone(links), func(l link) bool { return l.at+LinkTTL <= n.now+1000 })
			clash := slices.ContainsFunc(live, func(l link) bool {
				lu, _ := l.client.UserOf()
				return lu == user && (l.client == c || l.code == code)
			})
			mine := 0
			for _, l := range live {
				if lu, _ := l.client.UserOf(); lu == user {
					mine++
				}
			}
			wantOK = model[user] != nil && !has(c) && len(model[user]) < 16 && !clash && mine < MaxPendingLinksPerUser
			if wantOK {
				links = append(live, link{client: c, code: code, at: n.now + 1000})
			}
		case 2:
			// An approver of a random user approves a random code: only
			// a live link of its own user may be added.
			code := fmt.Sprint(rng.IntN(4))
			typ, body = CmdApproveLink, &ApproveLinkBody{Approver: c, CodeHash: tokenHash(code)}
			if has(c) {
				for i, l := range links {
					lu, _ := l.client.UserOf()
					if lu == user && l.code == code && l.at+LinkTTL > n.now+1000 && !has(l.client) {
						wantOK, addDev = true, l.client
						links = slices.Delete(links, i, i+1)
						break
					}
				}
			}
		case 3:
			typ, body = CmdSetPassword, &SetPasswordBody{User: user, PasswordHash: []byte("h"), CredentialGen: gen[user]}
			wantOK = model[user] != nil
			if wantOK {
				gen[user]++
			}
		case 4:
			typ, body = CmdAddDevice, &AddDeviceBody{Client: c, TokenHash: tokenHash(string(c)), CredentialGen: gen[user]}
			wantOK, addDev = model[user] != nil && gen[user] > 0 && !has(c), c
		case 5:
			by := dev(u, pick(devices))
			typ, body = CmdRevokeDevice, &RevokeDeviceBody{Client: c, By: by}
			wantOK = has(c) && has(by) && (len(model[user]) > 1 || gen[user] > 0)
			drop = c
			if wantOK {
				invs = slices.DeleteFunc(invs, func(i invitation) bool { return i.by == c })
			}
		case 6:
			// A device (or a name that is none) invites; link requests
			// never count against its user's invitations.
			code := fmt.Sprint(rng.IntN(4))
			typ, body = CmdInviteDevice, &InviteDeviceBody{InviteID: fmt.Appendf(nil, "invite-%016d", step), Inviter: c, CodeHash: tokenHash(code)}
			live := liveInvs(user)
			clash := slices.ContainsFunc(live, func(i invitation) bool { return i.code == code })
			wantOK = has(c) && !clash && len(live) < MaxDeviceInvitesPerUser
			if wantOK {
				invs = append(invs, invitation{by: c, code: code, at: n.now + 1000})
			}
		case 7:
			// Anybody redeems a random code for a random device: only an
			// open invitation of the device's own user adds it, once.
			code := fmt.Sprint(rng.IntN(4))
			typ, body = CmdRedeemInvite, &RedeemInviteBody{Client: c, CodeHash: tokenHash(code), TokenHash: tokenHash(string(c))}
			if model[user] != nil && !has(c) && len(model[user]) < 16 {
				for _, i := range liveInvs(user) {
					if i.code == code {
						wantOK, addDev = true, c
						invs = slices.DeleteFunc(invs, func(j invitation) bool { return j == i })
						break
					}
				}
			}
		}
		before := n.state()
		// What Admit answers before the log, Apply must answer too.
		admitted := n.admit(typ, "", body)
		res := n.apply(typ, nil, "", body)
		if admitted != nil && (admitted.Kind != res.Kind || admitted.Message != res.Message) {
			t.Fatalf("seed %d: step %d: %s: Admit answered %s (%s), Apply %s (%s)", seed, step, typ, admitted.Kind, admitted.Message, res.Kind, res.Message)
		}
		trace = append(trace, fmt.Sprintf("%d %s %+v -> %s %s", step, typ, body, res.Kind, res.Message))
		if (res.Kind == OK) != wantOK {
			t.Fatalf("seed %d: step %d: %s: got %s (%s), model says ok=%v\ntrace:\n%s", seed, step, typ, res.Kind, res.Message, wantOK, strings.Join(trace, "\n"))
		}
		if !wantOK {
			if !bytes.Equal(before, n.state()) {
				t.Fatalf("seed %d: step %d: a refusal changed the state", seed, step)
			}
			continue
		}
		if newUser {
			model[user] = map[proto.URI]bool{}
		}
		if addDev != "" {
			au, _ := addDev.UserOf()
			model[au][addDev] = true
		}
		if drop != "" {
			delete(model[user], drop)
		}
		for mu, mdevs := range model {
			var got []proto.URI
			_ = n.f.Read(func(s *State) error {
				ds, _ := s.Devices(mu)
				for _, d := range ds {
					got = append(got, d.Client)
				}
				return nil
			})
			want := slices.Sorted(func(yield func(proto.URI) bool) {
				for d := range mdevs {
					if !yield(d) {
						return
					}
				}
			})
			if !slices.Equal(got, want) {
				t.Fatalf("seed %d: step %d: %s has devices %v, the model %v\ntrace:\n%s", seed, step, mu, got, want, strings.Join(trace, "\n"))
			}
		}
	}
	replay(t, n)
}

// TestSnapshotOlderVersions checks snapshots the first release wrote
// (format 1, before accounts existed) still restore: their clients become
// legacy devices, their users have no password, and user names keep their
// case (look-alikes of them are refused from now on).
func TestSnapshotOlderVersions(t *testing.T) {
	const version = stateVersionV1
	n := newNode(t, acctDomain)
	n.ok(n.apply(CmdRegister, nil, "", &RegisterBody{Client: proto.ClientURI(acctDomain, "Alice", "phone"), TokenHash: tokenHash("a")}), "legacy Alice")
	n.ok(n.apply(CmdRegister, nil, "", &RegisterBody{Client: proto.ClientURI(acctDomain, "Alice", "laptop"), TokenHash: tokenHash("b")}), "legacy second device")
	var old []byte
	_ = n.f.Read(func(s *State) error {
		old = encodeV1(t, s)
		return nil
	})
	f, _ := New(Config{Domain: acctDomain, Bounds: Bounds{InboxLimit: 50}})
	if err := f.Restore(&memSink{*bytes.NewBuffer(old)}); err != nil {
		t.Fatalf("a version %d snapshot does not restore: %v", version, err)
	}
	r := &node{t: t, f: f, now: n.now}
	if !r.authenticates(proto.ClientURI(acctDomain, "Alice", "laptop"), "b") {
		t.Fatal("a legacy device lost its token")
	}
	var ds []Device
	_ = f.Read(func(s *State) error { ds, _ = s.Devices(proto.UserURI(acctDomain, "Alice")); return nil })
	if len(ds) != 2 || ds[0].How != DeviceLegacy {
		t.Fatalf("legacy devices %+v", ds)
	}
	before := r.state()
	r.refused(before, r.apply(CmdCreateUser, nil, "", &CreateUserBody{Client: dev("alice", "x"), TokenHash: tokenHash("x")}), Conflict, "alice beside the legacy Alice")
	if before[0] != stateVersionV4 { // its outbox numbered per queue until CmdOutboxIDs
		t.Fatalf("a restored state encodes as version %d, want %d", before[0], stateVersionV4)
	}
	// Restore rejects what it does not know.
	bad := slices.Clone(old)
	bad[0] = stateVersion + 1
	if err := newNode(t, acctDomain).f.Restore(&memSink{*bytes.NewBuffer(bad)}); err == nil {
		t.Fatal("a snapshot of an unknown version restored")
	}
}
