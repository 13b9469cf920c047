package fsm

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/room"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// Snapshot format 5 is a stream of records, so that a snapshot is written
// and read piece by piece and no single vector holds a whole table: the
// version byte, then records of a tag byte, a uint32 length and that many
// bytes, in section order (sectionRank), keys ascending within a
// section, child records right after their parent; an end record (tag 0,
// empty) closes it and nothing may follow. A new table is one more tag
// and section (capture, persist, and a case in decodeRecord).
const (
	// stateVersion 5: outbox item ids are numbered state-wide (the
	// header holds the next one and the drops of queues since
	// forgotten) and a queue record, which only a non-empty queue has,
	// holds no next id of its own. A state whose outbox is still
	// numbered per queue (CmdOutboxIDs not yet applied) is written in
	// format 4, as the previous release wrote it. Format 4 (fanout
	// payloads shared by several peers' outbox items stored once,
	// recPayload, with a next id per queue), format 3 (every item with its own copy) and format
	// 1 (the whole-state encoding of the first release) are still
	// decoded; format 2 (the whole-state encoding with a hub section)
	// existed only in development builds and is refused.
	stateVersion   = 5
	stateVersionV4 = 4
	stateVersionV3 = 3
	stateVersionV1 = 1

	recEnd     byte = 0
	recHeader  byte = 1  // domain, clock, next delivery seq; next outbox item id, drops of forgotten queues (format 5)
	recRoom    byte = 2  // a hosted room (room.Room encoding)
	recKeys    byte = 3  // the key material store
	recConsent byte = 4  // the consent book
	recUser    byte = 5  // a user's profile
	recClient  byte = 6  // a client: token hash, cursor, inbox bookkeeping, rooms
	recInbox   byte = 7  // an inbox item of the client before it
	recStream  byte = 8  // a room stream: hub, sequence, windows, log bookkeeping
	recEntry   byte = 9  // a log entry of the stream before it
	recQueue   byte = 10 // a peer's outbox queue
	recOutItem byte = 11 // an item of the queue before it
	recReport  byte = 12 // an abuse report
	recDedup   byte = 13 // a remembered request id and its result
	recHub     byte = 14 // the hub's external-sender secret (hubproposals.go)
	recAccount byte = 15 // the accounts: passwords, devices, links, invites (accounts.go)
	recPayload byte = 16 // an outbox item's data shared by several items (format 4 on), before the queues
	recBounds  byte = 17 // the replicated state bounds, once set (bounds.go)
	// recPasswordFailures holds the users' password-failure schedules
	// that lie in the future (passwordguard.go), when there are any.
	recPasswordFailures byte = 18
)

// sectionRank orders the sections: by tag, but the payloads, which the
// queues' items refer to, come before the queues.
func sectionRank(tag byte) int {
	if tag == recPayload {
		return 2*int(recQueue) - 1
	}
	return 2 * int(tag)
}

// Out item data forms (format 4 on).
const (
	itemDataInline  = 0 // opaque data follows
	itemDataPayload = 1 // a uint32 index of a recPayload record follows
)

// maxRecord bounds one record: the largest vector the TLS presentation
// language can carry.
const maxRecord = 1<<30 - 1

// parentOf names the record a child record must follow.
var parentOf = map[byte]byte{recInbox: recClient, recEntry: recStream, recOutItem: recQueue}

// view is a consistent capture of the state: what Snapshot takes under
// the lock, made of copies of small headers and references to values that
// are never modified in place, so that it is encoded after the lock is
// released while Apply goes on.
type view struct {
	domain          string
	lastAt, nextSeq uint64
	outWide         bool
	outNext         uint64
	outDroppedGone  uint64
	rooms           []roomView
	keys, consent   []byte
	hubSecret       []byte
	accounts        []byte
	bounds          *Bounds // nil: not replicated
	failures        []userSchedule
	users           []userView
	clients         []clientView
	streams         []streamView
	queues          []queueView
	reports         []keptReport
	dedup           []dedupEntry
}

type roomView struct {
	id proto.URI
	rm *room.Room // frozen
}

type userView struct {
	uri     proto.URI
	profile []proto.ProfileField
}

type clientView struct {
	uri         proto.URI
	tokenHash   []byte
	cursor      uint64
	items       []Item
	lostThrough uint64
	rooms       []proto.URI
}

type streamView struct {
	id, hub       string
	lastSeq, gaps uint64
	subs          []subscription
	entries       []logEntry
	lostThrough   uint64
	appends       uint64
	digests       [][]byte
}

type queueView struct {
	domain        string
	next, dropped uint64
	items         []OutItem
}

// capture takes the view. Its cost is a pass over the tables' keys plus a
// copy of each changed room's lists of pointers; the key material store,
// the consent book and the accounts, which have no such copies, are
// encoded here when a command since the last capture may have changed
// them.
func (s *State) capture() (*view, error) {
	v := &view{domain: s.cfg.Domain, lastAt: s.lastAt, nextSeq: s.nextSeq, outWide: s.outWide, outNext: s.outNext, outDroppedGone: s.outDroppedGone,
		reports: s.reports.items, dedup: s.dedup.q.items,
		rooms: make([]roomView, 0, len(s.rooms)), users: make([]userView, 0, len(s.users)), clients: make([]clientView, 0, len(s.clients)),
		streams: make([]streamView, 0, len(s.streams)), queues: make([]queueView, 0, len(s.outbox))}
	for id, rm := range s.rooms {
		f := s.frozen[id]
		if f == nil {
			f = rm.Frozen()
			s.frozen[id] = f
		}
		v.rooms = append(v.rooms, roomView{id, f})
	}
	var err error
	if s.keysEnc == nil {
		if s.keysEnc, err = wire.Marshal(s.keys); err != nil {
			return nil, fmt.Errorf("encode key material: %w", err)
		}
	}
	if s.consentEnc == nil {
		if s.consentEnc, err = wire.Marshal(s.consent); err != nil {
			return nil, fmt.Errorf("encode consent: %w", err)
		}
	}
	if s.acctEnc == nil {
		if s.acctEnc, err = wire.Marshal(&s.acct); err != nil {
			return nil, fmt.Errorf("encode accounts: %w", err)
		}
	}
	v.keys, v.consent, v.accounts, v.hubSecret = s.keysEnc, s.consentEnc, s.acctEnc, s.hubSecret
	if s.boundsSet {
		b := s.cfg.Bounds
		v.bounds = &b
	}
	v.failures = s.acct.passwordFailures(s.lastAt)
	for u, rec := range s.users {
		v.users = append(v.users, userView{u, rec.profile})
	}
	for c, rec := range s.clients {
		v.clients = append(v.clients, clientView{uri: c, tokenHash: rec.tokenHash, cursor: rec.cursor, items: rec.inbox.q.items,
			lostThrough: rec.inbox.lostThrough, rooms: rec.rooms}) // replaced, never edited, on change
	}
	for id, st := range s.streams {
		v.streams = append(v.streams, streamView{id: string(id), hub: st.hub, lastSeq: st.lastSeq, gaps: st.gaps, subs: slices.Clone(st.subs),
			entries: st.log.q.items, lostThrough: st.log.lostThrough, appends: st.log.appends, digests: st.digests.digests})
	}
	for d, q := range s.outbox {
		v.queues = append(v.queues, queueView{domain: d, next: q.next, dropped: q.dropped, items: q.q.items})
	}
	return v, nil
}

// recordWriter writes records to a buffered stream.
type recordWriter struct {
	out *bufio.Writer
	buf []byte // reused for each record's payload
	err error
}

// record writes one record whose payload body encodes.
func (rw *recordWriter) record(tag byte, body func(w *wire.Writer)) {
	if rw.err != nil {
		return
	}
	w := wire.NewWriter(rw.buf[:0])
	body(w)
	payload, err := w.Bytes()
	if err == nil && len(payload) > maxRecord {
		err = fmt.Errorf("a record of %d bytes exceeds the %d a record may hold", len(payload), maxRecord)
	}
	if err != nil {
		rw.err = fmt.Errorf("snapshot record %d: %w", tag, err)
		return
	}
	if cap(payload) <= 4<<20 {
		rw.buf = payload // keep small buffers; let a huge one go
	}
	var hdr [5]byte
	hdr[0] = tag
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(payload)))
	if _, err := rw.out.Write(hdr[:]); err != nil {
		rw.err = err
		return
	}
	if _, err := rw.out.Write(payload); err != nil {
		rw.err = err
	}
}

// persist encodes the view to out, section by section.
func (v *view) persist(out io.Writer) error {
	bw := bufio.NewWriterSize(out, 256<<10)
	rw := &recordWriter{out: bw}
	version := byte(stateVersionV4)
	if v.outWide {
		version = stateVersion
	}
	if err := bw.WriteByte(version); err != nil {
		return err
	}
	rw.record(recHeader, func(w *wire.Writer) {
		w.Opaque([]byte(v.domain))
		w.Uint64(v.lastAt)
		w.Uint64(v.nextSeq)
		if v.outWide {
			w.Uint64(v.outNext)
			w.Uint64(v.outDroppedGone)
		}
	})
	slices.SortFunc(v.rooms, func(a, b roomView) int { return cmp.Compare(a.id, b.id) })
	for _, r := range v.rooms {
		rw.record(recRoom, r.rm.EncodeTLS)
	}
	rw.record(recKeys, func(w *wire.Writer) { w.Raw(v.keys) })
	rw.record(recConsent, func(w *wire.Writer) { w.Raw(v.consent) })
	slices.SortFunc(v.users, func(a, b userView) int { return cmp.Compare(a.uri, b.uri) })
	for _, u := range v.users {
		rw.record(recUser, func(w *wire.Writer) { encodeUser(w, u.uri, u.profile) })
	}
	slices.SortFunc(v.clients, func(a, b clientView) int { return cmp.Compare(a.uri, b.uri) })
	for _, c := range v.clients {
		rw.record(recClient, func(w *wire.Writer) {
			c.uri.EncodeTLS(w)
			w.Opaque(c.tokenHash)
			w.Uint64(c.cursor)
			w.Uint64(c.lostThrough)
			writeURIs(w, c.rooms)
		})
		for i := range c.items {
			rw.record(recInbox, c.items[i].EncodeTLS)
		}
	}
	slices.SortFunc(v.streams, func(a, b streamView) int { return cmp.Compare(a.id, b.id) })
	for _, st := range v.streams {
		rw.record(recStream, func(w *wire.Writer) {
			w.Opaque([]byte(st.id))
			w.Opaque([]byte(st.hub))
			w.Uint64(st.lastSeq)
			w.Uint64(st.gaps)
			w.Vector(func(w *wire.Writer) {
				for _, sub := range st.subs {
					sub.client.EncodeTLS(w)
					w.Uint64(sub.from)
					w.Uint64(sub.until)
				}
			})
			w.Uint64(st.lostThrough)
			w.Uint64(st.appends)
			(&digestRing{st.digests}).encodeTLS(w)
		})
		for i := range st.entries {
			e := &st.entries[i]
			rw.record(recEntry, func(w *wire.Writer) {
				w.Uint64(e.seq)
				w.Uint64(e.hubSeq)
				w.Uint64(e.at)
				w.Uint64(e.stored)
				w.Opaque(e.data)
				writeURIs(w, e.exclude)
			})
		}
	}
	slices.SortFunc(v.queues, func(a, b queueView) int { return cmp.Compare(a.domain, b.domain) })
	payloads := v.sharedPayloads()
	for _, data := range payloads.list {
		rw.record(recPayload, func(w *wire.Writer) { w.Opaque(data) })
	}
	for _, q := range v.queues {
		rw.record(recQueue, func(w *wire.Writer) {
			w.Opaque([]byte(q.domain))
			if !v.outWide {
				w.Uint64(q.next)
			}
			w.Uint64(q.dropped)
		})
		for i := range q.items {
			rw.record(recOutItem, func(w *wire.Writer) { encodeOutItem(w, &q.items[i], payloads.index) })
		}
	}
	for i := range v.reports {
		rw.record(recReport, func(w *wire.Writer) { encodeReport(w, &v.reports[i].Report) })
	}
	for _, e := range v.dedup {
		rw.record(recDedup, func(w *wire.Writer) {
			w.Opaque([]byte(e.id))
			w.Uint64(e.at)
			w.Opaque(e.result)
		})
	}
	if v.hubSecret != nil {
		rw.record(recHub, func(w *wire.Writer) { w.Opaque(v.hubSecret) })
	}
	rw.record(recAccount, func(w *wire.Writer) { w.Raw(v.accounts) })
	if v.bounds != nil {
		rw.record(recBounds, func(w *wire.Writer) { v.bounds.encode(w) })
	}
	if len(v.failures) > 0 {
		rw.record(recPasswordFailures, func(w *wire.Writer) { encodeSchedules(w, v.failures) })
	}
	rw.record(recEnd, func(*wire.Writer) {})
	if rw.err != nil {
		return rw.err
	}
	return bw.Flush()
}

// sharedPayloads numbers the outbox data that several items share (one
// fanout message for several peers: the same bytes, dispatchEffects), in
// the order persist meets them.
func (v *view) sharedPayloads() (p struct {
	list  [][]byte
	index map[*byte]uint32
}) {
	seen := map[*byte]int{}
	for _, q := range v.queues {
		for i := range q.items {
			if d := q.items[i].Data; len(d) > 0 {
				seen[&d[0]]++
			}
		}
	}
	p.index = map[*byte]uint32{}
	for _, q := range v.queues {
		for i := range q.items {
			d := q.items[i].Data
			if len(d) == 0 || seen[&d[0]] < 2 {
				continue
			}
			if _, ok := p.index[&d[0]]; !ok {
				p.index[&d[0]] = uint32(len(p.list))
				p.list = append(p.list, d)
			}
		}
	}
	return p
}

// encodeOutItem writes an outbox item (format 4 on): its data inline, or the
// index of the payload record holding it.
func encodeOutItem(w *wire.Writer, it *OutItem, payloads map[*byte]uint32) {
	w.Uint64(it.ID)
	w.Uint8(uint8(it.Kind))
	it.Room.EncodeTLS(w)
	w.Uint64(it.Seq)
	if idx, ok := payloads[dataKey(it.Data)]; ok {
		w.Uint8(itemDataPayload)
		w.Uint32(idx)
	} else {
		w.Uint8(itemDataInline)
		w.Opaque(it.Data)
	}
	writeURIs(w, it.Exclude)
	w.Uint64(it.Enqueued)
}

func dataKey(d []byte) *byte {
	if len(d) == 0 {
		return nil
	}
	return &d[0]
}

// decodeOutItem reads what encodeOutItem wrote; payloads are the payload
// records read so far.
func decodeOutItem(r *wire.Reader, it *OutItem, payloads [][]byte) {
	r.Uint64(&it.ID)
	var k, form uint8
	r.Uint8(&k)
	it.Kind = OutKind(k)
	it.Room.DecodeTLS(r)
	r.Uint64(&it.Seq)
	r.Uint8(&form)
	switch form {
	case itemDataInline:
		r.Opaque(&it.Data)
		it.Data = bytes.Clone(it.Data)
	case itemDataPayload:
		var idx uint32
		r.Uint32(&idx)
		if r.OK() && int(idx) >= len(payloads) {
			r.Failf("outbox item %d refers to payload %d of %d", it.ID, idx, len(payloads))
			return
		}
		if r.OK() {
			it.Data = payloads[idx]
		}
	default:
		if r.OK() {
			r.Failf("outbox item %d: unknown data form %d", it.ID, form)
		}
	}
	it.Exclude = readURIs(r)
	r.Uint64(&it.Enqueued)
}

// decodeState reads a snapshot (format 5, 4 or 3, or the whole-state
// format 1 of earlier releases) into a fresh state for cfg, record by record.
func decodeState(cfg Config, r io.Reader) (*State, error) {
	br := bufio.NewReaderSize(r, 256<<10)
	v, err := br.ReadByte()
	if err != nil {
		return nil, fmt.Errorf("read snapshot format: %w", err)
	}
	switch v {
	case stateVersion, stateVersionV4, stateVersionV3:
	case stateVersionV1:
		data, err := io.ReadAll(br)
		if err != nil {
			return nil, fmt.Errorf("read snapshot: %w", err)
		}
		return decodeStateV1(cfg, data)
	default:
		return nil, fmt.Errorf("snapshot format %d, want %d (or %d, %d or %d)", v, stateVersion, stateVersionV4, stateVersionV3, stateVersionV1)
	}
	s, err := newState(cfg)
	if err != nil {
		return nil, err
	}
	d := &snapshotDecoder{s: s, seen: map[byte]bool{}, version: v}
	var hdr [5]byte
	var rec bytes.Buffer
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return nil, fmt.Errorf("decode snapshot: record header: %w", noEOF(err))
		}
		tag, n := hdr[0], binary.BigEndian.Uint32(hdr[1:])
		if n > maxRecord {
			return nil, fmt.Errorf("decode snapshot: a record of %d bytes", n)
		}
		// The buffer grows with what arrives, not with what the length
		// claims: a corrupt length cannot make it allocate a gigabyte.
		rec.Reset()
		if _, err := io.CopyN(&rec, br, int64(n)); err != nil {
			return nil, fmt.Errorf("decode snapshot: record %d: %w", tag, noEOF(err))
		}
		buf := rec.Bytes()
		if tag == recEnd {
			if n != 0 {
				return nil, errors.New("decode snapshot: the end record is not empty")
			}
			if _, err := br.ReadByte(); err != io.EOF {
				return nil, errors.New("decode snapshot: data after the end record")
			}
			break
		}
		if err := d.record(tag, buf); err != nil {
			return nil, fmt.Errorf("decode snapshot: %w", err)
		}
	}
	if err := d.finish(); err != nil {
		return nil, fmt.Errorf("decode snapshot: %w", err)
	}
	return s, nil
}

// encodeUser writes a user's profile; both snapshot formats hold users so.
func encodeUser(w *wire.Writer, u proto.URI, profile []proto.ProfileField) {
	u.EncodeTLS(w)
	w.Vector(func(w *wire.Writer) {
		for i := range profile {
			profile[i].EncodeTLS(w)
		}
	})
}

// decodeUser reads what encodeUser wrote.
func decodeUser(r *wire.Reader) (proto.URI, *userRecord) {
	var u proto.URI
	u.DecodeTLS(r)
	rec := &userRecord{}
	r.VectorEach(func(r *wire.Reader) {
		var f proto.ProfileField
		f.DecodeTLS(r)
		rec.profile = append(rec.profile, f)
	})
	return u, rec
}

func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// snapshotDecoder checks the record order and fills the state.
type snapshotDecoder struct {
	s       *State
	version byte
	seen    map[byte]bool
	// payloads are the shared outbox data read so far (format 4 on).
	payloads [][]byte
	section  byte // the last parent tag
	last     []byte
	client   *clientRecord
	stream   *roomStream
	queue    *outQueue
	// lastChild is the last child key (seq, ID) under the current parent.
	lastChild uint64
}

// keyless sections repeat their records without keys, in their own
// order.
var keyless = map[byte]bool{recReport: true, recDedup: true, recPayload: true}

// order checks that tag may come now and that key follows the previous
// key of its section.
func (d *snapshotDecoder) order(tag byte, key []byte) error {
	if p, child := parentOf[tag]; child {
		if d.section != p {
			return fmt.Errorf("record %d outside its parent %d", tag, p)
		}
		return nil
	}
	switch {
	case d.section != 0 && sectionRank(tag) < sectionRank(d.section):
		return fmt.Errorf("record %d after section %d", tag, d.section)
	case tag != d.section:
		d.section, d.last = tag, nil
	case keyless[tag]:
	case key == nil:
		return fmt.Errorf("record %d repeated", tag)
	case bytes.Compare(key, d.last) <= 0:
		return fmt.Errorf("record %d: key %q does not follow %q", tag, key, d.last)
	}
	d.last = bytes.Clone(key)
	d.lastChild = 0
	d.seen[tag] = true
	return nil
}

// childKey checks that a child's key grows.
func (d *snapshotDecoder) childKey(k uint64) error {
	if k <= d.lastChild {
		return fmt.Errorf("child record %d after %d", k, d.lastChild)
	}
	d.lastChild = k
	return nil
}

func (d *snapshotDecoder) record(tag byte, b []byte) error {
	s := d.s
	r := wire.NewReader(b)
	var key []byte
	switch tag {
	case recHeader:
		var domain []byte
		r.Opaque(&domain)
		r.Uint64(&s.lastAt)
		r.Uint64(&s.nextSeq)
		if d.version >= stateVersion {
			s.outWide = true
			r.Uint64(&s.outNext)
			r.Uint64(&s.outDroppedGone)
		}
		if r.OK() && string(domain) != s.cfg.Domain {
			return fmt.Errorf("the snapshot belongs to %s, this provider is %s", domain, s.cfg.Domain)
		}
	case recRoom:
		rm, err := room.Restore(s.cfg.roomConfig(), bytes.Clone(b))
		if err != nil {
			return err
		}
		key = []byte(rm.ID())
		if err := d.order(tag, key); err != nil {
			return err
		}
		s.rooms[rm.ID()] = rm
		return nil
	case recKeys:
		if err := wire.Unmarshal(bytes.Clone(b), s.keys); err != nil {
			return fmt.Errorf("key material: %w", err)
		}
		if s.keys.Domain() != s.cfg.Domain {
			return fmt.Errorf("the key material belongs to %s, this provider is %s", s.keys.Domain(), s.cfg.Domain)
		}
		return d.order(tag, nil)
	case recConsent:
		if err := wire.Unmarshal(bytes.Clone(b), s.consent); err != nil {
			return fmt.Errorf("consent: %w", err)
		}
		if s.consent.Domain() != s.cfg.Domain {
			return fmt.Errorf("the consent book belongs to %s, this provider is %s", s.consent.Domain(), s.cfg.Domain)
		}
		return d.order(tag, nil)
	case recUser:
		u, rec := decodeUser(r)
		key = []byte(u)
		defer func() { s.users[u] = rec }()
	case recClient:
		var c proto.URI
		c.DecodeTLS(r)
		rec := &clientRecord{}
		r.Opaque(&rec.tokenHash)
		rec.tokenHash = bytes.Clone(rec.tokenHash)
		r.Uint64(&rec.cursor)
		r.Uint64(&rec.inbox.lostThrough)
		rec.rooms = readURIs(r)
		if r.OK() && (!slices.IsSorted(rec.rooms) || len(slices.Compact(slices.Clone(rec.rooms))) != len(rec.rooms)) {
			r.Failf("client %s: rooms not sorted and unique", c)
		}
		key = []byte(c)
		d.client = rec
		defer func() { s.clients[c] = rec }()
	case recInbox:
		var it Item
		it.DecodeTLS(r)
		if err := r.Finish(); err != nil {
			return fmt.Errorf("inbox item: %w", err)
		}
		if err := d.order(tag, nil); err != nil {
			return err
		}
		if err := d.childKey(it.Seq); err != nil {
			return err
		}
		d.client.inbox.q.push(it)
		d.client.inbox.bytes += it.size()
		return nil
	case recStream:
		var id, hub []byte
		r.Opaque(&id)
		r.Opaque(&hub)
		st := newRoomStream(proto.URI(id), string(hub))
		r.Uint64(&st.lastSeq)
		r.Uint64(&st.gaps)
		r.VectorEach(func(r *wire.Reader) {
			var sub subscription
			sub.client.DecodeTLS(r)
			r.Uint64(&sub.from)
			r.Uint64(&sub.until)
			if r.OK() && len(st.subs) > 0 && st.subs[len(st.subs)-1].client >= sub.client {
				r.Failf("stream %s: windows not sorted by client", id)
			}
			st.subs = append(st.subs, sub)
		})
		r.Uint64(&st.log.lostThrough)
		r.Uint64(&st.log.appends)
		st.digests.decodeTLS(r)
		key = bytes.Clone(id)
		d.stream = st
		defer func() { s.streams[st.id] = st }()
	case recEntry:
		var e logEntry
		r.Uint64(&e.seq)
		r.Uint64(&e.hubSeq)
		r.Uint64(&e.at)
		r.Uint64(&e.stored)
		r.Opaque(&e.data)
		e.data = bytes.Clone(e.data)
		e.exclude = readURIs(r)
		if r.OK() && (!slices.IsSorted(e.exclude) || len(slices.Compact(slices.Clone(e.exclude))) != len(e.exclude)) {
			r.Failf("log entry %d: exclusions not sorted and unique", e.seq)
		}
		if err := r.Finish(); err != nil {
			return fmt.Errorf("log entry: %w", err)
		}
		if err := d.order(tag, nil); err != nil {
			return err
		}
		if err := d.childKey(e.seq); err != nil {
			return err
		}
		d.stream.log.q.push(e)
		d.stream.log.bytes += e.size()
		return nil
	case recQueue:
		var dom []byte
		r.Opaque(&dom)
		q := &outQueue{}
		if d.version < stateVersion {
			r.Uint64(&q.next) // numbered per queue
		}
		r.Uint64(&q.dropped)
		key = bytes.Clone(dom)
		d.queue = q
		defer func() { s.outbox[string(dom)] = q }()
	case recPayload:
		if d.version < stateVersionV4 {
			return fmt.Errorf("a payload record in a format %d snapshot", d.version)
		}
		var data []byte
		r.Opaque(&data)
		if err := r.Finish(); err != nil {
			return fmt.Errorf("payload: %w", err)
		}
		if err := d.order(tag, nil); err != nil {
			return err
		}
		d.payloads = append(d.payloads, bytes.Clone(data))
		return nil
	case recOutItem:
		var it OutItem
		if d.version == stateVersionV3 {
			it.DecodeTLS(r)
		} else {
			decodeOutItem(r, &it, d.payloads)
		}
		if err := r.Finish(); err != nil {
			return fmt.Errorf("outbox item: %w", err)
		}
		if err := d.order(tag, nil); err != nil {
			return err
		}
		if err := d.childKey(it.ID); err != nil {
			return err
		}
		if next := d.itemIDBound(); it.ID >= next {
			return fmt.Errorf("outbox item %d at or past the next id %d", it.ID, next)
		}
		d.queue.q.push(it)
		d.queue.bytes += it.size()
		return nil
	case recReport:
		var rep room.Report
		decodeReport(r, &rep)
		if err := r.Finish(); err != nil {
			return fmt.Errorf("report: %w", err)
		}
		if err := d.order(tag, nil); err != nil {
			return err
		}
		s.restoreReport(rep)
		return nil
	case recDedup:
		var id, res []byte
		var at uint64
		r.Opaque(&id)
		r.Uint64(&at)
		r.Opaque(&res)
		if err := r.Finish(); err != nil {
			return fmt.Errorf("dedup entry: %w", err)
		}
		if err := d.order(tag, nil); err != nil {
			return err
		}
		if _, dup := s.dedup.index[string(id)]; dup {
			return fmt.Errorf("request id %x remembered twice", id)
		}
		s.dedup.add(dedupEntry{id: string(id), at: at, result: bytes.Clone(res)})
		return nil
	case recHub:
		var secret []byte
		r.Opaque(&secret)
		if err := r.Finish(); err != nil {
			return fmt.Errorf("hub record: %w", err)
		}
		if len(secret) == 0 {
			return errors.New("hub record: an empty secret")
		}
		s.hubSecret = bytes.Clone(secret)
		var err error
		if s.hubKeys, err = room.NewHubKeys(s.cfg.Domain, s.hubSecret); err != nil {
			return fmt.Errorf("hub record: %w", err)
		}
		return d.order(tag, nil)
	case recAccount:
		if err := wire.Unmarshal(bytes.Clone(b), &s.acct); err != nil {
			return fmt.Errorf("accounts: %w", err)
		}
		return d.order(tag, nil)
	case recBounds:
		var b Bounds
		b.decode(r)
		if err := b.validate(); err != nil {
			return fmt.Errorf("bounds record: %w", err)
		}
		s.useBounds(b)
	case recPasswordFailures:
		s.acct.decodeSchedules(r)
	default:
		return fmt.Errorf("unknown record %d", tag)
	}
	if err := r.Finish(); err != nil {
		return fmt.Errorf("record %d: %w", tag, err)
	}
	return d.order(tag, key)
}

// itemIDBound is what every outbox item id read now must be below: the
// queue's own next id before format 5, the state's after.
func (d *snapshotDecoder) itemIDBound() uint64 {
	if d.version < stateVersion {
		return d.queue.next
	}
	return d.s.outNext
}

// finish checks the sections every snapshot has and rebuilds the derived
// state.
func (d *snapshotDecoder) finish() error {
	for _, t := range []byte{recHeader, recKeys, recConsent} {
		if !d.seen[t] {
			return fmt.Errorf("the snapshot has no record %d", t)
		}
	}
	s := d.s
	for _, rec := range s.clients {
		if n := len(rec.inbox.q.items); n > 0 && rec.inbox.q.items[n-1].Seq >= max(s.nextSeq, 1) {
			return errors.New("an inbox item is numbered past the next delivery seq")
		}
	}
	for _, st := range s.streams {
		if n := len(st.log.q.items); n > 0 && st.log.q.items[n-1].seq >= max(s.nextSeq, 1) {
			return fmt.Errorf("stream %s: a log entry is numbered past the next delivery seq", st.id)
		}
	}
	if d.version >= stateVersion {
		for _, dom := range sortedKeys(s.outbox) {
			if len(s.outbox[dom].q.items) == 0 {
				return fmt.Errorf("outbox %s: a queue with no items", dom)
			}
		}
	}
	for _, u := range sortedKeys(s.users) {
		s.acct.noteUser(u)
	}
	s.rebuildLogIndex()
	s.rebuildOutboxIndex()
	return nil
}
