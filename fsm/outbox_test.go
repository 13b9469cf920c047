package fsm

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"testing"

	"github.com/mimihub/mimi-hub/mimi/proto"
)

// outboxModel is the outbox rules written the plain way: every peer's
// queue as a list, the largest found by scanning all of them. Until the
// switch (CmdOutboxIDs) each queue numbers its own items and stays once
// empty; after it, ids come from one counter past every id given, and a
// queue is deleted as soon as it is empty, its drops kept in one count
// for all deleted queues.
type outboxModel struct {
	maxItems              int
	maxBytes, totalBytes  int64
	queues                map[string][]OutItem
	dropped               map[string]uint64
	lastID                map[string]uint64 // per queue, before the switch
	wide                  bool
	next, droppedGone     uint64 // after the switch: the last id given
	sizeOf                func(*OutItem) int64
	pushed                int
	globalDrops, capDrops int
	// forgotten counts queues deleted; recreated counts enqueues to a
	// domain whose queue had been deleted.
	forgotten, recreated int
	seen                 map[string]bool
}

func (m *outboxModel) bytes(d string) int64 {
	var n int64
	for i := range m.queues[d] {
		n += m.sizeOf(&m.queues[d][i])
	}
	return n
}

func (m *outboxModel) total() int64 {
	var n int64
	for d := range m.queues {
		n += m.bytes(d)
	}
	return n
}

// maxID is the highest id any item was given.
func (m *outboxModel) maxID() uint64 {
	if m.wide {
		return m.next
	}
	var n uint64
	for _, id := range m.lastID {
		n = max(n, id)
	}
	return n
}

// forgetIfEmpty deletes d's queue once it holds nothing, after the switch.
func (m *outboxModel) forgetIfEmpty(d string) {
	if q, ok := m.queues[d]; ok && len(q) == 0 && m.wide {
		m.droppedGone += m.dropped[d]
		delete(m.dropped, d)
		delete(m.queues, d)
		m.forgotten++
	}
}

func (m *outboxModel) numberStateWide() {
	if m.wide {
		return
	}
	m.next = m.maxID()
	m.wide = true
	clear(m.lastID)
	for _, d := range slices.Sorted(maps.Keys(m.queues)) {
		m.forgetIfEmpty(d)
	}
}

func (m *outboxModel) push(d string, it OutItem) {
	if m.wide {
		m.next++
		it.ID = m.next
	} else {
		m.lastID[d]++
		it.ID = m.lastID[d]
	}
	if _, ok := m.queues[d]; !ok && m.seen[d] {
		m.recreated++
	}
	m.seen[d] = true
	m.queues[d] = append(m.queues[d], it)
	m.pushed++
	for q := m.queues[d]; len(q) > 1 && (len(q) > m.maxItems || m.bytes(d) > m.maxBytes); q = m.queues[d] {
		m.queues[d] = q[1:]
		m.dropped[d]++
		m.capDrops++
	}
	for m.total() > m.totalBytes {
		largest := ""
		for _, e := range slices.Sorted(maps.Keys(m.queues)) {
			if len(m.queues[e]) > 0 && (largest == "" || m.bytes(e) > m.bytes(largest)) {
				largest = e
			}
		}
		m.queues[largest] = m.queues[largest][1:]
		m.dropped[largest]++
		m.globalDrops++
		m.forgetIfEmpty(largest)
	}
}

func (m *outboxModel) delivered(d string, id uint64) {
	q, ok := m.queues[d]
	if !ok {
		return
	}
	for len(q) > 0 && q[0].ID <= id {
		q = q[1:]
	}
	m.queues[d] = q
	m.forgetIfEmpty(d)
}

// nonEmpty lists the domains with queued items, sorted.
func (m *outboxModel) nonEmpty() []string {
	var out []string
	for _, d := range slices.Sorted(maps.Keys(m.queues)) {
		if len(m.queues[d]) > 0 {
			out = append(out, d)
		}
	}
	return out
}

// TestOutboxModel runs random enqueues, deliveries (single, several peers
// in one record, and records with ids of queues long gone), snapshot
// restores and, at a random step, the switch to state-wide numbering
// (CmdOutboxIDs) against the model, with caps tight enough that both the
// per-peer caps and the total drop items, and after every step checks
// the queues (after the switch, only non-empty ones exist), the drop
// counts, the total and the size order. A twin state fed the same steps
// must encode to the same bytes: which queues are deleted must not depend
// on map order.
func TestOutboxModel(t *testing.T) {
	var globalDrops, capDrops, forgotten, recreated int
	for seed := range uint64(40) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			m := runOutboxModel(t, seed)
			globalDrops += m.globalDrops
			capDrops += m.capDrops
			forgotten += m.forgotten
			recreated += m.recreated
		})
	}
	// The run must have exercised every rule, or it checked nothing.
	if globalDrops == 0 || capDrops == 0 || forgotten == 0 || recreated == 0 {
		t.Fatalf("the total dropped %d items and the per-peer caps %d; %d queues were forgotten, %d made again; want all > 0",
			globalDrops, capDrops, forgotten, recreated)
	}
}

func runOutboxModel(t *testing.T, seed uint64) *outboxModel {
	rng := rand.New(rand.NewPCG(seed, 14))
	cfg := Config{Domain: "hub.example", Bounds: Bounds{OutboxLimit: 2 + rng.IntN(12), OutboxBytes: 300 + rng.Int64N(900), OutboxTotalBytes: 400 + rng.Int64N(2000)}}
	s, err := newState(cfg)
	if err != nil {
		t.Fatal(err)
	}
	twin, err := newState(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := &outboxModel{maxItems: s.cfg.OutboxLimit, maxBytes: s.cfg.OutboxBytes, totalBytes: s.cfg.OutboxTotalBytes,
		queues: map[string][]OutItem{}, dropped: map[string]uint64{}, lastID: map[string]uint64{}, seen: map[string]bool{}, sizeOf: (*OutItem).size}
	domains := make([]string, 1+rng.IntN(12))
	for i := range domains {
		domains[i] = fmt.Sprintf("peer%d.example", i)
	}
	switchAt := rng.IntN(200) // the first half of the seeds' steps run numbered per queue
	// upTo picks a delivery mark for d: one of its items, or any id ever
	// given (a late or repeated record, maybe for a queue since deleted).
	upTo := func(d string) uint64 {
		if q := m.queues[d]; len(q) > 0 && rng.IntN(3) > 0 {
			return q[rng.IntN(len(q))].ID
		}
		return rng.Uint64N(m.maxID() + 1)
	}
	for step := range 400 {
		d := domains[rng.IntN(len(domains))]
		switch r := rng.IntN(20); {
		case step == switchAt:
			res := s.numberOutboxStateWide()
			twin.numberOutboxStateWide()
			m.numberStateWide()
			if res.unchanged || !s.numberOutboxStateWide().unchanged {
				t.Fatalf("step %d: the first switch answered unchanged %v, or the second did not", step, res.unchanged)
			}
		case r < 12:
			it := OutItem{Kind: OutFanout, Room: proto.URI("mimi://hub.example/r/r1"), Seq: uint64(step + 1), Data: bytes.Repeat([]byte{byte(step)}, rng.IntN(200))}
			s.enqueue(d, it)
			twin.enqueue(d, it)
			m.push(d, it)
		case r < 16:
			id := upTo(d)
			s.deliveredTo(d, id)
			twin.deliveredTo(d, id)
			m.delivered(d, id)
		case r < 19:
			// One record for several peers, as the delivery worker writes
			// it: several queues may empty in one command.
			var b DeliveredManyBody
			for _, e := range domains {
				if rng.IntN(2) == 0 {
					b.Marks = append(b.Marks, DeliveredBody{Domain: e, UpTo: upTo(e)})
				}
			}
			before := mustEncode(t, s)
			res := s.deliveredMany(&b)
			twin.deliveredMany(&b)
			for _, mk := range b.Marks {
				m.delivered(mk.Domain, mk.UpTo)
			}
			if changed := !bytes.Equal(before, mustEncode(t, s)); changed == res.unchanged {
				t.Fatalf("step %d: the record changed the state: %v, answered unchanged: %v", step, changed, res.unchanged)
			}
		default:
			s = restoreState(t, s, cfg)
		}
		checkOutbox(t, step, s, m)
	}
	if a, b := mustEncode(t, s), mustEncode(t, twin); !bytes.Equal(a, b) {
		t.Fatal("two states fed the same steps encode differently")
	}
	return m
}

func restoreState(t *testing.T, s *State, cfg Config) *State {
	t.Helper()
	again, err := decodeState(cfg, bytes.NewReader(mustEncode(t, s)))
	if err != nil {
		t.Fatal(err)
	}
	return again
}

func checkOutbox(t *testing.T, step int, s *State, m *outboxModel) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("step %d: "+format, append([]any{step}, args...)...)
	}
	if s.outWide != m.wide {
		fail("numbered state-wide: %v, the model %v", s.outWide, m.wide)
	}
	if len(s.outbox) != len(m.queues) {
		fail("%d queues, the model has %d", len(s.outbox), len(m.queues))
	}
	var total int64
	var dropped uint64
	for d, q := range s.outbox {
		ids := make([]uint64, 0, len(q.q.items))
		for _, it := range q.q.items {
			ids = append(ids, it.ID)
		}
		var want []uint64
		for _, it := range m.queues[d] {
			want = append(want, it.ID)
		}
		if _, ok := m.queues[d]; !ok || !slices.Equal(ids, want) {
			fail("%s holds %v, the model %v", d, ids, want)
		}
		if m.wide && len(ids) == 0 {
			fail("%s is kept empty", d)
		}
		if q.dropped != m.dropped[d] {
			fail("%s dropped %d, the model %d", d, q.dropped, m.dropped[d])
		}
		if q.bytes != m.bytes(d) {
			fail("%s counts %d bytes, the model %d", d, q.bytes, m.bytes(d))
		}
		if q.domain != d {
			fail("the queue of %s names %s", d, q.domain)
		}
		total += q.bytes
		dropped += q.dropped
	}
	if s.outDroppedGone != m.droppedGone {
		fail("forgotten queues dropped %d, the model %d", s.outDroppedGone, m.droppedGone)
	}
	if all := dropped + s.outDroppedGone; all != uint64(m.globalDrops+m.capDrops) {
		fail("%d drops counted in all, %d made", all, m.globalDrops+m.capDrops)
	}
	if m.wide && s.outNext != m.next+1 {
		fail("the next item id is %d, the model's %d", s.outNext, m.next+1)
	}
	if s.outBytes != total || total != m.total() {
		fail("total %d, the queues hold %d, the model %d", s.outBytes, total, m.total())
	}
	if total > s.cfg.OutboxTotalBytes {
		fail("total %d over the bound %d", total, s.cfg.OutboxTotalBytes)
	}
	// The size order: every non-empty queue in it once, at its index, no
	// child larger than its parent.
	for i, q := range s.outHeap.items {
		if q.heapIndex != i || len(q.q.items) == 0 || s.outbox[q.domain] != q {
			fail("the size order is inconsistent at %d (%s)", i, q.domain)
		}
		if i > 0 && s.outHeap.Less(i, (i-1)/2) {
			fail("%s is larger than its parent in the size order", q.domain)
		}
	}
	want := m.nonEmpty()
	if len(want) != s.outHeap.Len() {
		fail("%d non-empty queues, %d in the size order", len(want), s.outHeap.Len())
	}
	if got := s.OutboxDomains(); !slices.Equal(got, want) {
		fail("OutboxDomains %v, the model %v", got, want)
	}
}

// TestOutboxTotalDropsFromTheFurthestBehind: unanswering domains cannot
// take the room a live peer needs. A room naming many domains that never
// answer fills their queues; once all queues together reach the total,
// the largest queue loses its oldest item, so the live peer, drained as
// it goes, loses nothing, and the total never passes its bound.
func TestOutboxTotalDropsFromTheFurthestBehind(t *testing.T) {
	cfg := Config{Domain: "hub.example", Bounds: Bounds{OutboxBytes: 64 << 10, OutboxTotalBytes: 256 << 10}}
	s, err := newState(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.numberOutboxStateWide()
	data := make([]byte, 1000)
	for i := range 2000 {
		it := OutItem{Kind: OutFanout, Room: "mimi://hub.example/r/r1", Seq: uint64(i + 1), Data: data}
		for j := range 50 {
			s.enqueue(fmt.Sprintf("dead%02d.example", j), it)
		}
		s.enqueue("live.example", it)
		if s.deliveredTo("live.example", s.outNext-1) != 1 {
			t.Fatalf("message %d: the live peer's item was not waiting", i)
		}
		if s.outBytes > cfg.OutboxTotalBytes {
			t.Fatalf("message %d: %d bytes queued, over the total %d", i, s.outBytes, cfg.OutboxTotalBytes)
		}
	}
	depth := s.OutboxDepth()
	if d, ok := depth["live.example"]; ok {
		t.Errorf("the live peer: %+v, want its queue forgotten", d)
	}
	if s.outDroppedGone != 0 {
		t.Errorf("forgotten queues dropped %d; the live peer's should have dropped nothing", s.outDroppedGone)
	}
	var dead []int
	for j := range 50 {
		d := depth[fmt.Sprintf("dead%02d.example", j)]
		if d.Dropped == 0 {
			t.Errorf("dead%02d.example dropped nothing", j)
		}
		dead = append(dead, d.Items)
	}
	// Dropping from the largest keeps the dead peers' queues within one
	// item of each other.
	if lo, hi := slices.Min(dead), slices.Max(dead); hi-lo > 1 {
		t.Errorf("the dead peers hold %d to %d items; dropping from the largest should even them out", lo, hi)
	}
}

// TestOutboxForgetsDrainedDomains: a member who names ever more domains
// leaves nothing behind once their items are delivered or dropped: no
// queue record, no entry in the size order, and a snapshot whose size
// does not depend on how many domains were ever queued to.
func TestOutboxForgetsDrainedDomains(t *testing.T) {
	const many = 10_000
	item := func(i int) OutItem {
		return OutItem{Kind: OutFanout, Room: "mimi://hub.example/r/r1", Seq: uint64(i + 1), Data: bytes.Repeat([]byte{7}, 100), Enqueued: 1000}
	}
	type result struct {
		snapshot []byte
		gone     uint64
	}
	for _, tc := range []struct {
		name   string
		bounds Bounds
		// drain empties the queues of domains; it returns how many items
		// it expects dropped.
		drain func(s *State, domains []string) uint64
	}{
		{"delivered one record each", Bounds{}, func(s *State, domains []string) uint64 {
			for _, d := range domains {
				if s.deliveredTo(d, s.outNext) != 2 {
					t.Fatalf("%s: not 2 items delivered", d)
				}
			}
			return 0
		}},
		{"delivered in one record", Bounds{}, func(s *State, domains []string) uint64 {
			var b DeliveredManyBody
			for _, d := range domains {
				b.Marks = append(b.Marks, DeliveredBody{Domain: d, UpTo: s.outNext})
			}
			if r := s.deliveredMany(&b); r.unchanged {
				t.Fatal("the record changed nothing")
			}
			return 0
		}},
		{"dropped past the total, the rest delivered", Bounds{OutboxTotalBytes: 64 << 10}, func(s *State, domains []string) uint64 {
			// Every domain still queued is delivered; the others' items
			// were dropped by the total as the next domains came.
			for _, d := range s.OutboxDomains() {
				s.deliveredTo(d, s.outNext)
			}
			return uint64(2*len(domains)) - s.outDelivered(t)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			run := func(n int) result {
				s, err := newState(Config{Domain: "hub.example", Bounds: tc.bounds})
				if err != nil {
					t.Fatal(err)
				}
				s.numberOutboxStateWide()
				domains := make([]string, n)
				for i := range domains {
					domains[i] = fmt.Sprintf("made-up-%05d.example", i)
					s.enqueue(domains[i], item(2*i))
					s.enqueue(domains[i], item(2*i+1))
				}
				wantDropped := tc.drain(s, domains)
				if len(s.outbox) != 0 || s.outHeap.Len() != 0 || s.outBytes != 0 || len(s.OutboxDepth()) != 0 {
					t.Fatalf("%d domains: %d queues, %d in the size order, %d bytes left", n, len(s.outbox), s.outHeap.Len(), s.outBytes)
				}
				if s.outDroppedGone != wantDropped {
					t.Fatalf("%d domains: forgotten queues dropped %d, want %d", n, s.outDroppedGone, wantDropped)
				}
				if s.outNext != uint64(2*n+1) {
					t.Fatalf("%d domains: the next id is %d, want %d", n, s.outNext, 2*n+1)
				}
				snap := mustEncode(t, s)
				if again := restoreState(t, s, s.cfg); len(again.outbox) != 0 || again.outNext != s.outNext || again.outDroppedGone != s.outDroppedGone {
					t.Fatalf("%d domains: restored %d queues, next %d, dropped %d", n, len(again.outbox), again.outNext, again.outDroppedGone)
				}
				return result{snap, s.outDroppedGone}
			}
			few, all := run(10), run(many)
			if len(few.snapshot) != len(all.snapshot) {
				t.Fatalf("the snapshot holds %d bytes after 10 domains, %d after %d", len(few.snapshot), len(all.snapshot), many)
			}
			if tc.bounds.OutboxTotalBytes > 0 && all.gone == 0 {
				t.Fatal("the total dropped nothing: the case checks nothing")
			}
		})
	}
}

// outDelivered is a test hook: the items delivered so far are those
// neither queued nor dropped.
func (s *State) outDelivered(t *testing.T) uint64 {
	t.Helper()
	var queued, dropped uint64
	for _, q := range s.outbox {
		queued += uint64(len(q.q.items))
		dropped += q.dropped
	}
	return s.outNext - 1 - queued - dropped - s.outDroppedGone
}

// TestLateDeliveryRecordForAForgottenQueue: a record meant for a queue
// since forgotten (a late or repeated CmdDeliveredMany, in the log after
// the queue emptied) does not trim the queue made again for the same
// domain, however the old queue emptied and whether a snapshot restore,
// of this format or of format 4 (one numbering per queue), came between.
// With one numbering per queue the new items would be numbered from 1
// again and the old record would drop them undelivered.
func TestLateDeliveryRecordForAForgottenQueue(t *testing.T) {
	item := func(seq int) OutItem {
		return OutItem{Kind: OutFanout, Room: "mimi://a.example/r/r1", Seq: uint64(seq), Data: []byte{byte(seq)}, Enqueued: 5000}
	}
	fromV4 := func(t *testing.T) *State {
		old, err := os.ReadFile("testdata/snapshot-v4-outbox.bin")
		if err != nil {
			t.Fatal(err)
		}
		s, err := decodeState(Config{Domain: "a.example"}, bytes.NewReader(old))
		if err != nil {
			t.Fatal(err)
		}
		s.numberOutboxStateWide() // as the first upgraded leader has it done
		return s
	}
	for _, tc := range []struct {
		name, domain string
		// prepare leaves domain with no queue and returns the ids the old
		// queue's items had.
		prepare func(t *testing.T) (*State, []uint64)
	}{
		{"delivered", "c.example", func(t *testing.T) (*State, []uint64) {
			s := wideState(t, Config{Domain: "a.example"})
			for i := range 3 {
				s.enqueue("c.example", item(i+1))
			}
			s.deliveredTo("c.example", 3)
			return s, []uint64{1, 2, 3}
		}},
		{"delivered, then restored", "c.example", func(t *testing.T) (*State, []uint64) {
			s := wideState(t, Config{Domain: "a.example"})
			for i := range 3 {
				s.enqueue("c.example", item(i+1))
			}
			s.deliveredTo("c.example", 3)
			return restoreState(t, s, s.cfg), []uint64{1, 2, 3}
		}},
		{"dropped past the total", "c.example", func(t *testing.T) (*State, []uint64) {
			// The total holds one item.
			s := wideState(t, Config{Domain: "a.example", Bounds: Bounds{OutboxTotalBytes: outItemOverhead + 21 + 1}})
			s.enqueue("c.example", item(1))
			s.enqueue("c.example", item(2)) // c.example drops 1
			s.enqueue("z.example", item(3)) // a tie: c.example, first by domain, drops 2
			if _, ok := s.outbox["c.example"]; ok {
				t.Fatalf("c.example still queued: %+v", s.OutboxDepth())
			}
			s.cfg.OutboxTotalBytes = 1 << 20 // room for the new queue
			return s, []uint64{1, 2}
		}},
		{"a format 4 snapshot: an empty queue with its own numbering", "c.example", func(t *testing.T) (*State, []uint64) {
			// c.example was queued items 1 and 2, both delivered.
			return fromV4(t), []uint64{1, 2}
		}},
		{"a format 4 snapshot: an empty queue that dropped", "e.example", func(t *testing.T) (*State, []uint64) {
			// e.example was queued 1 to 4, dropped 1, was delivered the rest.
			return fromV4(t), []uint64{1, 2, 3, 4}
		}},
		{"a format 4 snapshot: a queue delivered after the restore", "b.example", func(t *testing.T) (*State, []uint64) {
			s := fromV4(t)
			s.deliveredTo("b.example", 5) // it holds 3 to 5
			return s, []uint64{3, 4, 5}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, oldIDs := tc.prepare(t)
			if _, ok := s.outbox[tc.domain]; ok {
				t.Fatalf("%s still has a queue", tc.domain)
			}
			for _, id := range oldIDs {
				if id >= s.outNext {
					t.Fatalf("the next id %d is not past the old queue's id %d", s.outNext, id)
				}
			}
			for i := range 3 {
				s.enqueue(tc.domain, item(10+i))
			}
			before := mustEncode(t, s)
			var marks []DeliveredBody
			for _, id := range oldIDs {
				marks = append(marks, DeliveredBody{Domain: tc.domain, UpTo: id})
			}
			if r := s.deliveredMany(&DeliveredManyBody{Marks: marks}); !r.unchanged {
				t.Fatal("late records were not answered as unchanged")
			}
			for _, m := range marks {
				if n := s.deliveredTo(m.Domain, m.UpTo); n != 0 {
					t.Fatalf("a late record up to %d trimmed %d of the new queue's items", m.UpTo, n)
				}
			}
			if !bytes.Equal(before, mustEncode(t, s)) {
				t.Fatal("late records changed the state")
			}
			if items, _ := s.OutboxAfter(tc.domain, 0, 10); len(items) != 3 || items[0].Seq != 10 {
				t.Fatalf("the new queue holds %+v", items)
			}
		})
	}
}

// wideState is a new state whose outbox is numbered state-wide, as every
// state is once the leader has applied CmdOutboxIDs.
func wideState(t *testing.T, cfg Config) *State {
	t.Helper()
	s, err := newState(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if r := s.numberOutboxStateWide(); r.Kind != OK || r.unchanged {
		t.Fatalf("the switch: %+v", r)
	}
	return s
}

// TestSnapshotVersion4OutboxRestores: a format 4 snapshot
// (testdata/snapshot-v4-outbox.bin, written by the release before
// state-wide ids, with 3 items a peer: b.example holds 3 to 5 and
// dropped 2, c.example is empty after 1 and 2 were delivered, d.example
// holds 4 and dropped 1, e.example is empty after dropping 1) restores as
// it was, numbered per queue, and encodes back to the same bytes; the
// switch (CmdOutboxIDs) then forgets the empty queues, keeps their drops,
// sets the next id past every id given, and the state encodes as format
// 5, stably.
func TestSnapshotVersion4OutboxRestores(t *testing.T) {
	old, err := os.ReadFile("testdata/snapshot-v4-outbox.bin")
	if err != nil {
		t.Fatal(err)
	}
	if old[0] != stateVersionV4 {
		t.Fatalf("the file is format %d", old[0])
	}
	s, err := decodeState(Config{Domain: "a.example"}, bytes.NewReader(old))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mustEncode(t, s), old) {
		t.Fatal("a format 4 state does not encode back to its snapshot")
	}
	if got := s.OutboxDomains(); !slices.Equal(got, []string{"b.example", "d.example"}) || len(s.outbox) != 4 || s.OutboxStateWide() {
		t.Fatalf("queues %v of %d, state-wide %v", got, len(s.outbox), s.OutboxStateWide())
	}
	if r := s.numberOutboxStateWide(); r.unchanged {
		t.Fatal("the switch changed nothing")
	}
	if got := slices.Sorted(maps.Keys(s.outbox)); !slices.Equal(got, []string{"b.example", "d.example"}) {
		t.Fatalf("queues %v after the switch", got)
	}
	depth := s.OutboxDepth()
	if b, d := depth["b.example"], depth["d.example"]; b.Items != 3 || b.Dropped != 2 || d.Items != 1 || d.Dropped != 1 {
		t.Fatalf("depth %+v", depth)
	}
	if s.outDroppedGone != 1 || s.outNext != 6 || s.Counts().OutboxDroppedGone != 1 {
		t.Fatalf("forgotten drops %d, next id %d; want 1 and 6", s.outDroppedGone, s.outNext)
	}
	enc := mustEncode(t, s)
	if enc[0] != stateVersion {
		t.Fatalf("the switched state encodes as format %d", enc[0])
	}
	again, err := decodeState(Config{Domain: "a.example"}, bytes.NewReader(enc))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mustEncode(t, again), enc) || !again.OutboxStateWide() {
		t.Fatal("restore is not stable")
	}
	// Format 5 refuses what format 4 allowed: an empty queue, and an item
	// numbered at or past the state's next id.
	for name, bad := range map[string]func(s *State){
		"an empty queue":        func(s *State) { s.outbox["z.example"] = &outQueue{domain: "z.example", dropped: 1} },
		"an id past the next":   func(s *State) { s.outNext = 5 },
		"no next id with items": func(s *State) { s.outNext = 0 },
	} {
		c, err := decodeState(Config{Domain: "a.example"}, bytes.NewReader(enc))
		if err != nil {
			t.Fatal(err)
		}
		bad(c)
		if _, err := decodeState(Config{Domain: "a.example"}, bytes.NewReader(mustEncode(t, c))); err == nil {
			t.Errorf("%s: a format 5 snapshot restored", name)
		}
	}
}

// TestOutboxNumberingSwitchAgrees: replicas restore older snapshots at
// different log indexes and replay the rest, and must still agree. The
// switch to state-wide numbering is therefore a log entry (CmdOutboxIDs),
// not a conversion on restore: a replica that restores a format 4
// snapshot and replays per-queue entries before the switch numbers them as
// the previous release did. For random logs with the switch somewhere,
// every replica restoring a snapshot taken at any index (or none) and
// replaying the log after it ends in the same state, byte for byte.
func TestOutboxNumberingSwitchAgrees(t *testing.T) {
	type op struct {
		enqueue   string
		item      OutItem
		marks     []DeliveredBody
		switchIDs bool
	}
	apply := func(s *State, o op) {
		switch {
		case o.switchIDs:
			s.numberOutboxStateWide()
		case o.enqueue != "":
			s.enqueue(o.enqueue, o.item)
		default:
			s.deliveredMany(&DeliveredManyBody{Marks: o.marks})
		}
	}
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 31))
		cfg := Config{Domain: "a.example", Bounds: Bounds{OutboxLimit: 2 + rng.IntN(6), OutboxTotalBytes: 600 + rng.Int64N(1200)}}
		domains := []string{"b.example", "c.example", "d.example", "e.example"}
		var log []op
		const steps = 120
		switchAt := 20 + rng.IntN(80)
		for i := range steps {
			switch {
			case i == switchAt:
				log = append(log, op{switchIDs: true})
			case rng.IntN(3) > 0:
				log = append(log, op{enqueue: domains[rng.IntN(len(domains))],
					item: OutItem{Kind: OutFanout, Room: "mimi://a.example/r/r1", Seq: uint64(i + 1), Data: bytes.Repeat([]byte{byte(i)}, rng.IntN(100))}})
			default:
				// Marks as a leader writes them: up to an id of its own
				// queue, or a stale one.
				log = append(log, op{marks: []DeliveredBody{{Domain: domains[rng.IntN(len(domains))], UpTo: rng.Uint64N(40)}}})
			}
		}
		// The reference replica applies the whole log; it snapshots after
		// every entry, as any replica might have.
		ref, err := newState(cfg)
		if err != nil {
			t.Fatal(err)
		}
		snaps := [][]byte{mustEncode(t, ref)}
		for _, o := range log {
			apply(ref, o)
			snaps = append(snaps, mustEncode(t, ref))
		}
		want := snaps[steps]
		for k, snap := range snaps {
			r, err := decodeState(cfg, bytes.NewReader(snap))
			if err != nil {
				t.Fatalf("seed %d: snapshot at %d: %v", seed, k, err)
			}
			if wantFormat := byte(stateVersionV4); k > switchAt && snap[0] != stateVersion || k <= switchAt && snap[0] != wantFormat {
				t.Fatalf("seed %d: the snapshot at %d (switch at %d) is format %d", seed, k, switchAt, snap[0])
			}
			for _, o := range log[k:] {
				apply(r, o)
			}
			if got := mustEncode(t, r); !bytes.Equal(got, want) {
				t.Fatalf("seed %d: a replica restoring the snapshot at %d (switch at %d) ends elsewhere", seed, k, switchAt)
			}
		}
	}
}
