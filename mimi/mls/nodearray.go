package mls

import (
	"slices"
	"sync/atomic"
)

// nodeChunkSize is how many node encodings a chunk holds.
const nodeChunkSize = 256

// nodeArray holds a tree's node encodings (nil for blank) in chunks that
// are copied on write once frozen: freezing (a snapshot's capture, a tree
// handed to a joiner) costs a copy of one pointer per 256 nodes, not of
// the tree's 200,000 node slots at 100,000 members, and the next writes
// copy only the chunks they touch. Encodings themselves are never modified
// in place, so a frozen copy shares them.
type nodeArray struct {
	chunks []*nodeChunk
	n      int
	// gen is the generation of chunks this array may write in place;
	// freeze advances it, so chunks from before are copied first. Frozen
	// copies have none and are read-only. Atomic: readers freeze under a
	// shared lock, concurrently.
	gen *atomic.Uint32
}

type nodeChunk struct {
	gen   uint32
	nodes [nodeChunkSize][]byte
}

func newNodeArray() nodeArray {
	g := new(atomic.Uint32)
	g.Store(1)
	return nodeArray{gen: g}
}

// len returns the number of nodes.
func (a *nodeArray) len() int { return a.n }

// get returns node x's encoding (x < len).
func (a *nodeArray) get(x nodeIndex) []byte {
	return a.chunks[int(x)/nodeChunkSize].nodes[int(x)%nodeChunkSize]
}

// set stores node x's encoding (x < len), copying its chunk first if a
// frozen copy shares it.
func (a *nodeArray) set(x nodeIndex, enc []byte) {
	i := int(x) / nodeChunkSize
	gen := a.gen.Load()
	if c := a.chunks[i]; c.gen != gen {
		cp := *c
		cp.gen = gen
		a.chunks[i] = &cp
	}
	a.chunks[i].nodes[int(x)%nodeChunkSize] = enc
}

// resize sets the number of nodes: new ones are blank; dropped ones must
// be blank already or are blanked.
func (a *nodeArray) resize(n int) {
	for x := n; x < a.n; x++ {
		if a.get(nodeIndex(x)) != nil {
			a.set(nodeIndex(x), nil)
		}
	}
	need := (n + nodeChunkSize - 1) / nodeChunkSize
	if need < len(a.chunks) {
		clear(a.chunks[need:])
		a.chunks = a.chunks[:need]
	}
	gen := a.gen.Load()
	for len(a.chunks) < need {
		a.chunks = append(a.chunks, &nodeChunk{gen: gen})
	}
	a.n = n
}

// freeze returns a read-only copy of the array as it is now and makes
// later writes to a copy its chunks first.
func (a *nodeArray) freeze() nodeArray {
	c := nodeArray{chunks: slices.Clone(a.chunks), n: a.n}
	a.gen.Add(1)
	return c
}
