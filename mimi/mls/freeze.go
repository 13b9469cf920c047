package mls

import "slices"

// Frozen returns a copy of the follower's state as it is now, for
// EncodeTLS only, while f goes on changing. It costs a copy of the tree's
// node pointers and pending proposal list, not of their encodings: those
// are never modified in place (a changed node gets a new encoding), so
// the copy shares them. A state machine takes it under its lock and
// encodes it after releasing the lock.
func (f *Follower) Frozen() *Follower {
	c := *f
	c.tree = &Tree{suite: f.tree.suite, nLeaves: f.tree.nLeaves, nodes: slices.Clone(f.tree.nodes)}
	c.pending = slices.Clone(f.pending)
	return &c
}
