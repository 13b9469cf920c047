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
	Seq  uint64 // position in the client's stream, from 1
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

// inbox is a client's stream: items not yet acknowledged, oldest first.
type inbox struct {
	next  uint64 // the next item's Seq
	items []Item
}

// push appends an item, dropping the oldest beyond limit.
func (b *inbox) push(it Item, limit int) {
	if b.next == 0 {
		b.next = 1
	}
	it.Seq = b.next
	b.next++
	b.items = append(b.items, it)
	if over := len(b.items) - limit; over > 0 {
		b.items = slices.Delete(b.items, 0, over)
	}
}

// ack drops items up to seq.
func (b *inbox) ack(seq uint64) {
	i, _ := slices.BinarySearchFunc(b.items, seq+1, func(it Item, s uint64) int {
		switch {
		case it.Seq < s:
			return -1
		case it.Seq > s:
			return 1
		}
		return 0
	})
	b.items = slices.Delete(b.items, 0, i)
}

// after returns up to limit items after seq, and whether items after seq
// were dropped before the client read them.
func (b *inbox) after(seq uint64, limit int) (items []Item, gap bool) {
	for _, it := range b.items {
		if it.Seq > seq {
			items = append(items, it)
			if len(items) == limit {
				break
			}
		}
	}
	first := b.next
	if len(b.items) > 0 {
		first = b.items[0].Seq
	}
	return items, seq+1 < first
}

// EncodeTLS writes the inbox.
func (b *inbox) EncodeTLS(w *wire.Writer) {
	w.Uint64(b.next)
	w.Vector(func(w *wire.Writer) {
		for i := range b.items {
			b.items[i].EncodeTLS(w)
		}
	})
}

// DecodeTLS reads the inbox.
func (b *inbox) DecodeTLS(r *wire.Reader) {
	r.Uint64(&b.next)
	b.items = nil
	r.VectorEach(func(r *wire.Reader) {
		var it Item
		it.DecodeTLS(r)
		b.items = append(b.items, it)
	})
}

// roomStream is a room that local clients receive: the clients, sorted,
// and the hub sequence delivered so far (messages at or below it are
// duplicates).
type roomStream struct {
	hub     string
	lastSeq uint64
	clients []proto.URI
	// gaps counts batches that began past lastSeq+1: messages the hub
	// numbered but that never arrived (lost hub state). They are reported,
	// not hidden.
	gaps uint64
}

func (st *roomStream) subscribe(c proto.URI) {
	if i, found := slices.BinarySearch(st.clients, c); !found {
		st.clients = slices.Insert(st.clients, i, c)
	}
}

func (st *roomStream) unsubscribe(c proto.URI) {
	if i, found := slices.BinarySearch(st.clients, c); found {
		st.clients = slices.Delete(st.clients, i, i+1)
	}
}

// EncodeTLS writes the stream.
func (st *roomStream) EncodeTLS(w *wire.Writer) {
	w.Opaque([]byte(st.hub))
	w.Uint64(st.lastSeq)
	writeURIs(w, st.clients)
	w.Uint64(st.gaps)
}

// DecodeTLS reads the stream.
func (st *roomStream) DecodeTLS(r *wire.Reader) {
	var hub []byte
	r.Opaque(&hub)
	st.hub = string(hub)
	r.Uint64(&st.lastSeq)
	st.clients = readURIs(r)
	r.Uint64(&st.gaps)
}
