package room

import "slices"

// Frozen returns a copy of the room as it is now, for EncodeTLS only,
// while r goes on changing: a snapshot takes it under the state machine's
// lock and encodes it afterwards. Its cost is a copy of the lists' headers
// (participants, tree node pointers), not of the encodings they point to,
// which are never modified in place.
func (r *Room) Frozen() *Room {
	c := *r
	c.group = r.group.Frozen()
	c.participants = slices.Clone(r.participants)
	c.queued = slices.Clone(r.queued)
	c.routes = slices.Clone(r.routes)
	c.used = slices.Clone(r.used)
	c.members, c.lingering = memberIndex{}, nil // derived; not encoded
	return &c
}
