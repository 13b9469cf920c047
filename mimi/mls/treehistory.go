package mls

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/mimihub/mimi-hub/mimi/wire"
)

// A follower keeps what it needs to hand out the ratchet tree of recent
// epochs: a Welcome whose recipient fetches the tree by reference (the
// seed's byReference) needs the tree of the Welcome's epoch, which may be
// behind the current one by the time the recipient asks. Keeping whole
// trees would cost O(n) per epoch; instead, every commit records the
// encodings its nodes had before it (a reverse delta: O(log n) nodes for a
// commit with a path, plus the added and removed leaves), and a past tree is
// the current one with the deltas since undone.

// ErrTreeNotRetained means the tree of an epoch is no longer (or not yet)
// kept: a Welcome's recipient that asks too late must join by external
// commit instead.
var ErrTreeNotRetained = errors.New("mls: the tree of that epoch is not retained")

// nodeChange is a node and its encoding before a commit (nil: blank).
type nodeChange struct {
	x      nodeIndex
	before []byte
}

// treeDelta undoes one commit: the tree of epoch is the tree of epoch+1
// with width leaves and the changed nodes set back to their encodings.
type treeDelta struct {
	epoch   uint64
	width   uint32
	changes []nodeChange // ascending node index
}

// deltaOverhead is what a change costs besides its encoding, for the byte
// bound.
const deltaOverhead = 32

func (d *treeDelta) size() int {
	n := deltaOverhead
	for _, c := range d.changes {
		n += deltaOverhead + len(c.before)
	}
	return n
}

// nodeChanges returns the nodes the open transaction changed, with their
// encodings when it began, in node order; nodes changed and changed back
// are left out. The encodings are shared with no later mutation (they are
// never modified in place).
func (t *Tree) nodeChanges() []nodeChange {
	out := make([]nodeChange, 0, len(t.nodesBefore))
	for x, before := range t.nodesBefore {
		var now []byte
		if !t.blank(x) {
			now = t.nodes.get(x)
		}
		if !bytes.Equal(before, now) || (before == nil) != (now == nil) {
			out = append(out, nodeChange{x: x, before: before})
		}
	}
	slices.SortFunc(out, func(a, b nodeChange) int { return int(a.x) - int(b.x) })
	return out
}

// recordDelta keeps the reverse delta of the commit whose transaction is
// open, which ends epoch.
func (f *Follower) recordDelta(epoch uint64) {
	d := treeDelta{epoch: epoch, width: f.tree.widthBefore, changes: f.tree.nodeChanges()}
	f.history = append(f.history, d)
	f.historyBytes += d.size()
}

// RetainTreesFrom keeps what TreeAt needs for every epoch from epoch on,
// within maxBytes (the oldest epochs are forgotten first), and forgets the
// rest. With epoch beyond the current one nothing is kept. Deterministic:
// replicas that call it alike keep the same.
func (f *Follower) RetainTreesFrom(epoch uint64, maxBytes int) {
	drop := 0
	for drop < len(f.history) && (f.history[drop].epoch < epoch || f.historyBytes > maxBytes) {
		f.historyBytes -= f.history[drop].size()
		drop++
	}
	// No clear: a captured follower may still share the dropped deltas.
	f.history = f.history[drop:]
}

// TreeHistoryBytes returns the bytes the retained past trees cost.
func (f *Follower) TreeHistoryBytes() int { return f.historyBytes }

// OldestTree returns the oldest epoch whose tree TreeAt can give.
func (f *Follower) OldestTree() uint64 {
	if len(f.history) == 0 {
		return f.ctx.Epoch
	}
	return f.history[0].epoch
}

// TreeAt captures the ratchet tree of epoch: the current one, or a past
// one still retained (ErrTreeNotRetained otherwise). The capture costs a
// copy of the node pointers and the retained deltas, not of the nodes,
// and stays valid while the follower goes on.
func (f *Follower) TreeAt(epoch uint64) (*TreeView, error) {
	switch {
	case epoch > f.ctx.Epoch:
		return nil, fmt.Errorf("%w: epoch %d is after the current epoch %d", ErrTreeNotRetained, epoch, f.ctx.Epoch)
	case epoch == f.ctx.Epoch:
		return f.tree.view(), nil
	case epoch < f.OldestTree():
		return nil, fmt.Errorf("%w: epoch %d; the oldest retained is %d (now %d)", ErrTreeNotRetained, epoch, f.OldestTree(), f.ctx.Epoch)
	}
	i, _ := slices.BinarySearchFunc(f.history, epoch, func(d treeDelta, e uint64) int { return cmpUint64(d.epoch, e) })
	width := int(nodeWidth(f.history[i].width))
	overrides := map[nodeIndex][]byte{}
	// Newest first, so that the oldest delta's encoding of a node wins.
	for j := len(f.history) - 1; j >= i; j-- {
		for _, c := range f.history[j].changes {
			if int(c.x) < width {
				overrides[c.x] = c.before
			}
		}
	}
	return newTreeView(f.tree.nodes.freeze(), overrides, width), nil
}

func cmpUint64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// encodeHistory writes the retained deltas (follower state version 2).
func (f *Follower) encodeHistory(w *wire.Writer) {
	w.Vector(func(w *wire.Writer) {
		for _, d := range f.history {
			w.Uint64(d.epoch)
			w.Uint32(d.width)
			w.Vector(func(w *wire.Writer) {
				for _, c := range d.changes {
					w.Uint32(uint32(c.x))
					w.Optional(c.before != nil, func(w *wire.Writer) { w.Opaque(c.before) })
				}
			})
		}
	})
}

// decodeHistory reads the retained deltas, checking that they are
// consecutive epochs ending just before the current one, with ascending
// nodes inside their width.
func (f *Follower) decodeHistory(r *wire.Reader) {
	r.VectorEach(func(r *wire.Reader) {
		var d treeDelta
		r.Uint64(&d.epoch)
		r.Uint32(&d.width)
		r.VectorEach(func(r *wire.Reader) {
			var x uint32
			var enc []byte
			r.Uint32(&x)
			r.Optional(func(r *wire.Reader) {
				r.Opaque(&enc)
				enc = bytes.Clone(enc)
			})
			if r.OK() && len(d.changes) > 0 && nodeIndex(x) <= d.changes[len(d.changes)-1].x {
				r.Failf("tree delta of epoch %d: nodes not ascending", d.epoch)
			}
			d.changes = append(d.changes, nodeChange{x: nodeIndex(x), before: enc})
		})
		if r.OK() && len(f.history) > 0 && d.epoch != f.history[len(f.history)-1].epoch+1 {
			r.Failf("tree deltas of epochs %d and %d are not consecutive", f.history[len(f.history)-1].epoch, d.epoch)
		}
		if r.OK() && (d.width == 0 || d.width&(d.width-1) != 0 || d.width > 1<<30) {
			r.Failf("tree delta of epoch %d: width %d is not a power of two", d.epoch, d.width)
		}
		f.history = append(f.history, d)
		f.historyBytes += d.size()
	})
}

// TreeView is a ratchet tree captured at one epoch. It is immutable and
// safe for concurrent use; its encoding is written without building it
// whole (WriteTo), so a server streams a large tree to a joiner. It costs
// a frozen copy of the tree's node array (a pointer per 256 nodes) and, for
// a past epoch, the nodes that differ from the current tree.
type TreeView struct {
	base      nodeArray            // frozen
	overrides map[nodeIndex][]byte // a past epoch's nodes that differ from base
	n         int                  // nodes in the wire form: trailing blanks omitted
}

func newTreeView(base nodeArray, overrides map[nodeIndex][]byte, width int) *TreeView {
	v := &TreeView{base: base, overrides: overrides, n: width}
	for v.n > 0 && v.node(v.n-1) == nil {
		v.n--
	}
	return v
}

// node returns node i's encoding (nil: blank).
func (v *TreeView) node(i int) []byte {
	if enc, ok := v.overrides[nodeIndex(i)]; ok {
		return enc
	}
	if i < v.base.len() {
		return v.base.get(nodeIndex(i))
	}
	return nil
}

// view captures the tree as it is now.
func (t *Tree) view() *TreeView { return newTreeView(t.nodes.freeze(), nil, t.nodes.len()) }

// View captures the tree as it is now (see TreeView).
func (t *Tree) View() *TreeView { return t.view() }

// bodyLen is the length of the node vector's contents.
func (v *TreeView) bodyLen() int {
	n := 0
	for i := range v.n {
		enc := v.node(i)
		n++ // optional presence
		if enc != nil {
			n += 1 + len(enc) // node type and the node
		}
	}
	return n
}

// EncodedLen returns the length of the tree's wire form (optional<Node>
// ratchet_tree<V>).
func (v *TreeView) EncodedLen() int {
	n := v.bodyLen()
	return len(wire.AppendVarint(nil, uint64(n))) + n
}

// chunks yields the wire form in pieces: the vector header, then each
// node's presence octet, type and encoding.
func (v *TreeView) chunks(yield func([]byte) bool) {
	if !yield(wire.AppendVarint(nil, uint64(v.bodyLen()))) {
		return
	}
	absent, leaf, parent := []byte{0}, []byte{1, nodeTypeLeaf}, []byte{1, nodeTypeParent}
	for i := range v.n {
		enc := v.node(i)
		switch {
		case enc == nil:
			if !yield(absent) {
				return
			}
			continue
		case nodeIndex(i).isLeaf():
			if !yield(leaf) {
				return
			}
		default:
			if !yield(parent) {
				return
			}
		}
		if !yield(enc) {
			return
		}
	}
}

// WriteTo writes the tree's wire form to w, node by node.
func (v *TreeView) WriteTo(w io.Writer) (int64, error) {
	var n int64
	var err error
	v.chunks(func(b []byte) bool {
		var k int
		k, err = w.Write(b)
		n += int64(k)
		return err == nil
	})
	return n, err
}

// Bytes returns the tree's wire form.
func (v *TreeView) Bytes() []byte {
	out := make([]byte, 0, v.EncodedLen())
	v.chunks(func(b []byte) bool {
		out = append(out, b...)
		return true
	})
	return out
}

// Equal reports whether enc is exactly the tree's wire form, without
// building it.
func (v *TreeView) Equal(enc []byte) bool {
	if len(enc) != v.EncodedLen() {
		return false
	}
	ok := true
	v.chunks(func(b []byte) bool {
		if ok = bytes.HasPrefix(enc, b); ok {
			enc = enc[len(b):]
		}
		return ok
	})
	return ok && len(enc) == 0
}

// NumNodes returns the number of nodes in the wire form (trailing blanks
// omitted).
func (v *TreeView) NumNodes() int { return v.n }

// EncodingEqual reports whether enc is exactly the tree's wire form, with
// no copy of the tree.
func (t *Tree) EncodingEqual(enc []byte) bool {
	// No freeze: the tree does not change during the call.
	return newTreeView(t.nodes, nil, t.nodes.len()).Equal(enc)
}

// RatchetTreeHash decodes a ratchet tree in wire form for suite cs and
// returns its tree hash: what a GroupInfo's tree_hash must be for the
// tree to be the group's. It checks the encoding only (DecodeTree), not
// the tree's contents.
func RatchetTreeHash(cs CipherSuite, enc []byte, maxVector int) ([]byte, error) {
	s, err := cs.Suite()
	if err != nil {
		return nil, err
	}
	t, err := DecodeTree(s, enc, maxVector)
	if err != nil {
		return nil, err
	}
	return t.Hash(), nil
}
