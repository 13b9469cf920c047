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

// digestRing is a room's recent fanout digests, oldest first.
type digestRing struct {
	digests [][]byte
}

func (g *digestRing) has(d []byte) bool {
	return g != nil && slices.ContainsFunc(g.digests, func(x []byte) bool { return bytes.Equal(x, d) })
}

func (g *digestRing) add(d []byte) {
	g.digests = append(g.digests, d)
	if over := len(g.digests) - maxFanoutDigests; over > 0 {
		g.digests = slices.Delete(g.digests, 0, over)
	}
}

// unnumberedFanout delivers a batch without sequence numbers: each new
// message gets the stream's next number, duplicates are dropped. A batch
// of duplicates only is answered without changing anything.
func (s *State) unnumberedFanout(id proto.URI, st *roomStream, b *FanoutBody) *Result {
	fresh := false
	for i := range b.Batch {
		sum := sha256.Sum256(wire.MustMarshal(&b.Batch[i]))
		fresh = fresh || !s.seedFanout[id].has(sum[:])
	}
	if !fresh {
		return answerUnchanged(nil)
	}
	ring := s.seedFanout[id]
	if ring == nil {
		ring = &digestRing{}
		s.seedFanout[id] = ring
	}
	for i := range b.Batch {
		sum := sha256.Sum256(wire.MustMarshal(&b.Batch[i]))
		if ring.has(sum[:]) {
			continue
		}
		ring.add(sum[:])
		s.deliverLocal(id, st, st.lastSeq+1, &b.Batch[i], b.Exclude)
	}
	return success(nil)
}

// encodeHubSection writes this file's and hubproposals.go's tables: the
// hub's external-sender secret and the unnumbered-fanout digests.
func (s *State) encodeHubSection(w *wire.Writer) {
	w.Opaque(s.hubSecret)
	w.Vector(func(w *wire.Writer) {
		for _, id := range sortedKeys(s.seedFanout) {
			id.EncodeTLS(w)
			w.Vector(func(w *wire.Writer) {
				for _, d := range s.seedFanout[id].digests {
					w.Opaque(d)
				}
			})
		}
	})
}

// decodeHubSection reads what encodeHubSection wrote.
func (s *State) decodeHubSection(r *wire.Reader) {
	var secret []byte
	r.Opaque(&secret)
	if len(secret) > 0 {
		s.hubSecret = bytes.Clone(secret)
	}
	r.VectorEach(func(r *wire.Reader) {
		var id proto.URI
		id.DecodeTLS(r)
		ring := &digestRing{}
		r.VectorEach(func(r *wire.Reader) {
			var d []byte
			r.Opaque(&d)
			if r.OK() && len(d) != sha256.Size {
				r.Failf("fanout digest of %d bytes", len(d))
			}
			if r.OK() && len(ring.digests) == maxFanoutDigests {
				r.Failf("more than %d fanout digests for %s", maxFanoutDigests, id)
			}
			ring.digests = append(ring.digests, bytes.Clone(d))
		})
		s.seedFanout[id] = ring
	})
}
