package fsm

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/room"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// decodeStateV1 reads a snapshot of format 1 (one whole-state encoding,
// with a copy of every room message in each reader's inbox) into the
// current model: the copies stay in the clients' inboxes as they were, to
// be read and acknowledged; every client follows its rooms from the next
// delivery on. Delivery seqs continue after the highest per-client number,
// so every client's stream keeps growing.
func decodeStateV1(cfg Config, data []byte) (*State, error) {
	s, err := newState(cfg)
	if err != nil {
		return nil, err
	}
	r := wire.NewReader(data)
	var rooms [][]byte
	r.VectorEach(func(r *wire.Reader) {
		var b []byte
		r.Opaque(&b)
		rooms = append(rooms, b)
	})
	var keys, book []byte
	r.Opaque(&keys)
	r.Opaque(&book)
	r.VectorEach(func(r *wire.Reader) {
		u, rec := decodeUser(r)
		s.users[u] = rec
	})
	r.VectorEach(func(r *wire.Reader) {
		var c proto.URI
		c.DecodeTLS(r)
		rec := &clientRecord{}
		r.Opaque(&rec.tokenHash)
		rec.tokenHash = bytes.Clone(rec.tokenHash)
		var next uint64
		r.Uint64(&next)
		r.VectorEach(func(r *wire.Reader) {
			var it Item
			it.DecodeTLS(r)
			// Later formats hold the same rule: seqs start at 1 and grow.
			if n := len(rec.inbox.q.items); r.OK() && (it.Seq == 0 || n > 0 && rec.inbox.q.items[n-1].Seq >= it.Seq) {
				r.Failf("client %s: inbox item %d out of order", c, it.Seq)
			}
			rec.inbox.q.push(it)
			rec.inbox.bytes += it.size()
		})
		// Everything before the first item kept was acknowledged.
		rec.cursor = max(next, 1) - 1
		if len(rec.inbox.q.items) > 0 {
			rec.cursor = max(rec.inbox.q.items[0].Seq, 1) - 1
		}
		s.nextSeq = max(s.nextSeq, next, 1)
		if n := len(rec.inbox.q.items); n > 0 {
			s.nextSeq = max(s.nextSeq, rec.inbox.q.items[n-1].Seq+1)
		}
		s.clients[c] = rec
	})
	type v1Stream struct {
		id      proto.URI
		st      *roomStream
		clients []proto.URI
	}
	var streams []v1Stream
	r.VectorEach(func(r *wire.Reader) {
		var id proto.URI
		id.DecodeTLS(r)
		var hub []byte
		r.Opaque(&hub)
		st := newRoomStream(id, string(hub))
		r.Uint64(&st.lastSeq)
		clients := readURIs(r)
		r.Uint64(&st.gaps)
		streams = append(streams, v1Stream{id, st, clients})
	})
	r.VectorEach(func(r *wire.Reader) {
		var d []byte
		r.Opaque(&d)
		q := &outQueue{}
		r.Uint64(&q.next)
		r.VectorEach(func(r *wire.Reader) {
			var it OutItem
			it.DecodeTLS(r)
			if n := len(q.q.items); r.OK() && (it.ID == 0 || n > 0 && q.q.items[n-1].ID >= it.ID) {
				r.Failf("outbox %s: item %d out of order", d, it.ID)
			}
			q.q.push(it)
			q.bytes += it.size()
			q.next = max(q.next, it.ID+1)
		})
		s.outbox[string(d)] = q
	})
	r.VectorEach(func(r *wire.Reader) {
		var rep room.Report
		decodeReport(r, &rep)
		s.restoreReport(rep)
	})
	r.VectorEach(func(r *wire.Reader) {
		var id, res []byte
		var at uint64
		r.Opaque(&id)
		r.Uint64(&at)
		r.Opaque(&res)
		if _, dup := s.dedup.index[string(id)]; !dup {
			s.dedup.add(dedupEntry{id: string(id), at: at, result: bytes.Clone(res)})
		}
	})
	r.Uint64(&s.lastAt)
	if err := r.Finish(); err != nil {
		return nil, fmt.Errorf("decode snapshot (format 1): %w", err)
	}
	for _, b := range rooms {
		rm, err := room.Restore(s.cfg.roomConfig(), bytes.Clone(b))
		if err != nil {
			return nil, err
		}
		s.rooms[rm.ID()] = rm
	}
	if err := wire.Unmarshal(bytes.Clone(keys), s.keys); err != nil {
		return nil, fmt.Errorf("decode key material: %w", err)
	}
	if err := wire.Unmarshal(bytes.Clone(book), s.consent); err != nil {
		return nil, fmt.Errorf("decode consent: %w", err)
	}
	if s.keys.Domain() != cfg.Domain || s.consent.Domain() != cfg.Domain {
		return nil, fmt.Errorf("the snapshot belongs to %s, this provider is %s", s.keys.Domain(), cfg.Domain)
	}
	for _, v := range streams {
		s.streams[v.id] = v.st
		for _, c := range v.clients {
			rec, ok := s.clients[c]
			if !ok {
				continue
			}
			v.st.subscribeAt(c, s.nextSeq)
			if i, found := slices.BinarySearch(rec.rooms, v.id); !found {
				rec.rooms = slices.Insert(slices.Clip(rec.rooms), i, v.id)
			}
		}
	}
	for _, u := range sortedKeys(s.users) {
		s.acct.noteUser(u)
	}
	s.rebuildLogIndex()
	s.rebuildOutboxIndex()
	return s, nil
}
