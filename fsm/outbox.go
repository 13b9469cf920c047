package fsm

import (
	"bytes"

	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// OutKind says which MIMI request an outbox item becomes.
type OutKind uint8

// Outbox item kinds.
const (
	OutFanout         OutKind = 1 // POST /fanout/{roomId}
	OutRequestConsent OutKind = 2 // POST /requestConsent/{targetDomain}
	OutUpdateConsent  OutKind = 3 // POST /updateConsent/{requesterDomain}
	OutRemoveClients  OutKind = 4 // POST /removeClients/{roomId} (DECISIONS.md item 27)
)

// OutItem is a request waiting to be delivered to one peer. Items of a peer
// are delivered in ID order; fanout items of one room in hub order.
type OutItem struct {
	ID   uint64
	Kind OutKind
	Room proto.URI // fanout, removeClients
	// Seq is the hub sequence of the fanout message.
	Seq uint64
	// Data is the FanoutMessage (fanout), ConsentEntry (consent) or
	// RemoveClientsRequest encoding.
	Data []byte
	// Exclude lists the peer's clients that must not receive the message.
	Exclude []proto.URI
	// Enqueued is when the item was queued (ms), for lag.
	Enqueued uint64
}

// EncodeTLS writes the item.
func (it *OutItem) EncodeTLS(w *wire.Writer) {
	w.Uint64(it.ID)
	w.Uint8(uint8(it.Kind))
	it.Room.EncodeTLS(w)
	w.Uint64(it.Seq)
	w.Opaque(it.Data)
	writeURIs(w, it.Exclude)
	w.Uint64(it.Enqueued)
}

// DecodeTLS reads the item.
func (it *OutItem) DecodeTLS(r *wire.Reader) {
	r.Uint64(&it.ID)
	var k uint8
	r.Uint8(&k)
	it.Kind = OutKind(k)
	it.Room.DecodeTLS(r)
	r.Uint64(&it.Seq)
	r.Opaque(&it.Data)
	it.Data = bytes.Clone(it.Data)
	it.Exclude = readURIs(r)
	r.Uint64(&it.Enqueued)
}

// outQueue is one peer's undelivered items, oldest first.
type outQueue struct {
	next  uint64
	items []OutItem
}

func (q *outQueue) push(it OutItem) {
	if q.next == 0 {
		q.next = 1
	}
	it.ID = q.next
	q.next++
	q.items = append(q.items, it)
}

// delivered drops items up to id.
func (q *outQueue) delivered(id uint64) int {
	n := 0
	for n < len(q.items) && q.items[n].ID <= id {
		n++
	}
	q.items = q.items[n:]
	return n
}

// EncodeTLS writes the queue.
func (q *outQueue) EncodeTLS(w *wire.Writer) {
	w.Uint64(q.next)
	w.Vector(func(w *wire.Writer) {
		for i := range q.items {
			q.items[i].EncodeTLS(w)
		}
	})
}

// DecodeTLS reads the queue.
func (q *outQueue) DecodeTLS(r *wire.Reader) {
	r.Uint64(&q.next)
	q.items = nil
	r.VectorEach(func(r *wire.Reader) {
		var it OutItem
		it.DecodeTLS(r)
		q.items = append(q.items, it)
	})
}
