package mls

import "math/bits"

// nodeIndex is a position in the array form of a ratchet tree (RFC 9420
// appendix C): leaf L sits at 2L, parents at odd indices.
type nodeIndex uint32

func leafNode(l LeafIndex) nodeIndex { return nodeIndex(2 * l) }

func (x nodeIndex) isLeaf() bool { return x&1 == 0 }

func (x nodeIndex) leaf() LeafIndex { return LeafIndex(x >> 1) }

// level is the height of x above the leaves: the number of trailing ones.
func (x nodeIndex) level() uint { return uint(bits.TrailingZeros32(^uint32(x))) }

// nodeWidth is the number of nodes of a tree with n leaves.
func nodeWidth(n uint32) uint32 {
	if n == 0 {
		return 0
	}
	return 2*(n-1) + 1
}

// root returns the root of a tree with n leaves, n a power of two.
func root(n uint32) nodeIndex { return nodeIndex(n - 1) }

func (x nodeIndex) left() nodeIndex {
	k := x.level()
	return x ^ (1 << (k - 1))
}

func (x nodeIndex) right() nodeIndex {
	k := x.level()
	return x ^ (3 << (k - 1))
}

func (x nodeIndex) parent() nodeIndex {
	k := x.level()
	b := (x >> (k + 1)) & 1
	return (x | (1 << k)) ^ (b << (k + 1))
}

func (x nodeIndex) sibling() nodeIndex {
	p := x.parent()
	if x < p {
		return p.right()
	}
	return p.left()
}

// directPath lists the ancestors of x in a tree with n leaves, from x's parent
// up to the root.
func directPath(x nodeIndex, n uint32) []nodeIndex {
	r := root(n)
	if x == r {
		return nil
	}
	var path []nodeIndex
	for x != r {
		x = x.parent()
		path = append(path, x)
	}
	return path
}

// copath lists the siblings of x and of its ancestors below the root.
func copath(x nodeIndex, n uint32) []nodeIndex {
	r := root(n)
	var out []nodeIndex
	for x != r {
		out = append(out, x.sibling())
		x = x.parent()
	}
	return out
}

// isAncestor reports whether a is an ancestor of (or equal to) x: x lies in
// the span of a's subtree.
func isAncestor(a, x nodeIndex) bool {
	k := a.level()
	lo := (a >> (k + 1)) << (k + 1)
	hi := lo + (1 << (k + 1)) - 2
	return lo <= x && x <= hi
}

// leafSpan returns the first and last leaf under x.
func leafSpan(x nodeIndex) (LeafIndex, LeafIndex) {
	k := x.level()
	lo := (x >> (k + 1)) << (k + 1)
	hi := lo + (1 << (k + 1)) - 2
	return lo.leaf(), hi.leaf()
}

// commonAncestor returns the lowest common ancestor of two leaves' nodes.
func commonAncestor(x, y nodeIndex) nodeIndex {
	if x == y {
		return x
	}
	k := uint(0)
	for x != y {
		x >>= 1
		y >>= 1
		k++
	}
	return (x << k) + (1 << (k - 1)) - 1
}
