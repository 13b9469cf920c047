package fsm

import (
	"math"
	"slices"

	"github.com/mimihub/mimi-hub/mimi/proto"
)

// fifo is a queue that grows at the end and shrinks at the front without
// ever writing into its backing array, so a snapshot may keep a slice of
// it while Apply goes on (capture). It reallocates once the dropped
// prefix outgrows the live part, so dropped elements are freed.
type fifo[T any] struct {
	items   []T
	dropped int // elements dropped since the array was allocated
}

func (q *fifo[T]) push(v T) { q.items = append(q.items, v) }

func (q *fifo[T]) drop(n int) {
	if n <= 0 {
		return
	}
	q.items = q.items[n:]
	q.dropped += n
	switch {
	case len(q.items) == 0:
		q.items, q.dropped = nil, 0
	case q.dropped > 64 && q.dropped > len(q.items):
		q.items, q.dropped = slices.Clone(q.items), 0
	}
}

// logEntry is one room message in a room's log, stored once for every
// local reader.
type logEntry struct {
	seq    uint64 // delivery seq (Item.Seq)
	hubSeq uint64
	at     uint64 // the hub's acceptance time (Item.At)
	stored uint64 // when this provider stored it (ms, FSM clock): its age
	data   []byte // the MLSMessage encoding; never modified
	// exclude lists, sorted, the local clients that must not see it.
	exclude []proto.URI
}

// entryOverhead is what an entry costs beyond its data, for the byte caps.
const entryOverhead = 64

func (e *logEntry) size() int64 {
	n := int64(len(e.data)) + entryOverhead
	for _, c := range e.exclude {
		n += int64(len(c)) + 16
	}
	return n
}

func (e *logEntry) excludes(c proto.URI) bool {
	_, found := slices.BinarySearch(e.exclude, c)
	return found
}

// roomLog is a room's messages for local readers, oldest first. Entries
// leave it when every window on it has read them, or by retention (age,
// count and bytes per room; bytes across all rooms), which readers still
// behind learn as a gap.
type roomLog struct {
	q     fifo[logEntry]
	bytes int64
	// lostThrough is the highest seq dropped by retention: a reader whose
	// window reaches past its cursor up to it missed messages.
	lostThrough uint64
	// appends counts entries appended since the last read trim.
	appends uint64
}

// first returns the seq of the oldest entry (MaxUint64 when empty).
func (l *roomLog) first() uint64 {
	if len(l.q.items) == 0 {
		return math.MaxUint64
	}
	return l.q.items[0].seq
}

// after returns the index of the first entry with seq > seq.
func (l *roomLog) after(seq uint64) int {
	i, _ := slices.BinarySearchFunc(l.q.items, seq+1, func(e logEntry, s uint64) int {
		switch {
		case e.seq < s:
			return -1
		case e.seq > s:
			return 1
		}
		return 0
	})
	return i
}

// dropFront drops the n oldest entries; lost marks them as dropped by
// retention rather than read. It returns the bytes freed.
func (l *roomLog) dropFront(n int, lost bool) int64 {
	var freed int64
	for i := range n {
		freed += l.q.items[i].size()
	}
	if lost && n > 0 {
		l.lostThrough = max(l.lostThrough, l.q.items[n-1].seq)
	}
	l.bytes -= freed
	l.q.drop(n)
	return freed
}

// readTrimEvery is how many appends a room with many readers waits
// between read trims: finding what every reader has read costs a pass over
// its readers.
const (
	readTrimEvery      = 64
	readTrimEveryEntry = 64 // rooms with at most this many windows trim on every append
)

// takeSeq assigns the next delivery seq.
func (s *State) takeSeq() uint64 {
	if s.nextSeq == 0 {
		s.nextSeq = 1
	}
	seq := s.nextSeq
	s.nextSeq++
	return seq
}

// lastSeq is the last delivery seq assigned (0 before the first).
func (s *State) lastDelivery() uint64 { return max(s.nextSeq, 1) - 1 }

// subscribeClient opens c's window on st from the next delivery. It
// refuses when c already follows MaxSubscriptions rooms.
func (s *State) subscribeClient(c proto.URI, st *roomStream) *Result {
	rec, ok := s.clients[c]
	if !ok {
		return refused(NotFound, "no client %s", c)
	}
	i, has := slices.BinarySearch(rec.rooms, st.id)
	if !has && len(rec.rooms) >= s.cfg.MaxSubscriptions {
		return refused(Limit, "client %s follows %d rooms, the most allowed", c, len(rec.rooms))
	}
	st.subscribeAt(c, s.lastDelivery()+1)
	if !has {
		// A new list, never an edit in place: a snapshot may hold the
		// old one.
		rec.rooms = slices.Insert(slices.Clip(rec.rooms), i, st.id)
	}
	return nil
}

// unsubscribeClient closes c's window on st; what it delivered stays
// readable until c reads past it or retention drops it.
func (s *State) unsubscribeClient(c proto.URI, st *roomStream) {
	st.unsubscribeAt(c, s.lastDelivery())
	if _, open := st.window(c); !open {
		s.forgetRoom(c, st)
	} else if rec, ok := s.clients[c]; ok {
		s.closeFinishedWindows(c, rec)
	}
}

// forgetRoom removes st from c's rooms once c has no window on it, and
// st itself once nobody follows it, nothing is in its log and it is not
// hosted here.
func (s *State) forgetRoom(c proto.URI, st *roomStream) {
	if rec, ok := s.clients[c]; ok {
		if i, found := slices.BinarySearch(rec.rooms, st.id); found {
			rec.rooms = slices.Concat(rec.rooms[:i], rec.rooms[i+1:]) // a new list (see subscribeClient)
		}
	}
	s.dropIdleStream(st)
}

func (s *State) dropIdleStream(st *roomStream) {
	if len(st.subs) > 0 || len(st.log.q.items) > 0 {
		return
	}
	if _, hosted := s.rooms[st.id]; hosted {
		return
	}
	delete(s.streams, st.id)
}

// closeFinishedWindows drops c's closed windows it has read to their end.
func (s *State) closeFinishedWindows(c proto.URI, rec *clientRecord) {
	for _, id := range slices.Clone(rec.rooms) {
		st := s.streams[id]
		if st == nil {
			continue
		}
		if w, ok := st.window(c); ok && w.until != 0 && rec.cursor >= w.until {
			st.dropWindow(c)
			s.forgetRoom(c, st)
		}
	}
}

// appendLog stores a room message for the readers subscribed now, then
// applies retention: per room (age, entries, bytes), then what every
// reader has read, then the provider-wide byte cap, oldest first.
func (s *State) appendLog(st *roomStream, e logEntry) {
	st.log.q.push(e)
	size := e.size()
	st.log.bytes += size
	s.logBytes += size
	st.log.appends++
	s.trimRetention(st, e.stored, 0)
	if len(st.subs) <= readTrimEveryEntry || st.log.appends >= readTrimEvery {
		s.trimRead(st)
	}
	s.logs.place(st)
	s.trimTotal(st)
}

// trimRetention drops a room's entries beyond its age, count and byte
// bounds at time now, keeping the newest. read is what every reader is
// known to have read (dropRetained).
func (s *State) trimRetention(st *roomStream, now, read uint64) {
	r := s.cfg.Retention
	l := &st.log
	n := 0
	bytes := l.bytes
	for n < len(l.q.items)-1 {
		e := &l.q.items[n]
		if len(l.q.items)-n <= r.RoomEntries && bytes <= r.RoomBytes && e.stored+r.MaxAge >= now {
			break
		}
		bytes -= e.size()
		n++
	}
	s.dropRetained(st, n, read)
}

// dropRetained drops st's n oldest entries by retention: readers that have
// not read them learn it as a gap. The entries after read (every reader's
// read position where known, else 0) are counted for operators: an upper
// bound on what readers missed, exact where read is known.
func (s *State) dropRetained(st *roomStream, n int, read uint64) {
	for _, e := range st.log.q.items[:n] {
		if e.seq > read {
			s.retentionDropped++
			s.retentionDroppedBytes += e.size()
		}
	}
	s.logBytes -= st.log.dropFront(n, true)
}

// trimRead drops the entries every window on st has read (or ended
// before).
func (s *State) trimRead(st *roomStream) {
	st.log.appends = 0
	n := st.log.after(s.readPosition(st))
	s.logBytes -= st.log.dropFront(n, false)
}

// readPosition returns the seq every window on st has read (or ended
// before); MaxUint64 without a window that still reads.
func (s *State) readPosition(st *roomStream) uint64 {
	read := uint64(math.MaxUint64)
	for _, w := range st.subs {
		pos := w.from - 1
		if rec, ok := s.clients[w.client]; ok {
			pos = max(pos, rec.cursor)
		} else {
			continue // a window of a client that no longer exists
		}
		if w.until != 0 && pos >= w.until {
			continue // read to its end; the window goes at its next ack
		}
		read = min(read, pos)
	}
	return read
}

// trimTotal applies the provider-wide byte cap, dropping the oldest
// entries of the hub whose rooms hold the most first (loghubs.go), but
// never keep's newest.
func (s *State) trimTotal(keep *roomStream) {
	var held *hubLogs
	for s.logBytes > s.cfg.Retention.TotalBytes && s.logs.Len() > 0 {
		st := s.logs.top()
		if st == keep && len(st.log.q.items) <= 1 {
			// keep's hub holds only its newest entry (it is the newest of
			// all): the next hub gives way.
			held = s.logs.hold()
			continue
		}
		s.dropRetained(st, 1, 0)
		s.logs.place(st)
	}
	if held != nil {
		s.logs.unhold(held)
	}
}

// sweepLogs applies age retention and read trims to every log (CmdPrune),
// and forgets streams nobody follows any more.
func (s *State) sweepLogs(now uint64) {
	for _, id := range sortedKeys(s.streams) {
		st := s.streams[id]
		read := s.readPosition(st)
		s.trimRetention(st, now, read)
		if len(st.log.q.items) == 1 && st.log.q.items[0].stored+s.cfg.Retention.MaxAge < now {
			s.dropRetained(st, 1, read)
		}
		s.trimRead(st)
		s.logs.place(st)
		s.dropIdleStream(st)
	}
}

// deliverable reports whether a message of st excluding exclude (sorted,
// localExclude) has a reader here now.
func (st *roomStream) deliverable(exclude []proto.URI) bool {
	for _, w := range st.subs {
		if _, excluded := slices.BinarySearch(exclude, w.client); w.until == 0 && !excluded {
			return true
		}
	}
	return false
}

// clientStream reads a client's stream: its inbox and its windows on the
// room logs, merged in delivery order.
type clientStream struct {
	s    *State
	c    proto.URI
	rec  *clientRecord
	srcs []streamSource
}

// streamSource is one sorted source of a client's items.
type streamSource struct {
	inbox []Item      // the inbox, or
	st    *roomStream // a room's log through
	w     subscription
	i     int
}

func (src *streamSource) skip(c proto.URI) {
	if src.st == nil {
		return
	}
	es := src.st.log.q.items
	for src.i < len(es) && es[src.i].excludes(c) {
		src.i++
	}
	if src.i < len(es) && !src.w.covers(es[src.i].seq) {
		src.i = len(es)
	}
}

func (src *streamSource) head() (uint64, bool) {
	if src.st == nil {
		if src.i < len(src.inbox) {
			return src.inbox[src.i].Seq, true
		}
		return 0, false
	}
	if es := src.st.log.q.items; src.i < len(es) {
		return es[src.i].seq, true
	}
	return 0, false
}

func (src *streamSource) item() Item {
	if src.st == nil {
		return src.inbox[src.i]
	}
	e := &src.st.log.q.items[src.i]
	return Item{Seq: e.seq, Kind: ItemMessage, Room: src.st.id, HubSeq: e.hubSeq, At: e.at, Data: e.data}
}

// read returns up to limit items after seq, whether items after seq were
// dropped unread, and the last seq of the client's stream. Acknowledged
// items are gone: reading from before the cursor reads from the cursor.
func (cs *clientStream) read(after uint64, limit int) (items []Item, gap bool, last uint64) {
	rec := cs.rec
	after = max(after, rec.cursor)
	last = rec.cursor
	in := rec.inbox.q.items
	if n := len(in); n > 0 {
		last = max(last, in[n-1].Seq)
	}
	gap = rec.inbox.lostThrough > after
	i, _ := slices.BinarySearchFunc(in, after+1, func(it Item, s uint64) int {
		switch {
		case it.Seq < s:
			return -1
		case it.Seq > s:
			return 1
		}
		return 0
	})
	cs.srcs = append(cs.srcs, streamSource{inbox: in, i: i})
	for _, id := range rec.rooms {
		st := cs.s.streams[id]
		if st == nil {
			continue
		}
		w, ok := st.window(cs.c)
		if !ok {
			continue
		}
		start := max(after, w.from-1)
		end := w.until
		if end == 0 {
			end = math.MaxUint64
		}
		if lost := min(st.log.lostThrough, end); lost > start {
			gap = true
		}
		// The window's newest entry for this client: scan back from the
		// window's end past the few entries that exclude it.
		es := st.log.q.items
		hi := len(es)
		if w.until != 0 {
			hi = st.log.after(w.until)
		}
		for j := hi - 1; j >= 0 && es[j].seq > last && es[j].seq >= w.from; j-- {
			if !es[j].excludes(cs.c) {
				last = es[j].seq
				break
			}
		}
		src := streamSource{st: st, w: w, i: st.log.after(start)}
		src.skip(cs.c)
		if _, ok := src.head(); ok {
			cs.srcs = append(cs.srcs, src)
		}
	}
	for len(items) < limit {
		best, bestSeq := -1, uint64(0)
		for k := range cs.srcs {
			if seq, ok := cs.srcs[k].head(); ok && (best < 0 || seq < bestSeq) {
				best, bestSeq = k, seq
			}
		}
		if best < 0 {
			break
		}
		src := &cs.srcs[best]
		items = append(items, src.item())
		src.i++
		src.skip(cs.c)
	}
	return items, gap, last
}

// logStats sums the room logs.
func (s *State) logStats() (entries int, bytes int64) {
	for _, st := range s.streams {
		entries += len(st.log.q.items)
	}
	return entries, s.logBytes
}

// rebuildLogIndex recomputes the derived log bookkeeping after a restore.
func (s *State) rebuildLogIndex() {
	s.logBytes = 0
	all := make([]*roomStream, 0, len(s.streams))
	for _, id := range sortedKeys(s.streams) {
		s.logBytes += s.streams[id].log.bytes
		all = append(all, s.streams[id])
	}
	s.logs.rebuild(all)
}
