package room

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
)

// commitPlan is the room-level change a commit makes, decided by the policy
// check before the MLS state advances.
type commitPlan struct {
	participants participants
	added        []indexedMember
	touched      []proto.URI // users whose lingering status may change
	welcome      []Recipient
	// carried are the queued departures an external commit could not
	// cover: the hub proposes them again in the new epoch.
	carried []departure
}

type indexedMember struct {
	leaf mls.LeafIndex
	m    member
}

// commit sequences a commit bundle: MLS validation, then room policy, then
// the new state and its fanout.
func (r *Room) commit(from string, body *proto.UpdateRoomRequest, verified *mls.Verified, at uint64) Outcome {
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
	// The commit goes to the providers that had members before it (so
	// that removed clients learn of it), not back to its committer.
	var committer proto.URI
	if s := body.Message.Public.Content.Sender; s.Type == mls.SenderMember {
		committer = r.members.at(mls.LeafIndex(s.Index)).client
	}
	before := r.recipients(committer)
	queue := r.queuedItems()
	var plan *commitPlan
	res, err := r.group.ProcessCommitVerified(body.Message, gi, at/1000, verified, func(res *mls.CommitResult) error {
		p, err := r.planCommit(from, res, body.Welcome, queue)
		if err != nil {
			return err
		}
		if body.RatchetTree.Representation == proto.TreeFull && !r.group.Tree().EncodingEqual(body.RatchetTree.Tree) {
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
	r.queued, r.qindex = nil, queueIndex{}
	// The sweep checks more entries than the commit adds, so it keeps
	// up with the KeyPackages that expire.
	r.used.expire(at/1000, 8+2*len(res.Added))
	for _, a := range res.Added {
		if !a.KeyPackage.IsLastResort() {
			r.used.add(a.KeyPackageRef, a.KeyPackage.LeafNode.Lifetime.NotAfter)
		}
	}
	for _, rc := range plan.welcome {
		for _, ref := range rc.WelcomeRefs {
			r.takeRoute(ref)
		}
	}
	if res.External {
		before = excludeSender(before, r.members.at(res.Committer).client)
	}
	effects := []Effect{r.accept(body.Message, at, before)}
	if body.Welcome != nil {
		effects = append(effects, r.accept(body.Welcome, at, plan.welcome))
	}
	r.recordWelcomes(res.Added, at)
	effects = append(effects, r.renewQueue(res.External, plan.carried, at)...)
	out := Outcome{Response: proto.UpdateRoomResponse{Code: proto.UpdateSuccess}, Effects: effects}
	if res.External {
		out.Joined = r.members.at(res.Committer).client
	}
	return out
}

// planCommit applies the room's rules to a commit the MLS layer accepted
// (seed sections 5 and 7.4).
func (r *Room) planCommit(from string, res *mls.CommitResult, welcome *mls.Message, queue []queuedItem) (*commitPlan, error) {
	policy := r.Policy()
	ext := r.group.GroupContext().Extensions
	if res.ExtensionsChanged {
		ext = res.Extensions
	}
	before := r.participants
	after := before // persistent: changes to after leave before as it is
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
		if err := r.checkCapabilities(res.CommitterLeaf, ext); err != nil {
			return nil, err
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

	// The queue must be in this commit. An external commit can carry only
	// the SelfRemoves; the hub proposes the rest again in the new epoch.
	if err := r.checkQueueCovered(res, queue, plan); err != nil {
		return nil, err
	}

	// Proposals, in order, each authorized by its proposer's roles.
	var removals []mls.CommittedProposal
	for _, cp := range res.Proposals {
		proposer, err := r.proposer(cp, committer)
		if err != nil {
			return nil, err
		}
		p := cp.Proposal
		if !(res.External && cp.Ref == nil) { // the joiner's own ExternalInit, resync Remove and PSKs
			if err := r.checkInactive(proposer, p, cp.Sender); err != nil {
				return nil, err
			}
		}
		switch p.Type {
		case proto.ProposalParticipantListPatch:
			patch, _, err := proto.PatchOf(p, r.cfg.maxVector())
			if err != nil {
				return nil, invalid("%v", err)
			}
			if err := applyPatch(&after, before, &policy, proposer, patch); err != nil {
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
			if err := r.checkPolicyChange(proposer, &policy, p.Extensions); err != nil {
				return nil, err
			}
		case mls.ProposalRemove, mls.ProposalSelfRemove:
			removals = append(removals, cp)
		case mls.ProposalReInit:
			if !proto.Allows(policy.ChangePolicy, proposer.roles) {
				return nil, notAllowed("%s may not reinitialize the room", proposer.user)
			}
		case mls.ProposalAdd:
			m, err := memberOf(&p.KeyPackage.LeafNode)
			if err != nil {
				return nil, invalid("add: %v", err)
			}
			if err := authorizeAdd(proposer, m, &policy); err != nil && !r.cfg.planted(plantAddUnchecked) {
				return nil, err
			}
		case mls.ProposalPSK, mls.ProposalExternalInit, mls.ProposalUpdate:
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
		if res.External && cp.Ref == nil {
			if target.user != committer.user {
				return nil, notAllowed("an external commit may only remove its joiner's own earlier client, not %s's", target.user)
			}
			continue
		}
		proposer, _ := r.proposer(cp, committer)
		if err := r.authorizeRemove(proposer, target, after, &policy); err != nil {
			return nil, err
		}
	}

	// Leaves replaced by Updates or paths keep their client, and support
	// what the room requires.
	for _, u := range res.Updated {
		if m, ok := r.members.get(u.Leaf); ok {
			if err := sameClient(m, u.New); err != nil {
				return nil, err
			}
		}
		if err := r.checkCapabilities(u.New, ext); err != nil {
			return nil, err
		}
	}

	// Adds: only clients of active participants after the patch (the
	// participant list change comes before or with the Add).
	removedClients := map[proto.URI]bool{}
	for _, rm := range res.Removed {
		removedClients[r.members.at(rm.Leaf).client] = true
	}
	for _, a := range res.Added {
		m, err := memberOf(a.Node)
		if err != nil {
			return nil, invalid("add of leaf %d: %v", a.Leaf, err)
		}
		if r.wasUsed(a.KeyPackageRef) && !a.KeyPackage.IsLastResort() {
			return nil, invalid("the KeyPackage of %s was already used in this room; KeyPackages are for one use", m.client)
		}
		if err := r.checkCapabilities(a.Node, ext); err != nil {
			return nil, err
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
		// Count only the users the commit adds clients for: O(changes).
		removed := map[proto.URI]int{}
		for _, rm := range res.Removed {
			removed[r.members.at(rm.Leaf).user]++
		}
		counts := map[proto.URI]int{}
		for _, a := range plan.added {
			if _, ok := counts[a.m.user]; !ok {
				counts[a.m.user] = len(r.members.clientsOf(a.m.user)) - removed[a.m.user]
			}
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

// checkQueueCovered checks that a commit covers the queue. A regular commit
// must cover all of it. An external commit can reference only SelfRemoves
// (RFC 9420 section 12.2, draft-ietf-mls-extensions), so it must cover the
// queued ones (claimGroupInfo hands them out) and the hub carries the other
// departures over to the new epoch; a room without the hub as external
// sender cannot, and keeps the joiner waiting for a member's commit.
func (r *Room) checkQueueCovered(res *mls.CommitResult, queue []queuedItem, plan *commitPlan) error {
	for _, q := range queue {
		if slices.ContainsFunc(res.Proposals, func(cp mls.CommittedProposal) bool { return bytes.Equal(cp.Ref, q.ref) }) {
			continue
		}
		switch {
		case !res.External:
			return notAllowed("the commit must cover the queued proposal %x (%s), which the hub keeps until it is committed", q.ref, q.proposal.Type)
		case q.proposal.Type == mls.ProposalSelfRemove:
			return notAllowed("an external commit must cover the queued SelfRemove %x (claimGroupInfo hands it out)", q.ref)
		case !r.HubProposals():
			return notAllowed("the queued proposal %x (%s) must be committed first: an external commit cannot carry it, and this room's group does not list the hub as an external sender, so the hub cannot propose it again", q.ref, q.proposal.Type)
		}
		plan.carried = append(plan.carried, r.departures([]queuedItem{q})...)
	}
	return nil
}

// proposer returns who sent a committed proposal.
func (r *Room) proposer(cp mls.CommittedProposal, committer actor) (actor, error) {
	switch cp.Sender.Type {
	case mls.SenderMember:
		if cp.Ref == nil {
			return committer, nil
		}
		m, ok := r.members.get(mls.LeafIndex(cp.Sender.Index))
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
	m, ok := r.members.get(l)
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
