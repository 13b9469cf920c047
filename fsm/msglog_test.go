package fsm

import (
	"bytes"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

var (
	logSeeds = flag.Int("msglog.seeds", 30, "random sequences TestMessageLogModel runs")
	logSteps = flag.Int("msglog.steps", 400, "steps of each sequence")
	logSeed  = flag.Uint64("msglog.seed", 0, "run only this seed (0: seeds 1..msglog.seeds)")
)

// appMessage is an application message of room id with a given payload:
// enough for the FSM, which stores and forwards what it cannot read.
func appMessage(id proto.URI, payload []byte) *mls.Message {
	return &mls.Message{Version: mls.MLS10, WireFormat: mls.WirePrivateMessage, Private: &mls.PrivateMessage{GroupID: []byte(id), Epoch: 1,
		ContentType: mls.ContentApplication, EncryptedSenderData: []byte("sender"), Ciphertext: payload}}
}

// modelMsg is a room message as the model expects a reader to see it.
type modelMsg struct {
	seq     uint64
	room    proto.URI
	hubSeq  uint64
	data    string
	exclude []proto.URI
}

// modelWindow is a client's window on a room.
type modelWindow struct{ from, until uint64 }

// logModel is what the room logs must show each client when nothing is
// dropped: every message delivered while it followed the room, in
// delivery order, each once, but those excluding it.
type logModel struct {
	seq     uint64
	lastHub map[proto.URI]uint64
	msgs    map[proto.URI][]modelMsg
	windows map[proto.URI]map[proto.URI]*modelWindow // client -> room -> window
	cursor  map[proto.URI]uint64
}

func (m *logModel) deliverable(room proto.URI, exclude []proto.URI) bool {
	for c, ws := range m.windows {
		if w := ws[room]; w != nil && w.until == 0 && !slices.Contains(exclude, c) {
			return true
		}
	}
	return false
}

// expect lists what c should read after seq.
func (m *logModel) expect(c proto.URI, after uint64) []modelMsg {
	after = max(after, m.cursor[c])
	var out []modelMsg
	for room, w := range m.windows[c] {
		for _, msg := range m.msgs[room] {
			if msg.seq > after && msg.seq >= w.from && (w.until == 0 || msg.seq <= w.until) && !slices.Contains(msg.exclude, c) {
				out = append(out, msg)
			}
		}
	}
	slices.SortFunc(out, func(a, b modelMsg) int { return int(a.seq) - int(b.seq) })
	return out
}

// TestMessageLogModel drives a provider that follows rooms of a remote hub
// with random fanout (redeliveries, gaps, exclusions), subscriptions,
// reads, acknowledgements, prunes and snapshot round trips, and compares
// every read with a model that keeps a copy per reader. With retention
// large enough to drop nothing the reads must equal the model; with tight
// retention they must be the model's items in order with some missing,
// and then the read must report a gap; and the logs must stay within
// their bounds. A failure prints the seed and the steps that led to it.
func TestMessageLogModel(t *testing.T) {
	seeds := make([]uint64, 0, *logSeeds)
	if *logSeed != 0 {
		seeds = append(seeds, *logSeed)
	} else {
		for i := range *logSeeds {
			seeds = append(seeds, uint64(i+1))
		}
	}
	for _, tight := range []bool{false, true} {
		gaps := 0
		for _, seed := range seeds {
			t.Run(fmt.Sprintf("tight=%v/seed=%d", tight, seed), func(t *testing.T) { gaps += runLogModel(t, seed, tight) })
		}
		// Tight retention must drop unread messages for the checks above
		// to mean anything.
		if tight && gaps == 0 && len(seeds) >= 10 {
			t.Error("tight retention never made a reader see a gap")
		}
		t.Logf("tight=%v: %d sequences of %d steps, %d reads with a gap", tight, len(seeds), *logSteps, gaps)
	}
}

// runLogModel runs one sequence and returns how many reads had a gap.
// readersAndRooms registers 4 local clients of b.example and names 3
// rooms of a.example for them to follow.
func (n *node) readersAndRooms() (clients, rooms []proto.URI) {
	for i := range 4 {
		c := proto.ClientURI("b.example", fmt.Sprintf("u%d", i), "d")
		n.register(c, "t")
		clients = append(clients, c)
	}
	return clients, []proto.URI{proto.RoomURI("a.example", "r0"), proto.RoomURI("a.example", "r1"), proto.RoomURI("a.example", "r2")}
}

func runLogModel(t *testing.T, seed uint64, tight bool) (gaps int) {
	rng := rand.New(rand.NewPCG(seed, 13))
	cfg := Config{Domain: "b.example", Bounds: Bounds{InboxLimit: 50}}
	if tight {
		cfg.Retention = Retention{MaxAge: 40_000, RoomEntries: 12, RoomBytes: 3_000, TotalBytes: 6_000}
	}
	n := &node{t: t, now: t0, cfg: cfg}
	var err error
	if n.f, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	n.raiseLevel()
	var steps []string
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("seed %d (tight %v), after these steps:\n  %s\n%s", seed, tight, strings.Join(steps, "\n  "), fmt.Sprintf(format, args...))
	}
	clients, rooms := n.readersAndRooms()
	m := &logModel{lastHub: map[proto.URI]uint64{}, msgs: map[proto.URI][]modelMsg{}, windows: map[proto.URI]map[proto.URI]*modelWindow{}, cursor: map[proto.URI]uint64{}}
	for _, c := range clients {
		m.windows[c] = map[proto.URI]*modelWindow{}
	}
	read := map[proto.URI]uint64{} // each client's read position
	check := func(c proto.URI) {
		var items []Item
		var gap bool
		var last uint64
		_ = n.f.Read(func(s *State) error {
			items, gap, last, _ = s.Stream(c, read[c], 1000)
			return nil
		})
		want := m.expect(c, read[c])
		j := 0
		for _, it := range items {
			for j < len(want) && want[j].seq < it.Seq {
				if !gap {
					fail("%s read after %d: item %d (%s #%d) is missing and no gap was reported", c, read[c], want[j].seq, want[j].room, want[j].hubSeq)
				}
				j++
			}
			if j == len(want) || want[j].seq != it.Seq || want[j].room != it.Room || want[j].hubSeq != it.HubSeq || want[j].data != string(it.Data) || it.Kind != ItemMessage {
				fail("%s read after %d: got item %d %s #%d, want %+v", c, read[c], it.Seq, it.Room, it.HubSeq, want[j:])
			}
			j++
		}
		if !tight && (j != len(want) || gap) {
			fail("%s read after %d: %d items, gap %v; want %d items and no gap", c, read[c], len(items), gap, len(want))
		}
		if j < len(want) && len(items) > 0 && !gap {
			// The items after the last read one were dropped: only a gap
			// may explain it.
			fail("%s read after %d: %d items of %d and no gap", c, read[c], len(items), len(want))
		}
		if len(items) > 0 && last < items[len(items)-1].Seq {
			fail("%s: last %d is before the last item %d", c, last, items[len(items)-1].Seq)
		}
		if !tight {
			wantLast := m.cursor[c]
			if all := m.expect(c, 0); len(all) > 0 {
				wantLast = max(wantLast, all[len(all)-1].seq)
			}
			if last != wantLast {
				fail("%s: last %d, want %d", c, last, wantLast)
			}
		}
		if len(items) > 0 {
			read[c] = items[len(items)-1].Seq
		}
		if gap {
			gaps++
		}
		steps = append(steps, fmt.Sprintf("%s read %d items, gap %v", c, len(items), gap))
	}
	for range *logSteps {
		switch op := rng.IntN(10); {
		case op < 4: // a fanout batch
			r := rooms[rng.IntN(len(rooms))]
			// A stream nobody follows any more is forgotten, with the hub
			// sequence it reached: redeliveries are recognized while
			// someone follows the room.
			exists := true
			_ = n.f.Read(func(s *State) error {
				st, ok := s.streams[r]
				if exists = ok; !exists {
					m.lastHub[r] = 0
				} else if st.lastSeq != m.lastHub[r] {
					fail("%s: the hub sequence reached is %d, the model's %d", r, st.lastSeq, m.lastHub[r])
				}
				return nil
			})
			first := m.lastHub[r] + 1
			switch rng.IntN(6) {
			case 0:
				first -= min(first-1, uint64(rng.IntN(3))) // a redelivery
			case 1:
				first += uint64(rng.IntN(3)) // a gap in the hub's order
			}
			var exclude []proto.URI
			if rng.IntN(4) == 0 {
				exclude = append(exclude, clients[rng.IntN(len(clients))])
			}
			k := 1 + rng.IntN(3)
			var batch proto.FanoutBatch
			for i := range k {
				hs := first + uint64(i)
				data := wire.MustMarshal(appMessage(r, fmt.Appendf(nil, "%s#%d/%d", r, hs, rng.IntN(1000))))
				batch = append(batch, proto.FanoutMessage{Message: must(mls.DecodeMessage(data)), Timestamp: n.now})
			}
			n.ok(n.apply(CmdFanout, nil, "a.example", &FanoutBody{Room: r, FirstSeq: first, Batch: batch, Exclude: exclude}), "fanout")
			for i := range batch {
				hs := first + uint64(i)
				if !exists || hs <= m.lastHub[r] {
					continue
				}
				m.lastHub[r] = hs
				if m.deliverable(r, exclude) {
					m.seq++
					ex := slices.Clone(exclude)
					m.msgs[r] = append(m.msgs[r], modelMsg{seq: m.seq, room: r, hubSeq: hs, data: string(wire.MustMarshal(batch[i].Message)), exclude: ex})
				}
			}
			steps = append(steps, fmt.Sprintf("fanout %s from #%d, %d messages, excluding %v", r, first, k, exclude))
		case op < 6: // subscribe or unsubscribe
			c, r := clients[rng.IntN(len(clients))], rooms[rng.IntN(len(rooms))]
			sub := rng.IntN(3) > 0
			n.ok(n.apply(CmdSubscribe, nil, "", &SubscribeBody{Client: c, Room: r, Subscribe: sub}), "subscribe")
			w := m.windows[c][r]
			switch {
			case sub && w == nil:
				m.windows[c][r] = &modelWindow{from: m.seq + 1}
			case sub && w.until != 0:
				w.until = 0 // a closed window opens again where it began
			case !sub && w != nil && w.until == 0:
				w.until = m.seq
				if m.seq < w.from || m.cursor[c] >= w.until {
					delete(m.windows[c], r)
				}
			}
			steps = append(steps, fmt.Sprintf("%s subscribe %s: %v", c, r, sub))
		case op < 8: // read
			check(clients[rng.IntN(len(clients))])
		case op < 9: // acknowledge what was read (sometimes more)
			c := clients[rng.IntN(len(clients))]
			upTo := read[c]
			if rng.IntN(5) == 0 {
				upTo += uint64(rng.IntN(5))
			}
			n.ok(n.apply(CmdAck, nil, "", &AckBody{Client: c, UpTo: upTo}), "ack")
			m.cursor[c] = min(max(m.cursor[c], upTo), m.seq)
			for r, w := range m.windows[c] {
				if w.until != 0 && m.cursor[c] >= w.until {
					delete(m.windows[c], r)
				}
			}
			steps = append(steps, fmt.Sprintf("%s ack %d", c, upTo))
		default: // time passes; sometimes a prune or a snapshot round trip
			n.now += uint64(rng.IntN(20_000))
			if rng.IntN(2) == 0 {
				n.ok(n.apply(CmdPrune, nil, "", nil), "prune")
				steps = append(steps, "prune")
			} else {
				n.f = roundTrip(t, n.f, cfg)
				steps = append(steps, "snapshot round trip")
			}
		}
		_ = n.f.Read(func(s *State) error {
			if err := checkLogBounds(s); err != nil {
				fail("%v", err)
			}
			for _, r := range rooms {
				if _, ok := s.streams[r]; !ok {
					m.lastHub[r] = 0 // forgotten with the stream
				}
			}
			for _, c := range clients {
				for _, r := range rooms {
					var got *modelWindow
					if st := s.streams[r]; st != nil {
						if w, ok := st.window(c); ok {
							got = &modelWindow{w.from, w.until}
						}
					}
					if want := m.windows[c][r]; (got == nil) != (want == nil) || got != nil && *got != *want {
						fail("%s's window on %s is %v, the model's %v", c, r, got, want)
					}
				}
			}
			return nil
		})
	}
	for _, c := range clients {
		check(c)
	}
	_ = n.f.Read(func(s *State) error {
		if c := s.Counts(); !tight && c.RetentionDropped != 0 {
			fail("retention dropped nothing, yet %d entries are counted", c.RetentionDropped)
		}
		return nil
	})
	replay(t, n)
	return gaps
}

// roundTrip snapshots f and restores the snapshot into a new FSM, which
// must encode the same.
func roundTrip(t *testing.T, f *FSM, cfg Config) *FSM {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Restore(sink); err != nil {
		t.Fatal(err)
	}
	a, _ := f.Encode()
	b, _ := g.Encode()
	if !bytes.Equal(a, b) {
		t.Fatal("a restored snapshot encodes differently")
	}
	return g
}

// checkLogBounds checks the retention bounds and the derived bookkeeping.
func checkLogBounds(s *State) error {
	r := s.cfg.Retention
	var total int64
	nonEmpty := 0
	perHub := map[string]int64{}
	for id, st := range s.streams {
		if len(st.log.q.items) > 0 {
			nonEmpty++
			perHub[st.hub] += st.log.bytes
		}
		var b int64
		for i, e := range st.log.q.items {
			b += e.size()
			if i > 0 && e.seq <= st.log.q.items[i-1].seq {
				return fmt.Errorf("%s: log out of order", id)
			}
		}
		if b != st.log.bytes {
			return fmt.Errorf("%s: %d bytes counted, %d stored", id, st.log.bytes, b)
		}
		if n := len(st.log.q.items); n > 1 && (n > r.RoomEntries || b > r.RoomBytes) {
			return fmt.Errorf("%s: %d entries, %d bytes, over the room's bounds", id, n, b)
		}
		total += b
	}
	if total != s.logBytes {
		return fmt.Errorf("%d log bytes counted, %d stored", s.logBytes, total)
	}
	if total > r.TotalBytes && nonEmpty > 1 {
		return fmt.Errorf("%d log bytes over the total bound %d", total, r.TotalBytes)
	}
	if len(perHub) != len(s.logs.byHub) || s.logs.Len() != len(perHub) {
		return fmt.Errorf("%d hubs with logs, %d indexed (%d ordered)", len(perHub), len(s.logs.byHub), s.logs.Len())
	}
	for hub, b := range perHub {
		if g := s.logs.byHub[hub]; g == nil || g.bytes != b || g.streams.Len() == 0 {
			return fmt.Errorf("hub %s: %d log bytes, %+v indexed", hub, b, g)
		}
	}
	return nil
}

// TestRoomMessagesStoredOnce: a message to a room of 16 local members is
// stored once, every member reads it, and once they all acknowledged it
// the next message trims it.
func TestRoomMessagesStoredOnce(t *testing.T) {
	n := newNode(t, "b.example")
	r := proto.RoomURI("a.example", "big")
	var members []proto.URI
	for i := range 16 {
		c := proto.ClientURI("b.example", fmt.Sprintf("u%d", i), "d")
		n.register(c, "t")
		n.ok(n.apply(CmdSubscribe, nil, "", &SubscribeBody{Client: c, Room: r, Subscribe: true}), "subscribe")
		members = append(members, c)
	}
	payload := bytes.Repeat([]byte("x"), 4096)
	for i := range 10 {
		batch := proto.FanoutBatch{{Message: appMessage(r, payload), Timestamp: n.now}}
		n.ok(n.apply(CmdFanout, nil, "a.example", &FanoutBody{Room: r, FirstSeq: uint64(i + 1), Batch: batch}), "fanout")
	}
	var counts Counts
	_ = n.f.Read(func(s *State) error { counts = s.Counts(); return nil })
	if counts.LogEntries != 10 || counts.LogBytes > 10*(4096+512) || counts.InboxItems != 0 {
		t.Fatalf("10 messages to 16 readers stored as %+v", counts)
	}
	for _, c := range members {
		items := n.stream(c, 0)
		if len(items) != 10 || items[9].HubSeq != 10 {
			t.Fatalf("%s reads %d items", c, len(items))
		}
		n.ok(n.apply(CmdAck, nil, "", &AckBody{Client: c, UpTo: items[9].Seq}), "ack")
	}
	batch := proto.FanoutBatch{{Message: appMessage(r, payload), Timestamp: n.now}}
	n.ok(n.apply(CmdFanout, nil, "a.example", &FanoutBody{Room: r, FirstSeq: 11, Batch: batch}), "fanout")
	_ = n.f.Read(func(s *State) error { counts = s.Counts(); return nil })
	if counts.LogEntries != 1 {
		t.Fatalf("after every reader acknowledged, %d entries stay", counts.LogEntries)
	}
	replay(t, n)
}

// TestRetentionDropsCounted: entries retention drops (per-room count and
// age bounds) are counted, with their bytes, for operators; entries that
// leave because every reader read them are not.
func TestRetentionDropsCounted(t *testing.T) {
	for _, tt := range []struct {
		name      string
		readsAll  bool   // the reader acknowledges each message at once
		age       uint64 // time passing before a prune at the end
		wantDrops uint64
	}{
		{name: "reader behind, count bound", wantDrops: 7},
		{name: "reader behind, then age", age: 50_000, wantDrops: 7 + 3},
		{name: "reader keeps up", readsAll: true},
		{name: "reader keeps up, then age", readsAll: true, age: 50_000},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{Domain: "b.example", Bounds: Bounds{InboxLimit: 50, Retention: Retention{MaxAge: 40_000, RoomEntries: 3, RoomBytes: 1 << 20, TotalBytes: 1 << 30}}}
			f, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			n := &node{t: t, cfg: cfg, f: f, now: t0}
			r := proto.RoomURI("a.example", "r")
			c := proto.ClientURI("b.example", "u", "d")
			n.register(c, "t")
			n.ok(n.apply(CmdSubscribe, nil, "", &SubscribeBody{Client: c, Room: r, Subscribe: true}), "subscribe")
			var sizes []int64
			for i := range 10 {
				batch := proto.FanoutBatch{{Message: appMessage(r, bytes.Repeat([]byte("x"), 100+i)), Timestamp: n.now}}
				n.ok(n.apply(CmdFanout, nil, "a.example", &FanoutBody{Room: r, FirstSeq: uint64(i + 1), Batch: batch}), "fanout")
				_ = n.f.Read(func(s *State) error {
					q := s.streams[r].log.q.items
					sizes = append(sizes, q[len(q)-1].size())
					return nil
				})
				if tt.readsAll {
					items := n.stream(c, 0)
					n.ok(n.apply(CmdAck, nil, "", &AckBody{Client: c, UpTo: items[len(items)-1].Seq}), "ack")
				}
			}
			if tt.age > 0 {
				n.now += tt.age
				n.ok(n.apply(CmdPrune, nil, "", nil), "prune")
			}
			var counts Counts
			_ = n.f.Read(func(s *State) error { counts = s.Counts(); return nil })
			var wantBytes int64
			for _, b := range sizes[:tt.wantDrops] {
				wantBytes += b
			}
			if counts.RetentionDropped != tt.wantDrops || counts.RetentionDroppedBytes != wantBytes {
				t.Fatalf("retention dropped %d entries, %d bytes; want %d, %d", counts.RetentionDropped, counts.RetentionDroppedBytes, tt.wantDrops, wantBytes)
			}
			if !tt.readsAll {
				_ = n.f.Read(func(s *State) error {
					if _, gap, _, _ := s.Stream(c, 0, 100); !gap {
						t.Error("the reader behind was not told of a gap")
					}
					return nil
				})
			}
		})
	}
}

// v1Snapshot encodes a snapshot of the previous format (1) of client c's
// provider: c has read its stream up to 4, holds copies of room r's
// messages 5 and 6 in its inbox, and follows r.
// encodeV1 writes the users and clients of s (with empty inboxes), its
// rooms, key material and consent in the first release's whole-state
// format 1, the way that release wrote snapshots.
func encodeV1(t testing.TB, s *State) []byte {
	t.Helper()
	w := wire.NewWriter(nil)
	w.Uint8(stateVersionV1)
	w.Vector(func(w *wire.Writer) {
		for _, id := range sortedKeys(s.rooms) {
			w.Vector(func(w *wire.Writer) { s.rooms[id].EncodeTLS(w) })
		}
	})
	w.Opaque(wire.MustMarshal(s.keys))
	w.Opaque(wire.MustMarshal(s.consent))
	w.Vector(func(w *wire.Writer) {
		for _, u := range sortedKeys(s.users) {
			encodeUser(w, u, s.users[u].profile)
		}
	})
	w.Vector(func(w *wire.Writer) {
		for _, c := range sortedKeys(s.clients) {
			c.EncodeTLS(w)
			w.Opaque(s.clients[c].tokenHash)
			w.Uint64(1)                     // the next inbox item
			w.Vector(func(*wire.Writer) {}) // no items
		}
	})
	for range 4 { // streams, outbox, reports, dedup
		w.Vector(func(*wire.Writer) {})
	}
	w.Uint64(s.lastAt)
	return must(w.Bytes())
}

func v1Snapshot(t testing.TB, c, r proto.URI) []byte {
	t.Helper()
	data := wire.MustMarshal(appMessage(r, []byte("old")))
	w := wire.NewWriter(nil)
	w.Uint8(stateVersionV1)
	w.Vector(func(w *wire.Writer) {}) // rooms
	id, _ := c.Parse()
	keys, _ := New(Config{Domain: id.Domain})
	var keysEnc, bookEnc []byte
	_ = keys.Read(func(s *State) error {
		keysEnc, bookEnc = wire.MustMarshal(s.keys), wire.MustMarshal(s.consent)
		return nil
	})
	w.Opaque(keysEnc)
	w.Opaque(bookEnc)
	w.Vector(func(w *wire.Writer) {}) // users
	w.Vector(func(w *wire.Writer) {
		c.EncodeTLS(w)
		w.Opaque(tokenHash("t"))
		w.Uint64(7)
		w.Vector(func(w *wire.Writer) {
			for _, seq := range []uint64{5, 6} {
				(&Item{Seq: seq, Kind: ItemMessage, Room: r, HubSeq: seq, At: 1, Data: data}).EncodeTLS(w)
			}
		})
	})
	w.Vector(func(w *wire.Writer) { // streams
		r.EncodeTLS(w)
		w.Opaque([]byte("a.example"))
		w.Uint64(6)
		writeURIs(w, []proto.URI{c})
		w.Uint64(0)
	})
	w.Vector(func(w *wire.Writer) {}) // outbox
	w.Vector(func(w *wire.Writer) {}) // reports
	w.Vector(func(w *wire.Writer) {}) // dedup
	w.Uint64(t0)
	return must(w.Bytes())
}

// TestSnapshotV1Restores: a snapshot of the previous format (per-client
// copies in inboxes) restores, keeps the unread copies readable in order,
// and new messages follow them in each client's stream.
func TestSnapshotV1Restores(t *testing.T) {
	c := proto.ClientURI("b.example", "bob", "d")
	r := proto.RoomURI("a.example", "r")
	n := newNode(t, "b.example")
	if err := n.f.Restore(&memSink{*bytes.NewBuffer(v1Snapshot(t, c, r))}); err != nil {
		t.Fatal(err)
	}
	n.ok(n.apply(CmdFanout, nil, "a.example", &FanoutBody{Room: r, FirstSeq: 7, Batch: proto.FanoutBatch{{Message: appMessage(r, []byte("new")), Timestamp: n.now}}}), "fanout")
	items := n.stream(c, 4)
	if len(items) != 3 || items[0].Seq != 5 || items[1].Seq != 6 || items[2].Seq <= 6 || items[2].HubSeq != 7 {
		t.Fatalf("after restoring format 1: %+v", items)
	}
	if left := n.stream(c, 0); len(left) != 3 {
		t.Fatalf("reading from 0 after restore (cursor 4): %d items", len(left))
	}
}

// TestApplyDuringPersist: a snapshot captured before more commands encodes
// the state as captured, however much Apply changes afterwards.
func TestApplyDuringPersist(t *testing.T) {
	n := newNode(t, "b.example")
	r := proto.RoomURI("a.example", "r")
	c := proto.ClientURI("b.example", "bob", "d")
	n.register(c, "t")
	n.ok(n.apply(CmdSubscribe, nil, "", &SubscribeBody{Client: c, Room: r, Subscribe: true}), "subscribe")
	fan := func(seq uint64) {
		n.ok(n.apply(CmdFanout, nil, "a.example", &FanoutBody{Room: r, FirstSeq: seq, Batch: proto.FanoutBatch{{Message: appMessage(r, fmt.Appendf(nil, "m%d", seq)), Timestamp: n.now}}}), "fanout")
	}
	for i := range 100 {
		fan(uint64(i + 1))
	}
	want := n.state()
	snap, err := n.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		fan(uint64(i + 101))
		if i%7 == 0 {
			items := n.stream(c, 0)
			n.ok(n.apply(CmdAck, nil, "", &AckBody{Client: c, UpTo: items[len(items)/2].Seq}), "ack")
		}
	}
	n.ok(n.apply(CmdPrune, nil, "", nil), "prune")
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sink.Bytes(), want) {
		t.Fatal("the snapshot changed with the commands applied after its capture")
	}
	_ = raft.SnapshotSink(sink)
}
