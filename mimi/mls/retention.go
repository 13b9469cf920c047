package mls

import (
	"fmt"
	"slices"
)

// Past epochs. A member keeps the message-protection state of a few epochs
// after a commit ends them, so that an application message sent in an
// epoch but delivered after the commit that ended it (it crossed the commit
// at the hub, or the member merged its own commit before reading its
// stream) still decrypts. RFC 9420 section 15.3 and RFC 9750 (the MLS
// architecture) leave how long to keep such keys to the application.
// DESIGN.md ("Past epochs") explains what is kept and what it costs.

// DefaultPastEpochs is how many past epochs a group keeps when
// GroupOptions.PastEpochs is zero.
const DefaultPastEpochs = 2

// NoPastEpochs, as GroupOptions.PastEpochs, keeps no past epoch: an
// application message of an epoch that ended is refused, as a handshake
// message always is.
const NoPastEpochs = -1

// MaxPastEpochs bounds GroupOptions.PastEpochs (larger values mean this),
// how old a held epoch may be (HoldEpoch), and the past epochs a group or
// a saved state may keep.
const MaxPastEpochs = 64

// ErrEpochNotRetained reports an application message of a past epoch whose
// keys this member no longer keeps (it is older than GroupOptions.PastEpochs
// epochs, or the member joined later). It wraps ErrWrongEpoch.
var ErrEpochNotRetained = fmt.Errorf("%w: the keys of the message's epoch are no longer kept", ErrWrongEpoch)

// pastEpochs returns how many past epochs the options keep.
func (o *GroupOptions) pastEpochs() int {
	switch {
	case o.PastEpochs == 0:
		return DefaultPastEpochs
	case o.PastEpochs < 0:
		return 0
	}
	return min(o.PastEpochs, MaxPastEpochs)
}

// pastEpoch is what a member keeps of an epoch a commit ended: enough to
// decrypt and authenticate application messages sent in it, and nothing
// for handshake messages (those must be for the current epoch, RFC 9420
// section 12).
type pastEpoch struct {
	epoch uint64
	// ctxEnc is the epoch's GroupContext, encoded: application messages of
	// members are signed over it (FramedContentTBS).
	ctxEnc []byte
	// keys holds the epoch's sender data secret and its secret tree in
	// application-only mode; no membership key (PublicMessages of a past
	// epoch are refused).
	keys *messageKeys
	// leaves holds the leaves of this epoch (below its width, which is the
	// secret tree's) that differ in the next epoch, nil for a leaf blank in
	// this one. A leaf that no change from here to the current epoch names
	// is the current tree's, so an epoch costs only the leaves its commit
	// changed; the encodings are shared with nothing that changes them.
	leaves map[LeafIndex][]byte
}

// retireEpoch captures what late application messages of the current
// epoch need, while the commit that ends the epoch still has the tree's
// transaction open (so the leaves it changed are known). The caller has
// checked the commit: the epoch does end. It returns nil when no past epoch
// is kept, or when there is no epoch to keep (an external joiner's first
// commit).
func (g *Group) retireEpoch() *pastEpoch {
	if g.opts.pastEpochs() == 0 || g.keys == nil {
		return nil
	}
	st := g.keys.tree
	st.retire()
	leaves := g.tree.leafChanges()
	for l := range leaves {
		// A leaf the commit added beyond the epoch's width was not in it.
		if uint32(l) >= st.nLeaves {
			delete(leaves, l)
		}
	}
	return &pastEpoch{
		epoch:  g.ctx.Epoch,
		ctxEnc: g.ctxEnc,
		keys:   &messageKeys{suite: g.suite, epoch: g.ctx.Epoch, senderData: g.keys.senderData, tree: st},
		leaves: leaves,
	}
}

// keepPast adds the epoch that just ended (nil for none) to the kept ones
// and forgets those beyond the limit, oldest first.
func (g *Group) keepPast(p *pastEpoch) {
	if p != nil {
		g.past = append(g.past, p)
	}
	g.trimPast()
}

// HoldEpoch keeps past epoch e, whatever GroupOptions.PastEpochs says,
// until ReleaseEpochs releases it; then it counts against PastEpochs like
// any past epoch. It is meant for an epoch this member's own commit ended:
// the member merges its commit when the hub accepts it, while application
// messages of the epoch, which the hub sequenced before the commit, may
// still be on their way to it. A late sender's leaf is found through the
// epochs after its own, so holding e keeps every later past epoch too.
//
// Held epochs are bounded: an epoch more than MaxPastEpochs epochs before
// the current one is forgotten, held or not, and its late messages are
// refused with ErrEpochNotRetained. Holding is part of the saved state.
// HoldEpoch reports false, holding nothing, when the group does not keep e
// (it is not a past epoch, was dropped already, or the group keeps no past
// epochs: NoPastEpochs holds nothing either).
func (g *Group) HoldEpoch(e uint64) bool {
	if !slices.ContainsFunc(g.past, func(p *pastEpoch) bool { return p.epoch == e }) {
		return false
	}
	if i, found := slices.BinarySearch(g.held, e); !found {
		g.held = slices.Insert(g.held, i, e)
	}
	return true
}

// ReleaseEpochs stops holding the epochs before epoch before (see
// HoldEpoch): from now on they count against GroupOptions.PastEpochs, so
// those beyond it are forgotten at once.
func (g *Group) ReleaseEpochs(before uint64) {
	n, _ := slices.BinarySearch(g.held, before)
	if n == 0 {
		return
	}
	g.held = slices.Delete(g.held, 0, n)
	g.trimPast()
}

// HeldEpochs lists the epochs the group holds (HoldEpoch), oldest first.
func (g *Group) HeldEpochs() []uint64 { return slices.Clone(g.held) }

// trimPast forgets the oldest past epochs beyond the limit: the last
// PastEpochs epochs, extended back to the oldest held epoch, and never
// more than MaxPastEpochs. Dropping the oldest never loses a leaf a newer
// epoch needs: lookups only walk towards the current epoch.
func (g *Group) trimPast() {
	n := g.opts.pastEpochs()
	cur := g.ctx.Epoch
	g.held = slices.DeleteFunc(g.held, func(e uint64) bool { return n == 0 || cur-e > MaxPastEpochs })
	if len(g.held) > 0 {
		n = max(n, int(cur-g.held[0]))
	}
	if len(g.past) > n {
		drop := len(g.past) - n
		clear(g.past[:drop])
		g.past = append(g.past[:0], g.past[drop:]...)
	}
	if len(g.past) == 0 {
		g.past = nil
	}
	if len(g.held) == 0 {
		g.held = nil
	}
}

// forgetPast deletes every past epoch's secrets, held ones included.
func (g *Group) forgetPast() { g.past, g.held = nil, nil }

// pastEpochFor returns the kept epoch a PrivateMessage not of the current
// epoch belongs to. Only application messages of a kept past epoch qualify;
// anything else is refused with ErrWrongEpoch (or ErrEpochNotRetained,
// which wraps it).
func (g *Group) pastEpochFor(pm *PrivateMessage) (*pastEpoch, error) {
	cur := g.ctx.Epoch
	switch {
	case pm.Epoch > cur:
		return nil, rejectf(ErrWrongEpoch, "message for epoch %d, the group is at epoch %d", pm.Epoch, cur)
	case pm.ContentType != ContentApplication:
		return nil, rejectf(ErrWrongEpoch, "%s for epoch %d, the group is at epoch %d: handshake messages must be for the current epoch", pm.ContentType, pm.Epoch, cur)
	}
	for _, p := range g.past {
		if p.epoch == pm.Epoch {
			return p, nil
		}
	}
	kept := "no past epoch"
	if len(g.past) > 0 {
		kept = fmt.Sprintf("epochs %d to %d", g.past[0].epoch, g.past[len(g.past)-1].epoch)
	}
	return nil, rejectf(ErrEpochNotRetained, "message for epoch %d; the group is at epoch %d and keeps %s", pm.Epoch, cur, kept)
}

// pastIndex returns the position of p in g.past.
func (g *Group) pastIndex(p *pastEpoch) int {
	for i, q := range g.past {
		if q == p {
			return i
		}
	}
	return -1
}

// leafIn returns the encoding of leaf l in the i-th kept past epoch
// (len(g.past) for the current epoch), or false when it was blank or
// outside that epoch's tree: the first change recorded from that epoch
// towards the current one, or else the current tree's leaf.
func (g *Group) leafIn(i int, l LeafIndex) ([]byte, bool) {
	for ; i < len(g.past); i++ {
		p := g.past[i]
		if uint32(l) >= p.keys.tree.nLeaves {
			return nil, false
		}
		if enc, ok := p.leaves[l]; ok {
			return enc, enc != nil
		}
	}
	x := leafNode(l)
	if uint32(l) >= g.tree.nLeaves || g.tree.blank(x) {
		return nil, false
	}
	return g.tree.nodes.get(x), true
}

// applicationSender returns the leaf node of the member that sent an
// application message, in the message's epoch (past is nil for the current
// one), and the encoded GroupContext its signature covers.
func (g *Group) applicationSender(past *pastEpoch, leaf uint32) (*LeafNode, []byte, error) {
	if past == nil {
		node, ok := g.tree.Leaf(LeafIndex(leaf))
		if !ok {
			return nil, nil, rejectf(ErrUnknownSender, "leaf %d is not a member", leaf)
		}
		return node, g.ctxEnc, nil
	}
	i := g.pastIndex(past)
	if i < 0 {
		return nil, nil, rejectf(ErrEpochNotRetained, "epoch %d is no longer kept", past.epoch)
	}
	enc, ok := g.leafIn(i, LeafIndex(leaf))
	if !ok {
		return nil, nil, rejectf(ErrUnknownSender, "leaf %d was not a member in epoch %d", leaf, past.epoch)
	}
	return mustDecodeLeaf(enc), past.ctxEnc, nil
}
