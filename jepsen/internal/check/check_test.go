package check

import (
	"slices"
	"testing"

	"github.com/mimihub/mimi-hub/jepsen/internal/history"
)

const room = "mimi://hub.example/r/race"

// hb builds histories for the tests.
type hb struct{ s history.Snapshot }

func newHB() *hb { return &hb{} }

func (b *hb) op(o history.Op) *hb {
	o.ID = len(b.s.Ops)
	if o.Room == "" && o.Kind != history.KindClaim && o.Kind != history.KindUpload {
		o.Room = room
	}
	b.s.Ops = append(b.s.Ops, o)
	return b
}

func (b *hb) commit(p int, call, ret int64, epoch uint64, parent, hash string, res history.Outcome, code string) *hb {
	return b.op(history.Op{Process: p, Kind: history.KindCommit, Call: call, Return: ret, Epoch: epoch, Parent: parent, Hash: hash, Result: res, Code: code})
}

func (b *hb) read(p int, call, ret int64, epoch uint64, hash string) *hb {
	return b.op(history.Op{Process: p, Kind: history.KindRead, Call: call, Return: ret, Epoch: epoch, Hash: hash, Result: history.OK})
}

func (b *hb) chain(links ...history.Link) *hb {
	b.s.Chains = append(b.s.Chains, history.Chain{Room: room, Links: links})
	return b
}

func (b *hb) final(epoch uint64, hash string, nodes ...string) *hb {
	for _, n := range nodes {
		b.s.Finals = append(b.s.Finals, history.Final{Node: n, Room: room, Epoch: epoch, Hash: hash})
	}
	return b
}

func (b *hb) send(p int, call, ret int64, digest string, res history.Outcome) *hb {
	return b.op(history.Op{Process: p, Kind: history.KindSend, Call: call, Return: ret, Digest: digest, Sender: "s", Result: res})
}

func (b *hb) deliver(at int64, first uint64, digests ...string) *hb {
	d := history.Delivery{At: at, Room: room, FirstSeq: first, Status: 204}
	for _, g := range digests {
		d.Messages = append(d.Messages, history.Message{Digest: g, Kind: "application"})
	}
	b.s.Deliveries = append(b.s.Deliveries, d)
	return b
}

func (b *hb) observe(first uint64, digests ...string) *hb {
	for i, g := range digests {
		b.s.Observed = append(b.s.Observed, history.Observed{Room: room, HubSeq: first + uint64(i), Message: history.Message{Digest: g, Kind: "application"}})
	}
	return b
}

func (b *hb) upload(ref string, lastResort bool) *hb {
	b.s.Uploaded = append(b.s.Uploaded, history.Uploaded{User: "u", Client: "c", Ref: ref, LastResort: lastResort})
	return b
}

func (b *hb) claim(call, ret int64, refs ...string) *hb {
	return b.op(history.Op{Kind: history.KindClaim, Call: call, Return: ret, User: "u", KeyPackageRefs: refs, Result: history.OK})
}

func kinds(r Result) []AnomalyKind {
	var out []AnomalyKind
	for _, a := range r.Anomalies {
		if !slices.Contains(out, a.Kind) {
			out = append(out, a.Kind)
		}
	}
	slices.Sort(out)
	return out
}

// raceHistory is a clean commit race: A wins epoch 5, B loses, a read sees
// A, C's outcome is unknown but the final state holds it.
func raceHistory() *hb {
	return newHB().
		commit(0, 10, 20, 5, "h5", "a", history.OK, "").
		commit(1, 12, 25, 5, "h5", "b", history.Fail, WrongEpoch).
		read(2, 30, 40, 6, "a").
		commit(0, 50, 0, 6, "a", "c", history.Unknown, "").
		commit(1, 52, 60, 6, "a", "d", history.Fail, WrongEpoch).
		chain(history.Link{Epoch: 5, Hash: "h5"}, history.Link{Epoch: 6, Hash: "a"}, history.Link{Epoch: 7, Hash: "c"}).
		final(7, "c", "n1", "n2", "n3")
}

func TestRunFindsAnomalies(t *testing.T) {
	tests := []struct {
		name string
		h    *hb
		want []AnomalyKind
	}{
		{"clean commit race", raceHistory(), nil},
		{
			"forked epoch",
			newHB().
				commit(0, 10, 20, 5, "h5", "a", history.OK, "").
				commit(1, 12, 25, 5, "h5", "b", history.OK, "").
				read(2, 30, 40, 6, "b").
				chain(history.Link{Epoch: 5, Hash: "h5"}, history.Link{Epoch: 6, Hash: "b"}).
				final(6, "b", "n1", "n2", "n3"),
			[]AnomalyKind{NotLinearizable, ForkedEpoch},
		},
		{
			"lost acknowledged commit",
			newHB().
				commit(0, 10, 20, 5, "h5", "a", history.OK, "").
				chain(history.Link{Epoch: 5, Hash: "h5"}, history.Link{Epoch: 6, Hash: "a"}).
				final(5, "h5", "n1", "n2", "n3"),
			[]AnomalyKind{LostCommit},
		},
		{
			"stale read after an acknowledged commit",
			newHB().
				commit(0, 10, 20, 5, "h5", "a", history.OK, "").
				read(1, 30, 40, 5, "h5").
				chain(history.Link{Epoch: 5, Hash: "h5"}, history.Link{Epoch: 6, Hash: "a"}).
				final(6, "a", "n1", "n2", "n3"),
			[]AnomalyKind{NotLinearizable},
		},
		{
			"refused commit took effect",
			newHB().
				commit(1, 12, 25, 5, "h5", "b", history.Fail, WrongEpoch).
				chain(history.Link{Epoch: 5, Hash: "h5"}, history.Link{Epoch: 6, Hash: "b"}).
				final(6, "b", "n1", "n2"),
			[]AnomalyKind{NotLinearizable, RefusedCommitApplied},
		},
		{
			"nodes diverge",
			newHB().
				commit(0, 10, 20, 5, "h5", "a", history.OK, "").
				chain(history.Link{Epoch: 5, Hash: "h5"}, history.Link{Epoch: 6, Hash: "a"}).
				final(6, "a", "n1", "n2").final(5, "h5", "n3"),
			[]AnomalyKind{NodesDiverge},
		},
		{
			"final state no commit explains",
			newHB().
				commit(0, 10, 20, 5, "h5", "a", history.OK, "").
				chain(history.Link{Epoch: 5, Hash: "h5"}, history.Link{Epoch: 6, Hash: "a"}).
				final(7, "zz", "n1", "n2", "n3"),
			[]AnomalyKind{FinalStateMismatch},
		},
		{
			"duplicate KeyPackage",
			newHB().upload("k1", false).upload("k2", false).claim(1, 2, "k1").claim(1, 3, "k1"),
			[]AnomalyKind{DuplicateKeyPackage},
		},
		{
			"last-resort KeyPackage handed out twice",
			newHB().upload("k1", false).upload("lr", true).claim(1, 2, "lr").claim(1, 3, "lr").claim(4, 5, "k1"),
			nil,
		},
		{
			"KeyPackage nobody uploaded",
			newHB().upload("k1", false).claim(1, 2, "k9"),
			[]AnomalyKind{UnknownKeyPackage},
		},
		{
			"clean fanout with redeliveries",
			newHB().send(0, 10, 20, "m1", history.OK).send(0, 30, 40, "m2", history.OK).send(1, 31, 0, "m3", history.Unknown).
				deliver(5, 3, "w").deliver(25, 4, "m1").deliver(45, 4, "m1", "m2").deliver(50, 6, "m3").
				observe(3, "w", "m1", "m2", "m3"),
			nil,
		},
		{
			"missing fanout",
			newHB().send(0, 10, 20, "m1", history.OK).send(0, 30, 40, "m2", history.OK).
				deliver(5, 3, "w").deliver(25, 4, "m1").
				observe(3, "w", "m1", "m2"),
			[]AnomalyKind{MissingFanout},
		},
		{
			"gap in the follower's sequence",
			newHB().send(0, 10, 20, "m1", history.OK).send(0, 30, 40, "m2", history.OK).
				deliver(5, 3, "w").deliver(45, 5, "m2"),
			[]AnomalyKind{MissingFanout},
		},
		{
			"reordered fanout against hub order",
			newHB().send(0, 10, 20, "m1", history.OK).send(1, 30, 40, "m2", history.OK).
				deliver(5, 3, "w").deliver(45, 4, "m2", "m1").
				observe(3, "w", "m1", "m2"),
			[]AnomalyKind{ReorderedFanout},
		},
		{
			"reordered fanout against real time, no observer",
			newHB().send(0, 10, 20, "m1", history.OK).send(1, 30, 40, "m2", history.OK).
				deliver(5, 3, "w").deliver(45, 4, "m2", "m1"),
			[]AnomalyKind{ReorderedFanout},
		},
		{
			"duplicate in effect",
			newHB().send(0, 10, 20, "m1", history.OK).
				deliver(5, 3, "w").deliver(25, 4, "m1").deliver(26, 5, "m1").
				observe(3, "w", "m1", "m1"),
			[]AnomalyKind{DuplicateFanout},
		},
		{
			"conflicting redelivery",
			newHB().send(0, 10, 20, "m1", history.OK).send(0, 30, 40, "m2", history.OK).
				deliver(5, 3, "w").deliver(25, 4, "m1").deliver(45, 4, "m2", "m1").
				observe(3, "w", "m1", "m2"),
			[]AnomalyKind{ConflictingFanout, DuplicateFanout, ReorderedFanout, MissingFanout},
		},
		{
			"accepted message lost at the hub",
			newHB().send(0, 10, 20, "m1", history.OK).
				deliver(5, 3, "w").observe(3, "w"),
			[]AnomalyKind{LostMessage, MissingFanout},
		},
		{
			"token refused after an acknowledged registration",
			newHB().op(history.Op{Kind: history.KindRegister, Client: "c1", Call: 1, Return: 5, Result: history.OK}).
				op(history.Op{Kind: history.KindRead, As: "c1", Node: "n2", Call: 10, Return: 12, Result: history.Fail, Code: "HTTP 401"}),
			[]AnomalyKind{StaleAuth},
		},
		{
			"token refused while its registration was in flight",
			newHB().op(history.Op{Kind: history.KindRegister, Client: "c1", Call: 1, Return: 15, Result: history.OK}).
				op(history.Op{Kind: history.KindRead, As: "c1", Node: "n2", Call: 10, Return: 12, Result: history.Fail, Code: "HTTP 401"}),
			nil,
		},
		{
			"refused message delivered",
			newHB().send(0, 10, 20, "m1", history.Fail).
				deliver(5, 3, "w", "m1").observe(3, "w", "m1"),
			[]AnomalyKind{RefusedMessageDelivered},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Run(tt.h.s, Options{})
			got := kinds(r)
			want := slices.Clone(tt.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("anomaly kinds = %v, want %v; anomalies:", got, want)
				for _, a := range r.Anomalies {
					t.Logf("  %v", a)
				}
			}
			if r.Valid != (len(tt.want) == 0) {
				t.Errorf("Valid = %v with %d anomalies", r.Valid, len(r.Anomalies))
			}
		})
	}
}

func TestResolveUnknownOutcomes(t *testing.T) {
	tests := []struct {
		name string
		h    *hb
		op   int
		want string
	}{
		{"commit in the final chain happened", raceHistory(), 3, ResolvedHappened},
		{
			"commit whose epoch another filled did not happen",
			newHB().commit(0, 10, 0, 5, "h5", "a", history.Unknown, "").commit(1, 11, 20, 5, "h5", "b", history.OK, "").
				chain(history.Link{Epoch: 5, Hash: "h5"}, history.Link{Epoch: 6, Hash: "b"}).final(6, "b", "n1"),
			0, ResolvedNotHappened,
		},
		{
			"commit on a room that never moved did not happen",
			newHB().commit(0, 10, 0, 5, "h5", "a", history.Unknown, "").
				chain(history.Link{Epoch: 5, Hash: "h5"}).final(5, "h5", "n1"),
			0, ResolvedNotHappened,
		},
		{
			"commit explaining a final state one past the chain happened",
			newHB().commit(0, 10, 0, 5, "h5", "a", history.Unknown, "").
				chain(history.Link{Epoch: 5, Hash: "h5"}).final(6, "a", "n1"),
			0, ResolvedHappened,
		},
		{
			"commit without a final state stays unknown",
			newHB().commit(0, 10, 0, 5, "h5", "a", history.Unknown, "").chain(history.Link{Epoch: 5, Hash: "h5"}),
			0, "",
		},
		{
			"message in hub order happened",
			newHB().send(0, 10, 0, "m1", history.Unknown).observe(3, "m1"),
			0, ResolvedHappened,
		},
		{
			"message in neither order did not happen",
			newHB().send(0, 10, 0, "m1", history.Unknown).send(0, 11, 12, "m2", history.OK).observe(3, "m2").deliver(20, 3, "m2"),
			0, ResolvedNotHappened,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Run(tt.h.s, Options{})
			if got := r.Ops[tt.op].Resolved; got != tt.want {
				t.Errorf("op %d resolved %q, want %q", tt.op, got, tt.want)
			}
			if tt.h.s.Ops[tt.op].Resolved != "" {
				t.Errorf("Run modified the caller's history")
			}
		})
	}
}

func TestEffectiveStreamSkipsRedeliveries(t *testing.T) {
	b := newHB().deliver(1, 3, "w", "a").deliver(2, 3, "w", "a", "b").deliver(3, 6, "c")
	b.s.Deliveries = append(b.s.Deliveries, history.Delivery{At: 4, Room: room, FirstSeq: 7, Status: 400, Messages: []history.Message{{Digest: "x"}}})
	eff, anomalies := EffectiveStream(room, b.s.Deliveries)
	var got []string
	for _, e := range eff {
		got = append(got, e.Digest)
	}
	if want := []string{"w", "a", "b", "c"}; !slices.Equal(got, want) {
		t.Errorf("effective stream = %v, want %v", got, want)
	}
	if len(anomalies) != 0 {
		t.Errorf("anomalies = %v, want none", anomalies)
	}
}
