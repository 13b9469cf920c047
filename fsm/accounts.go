package fsm

import (
	"bytes"
	"crypto/subtle"
	"fmt"
	"slices"
	"strings"

	"github.com/mimihub/mimi-hub/mimi/keymaterial"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// Accounts: who may act as a local user. A user owns its devices (clients);
// a new user is created by CmdCreateUser, and a device joins an existing
// user only with proof from that user: a device invitation an existing
// device made (CmdInviteDevice, CmdRedeemInvite), an existing device's
// approval of a link request (CmdRequestLink, CmdApproveLink) or the
// account's password (CmdAddDevice, checked outside Apply by the node that
// received it). See DESIGN.md "Accounts".

// Account limits. Every table below is bounded; a command that would go
// past a bound is refused with Limit.
const (
	// LinkTTL is how long (ms) a device link request waits for approval.
	LinkTTL = 10 * 60 * 1000
	// MaxPendingLinksPerUser bounds the link requests waiting for one user.
	MaxPendingLinksPerUser = 5
	// MaxPendingLinks bounds the link requests waiting provider-wide.
	MaxPendingLinks = 10_000
	// MaxDeviceInvitesPerUser bounds the device invitations open for one
	// user; only the user's own devices make them. They live LinkTTL.
	MaxDeviceInvitesPerUser = 5
	// MaxDeviceInvites bounds the device invitations open provider-wide.
	// When they are all open, a new one displaces the oldest invitation of
	// the user holding the most, if that user holds more than the inviter
	// does: accounts made to fill the table cannot keep a user with fewer
	// from inviting a device.
	MaxDeviceInvites = 10_000
	// MaxInvites bounds the unused invite codes.
	MaxInvites = 10_000
	// MaxInviteTTL bounds an invite code's lifetime (ms): 30 days.
	MaxInviteTTL = 30 * 24 * 60 * 60 * 1000
	// MaxPasswordHash bounds a stored password hash's encoding.
	MaxPasswordHash = 256
	// MaxUserName bounds the names of users created from now on.
	MaxUserName = 64
)

// How a device was added, for the device list.
const (
	DeviceLegacy   uint8 = 0 // registered before accounts existed (CmdRegister)
	DeviceFirst    uint8 = 1 // the first device, created with the user
	DeviceLinked   uint8 = 2 // approved by an existing device
	DevicePassword uint8 = 3 // added with the account's password
	DeviceInvited  uint8 = 4 // redeemed a device invitation of an existing device
)

// accounts holds the account tables. Maps are visited only in sorted
// order or through the insertion-order lists beside them; for links that
// order is also their expiry order (one lifetime, and the FSM clock never
// runs backwards), for invites not (each has its own). Device invitations
// live in the links table (same lifetime, same snapshot encoding): an
// entry with no token hash is one, made by the device in its client field.
type accounts struct {
	users   map[proto.URI]*account
	devices map[proto.URI]deviceInfo
	links   map[string]*pendingLink // by link id
	linkSeq []string                // link ids, oldest first
	invites map[string]uint64       // code hash -> expiry (ms)
	invSeq  []string                // code hashes, oldest first
	// failTAT is each user's password-failure schedule (passwordguard.go),
	// while it lies in the future; its own snapshot record.
	failTAT map[proto.URI]uint64
	// looks maps a user name's skeleton (lookAlike) to the user that has
	// it. Derived: rebuilt from the users when a snapshot is read.
	looks map[string]proto.URI
}

// account is what a user has beyond its profile.
type account struct {
	passwordHash []byte // encoded by the node (PHC string); empty: none
	credGen      uint64 // bumps at every password change
	suspended    bool
}

// deviceInfo is what the device list shows of a client.
type deviceInfo struct {
	addedAt uint64
	how     uint8
}

// pendingLink is a new device waiting for an existing device's approval,
// or (no tokenHash) a device invitation client made for its user.
type pendingLink struct {
	id        string
	client    proto.URI
	codeHash  []byte
	tokenHash []byte
	createdAt uint64
}

// invitation reports whether l is a device invitation.
func (l *pendingLink) invitation() bool { return len(l.tokenHash) == 0 }

func newAccounts() accounts {
	return accounts{users: map[proto.URI]*account{}, devices: map[proto.URI]deviceInfo{}, links: map[string]*pendingLink{},
		invites: map[string]uint64{}, looks: map[string]proto.URI{}, failTAT: map[proto.URI]uint64{}}
}

func (a *accounts) account(u proto.URI) *account {
	acc := a.users[u]
	if acc == nil {
		acc = &account{}
		a.users[u] = acc
	}
	return acc
}

func (a *accounts) suspended(u proto.URI) bool {
	acc := a.users[u]
	return acc != nil && acc.suspended
}

// CanonicalUserName reports whether name is a user name as this provider
// creates them: 1 to MaxUserName characters of [a-z0-9._-], starting with a
// letter or digit. It is the PRECIS UsernameCaseMapped profile (RFC 8265)
// narrowed to what MIMI URIs carry unescaped; the client API maps input to
// it first (httpapi).
func CanonicalUserName(name string) bool {
	if len(name) == 0 || len(name) > MaxUserName {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '.' || c == '_' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

// lookAlike returns the skeleton of a user name: case folded, with the
// characters people confuse mapped to one (0/o, 1/l/i, rn/m, vv/w, cl/d,
// and the separators . _ - ~). Two names with one skeleton look alike.
func lookAlike(name string) string {
	s := strings.ToLower(name)
	s = strings.NewReplacer("rn", "m", "vv", "w", "cl", "d").Replace(s)
	return strings.Map(func(r rune) rune {
		switch r {
		case '0':
			return 'o'
		case '1', 'i':
			return 'l'
		case '_', '-', '~':
			return '.'
		}
		return r
	}, s)
}

// noteUser records a user's skeleton (the first user keeps it).
func (a *accounts) noteUser(u proto.URI) {
	id, err := u.Parse()
	if err != nil {
		return
	}
	k := lookAlike(id.User)
	if _, ok := a.looks[k]; !ok {
		a.looks[k] = u
	}
}

// pruneLinks drops link requests that expired by now. Like pruneInvites it
// runs only in commands that succeed: a refusal must change nothing.
func (a *accounts) pruneLinks(now uint64) {
	for len(a.linkSeq) > 0 {
		l := a.links[a.linkSeq[0]]
		if l != nil && l.createdAt+LinkTTL > now {
			return
		}
		delete(a.links, a.linkSeq[0])
		a.linkSeq = a.linkSeq[1:]
	}
}

// pruneInvites drops invite codes that expired by now. Expiries are not in
// insertion order (each has its own lifetime), so every code is checked.
func (a *accounts) pruneInvites(now uint64) {
	a.invSeq = slices.DeleteFunc(a.invSeq, func(h string) bool {
		if a.invites[h] <= now {
			delete(a.invites, h)
			return true
		}
		return false
	})
}

// userLinks returns a user's link requests (invitations false) or device
// invitations (true) still open at now, oldest first.
func (a *accounts) userLinks(u proto.URI, invitations bool, now uint64) []*pendingLink {
	var out []*pendingLink
	for _, id := range a.linkSeq {
		if l := a.links[id]; l != nil && l.createdAt+LinkTTL > now && l.invitation() == invitations {
			if owner, _ := l.client.UserOf(); owner == u {
				out = append(out, l)
			}
		}
	}
	return out
}

// liveLinks counts the link requests (invitations false) or device
// invitations (true) still open at now.
func (a *accounts) liveLinks(invitations bool, now uint64) int {
	n := 0
	for _, id := range a.linkSeq {
		if l := a.links[id]; l.createdAt+LinkTTL > now && l.invitation() == invitations {
			n++
		}
	}
	return n
}

// liveInvites counts the invite codes still valid at now.
func (a *accounts) liveInvites(now uint64) int {
	n := 0
	for _, exp := range a.invites {
		if exp > now {
			n++
		}
	}
	return n
}

func (a *accounts) removeLink(id string) {
	delete(a.links, id)
	a.linkSeq = slices.DeleteFunc(a.linkSeq, func(x string) bool { return x == id })
}

// addDevice creates a client of an existing, active local user.
func (s *State) addDevice(client proto.URI, tokenHash []byte, how uint8, at uint64) *Result {
	if err := s.keys.AddClient(client); err != nil {
		return refused(kindOfKeys(err), "%v", err)
	}
	s.clients[client] = &clientRecord{tokenHash: bytes.Clone(tokenHash)}
	s.acct.devices[client] = deviceInfo{addedAt: at, how: how}
	return success(&client)
}

// checkNewDevice checks client can be added to its existing user.
func (s *State) checkNewDevice(client proto.URI, tokenHash []byte) (proto.URI, *Result) {
	if _, r := s.localClient(client); r != nil {
		return "", r
	}
	if len(tokenHash) != 32 {
		return "", refused(Invalid, "token hash is %d bytes, want 32 (SHA-256)", len(tokenHash))
	}
	user, _ := client.UserOf()
	switch s.keys.UserStatus(user) {
	case keymaterial.UserAbsent:
		return "", refused(NotFound, "no user %s", user)
	case keymaterial.UserDeleted:
		return "", refused(NotAllowed, "user %s was deleted", user)
	}
	if s.acct.suspended(user) {
		return "", refused(NotAllowed, "user %s is suspended", user)
	}
	if _, ok := s.clients[client]; ok {
		return "", refused(Conflict, "device %s already exists", client)
	}
	if cs, _ := s.keys.Clients(user); len(cs) >= s.keys.Limits().MaxClientsPerUser {
		return "", refused(Limit, "user %s has %d devices, the most allowed; revoke one first", user, len(cs))
	}
	return user, nil
}

func (s *State) createUser(b *CreateUserBody, at uint64) *Result {
	id, r := s.localClient(b.Client)
	if r != nil {
		return r
	}
	if !CanonicalUserName(id.User) {
		return refused(Invalid, "user name %q is not canonical: 1 to %d characters of [a-z0-9._-], starting with a letter or digit", id.User, MaxUserName)
	}
	if len(b.TokenHash) != 32 {
		return refused(Invalid, "token hash is %d bytes, want 32 (SHA-256)", len(b.TokenHash))
	}
	if len(b.PasswordHash) > MaxPasswordHash {
		return refused(Invalid, "password hash is %d bytes; at most %d", len(b.PasswordHash), MaxPasswordHash)
	}
	user := proto.UserURI(id.Domain, id.User)
	if s.keys.UserStatus(user) != keymaterial.UserAbsent {
		return refused(Conflict, "user %s exists; add a device by linking it from an existing device or with the account's password", user)
	}
	if other, ok := s.acct.looks[lookAlike(id.User)]; ok {
		return refused(Conflict, "user name %q looks like the existing user %s", id.User, other)
	}
	var invite string
	if len(b.InviteHash) > 0 {
		invite = string(b.InviteHash)
		if exp, ok := s.acct.invites[invite]; !ok || exp <= at {
			return refused(NotAllowed, "the invite code is unknown, used or expired")
		}
	}
	if err := s.keys.AddUser(user); err != nil {
		return refused(kindOfKeys(err), "%v", err)
	}
	if err := s.keys.AddClient(b.Client); err != nil {
		return refused(Invalid, "%v", err) // unreachable: the user is new
	}
	if invite != "" {
		delete(s.acct.invites, invite)
		s.acct.invSeq = slices.DeleteFunc(s.acct.invSeq, func(x string) bool { return x == invite })
		s.acct.pruneInvites(at)
	}
	s.users[user] = &userRecord{profile: b.Profile}
	s.clients[b.Client] = &clientRecord{tokenHash: bytes.Clone(b.TokenHash)}
	s.acct.devices[b.Client] = deviceInfo{addedAt: at, how: DeviceFirst}
	if len(b.PasswordHash) > 0 {
		acc := s.acct.account(user)
		acc.passwordHash, acc.credGen = bytes.Clone(b.PasswordHash), 1
	}
	s.acct.noteUser(user)
	return success(nil)
}

func (s *State) addDeviceWithPassword(b *AddDeviceBody, at uint64) *Result {
	user, r := s.checkNewDevice(b.Client, b.TokenHash)
	if r != nil {
		return r
	}
	acc := s.acct.users[user]
	if acc == nil || len(acc.passwordHash) == 0 {
		return refused(NotAllowed, "user %s has no password; link the device from an existing one", user)
	}
	if acc.credGen != b.CredentialGen {
		return refused(NotAllowed, "the password of %s changed while this request was checked; try again", user)
	}
	return s.addDevice(b.Client, b.TokenHash, DevicePassword, at)
}

func (s *State) requestLink(b *RequestLinkBody, at uint64) *Result {
	user, r := s.checkNewDevice(b.Client, b.TokenHash)
	if r != nil {
		return r
	}
	if r := s.acct.checkPendingID(b.LinkID, b.CodeHash, "link request", "link"); r != nil {
		return r
	}
	mine := s.acct.userLinks(user, false, at)
	if len(mine) >= MaxPendingLinksPerUser {
		return refused(Limit, "user %s has %d device link requests waiting, the most allowed; they expire %d minutes after they were made", user, len(mine), LinkTTL/60000)
	}
	if n := s.acct.liveLinks(false, at); n >= MaxPendingLinks {
		return refused(Limit, "%d device link requests are waiting on this provider, the most allowed", n)
	}
	for _, l := range mine {
		if l.client == b.Client {
			return refused(Conflict, "device %s already waits for approval", b.Client)
		}
		if subtle.ConstantTimeCompare(l.codeHash, b.CodeHash) == 1 {
			return refused(Conflict, "link code in use; draw another")
		}
	}
	s.acct.addPending(&pendingLink{id: string(b.LinkID), client: b.Client, codeHash: bytes.Clone(b.CodeHash), tokenHash: bytes.Clone(b.TokenHash), createdAt: at}, at)
	return success(nil)
}

// checkPendingID checks a new link request's or invitation's id and code
// hash (what names the table's entry: "link" or "invitation").
func (a *accounts) checkPendingID(id, codeHash []byte, what, idName string) *Result {
	if len(id) < 16 || len(id) > 64 || len(codeHash) != 32 {
		return refused(Invalid, "a %s needs an id of 16 to 64 bytes and a 32-byte code hash", what)
	}
	if _, ok := a.links[string(id)]; ok {
		return refused(Conflict, "%s id in use", idName)
	}
	return nil
}

// addPending adds a link request or invitation made at at, dropping the
// expired ones first (a successful command).
func (a *accounts) addPending(l *pendingLink, at uint64) {
	a.pruneLinks(at)
	a.links[l.id] = l
	a.linkSeq = append(a.linkSeq, l.id)
}

// actingDevice checks c is a device of an active local user, the one it
// returns.
func (s *State) actingDevice(c proto.URI) (proto.URI, *Result) {
	if _, ok := s.clients[c]; !ok {
		return "", refused(NotFound, "no device %s", c)
	}
	user, _ := c.UserOf()
	if s.acct.suspended(user) {
		return "", refused(NotAllowed, "user %s is suspended", user)
	}
	return user, nil
}

func (s *State) approveLink(b *ApproveLinkBody, at uint64) *Result {
	user, r := s.actingDevice(b.Approver)
	if r != nil {
		return r
	}
	for _, l := range s.acct.userLinks(user, false, at) {
		if subtle.ConstantTimeCompare(l.codeHash, b.CodeHash) != 1 {
			continue
		}
		if _, r := s.checkNewDevice(l.client, l.tokenHash); r != nil {
			return r
		}
		s.acct.removeLink(l.id)
		s.acct.pruneLinks(at)
		return s.addDevice(l.client, l.tokenHash, DeviceLinked, at)
	}
	return refused(NotFound, "no device of %s waits for approval with this code (codes expire after %d minutes)", user, LinkTTL/60000)
}

// NoInvitation is the one answer (NotFound) to a redemption that matches
// no open invitation, whatever the reason (no such user, a wrong code, a
// used or expired invitation): a guesser learns nothing from it.
var NoInvitation = fmt.Sprintf("no open device invitation of this user has this code (invitations are single-use and expire after %d minutes)", LinkTTL/60000)

func (s *State) inviteDevice(b *InviteDeviceBody, at uint64) *Result {
	user, r := s.actingDevice(b.Inviter)
	if r != nil {
		return r
	}
	if r := s.acct.checkPendingID(b.InviteID, b.CodeHash, "device invitation", "invitation"); r != nil {
		return r
	}
	mine := s.acct.userLinks(user, true, at)
	if len(mine) >= MaxDeviceInvitesPerUser {
		return refused(Limit, "user %s has %d device invitations open, the most allowed; each expires %d minutes after it was made or when a device redeems it", user, len(mine), LinkTTL/60000)
	}
	var displaced *pendingLink
	if n := s.acct.liveLinks(true, at); n >= MaxDeviceInvites {
		if displaced = s.acct.crowdedInvitation(at, len(mine)); displaced == nil {
			return refused(Limit, "%d device invitations are open on this provider, the most allowed, and no user holds more than the %d of %s", n, len(mine), user)
		}
	}
	for _, l := range mine {
		if subtle.ConstantTimeCompare(l.codeHash, b.CodeHash) == 1 {
			return refused(Conflict, "invitation code in use; draw another")
		}
	}
	if displaced != nil {
		s.acct.removeLink(displaced.id)
	}
	s.acct.addPending(&pendingLink{id: string(b.InviteID), client: b.Inviter, codeHash: bytes.Clone(b.CodeHash), createdAt: at}, at)
	return success(nil)
}

// crowdedInvitation returns the oldest open invitation (at now) of the
// user who holds the most open invitations, among equals the one whose
// oldest is oldest, if that user holds more than than; nil otherwise.
// It visits the links in their creation order, so every replica picks the
// same one.
func (a *accounts) crowdedInvitation(now uint64, than int) *pendingLink {
	count := map[proto.URI]int{}
	oldest := map[proto.URI]*pendingLink{}
	var users []proto.URI // by their oldest open invitation
	for _, id := range a.linkSeq {
		l := a.links[id]
		if l == nil || !l.invitation() || l.createdAt+LinkTTL <= now {
			continue
		}
		u, _ := l.client.UserOf()
		if count[u] == 0 {
			oldest[u] = l
			users = append(users, u)
		}
		count[u]++
	}
	var pick *pendingLink
	most := than
	for _, u := range users {
		if count[u] > most {
			pick, most = oldest[u], count[u]
		}
	}
	return pick
}

// findInvitation returns the open invitation a redemption names at now:
// one of the new device's user whose code hash matches (compared in
// constant time). Admit answers with its refusal before Raft.
func (s *State) findInvitation(b *RedeemInviteBody, now uint64) (*pendingLink, *Result) {
	if _, r := s.localClient(b.Client); r != nil {
		return nil, r
	}
	user, _ := b.Client.UserOf()
	var found *pendingLink
	for _, l := range s.acct.userLinks(user, true, now) {
		if subtle.ConstantTimeCompare(l.codeHash, b.CodeHash) == 1 {
			found = l
		}
	}
	if found == nil {
		return nil, refused(NotFound, "%s", NoInvitation)
	}
	return found, nil
}

func (s *State) redeemInvite(b *RedeemInviteBody, at uint64) *Result {
	l, r := s.findInvitation(b, at)
	if r != nil {
		return r
	}
	if _, r := s.checkNewDevice(b.Client, b.TokenHash); r != nil {
		return r
	}
	s.acct.removeLink(l.id)
	s.acct.pruneLinks(at)
	return s.addDevice(b.Client, b.TokenHash, DeviceInvited, at)
}

// NoSuchInvitation is the answer (NotFound) to a cancellation that names
// no open invitation of the canceller's user: one of another user is
// not told apart from none.
const NoSuchInvitation = "no open device invitation of this user has this id"

// cancelInvite applies CmdCancelInvite: any device of a user may cancel
// any open invitation of that user (one made by a device since revoked
// is gone already).
func (s *State) cancelInvite(b *CancelInviteBody, at uint64) *Result {
	user, r := s.actingDevice(b.Canceller)
	if r != nil {
		return r
	}
	for _, l := range s.acct.userLinks(user, true, at) {
		if l.id == string(b.InviteID) {
			s.acct.removeLink(l.id)
			s.acct.pruneLinks(at)
			return success(nil)
		}
	}
	return refused(NotFound, "%s", NoSuchInvitation)
}

// DeviceInvitation is an open device invitation: its id, the device that
// made it, and when it expires (ms).
type DeviceInvitation struct {
	ID        []byte
	Inviter   proto.URI
	ExpiresAt uint64
}

// DeviceInvitations lists user's device invitations open at now (ms),
// oldest first.
func (s *State) DeviceInvitations(user proto.URI, now uint64) []DeviceInvitation {
	var out []DeviceInvitation
	for _, l := range s.acct.userLinks(user, true, now) {
		out = append(out, DeviceInvitation{ID: []byte(l.id), Inviter: l.client, ExpiresAt: l.createdAt + LinkTTL})
	}
	return out
}

// dropInvitationsBy drops the device invitations client made: a revoked
// device's invitations add nobody.
func (a *accounts) dropInvitationsBy(client proto.URI) {
	a.linkSeq = slices.DeleteFunc(a.linkSeq, func(id string) bool {
		if l := a.links[id]; l.invitation() && l.client == client {
			delete(a.links, id)
			return true
		}
		return false
	})
}

func (s *State) setPassword(b *SetPasswordBody) *Result {
	if _, err := s.keys.Clients(b.User); err != nil {
		return refused(NotFound, "no user %s", b.User)
	}
	if len(b.PasswordHash) == 0 || len(b.PasswordHash) > MaxPasswordHash {
		return refused(Invalid, "password hash is %d bytes; want 1 to %d", len(b.PasswordHash), MaxPasswordHash)
	}
	var gen uint64
	if acc := s.acct.users[b.User]; acc != nil {
		gen = acc.credGen
	}
	if gen != b.CredentialGen {
		return refused(NotAllowed, "the password of %s changed while this request was checked; try again", b.User)
	}
	acc := s.acct.account(b.User)
	acc.passwordHash, acc.credGen = bytes.Clone(b.PasswordHash), gen+1
	return success(nil)
}

func (s *State) revokeDevice(b *RevokeDeviceBody, at uint64) *Result {
	if _, ok := s.clients[b.Client]; !ok {
		return refused(NotFound, "no device %s", b.Client)
	}
	user, _ := b.Client.UserOf()
	if b.By != "" {
		by, _ := b.By.UserOf()
		if _, ok := s.clients[b.By]; !ok || by != user {
			return refused(NotAllowed, "%s may not revoke %s", b.By, b.Client)
		}
		if cs, _ := s.keys.Clients(user); len(cs) == 1 {
			if acc := s.acct.users[user]; acc == nil || len(acc.passwordHash) == 0 {
				return refused(Conflict, "%s is the last device of %s, which has no password: revoking it would lock the account for good", b.Client, user)
			}
		}
	}
	if err := s.keys.RemoveClient(b.Client); err != nil {
		return refused(kindOfKeys(err), "%v", err)
	}
	delete(s.clients, b.Client)
	delete(s.acct.devices, b.Client)
	s.acct.dropInvitationsBy(b.Client)
	// In the same command the device leaves its rooms (hubproposals.go):
	// it stops following every room at once, the hub queues its Removes
	// in rooms hosted here, and the hubs of the other rooms it follows are
	// asked to remove it. The answer says which rooms.
	return s.removeClients(&Command{AcceptedAt: at}, &RemoveClientsBody{Clients: []proto.URI{b.Client}})
}

func (s *State) suspendUser(b *SuspendUserBody) *Result {
	if _, err := s.keys.Clients(b.User); err != nil {
		return refused(NotFound, "no user %s", b.User)
	}
	s.acct.account(b.User).suspended = b.Suspend
	return success(nil)
}

func (s *State) mintInvite(b *MintInviteBody, at uint64) *Result {
	if len(b.CodeHash) != 32 {
		return refused(Invalid, "invite code hash is %d bytes, want 32", len(b.CodeHash))
	}
	if b.ExpiresAt <= at || b.ExpiresAt-at > MaxInviteTTL {
		return refused(Invalid, "an invite code lives from 1 ms to %d days", MaxInviteTTL/86_400_000)
	}
	if exp, ok := s.acct.invites[string(b.CodeHash)]; ok && exp > at {
		return refused(Conflict, "invite code exists")
	}
	if n := s.acct.liveInvites(at); n >= MaxInvites {
		return refused(Limit, "%d invite codes are unused, the most allowed", n)
	}
	s.acct.pruneInvites(at)
	s.acct.invites[string(b.CodeHash)] = b.ExpiresAt
	s.acct.invSeq = append(s.acct.invSeq, string(b.CodeHash))
	return success(nil)
}

// dispatchAccounts applies the account commands (types 20-30); ok is false
// for other types.
func (s *State) dispatchAccounts(c *Command) (res *Result, ok bool) {
	mv := s.maxVector()
	if !accountCommand(c.Type) {
		return nil, false
	}
	if c.Peer != "" {
		return refused(NotAllowed, "%s is for this provider's own clients, not for %s", c.Type, c.Peer), true
	}
	switch c.Type {
	case CmdCreateUser:
		return run(c, mv, func(b *CreateUserBody) *Result { return s.createUser(b, c.AcceptedAt) }), true
	case CmdAddDevice:
		return run(c, mv, func(b *AddDeviceBody) *Result { return s.addDeviceWithPassword(b, c.AcceptedAt) }), true
	case CmdRequestLink:
		return run(c, mv, func(b *RequestLinkBody) *Result { return s.requestLink(b, c.AcceptedAt) }), true
	case CmdApproveLink:
		return run(c, mv, func(b *ApproveLinkBody) *Result { return s.approveLink(b, c.AcceptedAt) }), true
	case CmdSetPassword:
		return run(c, mv, s.setPassword), true
	case CmdRevokeDevice:
		return run(c, mv, func(b *RevokeDeviceBody) *Result { return s.revokeDevice(b, c.AcceptedAt) }), true
	case CmdSuspendUser:
		return run(c, mv, s.suspendUser), true
	case CmdMintInvite:
		return run(c, mv, func(b *MintInviteBody) *Result { return s.mintInvite(b, c.AcceptedAt) }), true
	case CmdInviteDevice:
		return run(c, mv, func(b *InviteDeviceBody) *Result { return s.inviteDevice(b, c.AcceptedAt) }), true
	case CmdCancelInvite:
		return run(c, mv, func(b *CancelInviteBody) *Result { return s.cancelInvite(b, c.AcceptedAt) }), true
	case CmdRedeemInvite:
		return run(c, mv, func(b *RedeemInviteBody) *Result { return s.redeemInvite(b, c.AcceptedAt) }), true
	default: // CmdPasswordFailure
		return run(c, mv, func(b *PasswordFailureBody) *Result { return s.passwordFailure(b, c.AcceptedAt) }), true
	}
}

// accountCommand reports whether t is one of the account commands
// (accountCommandNames), all local only.
func accountCommand(t CommandType) bool {
	_, ok := accountCommandNames[t]
	return ok
}

// run decodes a command's body and applies fn to it.
func run[T any, P interface {
	*T
	wire.Decoder
}](c *Command, maxVector int, fn func(P) *Result) *Result {
	b, r := body[T, P](c, maxVector)
	if r != nil {
		return r
	}
	return fn(b)
}

// Reads.

// Device is one device of a user, as the device list shows it.
type Device struct {
	Client  proto.URI
	AddedAt uint64 // ms; 0 for devices registered before accounts existed
	How     uint8  // DeviceLegacy, DeviceFirst, DeviceLinked, DevicePassword or DeviceInvited
}

// Devices lists a local user's devices in URI order.
func (s *State) Devices(user proto.URI) ([]Device, bool) {
	cs, err := s.keys.Clients(user)
	if err != nil {
		return nil, false
	}
	out := make([]Device, 0, len(cs))
	for _, c := range cs {
		if _, ok := s.clients[c]; !ok {
			continue
		}
		d := s.acct.devices[c]
		out = append(out, Device{Client: c, AddedAt: d.addedAt, How: d.how})
	}
	return out, true
}

// PendingLink is a device waiting for approval.
type PendingLink struct {
	Client    proto.URI
	ExpiresAt uint64 // ms
}

// PendingLinks lists the devices waiting for a user's approval, oldest
// first, as of the FSM clock (expired ones are left out).
func (s *State) PendingLinks(user proto.URI) []PendingLink {
	var out []PendingLink
	for _, l := range s.acct.userLinks(user, false, s.lastAt) {
		out = append(out, PendingLink{Client: l.client, ExpiresAt: l.createdAt + LinkTTL})
	}
	return out
}

// Credential is what a node needs to check a user's password outside
// Apply: the stored hash and its generation, which a command built on the
// check must carry.
type Credential struct {
	PasswordHash []byte
	Generation   uint64
	Suspended    bool
	// PasswordRetryAt is when (ms) a password may next be tried for the
	// user, cluster-wide (passwordguard.go); 0: at once.
	PasswordRetryAt uint64
}

// UserCredential returns a local user's credential; ok is false when there
// is no such active user.
func (s *State) UserCredential(user proto.URI) (Credential, bool) {
	if s.keys.UserStatus(user) != keymaterial.UserActive {
		return Credential{}, false
	}
	acc := s.acct.users[user]
	if acc == nil {
		return Credential{}, true
	}
	return Credential{PasswordHash: bytes.Clone(acc.passwordHash), Generation: acc.credGen, Suspended: acc.suspended,
		PasswordRetryAt: s.acct.passwordRetryAt(user)}, true
}

// Suspended reports whether a local user is suspended.
func (s *State) Suspended(user proto.URI) bool { return s.acct.suspended(user) }

// UserNameTaken reports whether name, or a name that looks like it, is a
// user here: the name a new user must not have.
func (s *State) UserNameTaken(name string) (proto.URI, bool) {
	u, ok := s.acct.looks[lookAlike(name)]
	return u, ok
}

// Snapshot section (state version 2).

func (a *accounts) EncodeTLS(w *wire.Writer) {
	w.Vector(func(w *wire.Writer) {
		for _, u := range sortedKeys(a.users) {
			acc := a.users[u]
			u.EncodeTLS(w)
			w.Opaque(acc.passwordHash)
			w.Uint64(acc.credGen)
			w.Bool(acc.suspended)
		}
	})
	w.Vector(func(w *wire.Writer) {
		for _, c := range sortedKeys(a.devices) {
			c.EncodeTLS(w)
			w.Uint64(a.devices[c].addedAt)
			w.Uint8(a.devices[c].how)
		}
	})
	w.Vector(func(w *wire.Writer) {
		for _, id := range a.linkSeq {
			l := a.links[id]
			w.Opaque([]byte(l.id))
			l.client.EncodeTLS(w)
			w.Opaque(l.codeHash)
			w.Opaque(l.tokenHash)
			w.Uint64(l.createdAt)
		}
	})
	w.Vector(func(w *wire.Writer) {
		for _, h := range a.invSeq {
			w.Opaque([]byte(h))
			w.Uint64(a.invites[h])
		}
	})
}

func (a *accounts) DecodeTLS(r *wire.Reader) {
	*a = newAccounts()
	r.VectorEach(func(r *wire.Reader) {
		var u proto.URI
		acc := &account{}
		u.DecodeTLS(r)
		r.Opaque(&acc.passwordHash)
		acc.passwordHash = bytes.Clone(acc.passwordHash)
		r.Uint64(&acc.credGen)
		r.Bool(&acc.suspended)
		a.users[u] = acc
	})
	r.VectorEach(func(r *wire.Reader) {
		var c proto.URI
		var d deviceInfo
		c.DecodeTLS(r)
		r.Uint64(&d.addedAt)
		r.Uint8(&d.how)
		a.devices[c] = d
	})
	r.VectorEach(func(r *wire.Reader) {
		l := &pendingLink{}
		var id []byte
		r.Opaque(&id)
		l.id = string(id)
		l.client.DecodeTLS(r)
		r.Opaque(&l.codeHash)
		r.Opaque(&l.tokenHash)
		l.codeHash, l.tokenHash = bytes.Clone(l.codeHash), bytes.Clone(l.tokenHash)
		r.Uint64(&l.createdAt)
		if _, dup := a.links[l.id]; dup {
			r.Failf("link %x listed twice", id)
		}
		a.links[l.id] = l
		a.linkSeq = append(a.linkSeq, l.id)
	})
	r.VectorEach(func(r *wire.Reader) {
		var h []byte
		var exp uint64
		r.Opaque(&h)
		r.Uint64(&exp)
		if _, dup := a.invites[string(h)]; dup {
			r.Failf("invite listed twice")
		}
		a.invites[string(h)] = exp
		a.invSeq = append(a.invSeq, string(h))
	})
}
