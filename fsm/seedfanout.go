package fsm

import (
	"bytes"
	"crypto/sha256"
	"slices"

	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// Fanout from a hub that implements only the seed carries no Mimi-Sequence
// (DECISIONS.md item 20): its messages are taken in the order they arrive,
// and a message already taken (a resent request) is recognized by the
// SHA-256 of its FanoutMessage encoding, remembered per room for the last
// maxFanoutDigests messages.

// maxFanoutDigests bounds the digests kept per room: a hub resends a
// request it got no answer for, so duplicates arrive close together.
const maxFanoutDigests = 1024

// digestRing is a room stream's recent fanout digests, oldest first. It
// lives in the stream (roomStream.digests), so it goes when the stream
// does: nobody here follows the room any more.
type digestRing struct {
	digests [][]byte
}

func fanoutDigest(fm *proto.FanoutMessage) []byte {
	sum := sha256.Sum256(wire.MustMarshal(fm))
	return sum[:]
}

func (g *digestRing) has(d []byte) bool {
	return slices.ContainsFunc(g.digests, func(x []byte) bool { return bytes.Equal(x, d) })
}

// anyFresh reports whether batch holds a message not taken before.
func (g *digestRing) anyFresh(batch proto.FanoutBatch) bool {
	for i := range batch {
		if !g.has(fanoutDigest(&batch[i])) {
			return true
		}
	}
	return false
}

// add remembers d. The list is replaced, never edited in place, so that a
// snapshot capture may keep a reference to it.
func (g *digestRing) add(d []byte) {
	start := max(len(g.digests)+1-maxFanoutDigests, 0)
	g.digests = append(slices.Clip(g.digests[start:]), d)
}

// unnumberedFanout delivers a batch without sequence numbers (admitFanout
// answered a batch of duplicates only): each new message gets the stream's
// next number, duplicates are dropped.
func (s *State) unnumberedFanout(st *roomStream, b *FanoutBody, now uint64) *Result {
	exclude := s.localExclude(b.Exclude)
	for i := range b.Batch {
		d := fanoutDigest(&b.Batch[i])
		if st.digests.has(d) {
			continue
		}
		st.digests.add(d)
		s.deliverLocal(st, st.lastSeq+1, &b.Batch[i], nil, exclude, now)
	}
	return success(nil)
}

// encodeTLS writes the digests (in a stream's snapshot record).
func (g *digestRing) encodeTLS(w *wire.Writer) {
	w.Vector(func(w *wire.Writer) {
		for _, d := range g.digests {
			w.Opaque(d)
		}
	})
}

// decodeTLS reads what encodeTLS wrote, checking each digest's size and
// the bound.
func (g *digestRing) decodeTLS(r *wire.Reader) {
	g.digests = nil
	r.VectorEach(func(r *wire.Reader) {
		var d []byte
		r.Opaque(&d)
		if r.OK() && len(d) != sha256.Size {
			r.Failf("fanout digest of %d bytes", len(d))
		}
		if r.OK() && len(g.digests) == maxFanoutDigests {
			r.Failf("more than %d fanout digests", maxFanoutDigests)
		}
		g.digests = append(g.digests, bytes.Clone(d))
	})
}
