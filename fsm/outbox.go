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

// outItemOverhead is what an outbox item costs beyond its data, for the
// byte cap.
const outItemOverhead = 64

func (it *OutItem) size() int64 {
	n := int64(len(it.Data)+len(it.Room)) + outItemOverhead
	for _, c := range it.Exclude {
		n += int64(len(c)) + 16
	}
	return n
}

// outQueue is one peer's undelivered items, oldest first. Items only join
// at the end and leave at the front (fifo), so a snapshot may keep a slice
// of them.
type outQueue struct {
	next  uint64
	q     fifo[OutItem]
	bytes int64
	// dropped counts items dropped undelivered because the queue was
	// full: a peer that stays away longer than the queue holds loses the
	// oldest (it sees a gap in the room's hub sequence).
	dropped uint64
}

// push appends an item, dropping the oldest beyond the caps (never the
// newest).
func (q *outQueue) push(it OutItem, maxItems int, maxBytes int64) {
	if q.next == 0 {
		q.next = 1
	}
	it.ID = q.next
	q.next++
	q.q.push(it)
	q.bytes += it.size()
	n := 0
	for items := q.q.items; len(items)-n > 1 && (len(items)-n > maxItems || q.bytes > maxBytes); n++ {
		q.bytes -= items[n].size()
	}
	q.dropped += uint64(n)
	q.q.drop(n)
}

// delivered drops items up to id.
func (q *outQueue) delivered(id uint64) int {
	n := 0
	for items := q.q.items; n < len(items) && items[n].ID <= id; n++ {
		q.bytes -= items[n].size()
	}
	q.q.drop(n)
	return n
}

// enqueue queues an item for a peer.
func (s *State) enqueue(domain string, it OutItem) {
	q := s.outbox[domain]
	if q == nil {
		q = &outQueue{}
		s.outbox[domain] = q
	}
	q.push(it, s.cfg.OutboxLimit, s.cfg.OutboxBytes)
}
