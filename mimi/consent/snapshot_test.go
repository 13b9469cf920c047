package consent

import (
	"bytes"
	"slices"
	"testing"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// script applies a fixed sequence of operations and returns every outgoing
// message, encoded.
func script(t *testing.T, b *Book, kps []*mls.Message) [][]byte {
	t.Helper()
	var out [][]byte
	for _, e := range []proto.ConsentEntry{
		entry(request, alice, carol, nil),
		entry(request, alice, bob, in(room1)),
		entry(grant, carol, alice, nil, kps[0]),
		entry(grant, alice, bob, in(room2), kps[1]),
		entry(revoke, dave, alice, nil),
		entry(grant, dave, alice, in(room3)),
		entry(cancel, alice, carol, in(room1)),
		entry(revoke, cindy, bob, in(room1)),
	} {
		for _, o := range local(t, b, e) {
			out = append(out, []byte{byte(o.Primitive)}, []byte(o.Domain), wire.MustMarshal(&o.Entry))
		}
	}
	for _, r := range []struct {
		from string
		e    proto.ConsentEntry
	}{
		{domB, entry(request, carol, alice, in(room1))},
		{domB, entry(request, cindy, alice, nil)},
		{domC, entry(request, dave, bob, nil)},
		{domB, entry(grant, alice, carol, nil, kps[2])},
		{domB, entry(grant, bob, cindy, in(room1))},
		{domC, entry(grant, bob, dave, in(room2))},
		{domB, entry(cancel, cindy, alice, nil)},
	} {
		must(t, b.ApplyRemote(r.from, r.e))
	}
	return out
}

func scriptKPs(t *testing.T) []*mls.Message {
	return []*mls.Message{
		kpMessage(t, proto.ClientURI(dom, "alice", "phone")),
		kpMessage(t, proto.ClientURI(dom, "bob", "phone")),
		kpMessage(t, proto.ClientURI(domB, "carol", "phone")),
	}
}

func TestDeterminism(t *testing.T) {
	kps := scriptKPs(t)
	a, b := testBook(t, true), testBook(t, true)
	outA, outB := script(t, a, kps), script(t, b, kps)
	if !slices.EqualFunc(outA, outB, bytes.Equal) {
		t.Fatalf("the same operations sent different messages")
	}
	if !bytes.Equal(snapshot(t, a), snapshot(t, b)) {
		t.Fatalf("the same operations gave different snapshots")
	}
	// Operations that commute give the same snapshot in any order.
	ops := []proto.ConsentEntry{
		entry(request, carol, alice, nil), entry(request, dave, alice, in(room1)),
		entry(request, carol, bob, in(room2)), entry(request, cindy, alice, nil),
	}
	fwd, back := testBook(t, true), testBook(t, true)
	for i := range ops {
		from, _ := ops[i].Requester.Domain()
		must(t, fwd.ApplyRemote(from, ops[i]))
		from, _ = ops[len(ops)-1-i].Requester.Domain()
		must(t, back.ApplyRemote(from, ops[len(ops)-1-i]))
	}
	if !bytes.Equal(snapshot(t, fwd), snapshot(t, back)) {
		t.Fatalf("order of commuting operations shows in the snapshot")
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	for _, require := range []bool{true, false} {
		b := testBook(t, require)
		l := DefaultLimits()
		l.MaxRecordsPerPeer = 77
		must(t, b.SetLimits(l))
		script(t, b, scriptKPs(t))
		enc := snapshot(t, b)
		var back Book
		must(t, wire.Unmarshal(enc, &back))
		if !bytes.Equal(snapshot(t, &back), enc) {
			t.Fatalf("snapshot does not re-encode byte for byte")
		}
		if back.Domain() != dom || back.RequireConsent() != require || back.Limits() != l {
			t.Fatalf("restored %q %t %+v", back.Domain(), back.RequireConsent(), back.Limits())
		}
		for _, u := range []proto.URI{alice, bob} {
			for _, q := range []func(*Book) func(proto.URI) ([]proto.ConsentEntry, error){
				func(b *Book) func(proto.URI) ([]proto.ConsentEntry, error) { return b.Pending },
				func(b *Book) func(proto.URI) ([]proto.ConsentEntry, error) { return b.Given },
				func(b *Book) func(proto.URI) ([]proto.ConsentEntry, error) { return b.Received },
			} {
				x, _ := q(b)(u)
				y, _ := q(&back)(u)
				if !slices.EqualFunc(x, y, func(a, b proto.ConsentEntry) bool {
					return bytes.Equal(wire.MustMarshal(&a), wire.MustMarshal(&b))
				}) {
					t.Fatalf("restored book answers differently for %s", u)
				}
			}
			for _, r := range []proto.URI{carol, cindy, dave, bob} {
				for _, room := range []*proto.URI{nil, in(room1), in(room2), in(room3)} {
					if b.Check(u, r, room) != back.Check(u, r, room) {
						t.Fatalf("restored book checks differently")
					}
				}
			}
		}
		// Counters are rebuilt: the restored book enforces the same bounds.
		if back.peerRecords(domB) != b.peerRecords(domB) || back.pending.counts[alice] != b.pending.counts[alice] {
			t.Fatalf("counters differ after restore")
		}
	}
}

// rawBook writes snapshots independently of the Book, to build ones a Book
// could never produce.
type rawBook struct {
	domain                       string
	require                      uint8
	limits                       [6]uint32
	pending, decisions, received []proto.ConsentEntry
}

func (s *rawBook) EncodeTLS(w *wire.Writer) {
	w.Opaque([]byte(s.domain))
	w.Uint8(s.require)
	for _, l := range s.limits {
		w.Uint32(l)
	}
	for _, list := range [][]proto.ConsentEntry{s.pending, s.decisions, s.received} {
		w.Vector(func(w *wire.Writer) {
			for i := range list {
				w.Encode(&list[i])
			}
		})
	}
}

func TestSnapshotRejects(t *testing.T) {
	aliceKP := kpMessage(t, proto.ClientURI(dom, "alice", "phone"))
	carolKP := kpMessage(t, proto.ClientURI(domB, "carol", "phone"))
	valid := func() *rawBook {
		return &rawBook{
			domain:  dom,
			require: 1,
			limits:  [6]uint32{1000, 100, 10000, 10000, 100000, 100},
			pending: []proto.ConsentEntry{
				entry(request, carol, alice, nil), entry(request, carol, alice, in(room1)), entry(request, dave, alice, nil),
				entry(request, carol, bob, nil),
			},
			decisions: []proto.ConsentEntry{
				entry(grant, carol, alice, nil), entry(revoke, carol, alice, in(room1)), entry(grant, carol, bob, in(room2)),
			},
			received: []proto.ConsentEntry{
				entry(grant, alice, carol, nil, carolKP), entry(grant, alice, carol, in(room1)), entry(grant, bob, alice, nil, aliceKP),
			},
		}
	}
	enc := wire.MustMarshal(valid())
	var b Book
	must(t, wire.Unmarshal(enc, &b))
	if !bytes.Equal(snapshot(t, &b), enc) {
		t.Fatalf("valid raw snapshot does not round-trip")
	}

	tests := []struct {
		name   string
		change func(*rawBook)
	}{
		{"invalid domain", func(s *rawBook) { s.domain = "a_b.example" }},
		{"invalid bool", func(s *rawBook) { s.require = 2 }},
		{"zero limit", func(s *rawBook) { s.limits[5] = 0 }},
		{"limit too large", func(s *rawBook) { s.limits[0] = maxLimit + 1 }},
		{"pending grant", func(s *rawBook) { s.pending[0].Operation = grant }},
		{"pending for a remote target", func(s *rawBook) { s.pending[3] = entry(request, alice, carol, nil) }},
		{"pending out of order", func(s *rawBook) { s.pending[0], s.pending[1] = s.pending[1], s.pending[0] }},
		{"pending repeated", func(s *rawBook) { s.pending[1] = s.pending[0] }},
		{"pending by a client", func(s *rawBook) { s.pending[3].Requester = proto.ClientURI(domB, "x", "y") }},
		{"pending self", func(s *rawBook) { s.pending[3].Requester = bob }},
		{"decision request", func(s *rawBook) { s.decisions[0].Operation = request }},
		{"decision cancel", func(s *rawBook) { s.decisions[0].Operation = cancel }},
		{"decision with KeyPackages", func(s *rawBook) { s.decisions[0].KeyPackages = []*mls.Message{aliceKP} }},
		{"decision by a remote target", func(s *rawBook) { s.decisions[2] = entry(grant, alice, carol, nil) }},
		{"decisions out of order", func(s *rawBook) { s.decisions[1], s.decisions[2] = s.decisions[2], s.decisions[1] }},
		{"decision with a non-room", func(s *rawBook) { s.decisions[1].Room = in(carol) }},
		{"received revoke", func(s *rawBook) { s.received[1].Operation = revoke }},
		{"received by a remote requester", func(s *rawBook) { s.received[0] = entry(grant, dave, carol, nil) }},
		{"received KeyPackage of another user", func(s *rawBook) { s.received[0].KeyPackages = []*mls.Message{aliceKP} }},
		{"received out of order", func(s *rawBook) { s.received[0], s.received[1] = s.received[1], s.received[0] }},
		{"received repeated", func(s *rawBook) { s.received[1] = s.received[0] }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := valid()
			tt.change(raw)
			data, err := wire.Marshal(raw)
			must(t, err)
			bk := testBook(t, true)
			local(t, bk, entry(request, alice, bob, nil))
			before := snapshot(t, bk)
			err = wire.Unmarshal(data, bk)
			if err == nil {
				t.Fatalf("snapshot accepted")
			}
			t.Log(err)
			if !bytes.Equal(snapshot(t, bk), before) {
				t.Fatalf("a refused snapshot changed the book")
			}
		})
	}
	t.Run("trailing byte", func(t *testing.T) {
		var bk Book
		if err := wire.Unmarshal(append(bytes.Clone(enc), 0), &bk); err == nil {
			t.Fatalf("snapshot with a trailing byte accepted")
		}
	})
}
