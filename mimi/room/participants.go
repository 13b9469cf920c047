package room

import (
	"fmt"
	"slices"

	"github.com/mimihub/mimi-hub/mimi/internal/pmap"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// Participant is a user of the room with its roles.
type Participant struct {
	User  proto.URI
	Roles []proto.Role
}

// Banned reports whether the participant is banned.
func (p *Participant) Banned() bool { return slices.Contains(p.Roles, proto.RoleBanned) }

// rank is the best (lowest-coded) role; banned-only participants rank last.
func rank(roles []proto.Role) proto.Role {
	best := proto.RoleBanned
	for _, r := range roles {
		if r != proto.RoleBanned && r < best {
			best = r
		}
	}
	return best
}

// participants is the participant list: a persistent map sorted by user
// URI, so that it encodes and iterates the same on every replica, a change
// costs O(log n), and a copy (a trial list for a commit's patches, a
// snapshot's capture) costs nothing. Role slices stored in it are never
// modified in place.
type participants struct {
	m pmap.Map[proto.URI, []proto.Role]
}

// get returns a copy of user's entry, or nil.
func (ps participants) get(user proto.URI) *Participant {
	roles, ok := ps.m.Get(user)
	if !ok {
		return nil
	}
	return &Participant{User: user, Roles: roles}
}

// active reports whether user is a participant that is not banned.
func (ps participants) active(user proto.URI) bool {
	roles, ok := ps.m.Get(user)
	return ok && !slices.Contains(roles, proto.RoleBanned)
}

// len returns the number of participants.
func (ps participants) len() int { return ps.m.Len() }

// list returns the participants sorted by user, each with its own copy of
// its roles.
func (ps participants) list() []Participant {
	out := make([]Participant, 0, ps.m.Len())
	for u, roles := range ps.m.All() {
		out = append(out, Participant{User: u, Roles: slices.Clone(roles)})
	}
	return out
}

// set gives user roles, which the list keeps (the caller must not modify
// them afterwards).
func (ps *participants) set(user proto.URI, roles []proto.Role) { ps.m = ps.m.Set(user, roles) }

func (ps *participants) remove(user proto.URI) { ps.m = ps.m.Delete(user) }

// EncodeTLS writes the list.
func (ps participants) EncodeTLS(w *wire.Writer) {
	w.Vector(func(w *wire.Writer) {
		for u, roles := range ps.m.All() {
			(&proto.UserRoles{User: u, Roles: roles}).EncodeTLS(w)
		}
	})
}

// DecodeTLS reads the list and checks it is sorted and unique.
func (ps *participants) DecodeTLS(r *wire.Reader) {
	var out pmap.Map[proto.URI, []proto.Role]
	var last proto.URI
	r.VectorEach(func(r *wire.Reader) {
		var ur proto.UserRoles
		ur.DecodeTLS(r)
		if r.OK() && out.Len() > 0 && last >= ur.User {
			r.Failf("participant list is not sorted and unique at %s", ur.User)
		}
		last = ur.User
		out = out.Set(ur.User, ur.Roles)
	})
	ps.m = out
}

// patchError is a patch the proposer may not make (notAllowed) or that is
// malformed (invalidProposal).
type patchError struct {
	notAllowed bool
	err        error
}

func (e *patchError) Error() string { return e.err.Error() }

func denied(format string, args ...any) error {
	return &patchError{notAllowed: true, err: fmt.Errorf(format, args...)}
}

func malformed(format string, args ...any) error {
	return &patchError{err: fmt.Errorf(format, args...)}
}

// checkRoles checks a role list of a patch: known roles, no duplicates, not
// empty, none outranking the proposer's best role (DECISIONS.md item 19).
func checkRoles(roles []proto.Role, proposerRank proto.Role, user proto.URI) error {
	if len(roles) == 0 {
		return malformed("%s would have no roles", user)
	}
	for i, r := range roles {
		if slices.Contains(roles[:i], r) {
			return malformed("%s is given role %s twice", user, r)
		}
		if r < proposerRank {
			return denied("giving %s the role %s outranks the proposer's %s", user, r, proposerRank)
		}
	}
	return nil
}

// applyPatch applies a ParticipantListPatch made by proposer, whose roles
// are as of the start of the commit (seed section 7.4: "PLP authz by
// policy"). A participant may always remove itself, unless it is banned:
// taking a banned user off the list lifts the ban, which only a role that
// may ban may do. The hub's own patches (it removes departed users) are
// checked for form only.
func applyPatch(ps *participants, before participants, policy *proto.BasePolicy, by actor, patch *proto.ParticipantListPatch) error {
	proposer := by.user
	var proposerRoles []proto.Role
	if p := before.get(proposer); p != nil {
		proposerRoles = p.Roles
	}
	if by.system {
		proposerRoles = []proto.Role{proto.RoleSystem}
		policy = systemPolicy()
	}
	myRank := rank(proposerRoles)
	seen := map[proto.URI]bool{}
	touch := func(u proto.URI) error {
		id, err := u.Parse()
		if err != nil || id.Kind != proto.KindUser {
			return malformed("participant list patch names %q, which is not a user URI", u)
		}
		if seen[u] {
			return malformed("participant list patch names %s twice", u)
		}
		seen[u] = true
		return nil
	}
	for _, add := range patch.AddUsers {
		if err := touch(add.User); err != nil {
			return err
		}
		if ps.get(add.User) != nil {
			return malformed("%s is already a participant; use updateUsers", add.User)
		}
		if !proto.Allows(policy.AddUsers, proposerRoles) {
			return denied("%s may not add users", proposer)
		}
		if err := checkRoles(add.Roles, myRank, add.User); err != nil {
			return err
		}
		if slices.Contains(add.Roles, proto.RoleBanned) && !proto.Allows(policy.Ban, proposerRoles) {
			return denied("%s may not ban users", proposer)
		}
		ps.set(add.User, slices.Clone(add.Roles))
	}
	for _, up := range patch.UpdateUsers {
		if err := touch(up.User); err != nil {
			return err
		}
		cur := ps.get(up.User)
		if cur == nil {
			return malformed("%s is not a participant and cannot be updated", up.User)
		}
		if !proto.Allows(policy.ChangeRoles, proposerRoles) {
			return denied("%s may not change roles", proposer)
		}
		if rank(cur.Roles) < myRank {
			return denied("%s may not change the roles of %s, who outranks them", proposer, up.User)
		}
		if err := checkRoles(up.Roles, myRank, up.User); err != nil {
			return err
		}
		if slices.Contains(up.Roles, proto.RoleBanned) != cur.Banned() && !proto.Allows(policy.Ban, proposerRoles) {
			return denied("%s may not ban or unban users", proposer)
		}
		ps.set(up.User, slices.Clone(up.Roles))
	}
	for _, u := range patch.RemoveUsers {
		if err := touch(u); err != nil {
			return err
		}
		cur := ps.get(u)
		if cur == nil {
			return malformed("%s is not a participant and cannot be removed", u)
		}
		if cur.Banned() && !proto.Allows(policy.Ban, proposerRoles) {
			return denied("%s is banned; removing them from the list would lift the ban, and %s may not ban or unban users", u, proposer)
		}
		if u != proposer {
			if !proto.Allows(policy.RemoveUsers, proposerRoles) {
				return denied("%s may not remove users", proposer)
			}
			if rank(cur.Roles) < myRank {
				return denied("%s may not remove %s, who outranks them", proposer, u)
			}
		}
		ps.remove(u)
	}
	return nil
}

// isSelfRemoval reports whether a patch only removes its proposer.
func isSelfRemoval(patch *proto.ParticipantListPatch, proposer proto.URI) bool {
	return len(patch.AddUsers) == 0 && len(patch.UpdateUsers) == 0 &&
		len(patch.RemoveUsers) == 1 && patch.RemoveUsers[0] == proposer
}

// systemPolicy is the policy the hub's own patches are checked against: the
// system role may do everything.
func systemPolicy() *proto.BasePolicy {
	all := []proto.Role{proto.RoleSystem}
	return &proto.BasePolicy{AddUsers: all, RemoveUsers: all, ChangeRoles: all, Ban: all, Send: all, ChangePolicy: all}
}
