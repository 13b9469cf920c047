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
// queue as a list, the largest found by scanning all of them.
type outboxModel struct {
	maxItems              int
	maxBytes, totalBytes  int64
	queues                map[string][]OutItem
	next, dropped         map[string]uint64
	sizeOf                func(*OutItem) int64
	totalDropped, pushed  int
	globalDrops, capDrops int
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

func (m *outboxModel) push(d string, it OutItem) {
	m.next[d]++
	it.ID = m.next[d]
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
	}
}

func (m *outboxModel) delivered(d string, id uint64) {
	q := m.queues[d]
	for len(q) > 0 && q[0].ID <= id {
		q = q[1:]
	}
	m.queues[d] = q
}

// TestOutboxModel runs random enqueues, deliveries and restores against
// the model, with caps tight enough that both the per-peer caps and the
// total drop items, and after every step checks the queues, the drop
// counts, the total and the size order.
func TestOutboxModel(t *testing.T) {
	var globalDrops, capDrops int
	for seed := range uint64(40) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			g, c := runOutboxModel(t, seed)
			globalDrops += g
			capDrops += c
		})
	}
	// The run must have exercised both rules, or it checked nothing.
	if globalDrops == 0 || capDrops == 0 {
		t.Fatalf("the total dropped %d items and the per-peer caps %d; want both > 0", globalDrops, capDrops)
	}
}

func runOutboxModel(t *testing.T, seed uint64) (globalDrops, capDrops int) {
	rng := rand.New(rand.NewPCG(seed, 14))
	cfg := Config{Domain: "hub.example", Bounds: Bounds{OutboxLimit: 2 + rng.IntN(12), OutboxBytes: 300 + rng.Int64N(900), OutboxTotalBytes: 400 + rng.Int64N(2000)}}
	s, err := newState(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := &outboxModel{maxItems: s.cfg.OutboxLimit, maxBytes: s.cfg.OutboxBytes, totalBytes: s.cfg.OutboxTotalBytes,
		queues: map[string][]OutItem{}, next: map[string]uint64{}, dropped: map[string]uint64{}, sizeOf: (*OutItem).size}
	domains := make([]string, 1+rng.IntN(12))
	for i := range domains {
		domains[i] = fmt.Sprintf("peer%d.example", i)
	}
	for step := range 400 {
		d := domains[rng.IntN(len(domains))]
		switch r := rng.IntN(10); {
		case r < 7:
			it := OutItem{Kind: OutFanout, Room: proto.URI("mimi://hub.example/r/r1"), Seq: uint64(step + 1), Data: bytes.Repeat([]byte{byte(step)}, rng.IntN(200))}
			s.enqueue(d, it)
			m.push(d, it)
		case r < 9:
			var upTo uint64
			if q := m.queues[d]; len(q) > 0 {
				upTo = q[rng.IntN(len(q))].ID
			}
			s.deliveredTo(d, upTo)
			m.delivered(d, upTo)
		default:
			s = restoreState(t, s, cfg)
		}
		checkOutbox(t, step, s, m)
	}
	return m.globalDrops, m.capDrops
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
	var total int64
	for d, q := range s.outbox {
		ids := make([]uint64, 0, len(q.q.items))
		for _, it := range q.q.items {
			ids = append(ids, it.ID)
		}
		var want []uint64
		for _, it := range m.queues[d] {
			want = append(want, it.ID)
		}
		if !slices.Equal(ids, want) && (len(ids) > 0 || len(want) > 0) {
			fail("%s holds %v, the model %v", d, ids, want)
		}
		if q.dropped != m.dropped[d] {
			fail("%s dropped %d, the model %d", d, q.dropped, m.dropped[d])
		}
		if q.bytes != m.bytes(d) {
			fail("%s counts %d bytes, the model %d", d, q.bytes, m.bytes(d))
		}
		total += q.bytes
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
	nonEmpty := 0
	for _, q := range s.outbox {
		if len(q.q.items) > 0 {
			nonEmpty++
		}
	}
	if nonEmpty != s.outHeap.Len() {
		fail("%d non-empty queues, %d in the size order", nonEmpty, s.outHeap.Len())
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
	var live uint64
	for i := range 2000 {
		it := OutItem{Kind: OutFanout, Room: "mimi://hub.example/r/r1", Seq: uint64(i + 1), Data: data}
		for j := range 50 {
			s.enqueue(fmt.Sprintf("dead%02d.example", j), it)
		}
		s.enqueue("live.example", it)
		live++
		if s.deliveredTo("live.example", live) != 1 {
			t.Fatalf("message %d: the live peer's item was not waiting", i)
		}
		if s.outBytes > cfg.OutboxTotalBytes {
			t.Fatalf("message %d: %d bytes queued, over the total %d", i, s.outBytes, cfg.OutboxTotalBytes)
		}
	}
	depth := s.OutboxDepth()
	if d := depth["live.example"]; d.Dropped != 0 || d.Items != 0 {
		t.Errorf("the live peer: %+v, want nothing dropped or waiting", d)
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
