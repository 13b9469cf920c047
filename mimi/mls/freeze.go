package mls

import "slices"

// Frozen returns a copy of the follower's state as it is now, for
// EncodeTLS only, while f goes on changing: a state machine takes it
// under its lock and encodes it after releasing the lock. It costs a
// frozen copy of the tree's node array (a pointer per 256 nodes; f's next
// writes copy the chunks they touch) and a copy of the pending proposal
// list, not of the encodings, which are never modified in place. The
// retained tree deltas are shared: f only appends to them or drops the
// oldest, never writes one in place.
func (f *Follower) Frozen() *Follower {
	c := *f
	c.tree = &Tree{suite: f.tree.suite, nLeaves: f.tree.nLeaves, nodes: f.tree.nodes.freeze()}
	c.pending = slices.Clone(f.pending)
	c.history = slices.Clip(f.history)
	return &c
}
