package fsm

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// tightBounds are small enough that a few hundred fanout messages reach
// the room-log bounds.
var tightBounds = Bounds{InboxLimit: 5, InboxBytes: 4000, Retention: Retention{MaxAge: 40_000, RoomEntries: 12, RoomBytes: 3_000, TotalBytes: 6_000},
	MaxSubscriptions: 2, OutboxLimit: 10, OutboxBytes: 2000, OutboxTotalBytes: 5000}

// TestSetBounds: CmdSetBounds replaces the node's configured bounds,
// refuses what is not a bound and what a peer sends, answers a repeat as
// unchanged, and a snapshot keeps the bounds and that they were set.
func TestSetBounds(t *testing.T) {
	n := newNodeWith(t, Config{Domain: "b.example"})
	if b, replicated := n.bounds(); replicated || b != (Config{}).withDefaults().Bounds {
		t.Fatalf("a new state applies %+v (replicated %v), want the defaults from its configuration", b, replicated)
	}
	before := n.state()
	for name, change := range map[string]func(*Bounds){
		"no inbox items": func(b *Bounds) { b.InboxLimit = 0 }, "negative inbox bytes": func(b *Bounds) { b.InboxBytes = -1 },
		"no retention age": func(b *Bounds) { b.Retention.MaxAge = 0 }, "no room entries": func(b *Bounds) { b.Retention.RoomEntries = 0 },
		"no room bytes": func(b *Bounds) { b.Retention.RoomBytes = 0 }, "no log bytes": func(b *Bounds) { b.Retention.TotalBytes = 0 },
		"no subscriptions": func(b *Bounds) { b.MaxSubscriptions = 0 }, "no outbox items": func(b *Bounds) { b.OutboxLimit = 0 },
		"no outbox bytes": func(b *Bounds) { b.OutboxBytes = 0 }, "no outbox total": func(b *Bounds) { b.OutboxTotalBytes = 0 },
		"an outbox total past the largest": func(b *Bounds) { b.OutboxTotalBytes = maxBound + 1 },
		"an age past the largest":          func(b *Bounds) { b.Retention.MaxAge = 1 << 63 },
	} {
		b := tightBounds
		change(&b)
		n.refused(before, n.apply(CmdSetBounds, nil, "", &BoundsBody{Bounds: b}), Invalid, name)
	}
	n.refused(before, n.apply(CmdSetBounds, nil, "a.example", &BoundsBody{Bounds: tightBounds}), NotAllowed, "a peer sets the bounds")
	n.ok(n.apply(CmdSetBounds, nil, "", &BoundsBody{Bounds: tightBounds}), "set the bounds")
	if b, replicated := n.bounds(); !replicated || b != tightBounds {
		t.Fatalf("after CmdSetBounds the state applies %+v (replicated %v), want %+v", b, replicated, tightBounds)
	}
	if r := n.apply(CmdSetBounds, nil, "", &BoundsBody{Bounds: tightBounds}); r.Kind != OK || !r.unchanged {
		t.Errorf("setting the same bounds again: %+v, want unchanged", r)
	}
	// The consent default is one of them: the book follows it.
	withConsent := tightBounds
	withConsent.RequireConsent = true
	n.ok(n.apply(CmdSetBounds, nil, "", &BoundsBody{Bounds: withConsent}), "require consent")
	_ = n.f.Read(func(s *State) error {
		if !s.consent.RequireConsent() {
			t.Error("the bounds require consent, the consent book does not")
		}
		return nil
	})
	n.ok(n.apply(CmdSetBounds, nil, "", &BoundsBody{Bounds: tightBounds}), "consent by default again")
	// A node configured otherwise restores the replicated bounds.
	again := roundTrip(t, n.f, Config{Domain: "b.example", Bounds: Bounds{InboxLimit: 999}})
	var b Bounds
	var replicated bool
	_ = again.Read(func(s *State) error { b, replicated = s.Bounds(); return nil })
	if !replicated || b != tightBounds {
		t.Errorf("restored: %+v (replicated %v), want %+v", b, replicated, tightBounds)
	}
	withConsent.InboxLimit = 6
	n.ok(n.apply(CmdSetBounds, nil, "", &BoundsBody{Bounds: withConsent}), "require consent again")
	again = roundTrip(t, n.f, Config{Domain: "b.example"})
	_ = again.Read(func(s *State) error {
		if b, _ := s.Bounds(); b != withConsent || !s.consent.RequireConsent() {
			t.Errorf("restored %+v, book requires consent %v; want %+v", b, s.consent.RequireConsent(), withConsent)
		}
		return nil
	})
}

// newNodeWith is newNode with a whole configuration.
func newNodeWith(t testing.TB, cfg Config) *node {
	t.Helper()
	f, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n := &node{t: t, cfg: cfg, f: f, now: t0}
	n.raiseLevel()
	return n
}

// raiseLevel makes n's state apply this release's rules, as a cluster's
// leader makes it do first (cluster RunMaintenance); levels_test.go tests
// the switch itself.
func (n *node) raiseLevel() {
	n.t.Helper()
	n.ok(n.apply(CmdLogLevel, nil, "", &LogLevelBody{Level: LogLevel}), "raise the log level")
}

func (n *node) bounds() (b Bounds, replicated bool) {
	_ = n.f.Read(func(s *State) error { b, replicated = s.Bounds(); return nil })
	return b, replicated
}

// TestBoundsMakeReplicasAgree: two nodes configured with different bounds
// apply the same log, which fills room logs, inboxes' windows and
// subscriptions past tight bounds. Once the log has set the bounds, their
// states are identical byte for byte; without it, they differ (so the
// load did reach the bounds).
func TestBoundsMakeReplicasAgree(t *testing.T) {
	loose := Config{Domain: "b.example"}
	other := Config{Domain: "b.example", Bounds: Bounds{Retention: Retention{RoomEntries: 30, TotalBytes: 20_000}, MaxSubscriptions: 3, InboxLimit: 7}}
	for seed := range uint64(5) {
		withA, withB := replayBounded(t, loose, seed, true), replayBounded(t, other, seed, true)
		if !bytes.Equal(withA, withB) {
			t.Fatalf("seed %d: with replicated bounds, two differently configured nodes hold different states", seed)
		}
		if bytes.Equal(replayBounded(t, loose, seed, false), replayBounded(t, other, seed, false)) {
			t.Fatalf("seed %d: without replicated bounds the states agree too: the load never reached a bound", seed)
		}
	}
}

// replayBounded applies one seeded log to a new node configured with cfg, first
// setting tightBounds through the log when set is true, and returns the
// state's encoding.
func replayBounded(t *testing.T, cfg Config, seed uint64, set bool) []byte {
	rng := rand.New(rand.NewPCG(seed, 17))
	n := newNodeWith(t, cfg)
	if set {
		n.ok(n.apply(CmdSetBounds, nil, "", &BoundsBody{Bounds: tightBounds}), "set the bounds")
	}
	clients, rooms := n.readersAndRooms()
	next := map[proto.URI]uint64{}
	for range 300 {
		switch op := rng.IntN(10); {
		case op < 6:
			r := rooms[rng.IntN(len(rooms))]
			var batch proto.FanoutBatch
			for i := range 1 + rng.IntN(3) {
				data := wire.MustMarshal(appMessage(r, fmt.Appendf(nil, "%s#%d/%d", r, next[r]+uint64(i)+1, rng.IntN(1000))))
				batch = append(batch, proto.FanoutMessage{Message: must(mls.DecodeMessage(data)), Timestamp: n.now})
			}
			n.apply(CmdFanout, nil, "a.example", &FanoutBody{Room: r, FirstSeq: next[r] + 1, Batch: batch})
			next[r] += uint64(len(batch))
		case op < 9:
			// Refused past the subscription bound on one node, not the
			// other: the answer differs, and so would the state.
			n.apply(CmdSubscribe, nil, "", &SubscribeBody{Client: clients[rng.IntN(len(clients))], Room: rooms[rng.IntN(len(rooms))], Subscribe: rng.IntN(4) > 0})
		default:
			n.now += 10_000
			n.apply(CmdPrune, nil, "", nil)
		}
	}
	return n.state()
}
