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
// of them. Once the outbox is numbered state-wide (State.outWide), a
// queue exists only while it holds items: the state forgets it the moment
// it empties (outboxChanged), so the outbox keeps nothing for a domain
// with nothing queued.
type outQueue struct {
	// next is the queue's own next item id while the outbox is numbered
	// per queue (before CmdOutboxIDs), when an empty queue is kept for
	// it; unused after.
	next  uint64
	q     fifo[OutItem]
	bytes int64
	// dropped counts items dropped undelivered because the queue, or all
	// queues together, were full: a peer that stays away longer than the
	// queue holds loses the oldest (it sees a gap in the room's hub
	// sequence). It joins State.outDroppedGone when the queue is
	// forgotten.
	dropped uint64

	// Derived, never encoded: the peer's domain and the queue's place in
	// State.outHeap (-1: empty, not in it).
	domain    string
	heapIndex int
}

// push appends an item, dropping the oldest beyond the caps (never the
// newest).
func (q *outQueue) push(it OutItem, maxItems int, maxBytes int64) {
	q.q.push(it)
	q.bytes += it.size()
	n := 0
	for items := q.q.items; len(items)-n > 1 && (len(items)-n > maxItems || q.bytes > maxBytes); n++ {
		q.bytes -= items[n].size()
	}
	q.dropped += uint64(n)
	q.q.drop(n)
}

// dropOldest drops the oldest item undelivered.
func (q *outQueue) dropOldest() {
	q.bytes -= q.q.items[0].size()
	q.dropped++
	q.q.drop(1)
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

// enqueue queues an item for a peer, numbered with the next outbox item
// id: once the outbox is numbered state-wide, ids are unique and never
// reused, so a delivery record for a queue since forgotten cannot trim a
// later queue of the same domain (before, each queue numbers its own and
// is kept once empty, as the previous release did). Past the peer's own
// caps the queue drops its oldest; past OutboxTotalBytes for all peers
// together, the largest queue does, which is the peer furthest behind:
// memory stays bounded however many domains that never answer a room
// names, and a live peer keeps its items while it is not behind them all.
// A queue emptied by those drops is forgotten at once (once numbered
// state-wide); the heap's order decides which, so no map order does.
func (s *State) enqueue(domain string, it OutItem) {
	q := s.outbox[domain]
	if q == nil {
		q = &outQueue{domain: domain, heapIndex: -1}
		s.outbox[domain] = q
	}
	if s.outWide {
		s.outNext = max(s.outNext, 1)
		it.ID = s.outNext
		s.outNext++
	} else {
		q.next = max(q.next, 1)
		it.ID = q.next
		q.next++
	}
	before := q.bytes
	q.push(it, s.cfg.OutboxLimit, s.cfg.OutboxBytes)
	s.outboxChanged(q, before)
	for s.outBytes > s.cfg.OutboxTotalBytes && s.outHeap.Len() > 0 {
		largest := s.outHeap.top()
		before := largest.bytes
		largest.dropOldest()
		s.outboxChanged(largest, before)
	}
}

// deliveredTo drops a peer's items up to id and says how many left. A
// record for a domain with no queue, or for ids below its oldest, changes
// nothing: ids are never reused, so such a record was meant for items
// already gone.
func (s *State) deliveredTo(domain string, id uint64) int {
	q, ok := s.outbox[domain]
	if !ok {
		return 0
	}
	before := q.bytes
	n := q.delivered(id)
	s.outboxChanged(q, before)
	return n
}

// outboxChanged keeps the total and the size order after q's bytes were
// before, and once the outbox is numbered state-wide forgets q if it is
// empty: it leaves the size order and the outbox, and its drop count
// joins outDroppedGone, so the drops summed over all peers never go down.
func (s *State) outboxChanged(q *outQueue, before int64) {
	s.outBytes += q.bytes - before
	s.outHeap.reposition(q)
	if s.outWide {
		s.forgetIfEmpty(q)
	}
}

// forgetIfEmpty deletes q if it holds nothing, keeping its drops in
// outDroppedGone.
func (s *State) forgetIfEmpty(q *outQueue) {
	if len(q.q.items) == 0 {
		s.outDroppedGone += q.dropped
		q.dropped = 0
		delete(s.outbox, q.domain)
	}
}

// numberOutboxStateWide applies CmdOutboxIDs: from this entry on, outbox
// item ids come from one state-wide counter, set past every id any queue
// gave, and a queue that empties is forgotten, starting with those empty
// now. It is a log entry, not a change of restore, so every replica
// switches at the same index from the same state, whatever snapshot it
// restored: replaying older entries numbers as the previous release did.
// A second one changes nothing.
func (s *State) numberOutboxStateWide() *Result {
	if s.outWide {
		return answerUnchanged(nil)
	}
	s.outNext = max(s.outNext, 1)
	for _, d := range sortedKeys(s.outbox) {
		q := s.outbox[d]
		s.outNext = max(s.outNext, q.next)
		if n := len(q.q.items); n > 0 {
			s.outNext = max(s.outNext, q.q.items[n-1].ID+1)
		}
		q.next = 0
		s.forgetIfEmpty(q)
	}
	s.outWide = true
	return success(nil)
}

// OutboxStateWide reports whether outbox item ids are numbered state-wide
// (CmdOutboxIDs applied): the leader proposes the command until they are.
func (s *State) OutboxStateWide() bool { return s.outWide }

// rebuildOutboxIndex recomputes the derived outbox bookkeeping after a
// restore.
func (s *State) rebuildOutboxIndex() {
	s.outBytes = 0
	all := make([]*outQueue, 0, len(s.outbox))
	for _, d := range sortedKeys(s.outbox) {
		q := s.outbox[d]
		q.domain = d
		s.outBytes += q.bytes
		all = append(all, q)
	}
	s.outHeap.rebuild(all)
}

// newOutHeap orders the peers' non-empty queues largest first, by bytes
// and then by domain, so the order has no ties.
func newOutHeap() indexHeap[*outQueue] {
	return indexHeap[*outQueue]{
		less: func(a, b *outQueue) bool {
			if a.bytes != b.bytes {
				return a.bytes > b.bytes
			}
			return a.domain < b.domain
		},
		pos: func(q *outQueue) *int { return &q.heapIndex },
		in:  func(q *outQueue) bool { return len(q.q.items) > 0 },
	}
}
