package room

import "slices"

// Frozen returns a copy of the room as it is now, for EncodeTLS only,
// while r goes on changing: a snapshot takes it under the state machine's
// lock and encodes it afterwards. The participant list, the used
// KeyPackages and the Welcome records are persistent maps, copied for
// free; the group costs a copy of its tree's node pointers
// (mls.Follower.Frozen); the small lists the room edits in place (queue,
// routes, mandates, the recent messages' ring) are cloned. Derived indexes are left out.
func (r *Room) Frozen() *Room {
	c := *r
	c.group = r.group.Frozen()
	c.queued = slices.Clone(r.queued)
	c.routes = slices.Clone(r.routes)
	c.mandates = slices.Clone(r.mandates)
	c.recent = r.recent.clone()
	c.members, c.lingering, c.qindex = memberIndex{}, nil, queueIndex{}
	return &c
}
