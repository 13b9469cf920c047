package fsm

import (
	"bytes"
	"slices"

	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// ItemKind says what a stream item carries.
type ItemKind uint8

// Stream item kinds.
const (
	ItemMessage      ItemKind = 1 // a fanout MLSMessage of a room (commit, proposal, application)
	ItemWelcome      ItemKind = 2 // a Welcome addressed to this client
	ItemConsent      ItemKind = 3 // a consent request or grant for this client's user
	ItemRoomTerminal ItemKind = 4 // reserved: the room no longer delivers to this client
)

// Item is one entry of a client's stream, in delivery order.
type Item struct {
	// Seq is the item's position in the provider's delivery order: it
	// increases along each client's stream but is not contiguous (the
	// numbers between belong to other clients' items).
	Seq  uint64
	Kind ItemKind
	Room proto.URI
	// HubSeq is the message's number in the room's hub order.
	HubSeq uint64
	// At is the hub's acceptance time (ms) for room messages, else the time
	// the provider received the item.
	At uint64
	// Data is the MLSMessage (messages, Welcomes) or ConsentEntry encoding.
	Data []byte
}

// EncodeTLS writes the item.
func (it *Item) EncodeTLS(w *wire.Writer) {
	w.Uint64(it.Seq)
	w.Uint8(uint8(it.Kind))
	it.Room.EncodeTLS(w)
	w.Uint64(it.HubSeq)
	w.Uint64(it.At)
	w.Opaque(it.Data)
}

// DecodeTLS reads the item.
func (it *Item) DecodeTLS(r *wire.Reader) {
	r.Uint64(&it.Seq)
	var k uint8
	r.Uint8(&k)
	it.Kind = ItemKind(k)
	it.Room.DecodeTLS(r)
	r.Uint64(&it.HubSeq)
	r.Uint64(&it.At)
	r.Opaque(&it.Data)
	it.Data = bytes.Clone(it.Data)
}

// itemOverhead is what an item costs beyond its data, for the byte caps.
const itemOverhead = 64

func (it *Item) size() int64 { return int64(len(it.Data)+len(it.Room)) + itemOverhead }

// inbox holds a client's inbox-only items (Welcomes, consent notices), not
// yet acknowledged, oldest first. Room messages are not here: they are in
// their room's log, once for all readers.
//
// items only grows at the end and is resliced at the front, never written
// in place, so a snapshot may keep a slice of it (capture).
type inbox struct {
	q     fifo[Item]
	bytes int64
	// lostThrough is the highest Seq dropped by the caps before it was
	// acknowledged: readers behind it are told of a gap.
	lostThrough uint64
}

// push appends an item, dropping the oldest beyond the caps (never the
// newest).
func (b *inbox) push(it Item, maxItems int, maxBytes int64) {
	b.q.push(it)
	b.bytes += it.size()
	n := 0
	for items := b.q.items; len(items)-n > 1 && (len(items)-n > maxItems || b.bytes > maxBytes); n++ {
		b.lostThrough = max(b.lostThrough, items[n].Seq)
		b.bytes -= items[n].size()
	}
	b.q.drop(n)
}

// fits says whether one more item of size bytes keeps the inbox within
// maxItems and maxBytes.
func (b *inbox) fits(size int64, maxItems int, maxBytes int64) bool {
	return len(b.q.items) < maxItems && b.bytes+size <= maxBytes
}

// ack drops items up to seq.
func (b *inbox) ack(seq uint64) {
	n := 0
	for items := b.q.items; n < len(items) && items[n].Seq <= seq; n++ {
		b.bytes -= items[n].size()
	}
	b.q.drop(n)
}

// subscription is a client's window on a room's log: it receives the
// entries from..until (until 0: while subscribed).
type subscription struct {
	client proto.URI
	from   uint64
	until  uint64
}

func (s *subscription) covers(seq uint64) bool {
	return seq >= s.from && (s.until == 0 || seq <= s.until)
}

// roomStream is a room that local clients receive, hosted here or not: the
// clients' windows on it, sorted by client, the hub sequence delivered so
// far (messages at or below it are duplicates), and the room's message
// log.
type roomStream struct {
	id      proto.URI
	hub     string
	lastSeq uint64
	// gaps counts batches that began past lastSeq+1: messages the hub
	// numbered but that never arrived (lost hub state). They are reported,
	// not hidden.
	gaps uint64
	subs []subscription
	log  roomLog
	// digests are the recent messages of unnumbered fanout (seedfanout.go).
	digests digestRing
	// heapIndex is the stream's position in State.logs (-1: empty log).
	heapIndex int
}

func newRoomStream(id proto.URI, hub string) *roomStream {
	return &roomStream{id: id, hub: hub, heapIndex: -1}
}

func (st *roomStream) find(c proto.URI) (int, bool) {
	return slices.BinarySearchFunc(st.subs, c, func(s subscription, c proto.URI) int {
		switch {
		case s.client < c:
			return -1
		case s.client > c:
			return 1
		}
		return 0
	})
}

// subscribed reports whether c is subscribed now.
func (st *roomStream) subscribed(c proto.URI) bool {
	i, ok := st.find(c)
	return ok && st.subs[i].until == 0
}

// subscribeAt opens c's window at from, unless c is subscribed. A closed
// window is opened again where it began, so what it still holds unread
// stays readable (a client that unsubscribes and subscribes again before
// reading loses nothing); it then also covers what the log took while it
// was closed.
func (st *roomStream) subscribeAt(c proto.URI, from uint64) {
	i, ok := st.find(c)
	switch {
	case ok && st.subs[i].until == 0:
	case ok:
		st.subs[i].until = 0
	default:
		st.subs = slices.Insert(st.subs, i, subscription{client: c, from: from})
	}
}

// unsubscribeAt closes c's open window after last (the last delivery seq
// assigned so far).
func (st *roomStream) unsubscribeAt(c proto.URI, last uint64) {
	i, ok := st.find(c)
	switch {
	case !ok || st.subs[i].until != 0:
	case last < st.subs[i].from:
		// Nothing was delivered in the window: it ends empty.
		st.subs = slices.Delete(st.subs, i, i+1)
	default:
		st.subs[i].until = last
	}
}

// dropWindow removes c's window.
func (st *roomStream) dropWindow(c proto.URI) {
	if i, ok := st.find(c); ok {
		st.subs = slices.Delete(st.subs, i, i+1)
	}
}

// window returns c's window.
func (st *roomStream) window(c proto.URI) (subscription, bool) {
	i, ok := st.find(c)
	if !ok {
		return subscription{}, false
	}
	return st.subs[i], true
}

// newLogHeap orders the streams with non-empty logs by their oldest entry,
// so the provider-wide byte cap drops the oldest message first. Every
// entry has its own delivery seq, so the order has no ties.
func newLogHeap() indexHeap[*roomStream] {
	return indexHeap[*roomStream]{
		less: func(a, b *roomStream) bool { return a.log.first() < b.log.first() },
		pos:  func(st *roomStream) *int { return &st.heapIndex },
		in:   func(st *roomStream) bool { return len(st.log.q.items) > 0 },
	}
}
