package room

import (
	"bytes"
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
}

func (q *UpdateRoom) apply(r *Room, at uint64) Outcome {
	if q.Body == nil || q.Body.Message == nil || q.Body.Message.Public == nil {
		return respond(proto.UpdateInvalidProposal, "updateRoom without a PublicMessage")
	}
	if q.Body.IsCommit() {
		return r.commit(q.From, q.Body, at)
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
}

// memberActor describes the client at leaf l, whose provider must be from.
func (r *Room) memberActor(l mls.LeafIndex, from string) (actor, error) {
	m, ok := r.members.byLeaf[l]
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

// system is the hub itself, sending external proposals.
func (r *Room) system() actor {
	return actor{member: member{domain: r.cfg.Hub}, roles: []proto.Role{proto.RoleSystem}, active: true}
}

// proposals stores one or more proposals, all or none.
func (r *Room) proposals(from string, body *proto.UpdateRoomRequest, at uint64) Outcome {
	msgs := append([]*mls.Message{body.Message}, body.MoreProposals...)
	mark, queued, seq := r.group.PendingCount(), len(r.queued), r.seq
	var effects []Effect
	for i, m := range msgs {
		var queue bool
		res, err := r.group.ProcessProposal(m, at/1000, func(res *mls.ProposalResult) error {
			var err error
			queue, err = r.checkProposal(from, res)
			return err
		})
		if err != nil {
			r.group.TruncatePending(mark)
			r.queued, r.seq = r.queued[:queued], seq
			out := refuse(err)
			out.Response.Description = fmt.Sprintf("proposal %d: %s", i, out.Response.Description)
			return out
		}
		if queue {
			r.queued = append(r.queued, res.Ref)
		}
		effects = append(effects, r.accept(m, at, r.recipients()))
	}
	return Outcome{Response: proto.UpdateRoomResponse{Code: proto.UpdateSuccess}, Effects: effects}
}

// checkProposal applies room policy to a proposal sent by reference and
// says whether the hub must see it committed (a departure, or its own).
func (r *Room) checkProposal(from string, res *mls.ProposalResult) (queue bool, err error) {
	var a actor
	switch res.Sender.Type {
	case mls.SenderMember:
		if a, err = r.memberActor(mls.LeafIndex(res.Sender.Index), from); err != nil {
			return false, err
		}
	case mls.SenderExternal:
		if from != r.cfg.Hub {
			return false, notAllowed("only the hub sends external proposals to its rooms")
		}
		a = r.system()
	case mls.SenderNewMemberProposal:
		return false, notAllowed("new members join by external commit, not by proposing their own Add")
	default:
		return false, invalid("unexpected sender %s", res.Sender.Type)
	}
	p := res.Proposal
	if !a.active && p.Type != mls.ProposalRemove && p.Type != mls.ProposalSelfRemove {
		return false, notAllowed("%s is not an active participant; its clients may only propose Remove or SelfRemove", a.user)
	}
	policy := r.Policy()
	switch p.Type {
	case proto.ProposalParticipantListPatch:
		patch, _, err := proto.PatchOf(p, r.cfg.maxVector())
		if err != nil {
			return false, invalid("%v", err)
		}
		trial := r.participants.clone()
		if err := applyPatch(&trial, r.participants, &policy, a.user, patch); err != nil {
			return false, err
		}
		return isSelfRemoval(patch, a.user) || res.Sender.Type == mls.SenderExternal, nil
	case mls.ProposalRemove:
		target, ok := r.members.byLeaf[p.Removed]
		if !ok {
			return false, invalid("remove of leaf %d, which is not a member", p.Removed)
		}
		own := target.user == a.user
		if !own && a.active && !proto.Allows(policy.RemoveUsers, a.roles) && r.participants.active(target.user) {
			return false, notAllowed("%s may not remove %s's client", a.user, target.user)
		}
		return own || res.Sender.Type == mls.SenderExternal, nil
	case mls.ProposalSelfRemove:
		return true, nil
	case mls.ProposalUpdate:
		return false, sameClient(a.member, p.LeafNode)
	case mls.ProposalGroupContextExtensions:
		if !proto.Allows(policy.ChangePolicy, a.roles) {
			return false, notAllowed("%s may not change the room's policy", a.user)
		}
		if _, err := proto.PolicyOf(p.Extensions); err != nil {
			return false, invalid("group context extensions: %v", err)
		}
		return res.Sender.Type == mls.SenderExternal, nil
	case mls.ProposalAdd:
		m, err := memberOf(&p.KeyPackage.LeafNode)
		if err != nil {
			return false, invalid("add: %v", err)
		}
		if !proto.Allows(policy.AddUsers, a.roles) && m.user != a.user {
			return false, notAllowed("%s may not add clients of %s", a.user, m.user)
		}
		return false, nil
	case mls.ProposalPSK:
		return false, nil
	case mls.ProposalReInit:
		if !proto.Allows(policy.ChangePolicy, a.roles) {
			return false, notAllowed("%s may not reinitialize the room", a.user)
		}
		return false, nil
	}
	return false, notAllowed("proposal type %s is not used in MIMI rooms", p.Type)
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

// commitPlan is the room-level change a commit makes, decided by the policy
// check before the MLS state advances.
type commitPlan struct {
	participants participants
	added        []indexedMember
	touched      []proto.URI // users whose lingering status may change
	welcome      []Recipient
}

type indexedMember struct {
	leaf mls.LeafIndex
	m    member
}

// commit sequences a commit bundle: MLS validation, then room policy, then
// the new state and its fanout.
func (r *Room) commit(from string, body *proto.UpdateRoomRequest, at uint64) Outcome {
	if body.GroupInfo == nil || body.GroupInfo.GroupInfo == nil {
		return respond(proto.UpdateInvalidProposal, "a commit needs the GroupInfo of the new epoch")
	}
	gi := body.GroupInfo.GroupInfo
	switch body.RatchetTree.Representation {
	case proto.TreeFull, proto.TreeByReference:
	default:
		return respond(proto.UpdateInvalidProposal, "ratchet tree representation %d is not supported; send full or byReference", body.RatchetTree.Representation)
	}
	if _, ok, err := gi.ExternalPub(); err != nil || !ok {
		return respond(proto.UpdateInvalidProposal, "the GroupInfo must carry external_pub, so that clients can join by external commit")
	}
	before := r.recipients()
	var plan *commitPlan
	res, err := r.group.ProcessCommit(body.Message, gi, at/1000, func(res *mls.CommitResult) error {
		p, err := r.planCommit(from, res, body.Welcome)
		if err != nil {
			return err
		}
		if body.RatchetTree.Representation == proto.TreeFull && !bytes.Equal(body.RatchetTree.Tree, wire.MustMarshal(r.group.Tree())) {
			return invalid("the ratchet tree sent differs from the tree the commit produces")
		}
		plan = p
		return nil
	})
	if err != nil {
		if unsafeNoEpochCheck && errors.Is(err, mls.ErrWrongEpoch) {
			// Debug builds only (see epochcheck_unsafe.go): acknowledge a
			// commit that lost the race, forking the room's history in
			// the eyes of its sender, so the Jepsen harness can prove it
			// notices.
			return Outcome{Response: proto.UpdateRoomResponse{Code: proto.UpdateSuccess, Description: "UNSAFE: epoch check disabled"}}
		}
		return refuse(err)
	}
	r.participants = plan.participants
	for _, rm := range res.Removed {
		r.members.remove(rm.Leaf)
	}
	for _, a := range plan.added {
		if err := r.members.add(a.leaf, a.m); err != nil {
			panic(fmt.Sprintf("room %s: %v", r.id, err)) // planCommit checked it
		}
	}
	r.updateLingering(plan.touched)
	r.queued = nil
	for _, a := range res.Added {
		if !a.KeyPackage.IsLastResort() {
			r.markUsed(a.KeyPackageRef, a.KeyPackage.LeafNode.Lifetime.NotAfter, at/1000)
		}
	}
	for _, rc := range plan.welcome {
		for _, ref := range rc.WelcomeRefs {
			r.takeRoute(ref)
		}
	}
	effects := []Effect{r.accept(body.Message, at, before)}
	if body.Welcome != nil {
		effects = append(effects, r.accept(body.Welcome, at, plan.welcome))
	}
	out := Outcome{Response: proto.UpdateRoomResponse{Code: proto.UpdateSuccess}, Effects: effects}
	if res.External {
		out.Joined = r.members.byLeaf[res.Committer].client
	}
	return out
}

// planCommit applies the room's rules to a commit the MLS layer accepted
// (seed sections 5 and 7.4).
func (r *Room) planCommit(from string, res *mls.CommitResult, welcome *mls.Message) (*commitPlan, error) {
	policy := r.Policy()
	before := r.participants
	after := before.clone()
	plan := &commitPlan{}

	// The committer must be an active participant, or an allowed joiner.
	var committer actor
	if res.External {
		jm, err := memberOf(res.CommitterLeaf)
		if err != nil {
			return nil, invalid("joiner: %v", err)
		}
		if jm.domain != from {
			return nil, notAllowed("%s sent an external commit for %s, a client of %s", from, jm.client, jm.domain)
		}
		committer = r.actorOf(jm)
		switch p := before.get(jm.user); {
		case p != nil && p.Banned():
			return nil, notAllowed("%s is banned from the room", jm.user)
		case p == nil && policy.JoinRule != proto.Open:
			return nil, notAllowed("%s is not a participant of this members-only room", jm.user)
		case p == nil:
			after.set(jm.user, []proto.Role{proto.RoleRegularUser})
		}
		plan.added = append(plan.added, indexedMember{leaf: res.Committer, m: jm})
		plan.touched = append(plan.touched, jm.user)
	} else {
		var err error
		if committer, err = r.memberActor(res.Committer, from); err != nil {
			return nil, err
		}
		if !committer.active {
			return nil, notAllowed("%s is not an active participant and may not commit", committer.user)
		}
	}

	// Everything queued must be in this commit.
	for _, q := range r.queued {
		if !slices.ContainsFunc(res.Proposals, func(cp mls.CommittedProposal) bool { return bytes.Equal(cp.Ref, q) }) {
			return nil, notAllowed("the commit must cover the queued proposal %x (a departure the hub keeps until committed)", q)
		}
	}

	// Proposals, in order, each authorized by its proposer's roles.
	var removals []mls.CommittedProposal
	for _, cp := range res.Proposals {
		proposer, err := r.proposer(cp, committer)
		if err != nil {
			return nil, err
		}
		p := cp.Proposal
		if !proposer.active && p.Type != mls.ProposalRemove && p.Type != mls.ProposalSelfRemove && !res.External {
			return nil, notAllowed("%s is not an active participant; its clients may only remove", proposer.user)
		}
		switch p.Type {
		case proto.ProposalParticipantListPatch:
			patch, _, err := proto.PatchOf(p, r.cfg.maxVector())
			if err != nil {
				return nil, invalid("%v", err)
			}
			if err := applyPatch(&after, before, &policy, proposer.user, patch); err != nil {
				return nil, err
			}
			for _, u := range patch.AddUsers {
				plan.touched = append(plan.touched, u.User)
			}
			for _, u := range patch.UpdateUsers {
				plan.touched = append(plan.touched, u.User)
			}
			plan.touched = append(plan.touched, patch.RemoveUsers...)
		case mls.ProposalGroupContextExtensions:
			if !proto.Allows(policy.ChangePolicy, proposer.roles) {
				return nil, notAllowed("%s may not change the room's policy", proposer.user)
			}
			if _, err := proto.PolicyOf(p.Extensions); err != nil {
				return nil, invalid("the new group context extensions: %v", err)
			}
		case mls.ProposalRemove, mls.ProposalSelfRemove:
			removals = append(removals, cp)
		case mls.ProposalReInit:
			if !proto.Allows(policy.ChangePolicy, proposer.roles) {
				return nil, notAllowed("%s may not reinitialize the room", proposer.user)
			}
		case mls.ProposalAdd, mls.ProposalPSK, mls.ProposalExternalInit, mls.ProposalUpdate:
		default:
			return nil, notAllowed("proposal type %s is not used in MIMI rooms", p.Type)
		}
	}

	// Removes: of one's own clients, by a role that may remove users, or of
	// clients whose user is no longer an active participant.
	for _, cp := range removals {
		target, err := r.removedMember(cp)
		if err != nil {
			return nil, err
		}
		plan.touched = append(plan.touched, target.user)
		if cp.Proposal.Type == mls.ProposalSelfRemove {
			continue
		}
		if res.External && target.user != committer.user {
			return nil, notAllowed("an external commit may only remove its joiner's own earlier client, not %s's", target.user)
		}
		proposer, _ := r.proposer(cp, committer)
		own := target.user == proposer.user
		if !own && !proto.Allows(policy.RemoveUsers, proposer.roles) && after.active(target.user) {
			return nil, notAllowed("%s may not remove a client of %s, an active participant", proposer.user, target.user)
		}
	}

	// Leaves replaced by Updates or paths keep their client.
	for _, u := range res.Updated {
		if m, ok := r.members.byLeaf[u.Leaf]; ok {
			if err := sameClient(m, u.New); err != nil {
				return nil, err
			}
		}
	}

	// Adds: only clients of active participants after the patch (the
	// participant list change comes before or with the Add).
	removedClients := map[proto.URI]bool{}
	for _, rm := range res.Removed {
		removedClients[r.members.byLeaf[rm.Leaf].client] = true
	}
	for _, a := range res.Added {
		m, err := memberOf(a.Node)
		if err != nil {
			return nil, invalid("add of leaf %d: %v", a.Leaf, err)
		}
		if r.wasUsed(a.KeyPackageRef) && !a.KeyPackage.IsLastResort() {
			return nil, invalid("the KeyPackage of %s was already used in this room; KeyPackages are for one use", m.client)
		}
		if !after.active(m.user) {
			return nil, notAllowed("%s is added but %s is not an active participant after this commit", m.client, m.user)
		}
		plan.added = append(plan.added, indexedMember{leaf: a.Leaf, m: m})
		plan.touched = append(plan.touched, m.user)
	}
	seen := map[proto.URI]bool{}
	for _, a := range plan.added {
		if _, present := r.members.byClient[a.m.client]; (present && !removedClients[a.m.client]) || seen[a.m.client] {
			return nil, invalid("client %s would be in the group twice", a.m.client)
		}
		seen[a.m.client] = true
	}
	if !policy.MultipleClients {
		counts := map[proto.URI]int{}
		for u, cs := range r.members.byUser {
			counts[u] = len(cs)
		}
		for _, rm := range res.Removed {
			counts[r.members.byLeaf[rm.Leaf].user]--
		}
		for _, a := range plan.added {
			if counts[a.m.user]++; counts[a.m.user] > 1 {
				return nil, notAllowed("the room allows one client per user, and %s would have more", a.m.user)
			}
		}
	}
	if err := r.planWelcome(plan, res, welcome); err != nil {
		return nil, err
	}
	plan.participants = after
	slices.Sort(plan.touched)
	plan.touched = slices.Compact(plan.touched)
	return plan, nil
}

// proposer returns who sent a committed proposal.
func (r *Room) proposer(cp mls.CommittedProposal, committer actor) (actor, error) {
	switch cp.Sender.Type {
	case mls.SenderMember:
		if cp.Ref == nil {
			return committer, nil
		}
		m, ok := r.members.byLeaf[mls.LeafIndex(cp.Sender.Index)]
		if !ok {
			return actor{}, invalid("proposal from leaf %d, which is not a member", cp.Sender.Index)
		}
		return r.actorOf(m), nil
	case mls.SenderNewMemberCommit:
		return committer, nil
	case mls.SenderExternal:
		return r.system(), nil
	}
	return actor{}, notAllowed("proposals from %s senders are not used in MIMI rooms", cp.Sender.Type)
}

// removedMember returns the client a Remove or SelfRemove takes out.
func (r *Room) removedMember(cp mls.CommittedProposal) (member, error) {
	l := cp.Proposal.Removed
	if cp.Proposal.Type == mls.ProposalSelfRemove {
		l = mls.LeafIndex(cp.Sender.Index)
	}
	m, ok := r.members.byLeaf[l]
	if !ok {
		return member{}, invalid("removal of leaf %d, which is not a member", l)
	}
	return m, nil
}

// planWelcome checks the Welcome covers exactly the added clients and
// addresses it: each added client's provider is the one that served its
// KeyPackage through the hub, or else the client's own domain.
func (r *Room) planWelcome(plan *commitPlan, res *mls.CommitResult, welcome *mls.Message) error {
	if len(res.Added) == 0 {
		if welcome != nil {
			return invalid("the commit adds nobody but comes with a Welcome")
		}
		return nil
	}
	if welcome == nil || welcome.Welcome == nil {
		return invalid("the commit adds %d clients but comes without a Welcome", len(res.Added))
	}
	w := welcome.Welcome
	if len(w.Secrets) != len(res.Added) {
		return invalid("the Welcome holds %d entries for %d added clients", len(w.Secrets), len(res.Added))
	}
	byDomain := map[string][][]byte{}
	for _, a := range res.Added {
		if _, ok := w.FindSecrets(a.KeyPackageRef); !ok {
			return invalid("the Welcome has no entry for the KeyPackage of leaf %d", a.Leaf)
		}
		domain, ok := r.routeOf(a.KeyPackageRef)
		if !ok {
			m, _ := memberOf(a.Node)
			domain = m.domain
		}
		byDomain[domain] = append(byDomain[domain], a.KeyPackageRef)
	}
	domains := make([]string, 0, len(byDomain))
	for d := range byDomain {
		domains = append(domains, d)
	}
	slices.Sort(domains)
	for _, d := range domains {
		plan.welcome = append(plan.welcome, Recipient{Domain: d, WelcomeRefs: byDomain[d]})
	}
	return nil
}

// routeOf returns the provider that served ref, without forgetting it (the
// commit may still be refused); commit forgets used routes.
func (r *Room) routeOf(ref []byte) (string, bool) {
	i, found := slices.BinarySearchFunc(r.routes, ref, func(a Route, ref []byte) int { return bytes.Compare(a.Ref, ref) })
	if !found {
		return "", false
	}
	return r.routes[i].Domain, true
}
