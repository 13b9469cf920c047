package fsm

import "container/heap"

// indexHeap is a binary heap (container/heap) of items that keep their own
// position in it, so the state can move, add or remove one in O(log n)
// when its key changes. It orders the room logs for the provider-wide
// retention cap (oldest entry first) and the outbox queues for the
// provider-wide outbox cap (largest first); each order must have no ties,
// so every replica drops the same items.
type indexHeap[T any] struct {
	items []T
	less  func(a, b T) bool
	// pos is where an item keeps its position (-1: not in the heap);
	// in says whether it belongs in the heap at all.
	pos func(T) *int
	in  func(T) bool
}

// Len implements heap.Interface.
func (h *indexHeap[T]) Len() int { return len(h.items) }

// Less implements heap.Interface.
func (h *indexHeap[T]) Less(i, j int) bool { return h.less(h.items[i], h.items[j]) }

// Swap implements heap.Interface.
func (h *indexHeap[T]) Swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	*h.pos(h.items[i]), *h.pos(h.items[j]) = i, j
}

// Push implements heap.Interface; use reposition.
func (h *indexHeap[T]) Push(x any) {
	t := x.(T)
	*h.pos(t) = len(h.items)
	h.items = append(h.items, t)
}

// Pop implements heap.Interface; use reposition.
func (h *indexHeap[T]) Pop() any {
	n := len(h.items) - 1
	t := h.items[n]
	var zero T
	h.items[n] = zero
	h.items = h.items[:n]
	*h.pos(t) = -1
	return t
}

// reposition puts t where it belongs after its key changed: in, out (no
// longer in), or moved.
func (h *indexHeap[T]) reposition(t T) {
	i, in := *h.pos(t), h.in(t)
	switch {
	case !in && i >= 0:
		heap.Remove(h, i)
	case !in:
	case i < 0:
		heap.Push(h, t)
	default:
		heap.Fix(h, i)
	}
}

// top is the first item in order; the heap must not be empty.
func (h *indexHeap[T]) top() T { return h.items[0] }

// rebuild empties the heap and places each item of all, whose positions
// it resets first.
func (h *indexHeap[T]) rebuild(all []T) {
	clear(h.items)
	h.items = h.items[:0]
	for _, t := range all {
		*h.pos(t) = -1
		h.reposition(t)
	}
}
