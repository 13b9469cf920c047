package mls

import (
	"bytes"
	"fmt"
	"iter"
	"slices"

	"github.com/mimihub/mimi-hub/mimi/wire"
)

// ParentNode is an interior node of the ratchet tree (RFC 9420 section 7.1).
type ParentNode struct {
	EncryptionKey  []byte
	ParentHash     []byte
	UnmergedLeaves []LeafIndex
}

// EncodeTLS writes the parent node.
func (p *ParentNode) EncodeTLS(w *wire.Writer) {
	w.Opaque(p.EncryptionKey)
	w.Opaque(p.ParentHash)
	w.Vector(func(w *wire.Writer) {
		for _, l := range p.UnmergedLeaves {
			w.Uint32(uint32(l))
		}
	})
}

// DecodeTLS reads the parent node.
func (p *ParentNode) DecodeTLS(r *wire.Reader) {
	r.Opaque(&p.EncryptionKey)
	r.Opaque(&p.ParentHash)
	p.UnmergedLeaves = nil
	r.VectorEach(func(r *wire.Reader) {
		var l uint32
		r.Uint32(&l)
		p.UnmergedLeaves = append(p.UnmergedLeaves, LeafIndex(l))
	})
}

const (
	nodeTypeLeaf   = 1
	nodeTypeParent = 2
)

// Tree is the public state of a ratchet tree: what a hub and every member
// agree on. It stores each node as its encoding (a leaf's LeafNode or a
// parent's ParentNode) and decodes on access; that keeps a member's cost near
// the size of its leaf encoding. Tree hashes are cached per node, so a change
// to k nodes costs O(k log n) hashes. Keys are indexed for the uniqueness
// checks, and the capabilities of all members are counted so "do all members
// support X" is a map lookup.
//
// Mutations made between begin and rollback are undone by rollback, so a
// failed commit leaves the tree exactly as it was.
type Tree struct {
	suite   *Suite
	nLeaves uint32    // a power of two, or 0 for an empty tree
	nodes   nodeArray // node encodings by node index; nil is blank
	// freeHint is a lower bound on the leftmost blank leaf, so adding a
	// member does not scan the members before it.
	freeHint LeafIndex

	hashes  []byte   // cached tree hashes, suite.nh bytes per node
	hashSet []uint64 // bitset: cached hash of node i is current

	encKeys keyIndex // HPKE keys of every non-blank node
	sigKeys keyIndex // signature keys of every leaf
	caps    capabilityCounts

	undo []func() // non-nil while a transaction is open
	// nodesBefore holds, for every node the open transaction changed, its
	// encoding when the transaction began (nil for blank): the leaves are
	// what a member keeps of an epoch's membership once a commit ends it,
	// all of them what a follower keeps to rebuild an earlier epoch's tree
	// (treehistory.go). widthBefore is the width in leaves then.
	nodesBefore map[nodeIndex][]byte
	widthBefore uint32
}

// newTree returns an empty tree for suite s.
func newTree(s *Suite) *Tree {
	return &Tree{suite: s, nodes: newNodeArray(), encKeys: newKeyIndex(), sigKeys: newKeyIndex(), caps: newCapabilityCounts()}
}

// DecodeTree reads a ratchet tree in its wire form (optional<Node>
// ratchet_tree<V>, RFC 9420 section 12.4.3.3) without validating its
// contents; Validate does that. maxVector bounds every vector, as in
// wire.UnmarshalLimit.
func DecodeTree(s *Suite, data []byte, maxVector int) (*Tree, error) {
	t := newTree(s)
	var raw [][]byte
	// The leaves as decoded here, so indexing them needs no second
	// decode (restoring a room of 100,000 members decodes each once).
	var leaves map[nodeIndex]*LeafNode
	r := wire.NewReader(data)
	r.SetMaxVector(maxVector)
	r.VectorEach(func(r *wire.Reader) {
		x := nodeIndex(len(raw))
		var enc []byte
		r.Optional(func(r *wire.Reader) {
			var typ uint8
			r.Uint8(&typ)
			switch {
			case !r.OK():
			case typ == nodeTypeLeaf && x.isLeaf():
				leaf := new(LeafNode)
				enc = r.Capture(leaf.DecodeTLS)
				if leaves == nil {
					leaves = map[nodeIndex]*LeafNode{}
				}
				leaves[x] = leaf
			case typ == nodeTypeParent && !x.isLeaf():
				enc = r.Capture(func(r *wire.Reader) { new(ParentNode).DecodeTLS(r) })
			case x.isLeaf():
				r.Failf("node %d is a leaf position but has node type %d", x, typ)
			default:
				r.Failf("node %d is a parent position but has node type %d", x, typ)
			}
		})
		// Copy, so the tree does not pin the caller's buffer.
		raw = append(raw, bytes.Clone(enc))
	})
	if err := r.Finish(); err != nil {
		return nil, fmt.Errorf("decode ratchet tree: %w", err)
	}
	if len(raw) == 0 {
		return nil, fmt.Errorf("decode ratchet tree: the tree has no nodes")
	}
	if raw[len(raw)-1] == nil {
		return nil, fmt.Errorf("decode ratchet tree: the last node is blank (trailing blanks must be omitted)")
	}
	if len(raw)%2 == 0 {
		return nil, fmt.Errorf("decode ratchet tree: %d nodes cannot end on a leaf", len(raw))
	}
	n := uint32(1)
	for nodeWidth(n) < uint32(len(raw)) {
		n *= 2
	}
	t.resize(n)
	for i, enc := range raw {
		if enc != nil {
			if err := t.setRawDecoded(nodeIndex(i), enc, leaves[nodeIndex(i)]); err != nil {
				return nil, fmt.Errorf("decode ratchet tree: node %d: %w", i, err)
			}
		}
	}
	return t, nil
}

// EncodeTLS writes the tree in its wire form, omitting trailing blank nodes.
func (t *Tree) EncodeTLS(w *wire.Writer) {
	last := t.nodes.len() - 1
	for last >= 0 && t.nodes.get(nodeIndex(last)) == nil {
		last--
	}
	w.Vector(func(w *wire.Writer) {
		for i := 0; i <= last; i++ {
			enc := t.nodes.get(nodeIndex(i))
			w.Optional(enc != nil, func(w *wire.Writer) {
				if nodeIndex(i).isLeaf() {
					w.Uint8(nodeTypeLeaf)
				} else {
					w.Uint8(nodeTypeParent)
				}
				w.Raw(enc)
			})
		}
	})
}

// Suite returns the tree's cipher suite.
func (t *Tree) Suite() *Suite { return t.suite }

// NumLeaves returns the tree's width in leaves, blank leaves included.
func (t *Tree) NumLeaves() uint32 { return t.nLeaves }

// NumMembers returns the number of non-blank leaves.
func (t *Tree) NumMembers() int { return t.caps.members }

func (t *Tree) blank(x nodeIndex) bool { return int(x) >= t.nodes.len() || t.nodes.get(x) == nil }

// Leaf decodes the leaf at l; ok is false for a blank or out-of-range leaf.
func (t *Tree) Leaf(l LeafIndex) (leaf *LeafNode, ok bool) {
	x := leafNode(l)
	if uint32(l) >= t.nLeaves || t.blank(x) {
		return nil, false
	}
	return mustDecodeLeaf(t.nodes.get(x)), true
}

// MemberCredentials yields the credential of every non-blank leaf in index
// order, read from the leaf's encoding without decoding the rest: what an
// index of members by identity needs, at a fraction of Members' cost.
func (t *Tree) MemberCredentials() iter.Seq2[LeafIndex, Credential] {
	return func(yield func(LeafIndex, Credential) bool) {
		for l := uint32(0); l < t.nLeaves; l++ {
			x := leafNode(LeafIndex(l))
			if t.blank(x) {
				continue
			}
			r := wire.NewReader(t.nodes.get(x))
			var ek, sk []byte
			var c Credential
			r.Opaque(&ek)
			r.Opaque(&sk)
			c.DecodeTLS(r)
			if !r.OK() {
				panic(fmt.Sprintf("mls: stored leaf %d does not decode: %v", l, r.Err()))
			}
			if !yield(LeafIndex(l), c) {
				return
			}
		}
	}
}

// Members yields every non-blank leaf in index order.
func (t *Tree) Members() iter.Seq2[LeafIndex, *LeafNode] {
	return func(yield func(LeafIndex, *LeafNode) bool) {
		for l := uint32(0); l < t.nLeaves; l++ {
			if leaf, ok := t.Leaf(LeafIndex(l)); ok && !yield(LeafIndex(l), leaf) {
				return
			}
		}
	}
}

func (t *Tree) parentNode(x nodeIndex) (*ParentNode, bool) {
	if t.blank(x) {
		return nil, false
	}
	p := new(ParentNode)
	if err := wire.Unmarshal(t.nodes.get(x), p); err != nil {
		panic(fmt.Sprintf("mls: stored parent node %d does not decode: %v", x, err))
	}
	return p, true
}

// encryptionKey returns the HPKE key of a non-blank node.
func (t *Tree) encryptionKey(x nodeIndex) []byte {
	// Both LeafNode and ParentNode start with encryption_key<V>.
	r := wire.NewReader(t.nodes.get(x))
	var k []byte
	r.Opaque(&k)
	return k
}

// signatureKey returns the signature key of a non-blank leaf node.
func (t *Tree) signatureKey(x nodeIndex) []byte {
	r := wire.NewReader(t.nodes.get(x))
	var ek, sk []byte
	r.Opaque(&ek)
	r.Opaque(&sk)
	return sk
}

func mustDecodeLeaf(enc []byte) *LeafNode {
	leaf := new(LeafNode)
	if err := wire.Unmarshal(enc, leaf); err != nil {
		panic(fmt.Sprintf("mls: stored leaf node does not decode: %v", err))
	}
	return leaf
}

// begin opens a transaction: every mutation until commit or rollback is
// recorded so rollback can undo it.
func (t *Tree) begin() { t.undo, t.nodesBefore, t.widthBefore = []func(){}, nil, t.nLeaves }

// commit closes the transaction and keeps its changes.
func (t *Tree) commit() { t.undo, t.nodesBefore = nil, nil }

// rollback undoes every mutation since begin, newest first.
func (t *Tree) rollback() {
	u := t.undo
	t.undo, t.nodesBefore = nil, nil
	for i := len(u) - 1; i >= 0; i-- {
		u[i]()
	}
}

// leafChanges returns, for every leaf whose encoding the open transaction
// changed, the encoding it had when the transaction began (nil for a blank
// leaf). Leaves changed and changed back are left out, so the result is
// exactly the leaves that differ between the tree before and after, and
// what it holds is shared with no later mutation (encodings are never
// modified in place).
func (t *Tree) leafChanges() map[LeafIndex][]byte {
	out := map[LeafIndex][]byte{}
	for x, before := range t.nodesBefore {
		if !x.isLeaf() {
			continue
		}
		l := x.leaf()
		var now []byte
		if x := leafNode(l); !t.blank(x) && uint32(l) < t.nLeaves {
			now = t.nodes.get(x)
		}
		if !bytes.Equal(before, now) || (before == nil) != (now == nil) {
			out[l] = before
		}
	}
	return out
}

// resize sets the width to n leaves (a power of two), dropping or adding
// blank nodes on the right. The hash cache keeps its capacity so that a tree
// that shrinks and grows again does not rehash its blank right half.
func (t *Tree) resize(n uint32) {
	old := t.nLeaves
	if t.undo != nil {
		t.undo = append(t.undo, func() { t.resize(old) })
	}
	oldRoot, w := root(old), int(nodeWidth(n))
	t.nodes.resize(w)
	t.nLeaves = n
	if need := w * t.suite.nh; need > len(t.hashes) {
		t.hashes = append(t.hashes, make([]byte, need-len(t.hashes))...)
	}
	if need := (w + 63) / 64; need > len(t.hashSet) {
		t.hashSet = append(t.hashSet, make([]uint64, need-len(t.hashSet))...)
	}
	// The old and new roots change role (their subtree width changes).
	if old > 0 {
		t.invalidate(oldRoot)
	}
	if n > 0 {
		t.invalidate(root(n))
	}
}

// setRaw stores enc (nil for blank) at x, keeping indexes and the hash cache
// current. It fails, changing nothing, if the new node's keys collide with
// another node's.
func (t *Tree) setRaw(x nodeIndex, enc []byte) error { return t.setRawDecoded(x, enc, nil) }

// setRawDecoded is setRaw with enc's leaf node already decoded (nil: decode
// it when needed).
func (t *Tree) setRawDecoded(x nodeIndex, enc []byte, leaf *LeafNode) error {
	old := t.nodes.get(x)
	if old != nil {
		t.unindex(x, old)
	}
	if enc != nil {
		if err := t.index(x, enc, leaf); err != nil {
			if old != nil {
				if err2 := t.index(x, old, nil); err2 != nil {
					panic(err2)
				}
			}
			return err
		}
	}
	if t.undo != nil {
		if _, seen := t.nodesBefore[x]; !seen {
			if t.nodesBefore == nil {
				t.nodesBefore = map[nodeIndex][]byte{}
			}
			t.nodesBefore[x] = old
		}
	}
	t.nodes.set(x, enc)
	if enc == nil && x.isLeaf() && x.leaf() < t.freeHint {
		t.freeHint = x.leaf()
	}
	if t.undo != nil {
		t.undo = append(t.undo, func() {
			if err := t.setRaw(x, old); err != nil {
				panic(fmt.Sprintf("mls: undo of node %d: %v", x, err))
			}
		})
	}
	for y := x; ; y = y.parent() {
		t.invalidate(y)
		if y == root(t.nLeaves) || y.level() >= 31 {
			break
		}
	}
	return nil
}

func (t *Tree) index(x nodeIndex, enc []byte, leaf *LeafNode) error {
	var ek, sk []byte
	r := wire.NewReader(enc)
	r.Opaque(&ek)
	if x.isLeaf() {
		r.Opaque(&sk)
	}
	if y, dup := t.encKeys.find(ek, t.encryptionKey); dup && y != x {
		return &DuplicateKeyError{Kind: "encryption key", Node: uint32(x), Other: uint32(y)}
	}
	if x.isLeaf() {
		if y, dup := t.sigKeys.find(sk, t.signatureKey); dup && y != x {
			return &DuplicateKeyError{Kind: "signature key", Node: uint32(x), Other: uint32(y)}
		}
		t.sigKeys.add(sk, x)
		if leaf == nil {
			leaf = mustDecodeLeaf(enc)
		}
		t.caps.add(leaf, 1)
	}
	t.encKeys.add(ek, x)
	return nil
}

func (t *Tree) unindex(x nodeIndex, enc []byte) {
	var ek, sk []byte
	r := wire.NewReader(enc)
	r.Opaque(&ek)
	t.encKeys.remove(ek, x)
	if x.isLeaf() {
		r.Opaque(&sk)
		t.sigKeys.remove(sk, x)
		t.caps.add(mustDecodeLeaf(enc), -1)
	}
}

// DuplicateKeyError reports a key that already appears elsewhere in the tree
// (RFC 9420 sections 7.3 and 12.4.2).
type DuplicateKeyError struct {
	Kind        string
	Node, Other uint32
}

func (e *DuplicateKeyError) Error() string {
	return fmt.Sprintf("%s of node %d already appears at node %d", e.Kind, e.Node, e.Other)
}

func (t *Tree) setLeaf(l LeafIndex, leaf *LeafNode) error {
	enc, err := wire.Marshal(leaf)
	if err != nil {
		return err
	}
	return t.setRaw(leafNode(l), enc)
}

func (t *Tree) setParent(x nodeIndex, p *ParentNode) error {
	enc, err := wire.Marshal(p)
	if err != nil {
		return err
	}
	return t.setRaw(x, enc)
}

// ---- tree hashes (RFC 9420 section 7.8) ----

func (t *Tree) invalidate(x nodeIndex) {
	if int(x)/64 < len(t.hashSet) {
		t.hashSet[x/64] &^= 1 << (x % 64)
	}
}

// Hash returns the tree hash of the root.
func (t *Tree) Hash() []byte {
	if t.nLeaves == 0 {
		return nil
	}
	return bytes.Clone(t.nodeHash(root(t.nLeaves)))
}

// nodeHash returns the cached tree hash of x, computing what is stale. The
// result aliases the cache.
func (t *Tree) nodeHash(x nodeIndex) []byte {
	nh := t.suite.nh
	slot := t.hashes[int(x)*nh : int(x+1)*nh]
	if t.hashSet[x/64]&(1<<(x%64)) != 0 {
		return slot
	}
	var h []byte
	if x.isLeaf() {
		h = t.leafHash(x, t.nodes.get(x))
	} else {
		h = t.parentHashInput(t.nodes.get(x), t.nodeHash(x.left()), t.nodeHash(x.right()))
	}
	copy(slot, h)
	t.hashSet[x/64] |= 1 << (x % 64)
	return slot
}

func (t *Tree) leafHash(x nodeIndex, enc []byte) []byte {
	var w wire.Writer
	w.Uint8(nodeTypeLeaf)
	w.Uint32(uint32(x.leaf()))
	w.Optional(enc != nil, func(w *wire.Writer) { w.Raw(enc) })
	b, _ := w.Bytes()
	return t.suite.Hash(b)
}

func (t *Tree) parentHashInput(enc, left, right []byte) []byte {
	var w wire.Writer
	w.Uint8(nodeTypeParent)
	w.Optional(enc != nil, func(w *wire.Writer) { w.Raw(enc) })
	w.Opaque(left)
	w.Opaque(right)
	b, _ := w.Bytes()
	return t.suite.Hash(b)
}

// hashExcluding returns the tree hash of x's subtree with the leaves in
// excluded blanked and removed from every unmerged_leaves list: the
// "original sibling tree hash" of RFC 9420 section 7.9. Subtrees holding no
// excluded leaf reuse the cache.
func (t *Tree) hashExcluding(x nodeIndex, excluded []LeafIndex) []byte {
	lo, hi := leafSpan(x)
	var inside []LeafIndex
	for _, l := range excluded {
		if lo <= l && l <= hi {
			inside = append(inside, l)
		}
	}
	if len(inside) == 0 {
		return t.nodeHash(x)
	}
	if x.isLeaf() {
		return t.leafHash(x, nil)
	}
	enc := t.nodes.get(x)
	if enc != nil {
		p, _ := t.parentNode(x)
		p.UnmergedLeaves = slices.DeleteFunc(p.UnmergedLeaves, func(l LeafIndex) bool { return slices.Contains(inside, l) })
		enc = wire.MustMarshal(p)
	}
	return t.parentHashInput(enc, t.hashExcluding(x.left(), inside), t.hashExcluding(x.right(), inside))
}

// ---- resolution and paths (RFC 9420 section 4.1) ----

// resolution appends to out the resolution of x, leaving out the leaves in
// excluded.
func (t *Tree) resolution(x nodeIndex, excluded []LeafIndex, out []nodeIndex) []nodeIndex {
	if !t.blank(x) {
		if x.isLeaf() {
			if slices.Contains(excluded, x.leaf()) {
				return out
			}
			return append(out, x)
		}
		out = append(out, x)
		p, _ := t.parentNode(x)
		for _, l := range p.UnmergedLeaves {
			if !slices.Contains(excluded, l) {
				out = append(out, leafNode(l))
			}
		}
		return out
	}
	if x.isLeaf() {
		return out
	}
	out = t.resolution(x.left(), excluded, out)
	return t.resolution(x.right(), excluded, out)
}

// resolutionEmpty reports whether x's subtree holds no non-blank node.
func (t *Tree) resolutionEmpty(x nodeIndex) bool {
	if !t.blank(x) {
		return false
	}
	if x.isLeaf() {
		return true
	}
	return t.resolutionEmpty(x.left()) && t.resolutionEmpty(x.right())
}

// pathStep is one node of a leaf's filtered direct path with the copath child
// below it.
type pathStep struct {
	node, copathChild nodeIndex
}

// filteredDirectPath returns the steps of l's filtered direct path, from the
// leaf up.
func (t *Tree) filteredDirectPath(l LeafIndex) []pathStep {
	var out []pathStep
	x := leafNode(l)
	for _, p := range directPath(x, t.nLeaves) {
		sib := x.sibling()
		if !t.resolutionEmpty(sib) {
			out = append(out, pathStep{node: p, copathChild: sib})
		}
		x = p
	}
	return out
}

// ---- tree evolution (RFC 9420 sections 7.7 and 12.1) ----

// blankPath blanks every parent on l's direct path.
func (t *Tree) blankPath(l LeafIndex) error {
	for _, p := range directPath(leafNode(l), t.nLeaves) {
		if !t.blank(p) {
			if err := t.setRaw(p, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// addLeaf places leaf in the leftmost blank leaf, extending the tree if it is
// full, and records it as unmerged at every non-blank ancestor.
func (t *Tree) addLeaf(leaf *LeafNode) (LeafIndex, error) {
	l := t.leftmostFreeLeaf()
	if err := t.setLeaf(l, leaf); err != nil {
		return 0, err
	}
	for _, p := range directPath(leafNode(l), t.nLeaves) {
		if pn, ok := t.parentNode(p); ok {
			pn.UnmergedLeaves = append(pn.UnmergedLeaves, l)
			slices.Sort(pn.UnmergedLeaves)
			if err := t.setParent(p, pn); err != nil {
				return 0, err
			}
		}
	}
	return l, nil
}

// updateLeaf replaces l's leaf and blanks its direct path.
func (t *Tree) updateLeaf(l LeafIndex, leaf *LeafNode) error {
	if err := t.blankPath(l); err != nil {
		return err
	}
	return t.setLeaf(l, leaf)
}

// removeLeaf blanks l and its direct path; truncate afterwards.
func (t *Tree) removeLeaf(l LeafIndex) error {
	if err := t.blankPath(l); err != nil {
		return err
	}
	return t.setRaw(leafNode(l), nil)
}

// truncate halves the tree while its right half is blank.
func (t *Tree) truncate() {
	for t.nLeaves > 1 {
		half := t.nLeaves / 2
		rightHalfBlank := true
		for x := nodeWidth(half) + 1; x < nodeWidth(t.nLeaves); x++ {
			if !t.blank(nodeIndex(x)) {
				rightHalfBlank = false
				break
			}
		}
		if !rightHalfBlank {
			return
		}
		t.resize(half)
	}
}

// ---- parent hashes (RFC 9420 section 7.9) ----

func (t *Tree) parentHashOf(p *ParentNode, originalSiblingHash []byte) []byte {
	var w wire.Writer
	w.Opaque(p.EncryptionKey)
	w.Opaque(p.ParentHash)
	w.Opaque(originalSiblingHash)
	b, _ := w.Bytes()
	return t.suite.Hash(b)
}

// setPath installs new public keys on l's filtered direct path (one key per
// step, bottom up), with empty unmerged lists and parent hashes chained from
// the root down, after blanking the rest of the direct path. It returns the
// parent hash the committer's new leaf must carry.
func (t *Tree) setPath(l LeafIndex, steps []pathStep, keys [][]byte) ([]byte, error) {
	if len(steps) != len(keys) {
		return nil, fmt.Errorf("%d path keys for a filtered direct path of %d nodes", len(keys), len(steps))
	}
	if err := t.blankPath(l); err != nil {
		return nil, err
	}
	above := []byte{}
	for i := len(steps) - 1; i >= 0; i-- {
		p := &ParentNode{EncryptionKey: keys[i], ParentHash: above}
		if err := t.setParent(steps[i].node, p); err != nil {
			return nil, err
		}
		above = t.parentHashOf(p, t.nodeHash(steps[i].copathChild))
	}
	return above, nil
}
