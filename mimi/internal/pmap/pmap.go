// Package pmap is a persistent sorted map: every change returns a new map
// and leaves the old one valid and unchanged, sharing all but the O(log n)
// nodes on the changed path. Copying a map is copying one pointer, so a
// room can try a change on a copy and drop it when refused, and a snapshot
// can capture a table under the state machine's lock in constant time and
// encode it afterwards while the table goes on changing.
//
// It is an AVL tree with path copying: lookups, inserts and deletes cost
// O(log n) time and allocate O(log n) nodes; iteration is in key order, so
// encodings that walk it are deterministic. The zero Map is empty and
// ready to use. A Map is a value: safe for concurrent reads, and a change
// never affects another Map.
package pmap

import (
	"cmp"
	"iter"
)

// Map is a persistent sorted map from K to V.
type Map[K cmp.Ordered, V any] struct {
	root *node[K, V]
}

type node[K cmp.Ordered, V any] struct {
	key         K
	val         V
	left, right *node[K, V]
	height      int8
	size        int32 // nodes in this subtree
}

func height[K cmp.Ordered, V any](n *node[K, V]) int8 {
	if n == nil {
		return 0
	}
	return n.height
}

func size[K cmp.Ordered, V any](n *node[K, V]) int32 {
	if n == nil {
		return 0
	}
	return n.size
}

// mk returns a new node with the given children, its height and size set.
func mk[K cmp.Ordered, V any](key K, val V, left, right *node[K, V]) *node[K, V] {
	return &node[K, V]{key: key, val: val, left: left, right: right,
		height: max(height(left), height(right)) + 1, size: size(left) + size(right) + 1}
}

// balance builds a node from children whose heights differ by at most two,
// rotating so that they differ by at most one.
func balance[K cmp.Ordered, V any](key K, val V, l, r *node[K, V]) *node[K, V] {
	switch hl, hr := height(l), height(r); {
	case hl > hr+1:
		if height(l.left) >= height(l.right) {
			return mk(l.key, l.val, l.left, mk(key, val, l.right, r))
		}
		return mk(l.right.key, l.right.val, mk(l.key, l.val, l.left, l.right.left), mk(key, val, l.right.right, r))
	case hr > hl+1:
		if height(r.right) >= height(r.left) {
			return mk(r.key, r.val, mk(key, val, l, r.left), r.right)
		}
		return mk(r.left.key, r.left.val, mk(key, val, l, r.left.left), mk(r.key, r.val, r.left.right, r.right))
	}
	return mk(key, val, l, r)
}

// Len returns the number of entries.
func (m Map[K, V]) Len() int { return int(size(m.root)) }

// Get returns the value of key.
func (m Map[K, V]) Get(key K) (V, bool) {
	n := m.root
	for n != nil {
		switch c := cmp.Compare(key, n.key); {
		case c < 0:
			n = n.left
		case c > 0:
			n = n.right
		default:
			return n.val, true
		}
	}
	var zero V
	return zero, false
}

// Has reports whether key is in the map.
func (m Map[K, V]) Has(key K) bool {
	_, ok := m.Get(key)
	return ok
}

// Set returns a map in which key has val.
func (m Map[K, V]) Set(key K, val V) Map[K, V] {
	return Map[K, V]{root: set(m.root, key, val)}
}

func set[K cmp.Ordered, V any](n *node[K, V], key K, val V) *node[K, V] {
	if n == nil {
		return &node[K, V]{key: key, val: val, height: 1, size: 1}
	}
	switch c := cmp.Compare(key, n.key); {
	case c < 0:
		return balance(n.key, n.val, set(n.left, key, val), n.right)
	case c > 0:
		return balance(n.key, n.val, n.left, set(n.right, key, val))
	}
	return &node[K, V]{key: key, val: val, left: n.left, right: n.right, height: n.height, size: n.size}
}

// Delete returns a map without key (the same map if key is absent).
func (m Map[K, V]) Delete(key K) Map[K, V] {
	if !m.Has(key) {
		return m
	}
	return Map[K, V]{root: del(m.root, key)}
}

func del[K cmp.Ordered, V any](n *node[K, V], key K) *node[K, V] {
	switch c := cmp.Compare(key, n.key); {
	case c < 0:
		return balance(n.key, n.val, del(n.left, key), n.right)
	case c > 0:
		return balance(n.key, n.val, n.left, del(n.right, key))
	}
	switch {
	case n.left == nil:
		return n.right
	case n.right == nil:
		return n.left
	}
	// Replace n by its successor, the leftmost node of the right subtree.
	s := n.right
	for s.left != nil {
		s = s.left
	}
	return balance(s.key, s.val, n.left, del(n.right, s.key))
}

// Min returns the smallest key and its value; ok is false for an empty
// map.
func (m Map[K, V]) Min() (key K, val V, ok bool) {
	n := m.root
	if n == nil {
		return key, val, false
	}
	for n.left != nil {
		n = n.left
	}
	return n.key, n.val, true
}

// Max returns the largest key and its value; ok is false for an empty
// map.
func (m Map[K, V]) Max() (key K, val V, ok bool) {
	n := m.root
	if n == nil {
		return key, val, false
	}
	for n.right != nil {
		n = n.right
	}
	return n.key, n.val, true
}

// All yields the entries in ascending key order.
func (m Map[K, V]) All() iter.Seq2[K, V] {
	return func(yield func(K, V) bool) { walk(m.root, yield) }
}

// After yields the entries with keys greater than key, in ascending
// order.
func (m Map[K, V]) After(key K) iter.Seq2[K, V] {
	return func(yield func(K, V) bool) { walkAfter(m.root, key, yield) }
}

func walkAfter[K cmp.Ordered, V any](n *node[K, V], key K, yield func(K, V) bool) bool {
	for n != nil {
		if cmp.Compare(n.key, key) <= 0 {
			n = n.right // this node and its left subtree are not after key
			continue
		}
		if !walkAfter(n.left, key, yield) || !yield(n.key, n.val) {
			return false
		}
		n = n.right
	}
	return true
}

func walk[K cmp.Ordered, V any](n *node[K, V], yield func(K, V) bool) bool {
	for n != nil {
		if !walk(n.left, yield) || !yield(n.key, n.val) {
			return false
		}
		n = n.right
	}
	return true
}
