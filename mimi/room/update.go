package room

import (
	"errors"
	"fmt"
	"slices"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// UpdateRoom is an updateRoom request (seed section 7.4) from provider From,
// the authenticated peer (the hub's own domain for its local clients).
type UpdateRoom struct {
	From string
	Body *proto.UpdateRoomRequest
	// Verified, for a commit, is the signature checks a node made before
	// proposing it (Precheck): those it lists are skipped while the room
	// is still at the epoch it names. Nil checks everything.
	Verified *mls.Verified
}

func (q *UpdateRoom) apply(r *Room, at uint64) Outcome {
	if q.Body == nil || q.Body.Message == nil || q.Body.Message.Public == nil {
		return respond(proto.UpdateInvalidProposal, "updateRoom without a PublicMessage")
	}
	if q.Body.IsCommit() {
		return r.commit(q.From, q.Body, q.Verified, at)
	}
	return r.proposals(q.From, q.Body, at)
}

func respond(code proto.UpdateResponseCode, format string, args ...any) Outcome {
	return Outcome{Response: proto.UpdateRoomResponse{Code: code, Description: fmt.Sprintf(format, args...)}}
}

// policyError is a refusal by room policy: notAllowed, or invalidProposal
// when the request is inconsistent rather than unauthorized.
type policyError struct {
	code proto.UpdateResponseCode
	err  error
}

func (e *policyError) Error() string { return e.err.Error() }

func notAllowed(format string, args ...any) error {
	return &policyError{code: proto.UpdateNotAllowed, err: fmt.Errorf(format, args...)}
}

func invalid(format string, args ...any) error {
	return &policyError{code: proto.UpdateInvalidProposal, err: fmt.Errorf(format, args...)}
}

// codeOf maps an error from the MLS layer or the policy to the seed's
// response code.
func codeOf(err error) proto.UpdateResponseCode {
	var pe *policyError
	var patch *patchError
	switch {
	case errors.Is(err, mls.ErrWrongEpoch):
		return proto.UpdateWrongEpoch
	case errors.As(err, &pe):
		return pe.code
	case errors.As(err, &patch):
		if patch.notAllowed {
			return proto.UpdateNotAllowed
		}
	}
	return proto.UpdateInvalidProposal
}

func refuse(err error) Outcome {
	return Outcome{Response: proto.UpdateRoomResponse{Code: codeOf(err), Description: err.Error()}}
}

// actor is who made a proposal or commit.
type actor struct {
	member
	roles  []proto.Role
	active bool // an active participant: listed and not banned
	system bool // the hub itself
}

// memberActor describes the client at leaf l, whose provider must be from.
func (r *Room) memberActor(l mls.LeafIndex, from string) (actor, error) {
	m, ok := r.members.get(l)
	if !ok {
		return actor{}, invalid("leaf %d is not a member", l)
	}
	if m.domain != from {
		return actor{}, notAllowed("%s sent a message of %s, a client of %s", from, m.client, m.domain)
	}
	return r.actorOf(m), nil
}

func (r *Room) actorOf(m member) actor {
	a := actor{member: m}
	if p := r.participants.get(m.user); p != nil {
		a.roles = p.Roles
		a.active = !p.Banned()
	}
	return a
}

// system is the hub itself, sending its own (external) proposals.
func (r *Room) system() actor {
	return actor{member: member{domain: r.cfg.Hub}, roles: []proto.Role{proto.RoleSystem}, active: true, system: true}
}

// proposals stores one or more proposals, all or none.
func (r *Room) proposals(from string, body *proto.UpdateRoomRequest, at uint64) Outcome {
	msgs := append([]*mls.Message{body.Message}, body.MoreProposals...)
	mark, queued, seq := r.group.PendingCount(), len(r.queued), r.seq
	var effects []Effect
	for i, m := range msgs {
		var queue bool
		var sender proto.URI
		res, err := r.group.ProcessProposal(m, at/1000, func(res *mls.ProposalResult) error {
			a, err := r.checkProposal(from, res)
			if err != nil {
				return err
			}
			queue = mustCommit(res.Sender, res.Proposal, a.user, r.cfg.maxVector())
			if !queue && r.group.PendingCount()-len(r.queued) >= maxOptionalPending {
				return notAllowed("the room holds %d proposals this epoch that nobody committed; commit them first", maxOptionalPending)
			}
			sender = a.client
			return nil
		})
		if err == nil && !queue && r.rulesAt(rulesBoundedProposals) {
			if n := r.pendingBytes(); n > maxOptionalPendingBytes {
				err = notAllowed("the room holds %d bytes of proposals this epoch (at most %d); commit them first", n, maxOptionalPendingBytes)
			}
		}
		if err != nil {
			r.group.TruncatePending(mark)
			if len(r.queued) > queued {
				r.queued = r.queued[:queued]
				r.reindexQueue()
			}
			r.seq = seq
			out := refuse(err)
			out.Response.Description = fmt.Sprintf("proposal %d: %s", i, out.Response.Description)
			return out
		}
		if queue {
			r.enqueue(res.Ref, res.Sender, res.Proposal)
		}
		effects = append(effects, r.accept(m, at, r.recipients(sender)))
	}
	return Outcome{Response: proto.UpdateRoomResponse{Code: proto.UpdateSuccess}, Effects: effects}
}

// pendingBytes returns the size of the proposals the epoch holds.
func (r *Room) pendingBytes() int {
	n := 0
	for _, m := range r.group.PendingMessages() {
		n += len(m)
	}
	return n
}

// checkProposal applies room policy to a proposal sent by reference and
// returns its proposer. The rules are those a commit applies to the same
// proposal (by value or by reference): each is one function below, so the
// two paths cannot disagree.
func (r *Room) checkProposal(from string, res *mls.ProposalResult) (actor, error) {
	var a actor
	switch res.Sender.Type {
	case mls.SenderMember:
		var err error
		if a, err = r.memberActor(mls.LeafIndex(res.Sender.Index), from); err != nil {
			return actor{}, err
		}
	case mls.SenderExternal:
		return actor{}, notAllowed("external proposals come only from the hub itself, never through updateRoom")
	case mls.SenderNewMemberProposal:
		return actor{}, notAllowed("new members join by external commit, not by proposing their own Add")
	default:
		return actor{}, invalid("unexpected sender %s", res.Sender.Type)
	}
	p := res.Proposal
	if err := r.checkInactive(a, p, res.Sender); err != nil {
		return actor{}, err
	}
	if err := r.checkQueueConflicts(res); err != nil && !r.cfg.planted(plantQueueConflicts) {
		return actor{}, err
	}
	policy := r.Policy()
	switch p.Type {
	case proto.ProposalParticipantListPatch:
		patch, _, err := proto.PatchOf(p, r.cfg.maxVector())
		if err != nil {
			return actor{}, invalid("%v", err)
		}
		trial := r.participants // persistent: the trial's changes stay in it
		return a, applyPatch(&trial, r.participants, &policy, a, patch)
	case mls.ProposalRemove:
		target, ok := r.members.get(p.Removed)
		if !ok {
			return actor{}, invalid("remove of leaf %d, which is not a member", p.Removed)
		}
		return a, r.authorizeRemove(a, target, r.participants, &policy)
	case mls.ProposalSelfRemove, mls.ProposalPSK:
		return a, nil
	case mls.ProposalUpdate:
		if err := sameClient(a.member, p.LeafNode); err != nil {
			return actor{}, err
		}
		return a, r.checkCapabilities(p.LeafNode, r.group.GroupContext().Extensions)
	case mls.ProposalGroupContextExtensions:
		return a, r.checkPolicyChange(a, &policy, p.Extensions)
	case mls.ProposalAdd:
		m, err := memberOf(&p.KeyPackage.LeafNode)
		if err != nil {
			return actor{}, invalid("add: %v", err)
		}
		if err := authorizeAdd(a, m, &policy); err != nil {
			return actor{}, err
		}
		if !policy.MultipleClients {
			leaving := r.queuedRemovals()
			for _, c := range r.members.clientsOf(m.user) {
				if !leaving[r.members.byClient[c]] {
					return actor{}, notAllowed("the room allows one client per user, and %s has %s", m.user, c)
				}
			}
		}
		return a, r.checkCapabilities(&p.KeyPackage.LeafNode, r.group.GroupContext().Extensions)
	case mls.ProposalReInit:
		if !proto.Allows(policy.ChangePolicy, a.roles) {
			return actor{}, notAllowed("%s may not reinitialize the room", a.user)
		}
		return a, nil
	}
	return actor{}, notAllowed("proposal type %s is not used in MIMI rooms", p.Type)
}

// checkInactive applies the seed's rule for a user removed or banned while
// its clients are still members (section 7.4; -06 "Update Room State"): its
// clients may propose only Remove and SelfRemove, and only of its own
// user's clients.
func (r *Room) checkInactive(a actor, p *mls.Proposal, sender mls.Sender) error {
	if a.active || a.system || r.cfg.planted(plantLingeringRemoves) && p.Type == mls.ProposalRemove {
		return nil
	}
	switch p.Type {
	case mls.ProposalSelfRemove:
		return nil
	case mls.ProposalRemove:
		if t, ok := r.members.get(p.Removed); ok && t.user != a.user {
			return notAllowed("%s is not an active participant; its clients may remove only its own clients, not %s", a.user, t.client)
		}
		return nil
	}
	return notAllowed("%s is not an active participant; its clients may only propose Remove or SelfRemove, not %s", a.user, p.Type)
}

// authorizeRemove decides whether proposer may remove target's client, with
// the participant list as it stands after the patches of the same commit
// (the current list for a proposal): its own user's clients always; with a
// role that may remove users, the clients of anyone it does not rank below;
// and the clients of users who are no longer active participants. The hub
// may remove anyone.
func (r *Room) authorizeRemove(proposer actor, target member, after participants, policy *proto.BasePolicy) error {
	switch {
	case proposer.system, target.user == proposer.user, !proposer.active && r.cfg.planted(plantLingeringRemoves):
		return nil
	case !proposer.active:
		return notAllowed("%s is not an active participant; its clients may remove only its own clients, not %s", proposer.user, target.client)
	case !after.active(target.user):
		return nil
	case !proto.Allows(policy.RemoveUsers, proposer.roles):
		return notAllowed("%s may not remove a client of %s, an active participant", proposer.user, target.user)
	}
	if t := after.get(target.user); rank(t.Roles) < rank(proposer.roles) {
		return notAllowed("%s may not remove a client of %s, who outranks them", proposer.user, target.user)
	}
	return nil
}

// authorizeAdd decides whether proposer may add m: its own user's new
// client, or anyone's with a role that may add users. Whether m's user is
// an active participant is checked against the list after the commit.
func authorizeAdd(proposer actor, m member, policy *proto.BasePolicy) error {
	if proposer.system || m.user == proposer.user || proto.Allows(policy.AddUsers, proposer.roles) {
		return nil
	}
	return notAllowed("%s may not add clients of %s", proposer.user, m.user)
}

// checkPolicyChange decides a GroupContextExtensions proposal: a role that
// may change the policy, a valid base policy, and external_senders that
// keep the hub (a room that lists it may not drop it).
func (r *Room) checkPolicyChange(proposer actor, policy *proto.BasePolicy, ext mls.Extensions) error {
	if !proposer.system && !proto.Allows(policy.ChangePolicy, proposer.roles) {
		return notAllowed("%s may not change the room's policy", proposer.user)
	}
	if _, err := proto.PolicyOf(ext); err != nil {
		return invalid("the new group context extensions: %v", err)
	}
	if err := r.cfg.checkExternalSenders(r.group.GroupContext().CipherSuite, ext, !r.HubProposals()); err != nil {
		return invalid("the new group context extensions: %v", err)
	}
	return nil
}

// requiredCapabilities is what every member of a room with GroupContext
// extensions ext must support: MIMI's proposals (ParticipantListPatch,
// SelfRemove) so that no member can make a queued departure uncommittable,
// every non-default GroupContext extension (the base policy among them),
// and what a required_capabilities extension lists.
func requiredCapabilities(ext mls.Extensions) mls.RequiredCapabilities {
	rc := mls.RequiredCapabilities{
		Proposals: []mls.ProposalType{proto.ProposalParticipantListPatch, mls.ProposalSelfRemove},
	}
	if data, ok := ext.Find(mls.ExtRequiredCapabilities); ok {
		var listed mls.RequiredCapabilities
		if err := wire.Unmarshal(data, &listed); err == nil {
			rc.Extensions = append(rc.Extensions, listed.Extensions...)
			rc.Proposals = append(rc.Proposals, listed.Proposals...)
			rc.Credentials = append(rc.Credentials, listed.Credentials...)
		}
	}
	var defaults mls.Capabilities // supports exactly the default types
	for _, e := range ext {
		if !defaults.SupportsExtension(e.Type) {
			rc.Extensions = append(rc.Extensions, e.Type)
		}
	}
	slices.Sort(rc.Extensions)
	slices.Sort(rc.Proposals)
	slices.Sort(rc.Credentials)
	rc.Extensions, rc.Proposals, rc.Credentials = slices.Compact(rc.Extensions), slices.Compact(rc.Proposals), slices.Compact(rc.Credentials)
	return rc
}

// RequiredCapabilities is what a KeyPackage must support to be added to the
// room (seed section 7.3: a claim for the room asks for it).
func (r *Room) RequiredCapabilities() mls.RequiredCapabilities {
	return requiredCapabilities(r.group.GroupContext().Extensions)
}

// RequiredCapabilitiesOf is what every member of a room whose GroupContext
// has extensions ext must support (the hub refuses other leaves): members
// check KeyPackages against it before adding them.
func RequiredCapabilitiesOf(ext mls.Extensions) mls.RequiredCapabilities {
	return requiredCapabilities(ext)
}

// checkCapabilities refuses a new leaf that lacks what the room requires,
// or is larger than maxLeafNodeBytes.
func (r *Room) checkCapabilities(leaf *mls.LeafNode, ext mls.Extensions) error {
	if n := len(wire.MustMarshal(leaf)); n > maxLeafNodeBytes && r.rulesAt(rulesBoundedProposals) {
		return invalid("the leaf node of %s is %d bytes; a room takes at most %d", leaf.Credential.Identity, n, maxLeafNodeBytes)
	}
	rc := requiredCapabilities(ext)
	if err := rc.SatisfiedBy(&leaf.Capabilities); err != nil {
		return invalid("%s cannot be in this room: %v", leaf.Credential.Identity, err)
	}
	return nil
}

// sameClient refuses a new leaf node that names another client than the
// member it replaces: a client's identity is fixed for its life in a room.
func sameClient(m member, leaf *mls.LeafNode) error {
	n, err := memberOf(leaf)
	if err != nil {
		return invalid("new leaf node: %v", err)
	}
	if n.client != m.client {
		return invalid("%s may not become %s", m.client, n.client)
	}
	return nil
}
