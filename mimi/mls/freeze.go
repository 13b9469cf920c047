package mls

import "slices"

// Frozen returns a copy of the follower's state as it is now, for
// EncodeTLS (and TreeAt) only, while f goes on changing: a state machine
// takes it under its lock and encodes it after releasing the lock. It
// costs a copy of the tree's node pointers and of the pending proposal
// list, not of the encodings they point to, which are never modified in
// place (a changed node gets a new encoding). The retained tree deltas
// are shared: f only appends to them or drops the oldest, never writes
// one in place.
func (f *Follower) Frozen() *Follower {
	c := *f
	c.tree = &Tree{suite: f.tree.suite, nLeaves: f.tree.nLeaves, nodes: slices.Clone(f.tree.nodes)}
	c.pending = slices.Clone(f.pending)
	c.history = slices.Clip(f.history)
	return &c
}
