package room

import (
	"maps"
	"slices"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
)

// The queue (seed section 4: "if an action cannot be committed immediately,
// the hub enqueues it and assures it is committed as soon as possible") holds
// the pending proposals the next commit must cover. DESIGN.md states the
// invariant it keeps: from every reachable state, some active member can
// make a commit the hub accepts, and a joiner can join by external commit
// if the policy lets it.

// maxOptionalPending bounds the proposals of one epoch that the hub stores
// but does not queue (Adds, Updates, patches that are not departures...). A
// full room answers notAllowed until someone commits; departures are never
// refused for it (they are bounded by the members and participants).
const maxOptionalPending = 256

// maxOptionalPendingBytes bounds the bytes of the proposals an epoch holds
// (their MLSMessage encodings) beyond which the hub refuses more optional
// ones, as maxOptionalPending bounds their number: every proposal may be
// as large as a request (16 MiB), and 256 of them would keep 4 GiB in
// every node's state until someone commits. Departures are never refused
// for it.
const maxOptionalPendingBytes = 16 << 20

// maxLeafNodeBytes bounds a leaf node the room takes in (an Add's, an
// Update's, a path's, an external joiner's; its encoding). A leaf is a few
// hundred bytes (an X.509 chain a few KiB), and RFC 9420 sets no bound:
// without one a member could put 16 MiB into the tree, which every
// GroupInfo, Welcome tree and snapshot of the room carries from then on.
const maxLeafNodeBytes = 16 << 10

// mustCommit is the queue's rule: the proposals sent by reference that the
// next commit must cover. They are the departures (SelfRemoves, Removes, a
// user's patch removing only itself) and the hub's own proposals. proposer
// is the user of the sending client ("" for the hub).
func mustCommit(sender mls.Sender, p *mls.Proposal, proposer proto.URI, maxVector int) bool {
	switch {
	case sender.Type == mls.SenderExternal:
		return true
	case p.Type == mls.ProposalSelfRemove, p.Type == mls.ProposalRemove:
		return true
	case p.Type == proto.ProposalParticipantListPatch:
		patch, ok, err := proto.PatchOf(p, maxVector)
		return err == nil && ok && isSelfRemoval(patch, proposer)
	}
	return false
}

// touches is what a proposal changes that another proposal of the same
// commit must not change too: the leaf it removes or replaces, and the
// users its patch names.
type touches struct {
	leaf    mls.LeafIndex
	hasLeaf bool
	users   []proto.URI
}

// touchesOf describes what p, sent by sender, touches.
func touchesOf(sender mls.Sender, p *mls.Proposal, maxVector int) touches {
	switch p.Type {
	case mls.ProposalRemove:
		return touches{leaf: p.Removed, hasLeaf: true}
	case mls.ProposalUpdate, mls.ProposalSelfRemove:
		if sender.Type == mls.SenderMember {
			return touches{leaf: mls.LeafIndex(sender.Index), hasLeaf: true}
		}
	case proto.ProposalParticipantListPatch:
		patch, ok, err := proto.PatchOf(p, maxVector)
		if err != nil || !ok {
			return touches{}
		}
		var t touches
		for _, u := range patch.AddUsers {
			t.users = append(t.users, u.User)
		}
		for _, u := range patch.UpdateUsers {
			t.users = append(t.users, u.User)
		}
		t.users = append(t.users, patch.RemoveUsers...)
		return t
	}
	return touches{}
}

// queuedItem is a queued proposal with what it takes away.
type queuedItem struct {
	ref      []byte
	sender   mls.Sender
	proposal *mls.Proposal
	touches
}

// queueIndex is derived from the queue: the leaves it removes and the users
// it takes off the list, each with the queued proposal's ref, so that a
// proposal is checked against the queue in constant time however many
// members are leaving.
type queueIndex struct {
	leaves map[mls.LeafIndex][]byte
	users  map[proto.URI][]byte
}

// enqueue adds a stored pending proposal to the queue.
func (r *Room) enqueue(ref []byte, sender mls.Sender, p *mls.Proposal) {
	r.queued = append(r.queued, ref)
	r.qindex.add(ref, touchesOf(sender, p, r.cfg.maxVector()), p.Type)
}

func (x *queueIndex) add(ref []byte, t touches, typ mls.ProposalType) {
	if x.leaves == nil {
		x.leaves, x.users = map[mls.LeafIndex][]byte{}, map[proto.URI][]byte{}
	}
	if t.hasLeaf && typ != mls.ProposalUpdate {
		x.leaves[t.leaf] = ref
	}
	for _, u := range t.users {
		x.users[u] = ref
	}
}

// reindexQueue rebuilds the derived queue index (after a restore, or after
// a refused batch shortened the queue).
func (r *Room) reindexQueue() {
	r.qindex = queueIndex{}
	for _, q := range r.queuedItems() {
		r.qindex.add(q.ref, q.touches, q.proposal.Type)
	}
}

// queuedItems returns the queue in order.
func (r *Room) queuedItems() []queuedItem {
	refs := make(map[string]bool, len(r.queued))
	for _, q := range r.queued {
		refs[string(q)] = true
	}
	out := make([]queuedItem, 0, len(r.queued))
	for _, pp := range r.group.PendingProposals() {
		if refs[string(pp.Ref)] {
			out = append(out, queuedItem{ref: pp.Ref, sender: pp.Sender, proposal: pp.Proposal, touches: touchesOf(pp.Sender, pp.Proposal, r.cfg.maxVector())})
		}
	}
	return out
}

// queuedRemovals returns a copy of the set of leaves the queue removes.
func (r *Room) queuedRemovals() map[mls.LeafIndex]bool {
	out := make(map[mls.LeafIndex]bool, len(r.qindex.leaves))
	for l := range r.qindex.leaves {
		out[l] = true
	}
	return out
}

// checkQueueConflicts refuses a proposal that could not be committed
// together with the queue: one that touches a leaf the queue removes, or a
// user a queued patch removes. Refusing it when proposed keeps the queue
// committable as a whole, so that no proposal can wedge the room.
func (r *Room) checkQueueConflicts(res *mls.ProposalResult) error {
	t := touchesOf(res.Sender, res.Proposal, r.cfg.maxVector())
	if ref, ok := r.qindex.leaves[t.leaf]; t.hasLeaf && ok {
		return invalid("leaf %d (%s) is already being removed: queued proposal %x takes it out in the next commit", t.leaf, r.members.at(t.leaf).client, ref)
	}
	for _, u := range t.users {
		if ref, ok := r.qindex.users[u]; ok {
			return invalid("%s is already leaving the room: queued proposal %x removes them in the next commit", u, ref)
		}
	}
	return nil
}

// departure is what a queued proposal asks for, kept across an external
// commit (which cannot cover it): a client to remove, or a user to take off
// the participant list (exactly one of the two is set).
type departure struct {
	client proto.URI
	user   proto.URI
}

func (d departure) less(o departure) bool {
	if d.client != o.client {
		return d.client < o.client
	}
	return d.user < o.user
}

// addMandates adds ds to the hub's mandates, keeping them sorted and
// unique.
func (r *Room) addMandates(ds ...departure) {
	for _, d := range ds {
		i, found := slices.BinarySearchFunc(r.mandates, d, func(a, b departure) int {
			switch {
			case a.less(b):
				return -1
			case b.less(a):
				return 1
			}
			return 0
		})
		if !found {
			r.mandates = slices.Insert(r.mandates, i, d)
		}
	}
}

// departures describes queued proposals of members as departures. The
// hub's own queued proposals are either mandates (kept in r.mandates) or
// Removes of lingering clients, which the hub works out again from the
// state after each commit rather than carry: the user may be active again
// by then.
func (r *Room) departures(items []queuedItem) []departure {
	var out []departure
	for _, q := range items {
		if q.sender.Type == mls.SenderExternal {
			continue
		}
		switch {
		case q.hasLeaf && q.proposal.Type != mls.ProposalUpdate:
			if m, ok := r.members.get(q.leaf); ok {
				out = append(out, departure{client: m.client})
			}
		case len(q.users) == 1:
			out = append(out, departure{user: q.users[0]})
		}
	}
	return out
}

// renewQueue runs after a commit, in the new epoch: the hub proposes again
// the departures the commit could not cover (an external commit covers only
// SelfRemoves; draft-ietf-mimi-protocol-06, "Fanout": the hub regenerates
// the proposals an external commit invalidated), dropping those made moot
// (the client or user is gone), and proposes the Removes of clients whose
// user is no longer an active participant (removed or banned without its
// clients: seed section 7.4's lingering clients). It returns the fanout of
// the hub's proposals. A room without the hub as external sender gets
// none.
func (r *Room) renewQueue(external bool, carried []departure, at uint64) []Effect {
	if !r.HubProposals() {
		r.mandates = nil
		return nil
	}
	// A regular commit executed the whole queue, mandates included; an
	// external one leaves them to be proposed again, with what it carried.
	if !external {
		r.mandates = nil
	}
	r.addMandates(carried...)
	r.mandates = slices.DeleteFunc(r.mandates, func(d departure) bool {
		_, member := r.members.byClient[d.client]
		return d.client != "" && !member || d.user != "" && r.participants.get(d.user) == nil
	})
	carried = r.mandates
	var effects []Effect
	propose := func(p *mls.Proposal) {
		if e, err := r.hubPropose(p, at); err == nil {
			effects = append(effects, e)
		}
	}
	removing := map[proto.URI]bool{}
	for _, d := range carried {
		if d.user != "" && r.participants.get(d.user) != nil {
			propose((&proto.ParticipantListPatch{RemoveUsers: []proto.URI{d.user}}).Proposal())
		}
	}
	for _, d := range carried {
		if l, ok := r.members.byClient[d.client]; ok && d.client != "" && !removing[d.client] {
			removing[d.client] = true
			propose(mls.RemoveProposal(l))
		}
	}
	for _, u := range slices.Sorted(maps.Keys(r.lingering)) {
		for _, c := range r.members.clientsOf(u) {
			if !removing[c] {
				removing[c] = true
				propose(mls.RemoveProposal(r.members.byClient[c]))
			}
		}
	}
	return effects
}

// CommitReferences returns what an honest member's commit covers by
// reference, from the proposals pending in its group: first every proposal
// the hub queues (a commit that leaves one out is refused), then the other
// pending proposals that combine with them, in arrival order. A proposal
// that touches a leaf or user already touched, or the member's own leaf,
// is left out, and so are the member's own Updates and SelfRemoves (MLS
// forbids committing them).
func CommitReferences(g *mls.Group, maxVector int) [][]byte {
	return commitReferences(g, nil, maxVector, true)
}

// CommitReferencesWith is CommitReferences for a commit that also carries
// the member's own proposals by value: an optional pending proposal that
// touches a leaf or user one of them touches is left out too (say, another
// admin's pending Add of the user the member adds: both together would
// name the user twice, and the hub would refuse the commit). What the hub
// queued is covered whatever the member's proposals touch.
func CommitReferencesWith(g *mls.Group, own []*mls.Proposal, maxVector int) [][]byte {
	return commitReferences(g, own, maxVector, true)
}

// QueuedReferences returns only what the hub queues, from the proposals
// pending in g: the least a commit must cover. A commit of exactly these,
// by an active member the queue does not remove, is accepted (the
// invariant in DESIGN.md); a member whose commit of CommitReferences was
// refused because of another pending proposal can fall back to it.
func QueuedReferences(g *mls.Group, maxVector int) [][]byte {
	return commitReferences(g, nil, maxVector, false)
}

func commitReferences(g *mls.Group, own []*mls.Proposal, maxVector int, optional bool) [][]byte {
	if maxVector == 0 {
		maxVector = Config{}.maxVector()
	}
	me := g.MyLeaf()
	leaves := map[mls.LeafIndex]bool{me: true}
	users := map[proto.URI]bool{}
	mark := func(t touches) {
		if t.hasLeaf {
			leaves[t.leaf] = true
		}
		for _, u := range t.users {
			users[u] = true
		}
	}
	fits := func(t touches) bool {
		if t.hasLeaf && leaves[t.leaf] || slices.ContainsFunc(t.users, func(u proto.URI) bool { return users[u] }) {
			return false
		}
		mark(t)
		return true
	}
	pending := g.PendingProposals()
	var out [][]byte
	passes := []bool{true}
	if optional {
		passes = append(passes, false)
	}
	for _, mandatory := range passes {
		if !mandatory {
			// The queue is in; now what the member's own proposals touch
			// is taken before any optional proposal.
			for _, p := range own {
				mark(touchesOf(mls.MemberSender(me), p, maxVector))
			}
		}
		for _, pp := range pending {
			if pp.Sender == mls.MemberSender(me) && (pp.Proposal.Type == mls.ProposalUpdate || pp.Proposal.Type == mls.ProposalSelfRemove) {
				continue
			}
			var proposer proto.URI
			if pp.Sender.Type == mls.SenderMember {
				if leaf, ok := g.Tree().Leaf(mls.LeafIndex(pp.Sender.Index)); ok {
					proposer, _ = proto.URI(leaf.Credential.Identity).UserOf()
				}
			}
			if mustCommit(pp.Sender, pp.Proposal, proposer, maxVector) != mandatory {
				continue
			}
			if fits(touchesOf(pp.Sender, pp.Proposal, maxVector)) {
				out = append(out, pp.Ref)
			}
		}
	}
	return out
}
