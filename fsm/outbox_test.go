package fsm

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/mimihub/mimi-hub/mimi/proto"
)

// outboxModel is the outbox rules written the plain way: every peer's
// queue as a list, the largest found by scanning all of them, ids from one
// counter, and a queue deleted as soon as it is empty, its drops kept in
// one count for all deleted queues.
type outboxModel struct {
	maxItems              int
	maxBytes, totalBytes  int64
	queues                map[string][]OutItem
	dropped               map[string]uint64
	next, droppedGone     uint64
	sizeOf                func(*OutItem) int64
	totalDropped, pushed  int
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

// forgetIfEmpty deletes d's queue once it holds nothing.
func (m *outboxModel) forgetIfEmpty(d string) {
	if q, ok := m.queues[d]; ok && len(q) == 0 {
		m.droppedGone += m.dropped[d]
		delete(m.dropped, d)
		delete(m.queues, d)
		m.forgotten++
	}
}

func (m *outboxModel) push(d string, it OutItem) {
	m.next++
	it.ID = m.next
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

// TestOutboxModel runs random enqueues, deliveries (single, several peers
// in one record, and records with ids of queues long gone) and restores
// against the model, with caps tight enough that both the per-peer caps
// and the total drop items, and after every step checks the queues (only
// non-empty ones exist), the drop counts, the total and the size order.
// A twin state fed the same steps must encode to the same bytes: which
// queues are deleted must not depend on map order.
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
		queues: map[string][]OutItem{}, dropped: map[string]uint64{}, seen: map[string]bool{}, sizeOf: (*OutItem).size}
	domains := make([]string, 1+rng.IntN(12))
	for i := range domains {
		domains[i] = fmt.Sprintf("peer%d.example", i)
	}
	// upTo picks a delivery mark for d: one of its items, or any id ever
	// given (a late or repeated record, maybe for a queue since deleted).
	upTo := func(d string) uint64 {
		if q := m.queues[d]; len(q) > 0 && rng.IntN(3) > 0 {
			return q[rng.IntN(len(q))].ID
		}
		return rng.Uint64N(m.next + 1)
	}
	for step := range 400 {
		d := domains[rng.IntN(len(domains))]
		switch r := rng.IntN(20); {
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
	if len(s.outbox) != len(m.queues) {
		fail("%d queues, the model has %d non-empty ones", len(s.outbox), len(m.queues))
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
		if len(ids) == 0 || !slices.Equal(ids, want) {
			fail("%s holds %v, the model %v", d, ids, want)
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
	if m.next > 0 && s.outNext != m.next+1 {
		fail("the next item id is %d, the model's %d", s.outNext, m.next+1)
	}
	if s.outBytes != total || total != m.total() {
		fail("total %d, the queues hold %d, the model %d", s.outBytes, total, m.total())
	}
	if total > s.cfg.OutboxTotalBytes {
		fail("total %d over the bound %d", total, s.cfg.OutboxTotalBytes)
	}
	// The size order: every queue in it once, at its index, no child
	// larger than its parent.
	for i, q := range s.outHeap.items {
		if q.heapIndex != i || len(q.q.items) == 0 || s.outbox[q.domain] != q {
			fail("the size order is inconsistent at %d (%s)", i, q.domain)
		}
		if i > 0 && s.outHeap.Less(i, (i-1)/2) {
			fail("%s is larger than its parent in the size order", q.domain)
		}
	}
	if len(s.outbox) != s.outHeap.Len() {
		fail("%d queues, %d in the size order", len(s.outbox), s.outHeap.Len())
	}
	if got := s.OutboxDomains(); !slices.Equal(got, slices.Sorted(maps.Keys(m.queues))) {
		fail("OutboxDomains %v, the model %v", got, slices.Sorted(maps.Keys(m.queues)))
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
